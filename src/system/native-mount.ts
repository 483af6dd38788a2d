import { createRequire } from 'node:module';
import path from 'node:path';
import { packageRoot } from '../util/package-root.js';
import type { ToolContext } from './exec.js';

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

/** `tools`: mount(8) and umount(8) as asked (`why` says who asked); `auto`: the addon when it loads. */
export type MountBackendChoice = { kind: 'auto' } | { kind: 'tools'; why: string };

/** The backend the choice gives: the addon is loaded here, once per host (see createHost). */
export function loadMountBackend(choice: MountBackendChoice): MountBackend {
  if (choice.kind === 'tools') return { kind: 'tools', why: choice.why };
  let file = ADDON;
  try {
    file = path.join(packageRoot(), ADDON);
    const addon = createRequire(import.meta.url)(file) as NativeMount;
    return { kind: 'syscall', addon, file };
  } catch (err) {
    return { kind: 'tools', why: `cannot load ${file}: ${(err as Error).message.split('\n')[0]}` };
  }
}

/** The choice HPP_MOUNT_BACKEND=tools makes, else the addon's. */
export function mountBackendFromEnv(env: NodeJS.ProcessEnv): MountBackendChoice {
  return env.HPP_MOUNT_BACKEND === 'tools' ? { kind: 'tools', why: 'HPP_MOUNT_BACKEND=tools' } : { kind: 'auto' };
}

/**
 * How bind mounts are made: mount(2)/umount2(2) through our addon when it is built, else mount(8) and
 * umount(8). The addon saves a process spawn (about 2.5 ms here) on every publish and unpublish.
 * This one is the process default of the free functions of mount.ts and loop.ts (hppctl, tests); the
 * daemon's host loads its own, from its options (createHost).
 */
export const mountBackend: MountBackend = loadMountBackend(mountBackendFromEnv(process.env));

/** A tool context that also says which mount backend to use (the process default when it names none). */
export interface MountContext extends ToolContext {
  backend?: MountBackend;
}
