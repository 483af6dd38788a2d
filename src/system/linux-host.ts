import { promises as fsp, statfsSync } from 'node:fs';
import type { Logger } from '../observe/logger.js';
import { silentLogger } from '../observe/logger.js';
import { probeDevice } from './blkid.js';
import { btrfsCreateSubvolume, btrfsQuotaOn, btrfsSetLimit, btrfsUsage, btrfsUsageByPath } from './btrfs.js';
import { copyFile, copyTree } from './copy.js';
import { run, type ToolContext } from './exec.js';
import type { Host } from './host.js';
import { blockDeviceSize, detachLoop, listLoopDevices, loopDevicesFor, loopDeviceWithNumber, loopStatus, refreshLoopCapacity, withLoopTable } from './loop.js';
import { bindMount, mountedAt, readMountPoints, readMounts, unmount } from './mount.js';
import { loadMountBackend, mountBackendFromEnv, type MountBackendChoice, type MountContext } from './native-mount.js';
import { preallocate } from './preallocate.js';
import { projectQuotaOn, projectReport, setProject, setProjectLimit } from './project-quota.js';
import { labelForContainers, selinuxEnabled, CONTAINER_FILE_CONTEXT } from './selinux.js';
import { mkfsXfs } from './xfs.js';

export interface HostOptions {
  /** Where tool runs and system calls are logged when no caller's log is given (component "exec"). */
  log?: Logger;
  /** How bind mounts are made: the addon when it loads (default), or mount(8) and umount(8). */
  mountBackend?: MountBackendChoice;
}

/**
 * The real host: the modules of src/system/, with the mount backend loaded and the exec log chosen
 * here, once, instead of when a module loads. Tool runs and system calls log to this host's log as
 * component "exec", with the request id of the call they run for and what it is about (its fields).
 */
export function createHost(opts: HostOptions = {}): Host {
  const execLog = (opts.log ?? silentLogger()).child({ component: 'exec' });
  const backend = loadMountBackend(opts.mountBackend ?? { kind: 'auto' });
  const tools = (tc: ToolContext = {}): ToolContext => ({
    log: tc.requestId !== undefined ? execLog.child({ requestId: tc.requestId, ...tc.fields }) : execLog,
    signal: tc.signal,
  });
  const withBackend = (tc?: ToolContext): MountContext => ({ ...tools(tc), backend });
  return {
    mounts: {
      backend: backend.kind === 'syscall' ? 'mount(2)' : `mount(8) (${backend.why})`,
      table: readMounts,
      points: readMountPoints,
      mountedAt: (p) => mountedAt(p, { backend }),
      bind: (source, target, o, tc) => bindMount(source, target, o, withBackend(tc)),
      unmount: (target, tc) => unmount(target, withBackend(tc)),
      mountFilesystem: async (device, mountPoint, o, tc) => {
        await run('mount', ['-t', o.type, ...(o.options?.length ? ['-o', o.options.join(',')] : []), device, mountPoint], tools(tc));
      },
    },
    loops: {
      list: (tc) => listLoopDevices(withBackend(tc)),
      devicesFor: (file, tc) => loopDevicesFor(file, withBackend(tc)),
      status: (device, tc) => loopStatus(device, withBackend(tc)),
      withTable: (fn, tc) => withLoopTable(fn, withBackend(tc)),
      detach: (device, tc) => detachLoop(device, withBackend(tc)),
      refreshCapacity: (device, tc) => refreshLoopCapacity(device, withBackend(tc)),
      deviceSize: blockDeviceSize,
      deviceWithNumber: loopDeviceWithNumber,
    },
    quotas: {
      projectQuotaOn: (fs, mp, tc) => projectQuotaOn(fs, mp, tools(tc)),
      setProject: (fs, mp, dir, id, tc) => setProject(fs, mp, dir, id, tools(tc)),
      setProjectLimit: (fs, mp, id, bytes, tc) => setProjectLimit(fs, mp, id, bytes, tools(tc)),
      projectReport: (fs, mp, tc) => projectReport(fs, mp, tools(tc)),
      adminProjects: () => fsp.readFile('/etc/projects', 'utf8').catch(() => ''),
      btrfsQuotaOn: (p, tc) => btrfsQuotaOn(p, tools(tc)),
      btrfsCreateSubvolume: (p, tc) => btrfsCreateSubvolume(p, tools(tc)),
      btrfsSetLimit: (p, bytes, tc) => btrfsSetLimit(p, bytes, tools(tc)),
      btrfsUsage: (p, tc) => btrfsUsage(p, tools(tc)),
      btrfsUsageByPath: (root, tc) => btrfsUsageByPath(root, tools(tc)),
    },
    data: {
      copyFile: (src, dst, tc) => copyFile(src, dst, tools(tc)),
      copyTree: (src, dst, tc) => copyTree(src, dst, tools(tc)),
      // Progress lines go to the caller's log; the fallocate run is logged as exec.
      preallocate: (file, offset, length, tc) => preallocate(file, offset, length, { log: tc.log, signal: tc.signal, execLog: tools(tc).log, onProgress: tc.onProgress }),
    },
    files: {
      // Sync: statfs answers from memory, cheaper than a round trip through the thread pool.
      statfs: async (p) => {
        const s = statfsSync(p, { bigint: true });
        return { type: s.type, totalBytes: s.blocks * s.bsize, freeBytes: s.bfree * s.bsize, availableBytes: s.bavail * s.bsize };
      },
      shows: async (p) => {
        const st = await fsp.stat(p, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
          throw err;
        });
        return st && { dev: st.dev, ino: st.ino, ...(st.isBlockDevice() ? { rdev: st.rdev } : {}) };
      },
      chown: (p, uid, gid) => fsp.chown(p, uid, gid),
      selinuxEnabled: () => selinuxEnabled(),
      labelForContainers: (p, tc) => labelForContainers(p, CONTAINER_FILE_CONTEXT, tools(tc)),
    },
    tools: {
      run: (cmd, args, o = {}) => run(cmd, args, { ...o, ...tools(o) }),
      probeDevice: (device, tc) => probeDevice(device, tools(tc)),
      mkfsXfs: (device, tc) => mkfsXfs(device, tools(tc)),
    },
  };
}

let defaultHost: Host | undefined;

/** The real host with the process's defaults (no exec log, HPP_MOUNT_BACKEND), for hppctl and other tools of the node. */
export function linuxHost(): Host {
  defaultHost ??= createHost({ mountBackend: mountBackendFromEnv(process.env) });
  return defaultHost;
}
