import { chmodSync, mkdirSync, promises as fsp } from 'node:fs';
import { btrfsCreateSubvolume, btrfsQuotaOn, btrfsSetLimit, btrfsUsage, btrfsUsageByPath } from '../system/btrfs.js';
import { mountContaining, readMounts } from '../system/mount.js';
import { xfsProjectQuotaOn, xfsProjectReport, xfsSetLimit, xfsSetProject } from '../system/xfs.js';

const XFS_MAGIC = 0x58465342n;
const BTRFS_MAGIC = 0x9123683en;

export interface DirUsage {
  usedBytes: bigint;
  /** The enforced limit, 0 when none. */
  limitBytes: bigint;
  usedInodes?: bigint;
}

/**
 * How a pool enforces the size of filesystem volumes: XFS project quotas (a project per volume
 * directory), btrfs qgroups (a subvolume per volume), or nothing (sizes are advisory).
 */
export interface QuotaBackend {
  readonly kind: 'xfs-project' | 'btrfs-qgroup' | 'none';
  /** Why sizes are or are not enforced, for logs, Probe and metrics. */
  readonly detail: string;
  /** Create an empty volume directory limited to `bytes`; returns the XFS project id when one was used. */
  createDirectory(dir: string, bytes: bigint, projectId: () => number): Promise<number | undefined>;
  setLimit(dir: string, projectId: number | undefined, bytes: bigint): Promise<void>;
  usage(dir: string, projectId: number | undefined): Promise<DirUsage | undefined>;
  /** Usage of every volume directory at once (one tool run), as a lookup. */
  usageLookup(): Promise<(dir: string, projectId: number | undefined) => DirUsage | undefined>;
  /** Lift the limit of a volume being deleted (XFS projects outlive their directories). */
  release(projectId: number | undefined): Promise<void>;
}

async function mkdirOpen(dir: string): Promise<void> {
  mkdirSync(dir, { mode: 0o777 });
  // mkdir applied the umask; pods of any uid must be able to write (HPP behaviour).
  chmodSync(dir, 0o777);
}

class NoQuota implements QuotaBackend {
  readonly kind = 'none' as const;
  constructor(readonly detail: string) {}
  async createDirectory(dir: string): Promise<undefined> {
    await mkdirOpen(dir);
    return undefined;
  }
  async setLimit(): Promise<void> {}
  async usage(): Promise<undefined> {
    return undefined;
  }
  async usageLookup() {
    return () => undefined;
  }
  async release(): Promise<void> {}
}

class XfsProjectQuota implements QuotaBackend {
  readonly kind = 'xfs-project' as const;
  readonly detail: string;
  constructor(private readonly mountPoint: string) {
    this.detail = `XFS project quotas on ${mountPoint}`;
  }
  async createDirectory(dir: string, bytes: bigint, projectId: () => number): Promise<number> {
    await mkdirOpen(dir);
    const id = projectId();
    await xfsSetProject(this.mountPoint, dir, id);
    await xfsSetLimit(this.mountPoint, id, bytes);
    return id;
  }
  async setLimit(_dir: string, projectId: number | undefined, bytes: bigint): Promise<void> {
    if (projectId !== undefined) await xfsSetLimit(this.mountPoint, projectId, bytes);
  }
  async usage(dir: string, projectId: number | undefined): Promise<DirUsage | undefined> {
    if (projectId === undefined) return undefined;
    return (await this.usageLookup())(dir, projectId);
  }
  async usageLookup() {
    const report = await xfsProjectReport(this.mountPoint);
    return (_dir: string, projectId: number | undefined): DirUsage | undefined => {
      const u = projectId === undefined ? undefined : report.get(projectId);
      return u && { usedBytes: u.usedBytes, limitBytes: u.hardBytes, usedInodes: u.usedInodes };
    };
  }
  async release(projectId: number | undefined): Promise<void> {
    if (projectId !== undefined) await xfsSetLimit(this.mountPoint, projectId, 0n);
  }
}

class BtrfsQgroupQuota implements QuotaBackend {
  readonly kind = 'btrfs-qgroup' as const;
  readonly detail: string;
  constructor(private readonly root: string) {
    this.detail = `btrfs qgroups on ${root} (a subvolume per volume)`;
  }
  async createDirectory(dir: string, bytes: bigint): Promise<undefined> {
    await btrfsCreateSubvolume(dir);
    await fsp.chmod(dir, 0o777);
    if (bytes > 0n) await btrfsSetLimit(dir, bytes);
    return undefined;
  }
  async setLimit(dir: string, _p: number | undefined, bytes: bigint): Promise<void> {
    await btrfsSetLimit(dir, bytes > 0n ? bytes : 'none');
  }
  async usage(dir: string): Promise<DirUsage | undefined> {
    const u = await btrfsUsage(dir);
    return u && { usedBytes: u.referencedBytes, limitBytes: u.limitBytes };
  }
  async usageLookup() {
    const all = await btrfsUsageByPath(this.root);
    return (dir: string): DirUsage | undefined => {
      const u = all.get(dir);
      return u && { usedBytes: u.referencedBytes, limitBytes: u.limitBytes };
    };
  }
  async release(): Promise<void> {}
}

/** Finds what the filesystem under `root` can enforce. Nothing is switched on here: that is the admin's call. */
export async function detectQuota(root: string): Promise<QuotaBackend> {
  const type = (await fsp.statfs(root, { bigint: true })).type;
  if (type === XFS_MAGIC) {
    const mp = mountContaining(await readMounts(), root)?.mountPoint ?? root;
    if (await xfsProjectQuotaOn(mp)) return new XfsProjectQuota(mp);
    return new NoQuota(`XFS at ${mp} is mounted without project quotas (prjquota): sizes are not enforced`);
  }
  if (type === BTRFS_MAGIC) {
    if (await btrfsQuotaOn(root)) return new BtrfsQgroupQuota(root);
    return new NoQuota(`btrfs quotas are off on ${root} ('btrfs quota enable'): sizes are not enforced`);
  }
  return new NoQuota(`filesystem type 0x${type.toString(16)} under ${root} has no supported quota: sizes are not enforced`);
}
