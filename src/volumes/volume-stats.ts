import { promises as fsp } from 'node:fs';
import type { QuotaBackend } from '../pools/quota.js';
import type { ToolContext } from '../system/exec.js';
import type { Host } from '../system/host.js';
import type { VolumeRecord } from '../format/records.js';
import type { AtTarget } from './target.js';

export interface Usage {
  total: bigint;
  available: bigint;
  used: bigint;
}

/** A volume's usage as NodeGetVolumeStats reports it: bytes, inodes (filesystem volumes) and its condition. */
export interface VolumeStats {
  bytes?: Usage;
  inodes?: Usage;
  condition: { abnormal: boolean; message: string };
}

/**
 * Measures a volume found at `volumePath` (`data` is where its data is; `at` what is at the path,
 * when it is not the data itself; `published` whether a publication is recorded there).
 */
export async function measureVolume(
  host: Host,
  rec: VolumeRecord,
  data: string,
  where: { volumePath: string; at?: AtTarget; published: boolean },
  quota: QuotaBackend | undefined,
  tc?: ToolContext,
): Promise<VolumeStats> {
  const dataThere = await fsp.stat(data).then(() => true, () => false);
  if (!dataThere) return { condition: { abnormal: true, message: `volume data ${data} is missing` } };
  if (rec.mode === 'block') {
    const devices = (await host.loops.devicesFor(data, tc)).filter((d) => !d.detaching);
    const size = devices[0] ? await host.loops.deviceSize(devices[0].name) : BigInt(rec.capacityBytes);
    const condition =
      where.at?.kind === 'stale'
        ? { abnormal: true, message: `target ${where.volumePath} is bound to a device that is not this volume's: ${where.at.why}` }
        : where.published && devices.length === 0
          ? { abnormal: true, message: `no loop device is attached to ${data}` }
          : { abnormal: false, message: devices.length > 0 ? `attached as ${devices.map((d) => d.name).join(', ')}` : 'image present' };
    return { bytes: { total: size, available: 0n, used: 0n }, condition };
  }
  const s = await fsp.statfs(data, { bigint: true });
  const usage = await quota?.usage(data, rec.projectId);
  let bytes: Usage;
  if (usage && usage.limitBytes > 0n) {
    // The volume's own numbers: its limit and what it holds, not the host filesystem's.
    const available = usage.limitBytes > usage.usedBytes ? usage.limitBytes - usage.usedBytes : 0n;
    bytes = { total: usage.limitBytes, available, used: usage.usedBytes };
  } else {
    const total = s.blocks * s.bsize;
    bytes = { total, available: s.bavail * s.bsize, used: total - s.bfree * s.bsize };
  }
  return {
    bytes,
    inodes: { total: s.files, available: s.ffree, used: usage?.usedInodes ?? s.files - s.ffree },
    condition: { abnormal: false, message: 'volume directory is present' },
  };
}
