import { createRequire } from 'node:module';
import path from 'node:path';
import { packageRoot } from '../util/package-root.js';

/** The system calls of src/native/hpp_mount.c; mount and umount2 run on the libuv thread pool. */
export interface NativeMount {
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): Promise<void>;
  umount2(target: string, flags: number): Promise<void>;
  /** statx's STATX_ATTR_MOUNT_ROOT: false also when the path is missing, null when the kernel cannot tell. */
  isMountRoot(p: string): boolean | null;
  /** LOOP_GET_STATUS64 of a loop device; null when it backs nothing. Throws with errno/syscall otherwise. */
  loopStatus(device: string): { backingDevice: bigint; backingInode: bigint; flags: number } | null;
}

/** mount(2) flags this driver uses (linux/mount.h). */
export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  REMOUNT: 32,
  NOSYMFOLLOW: 256,
  NOATIME: 1024,
  NODIRATIME: 2048,
  BIND: 4096,
  RELATIME: 1 << 21,
  STRICTATIME: 1 << 24,
} as const;

const ADDON = path.join('src', 'native', 'build', 'Release', 'hpp_mount.node');

export type MountBackend = { kind: 'syscall'; addon: NativeMount; file: string } | { kind: 'tools'; why: string };

function load(): MountBackend {
  if (process.env.HPP_MOUNT_BACKEND === 'tools') return { kind: 'tools', why: 'HPP_MOUNT_BACKEND=tools' };
  let file = ADDON;
  try {
    file = path.join(packageRoot(), ADDON);
    const addon = createRequire(import.meta.url)(file) as NativeMount;
    return { kind: 'syscall', addon, file };
  } catch (err) {
    return { kind: 'tools', why: `cannot load ${file}: ${(err as Error).message.split('\n')[0]}` };
  }
}

/**
 * How bind mounts are made: mount(2)/umount2(2) through our addon when it is built, else mount(8) and
 * umount(8). The addon saves a process spawn (about 2.5 ms here) on every publish and unpublish.
 */
export const mountBackend: MountBackend = load();
