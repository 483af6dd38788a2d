import { promises as fsp, type BigIntStats } from 'node:fs';
import type { VolumeRecord } from '../format/records.js';
import type { PoolStateView } from '../pools/supervisor.js';
import { diskImagePath } from '../format/layout.js';

/** What ControllerGetVolume and ListVolumes say of a volume (CSI VolumeCondition). */
export interface VolumeCondition {
  abnormal: boolean;
  message: string;
}

async function lstatOrUndefined(p: string): Promise<BigIntStats | undefined> {
  try {
    return await fsp.lstat(p, { bigint: true });
  } catch {
    return undefined;
  }
}

/**
 * A volume's condition as the controller side sees it, from its pool's state and what is on disk
 * (reads only: lstat): abnormal when the pool is not ready, its data is gone or is not of its mode, a
 * block image is shorter than the volume (damaged: truncated), or a disk.img the volume was made with
 * is gone. external-health-monitor turns abnormal answers into events on the PVC.
 */
export async function volumeCondition(rec: VolumeRecord, dataPath: string, pool: PoolStateView): Promise<VolumeCondition> {
  if (pool.phase !== 'ready') return { abnormal: true, message: `pool ${rec.pool} is ${pool.phase}${pool.reason ? `: ${pool.reason}` : ''}` };
  const st = await lstatOrUndefined(dataPath);
  if (!st) return { abnormal: true, message: `volume data ${dataPath} is missing` };
  if (rec.mode === 'block') {
    if (!st.isFile()) return { abnormal: true, message: `volume data ${dataPath} is not an image file` };
    const capacity = BigInt(rec.capacityBytes);
    if (st.size < capacity) return { abnormal: true, message: `image ${dataPath} has ${st.size} bytes, the volume ${capacity}: it was truncated` };
    return { abnormal: false, message: 'image present' };
  }
  if (!st.isDirectory()) return { abnormal: true, message: `volume data ${dataPath} is not a directory` };
  if (rec.diskImage) {
    const img = await lstatOrUndefined(diskImagePath(dataPath));
    if (!img?.isFile()) return { abnormal: true, message: `disk.img of the volume is missing from ${dataPath}` };
  }
  return { abnormal: false, message: 'volume directory is present' };
}
