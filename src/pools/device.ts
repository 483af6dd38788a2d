import { promises as fsp } from 'node:fs';
import type { Logger } from '../observe/logger.js';
import { ProcessLock } from '../system/flock.js';
import type { Host } from '../system/host.js';
import { devString } from '../system/loop.js';
import { mountAt } from '../system/mount.js';

export interface DevicePoolState {
  ready: boolean;
  reason?: string;
  formatted?: boolean;
}

/**
 * Make a device-backed pool usable: the device is formatted XFS only when it is blank, mounted at the
 * pool path (with project quotas when the kernel has them), and left alone, unformatted and unmounted,
 * when it holds anything else. Idempotent: an existing mount of the same device is kept.
 */
export async function ensureDevicePool(host: Host, name: string, device: string, mountPoint: string, log: Logger): Promise<DevicePoolState> {
  let st;
  try {
    st = await fsp.stat(device, { bigint: true });
  } catch (err) {
    return { ready: false, reason: `pool ${name}: device ${device} is not there (${(err as NodeJS.ErrnoException).code})` };
  }
  if (!st.isBlockDevice()) return { ready: false, reason: `pool ${name}: ${device} is not a block device` };
  const devId = devString(st.rdev);

  const mounted = mountAt(await host.mounts.table(), mountPoint);
  if (mounted) {
    if (mounted.device === devId && mounted.root === '/') return { ready: true };
    return { ready: false, reason: `pool ${name}: ${mountPoint} already has ${mounted.source} (${mounted.device}) mounted, not ${device} (${devId})` };
  }

  // Two daemons (or a daemon and an admin tool using flock) must not probe and format at once.
  const lock = new ProcessLock(device);
  if (!(await lock.acquire(false))) return { ready: false, reason: `pool ${name}: ${device} is locked by another process` };
  try {
    let formatted = false;
    let content = await host.tools.probeDevice(device);
    if (content.kind === 'blank') {
      log.warn({ pool: name, device }, 'device is blank: formatting XFS');
      await host.tools.mkfsXfs(device);
      formatted = true;
      content = await host.tools.probeDevice(device);
    }
    if (content.kind !== 'filesystem' || content.type !== 'xfs') {
      const what =
        content.kind === 'filesystem'
          ? `a ${content.type} filesystem`
          : content.kind === 'partitioned'
            ? `a ${content.table} partition table`
            : content.kind === 'unknown-data'
              ? `data that is not a filesystem (${content.detail})`
              : 'nothing after formatting';
      return { ready: false, reason: `pool ${name}: ${device} holds ${what}; it is used only when blank or XFS, and was not touched` };
    }
    await fsp.mkdir(mountPoint, { recursive: true });
    try {
      await host.mounts.mountFilesystem(device, mountPoint, { type: 'xfs', options: ['prjquota'] });
      return { ready: true, formatted };
    } catch (err) {
      log.warn({ pool: name, device, err: (err as Error).message }, 'mount with project quotas failed; mounting without (sizes not enforced)');
      await host.mounts.mountFilesystem(device, mountPoint, { type: 'xfs' });
      return { ready: true, formatted };
    }
  } finally {
    await lock.release();
  }
}
