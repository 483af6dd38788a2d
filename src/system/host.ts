import type { ExecOptions, ExecResult, ToolContext } from './exec.js';
import type { CopyMethod } from './copy.js';
import type { DeviceContent } from './blkid.js';
import type { BtrfsUsage } from './btrfs.js';
import type { DetachOutcome, LoopDevice, LoopStatus, LoopTableTurn } from './loop.js';
import type { MountEntry } from './mount.js';
import type { PreallocateContext, PreallocationMethod } from './preallocate.js';
import type { ProjectQuotaFs, ProjectUsage } from './project-quota.js';

/**
 * Everything the daemon asks of the operating system, in groups. The Linux host (linuxHost(),
 * createHost()) does it for real through the modules of src/system/; a fake keeps a model in memory
 * (test/helpers/fake-host.ts), so that handlers and the volume manager run in-process without root.
 * Every method that runs a tool, or may take long, takes the caller's ToolContext (a CallContext is
 * one): its log lines carry the request id, and its signal stops the work. Work with no caller
 * (start-up, pool loads and reconcile, capacity recomputes, trash sweeps) passes none: that is the root
 * context, logged by the host as exec and never aborted.
 */
export interface Host {
  readonly mounts: HostMounts;
  readonly loops: HostLoops;
  readonly quotas: HostQuotas;
  readonly data: HostData;
  readonly files: HostFiles;
  readonly tools: HostTools;
}

/** The mount table and bind mounts. */
export interface HostMounts {
  /** How mounts are made, for the start-up line: "mount(2)", or "mount(8) (why)". */
  readonly backend: string;
  table(): Promise<MountEntry[]>;
  /** Every mount point there is now: what tree walks must not enter. */
  points(): Promise<Set<string>>;
  /** The top-most mount at exactly `mountPoint` (a real path), if any. */
  mountedAt(mountPoint: string): Promise<MountEntry | undefined>;
  /** Bind-mount `source` (a directory or a device node) onto `target`, read-only and with `flags` if asked. */
  bind(source: string, target: string, opts: { readOnly: boolean; flags?: string[] }, tc?: ToolContext): Promise<void>;
  /** Unmount the top-most mount at `target`. */
  unmount(target: string, tc?: ToolContext): Promise<void>;
  /** Mount a filesystem (a device pool's XFS) at `mountPoint`. */
  mountFilesystem(device: string, mountPoint: string, opts: { type: string; options?: string[] }, tc?: ToolContext): Promise<void>;
}

/** Loop devices: the node's loop table (see src/system/loop.ts for its one queue). */
export interface HostLoops {
  list(tc?: ToolContext): Promise<LoopDevice[]>;
  /** The devices backed by this very file, detaching ones included. */
  devicesFor(file: string, tc?: ToolContext): Promise<LoopDevice[]>;
  status(device: string, tc?: ToolContext): Promise<LoopStatus | undefined>;
  /** Runs `fn` in one turn of the loop table: attach and bind without a detach of ours in between. */
  withTable<T>(fn: (turn: LoopTableTurn) => Promise<T>, tc?: ToolContext): Promise<T>;
  detach(device: string, tc?: ToolContext): Promise<DetachOutcome>;
  /** Tell the loop driver its backing file grew. */
  refreshCapacity(device: string, tc?: ToolContext): Promise<void>;
  /** Size of a block device in bytes. */
  deviceSize(device: string): Promise<bigint>;
  /** The loop device whose node has this rdev, or undefined when it is not a loop device. */
  deviceWithNumber(rdev: bigint): string | undefined;
}

/** What enforces volume sizes: project quotas (XFS, ext4) and btrfs qgroups. */
export interface HostQuotas {
  projectQuotaOn(fs: ProjectQuotaFs, mountPoint: string, tc?: ToolContext): Promise<boolean>;
  /** Tag a directory tree with a project id (inherited below it). */
  setProject(fs: ProjectQuotaFs, mountPoint: string, dir: string, projectId: number, tc?: ToolContext): Promise<void>;
  setProjectLimit(fs: ProjectQuotaFs, mountPoint: string, projectId: number, hardBytes: bigint, tc?: ToolContext): Promise<void>;
  projectReport(fs: ProjectQuotaFs, mountPoint: string, tc?: ToolContext): Promise<Map<number, ProjectUsage>>;
  /** The admin's /etc/projects (empty when there is none): ids that are never handed out. */
  adminProjects(): Promise<string>;
  btrfsQuotaOn(path: string, tc?: ToolContext): Promise<boolean>;
  btrfsCreateSubvolume(path: string, tc?: ToolContext): Promise<void>;
  btrfsSetLimit(path: string, bytes: bigint | 'none', tc?: ToolContext): Promise<void>;
  btrfsUsage(path: string, tc?: ToolContext): Promise<BtrfsUsage | undefined>;
  btrfsUsageByPath(poolRoot: string, tc?: ToolContext): Promise<Map<string, BtrfsUsage>>;
}

/** Volume data: reflink copies and preallocation (long jobs: they stop when the signal is aborted). */
export interface HostData {
  copyFile(src: string, dst: string, tc?: ToolContext): Promise<CopyMethod>;
  /** Copy the contents of directory `src` into the existing directory `dst` (see system/copy.ts). */
  copyTree(src: string, dst: string, tc?: ToolContext): Promise<CopyMethod>;
  /** Progress goes to `tc.log` and `tc.onProgress` (see system/preallocate.ts). */
  preallocate(file: string, offset: bigint, length: bigint, tc: PreallocateContext): Promise<PreallocationMethod>;
}

/** statfs(2) figures of a filesystem, in bytes, and its magic number. */
export interface FilesystemStats {
  type: bigint;
  totalBytes: bigint;
  /** Free for anybody (bfree). */
  freeBytes: bigint;
  /** Free for an unprivileged writer (bavail). */
  availableBytes: bigint;
}

/** Filesystem facts and the file operations that need privileges. */
/** What a path shows, through whatever is mounted on it: its inode, and its device number if it is a block device. */
export interface PathIdentity {
  dev: bigint;
  ino: bigint;
  /** The device number of a block device (else undefined). */
  rdev?: bigint;
}

export interface HostFiles {
  statfs(path: string): Promise<FilesystemStats>;
  /**
   * What `path` shows (stat(2), following symlinks); undefined when there is nothing there. A bind
   * mount makes a target show its source: this is how a publication is recognised as a volume's.
   */
  shows(path: string): Promise<PathIdentity | undefined>;
  /** Give a file to a user and group (disk.img to qemu). */
  chown(path: string, uid: number, gid: number): Promise<void>;
  /** Does this host run SELinux, so that volumes must be labelled for containers? */
  selinuxEnabled(): boolean;
  labelForContainers(path: string, tc?: ToolContext): Promise<void>;
}

/** External tools: device probing, formatting, and any other command. */
export interface HostTools {
  run(cmd: string, args: string[], opts?: ExecOptions): Promise<ExecResult>;
  probeDevice(device: string, tc?: ToolContext): Promise<DeviceContent>;
  mkfsXfs(device: string, tc?: ToolContext): Promise<void>;
}
