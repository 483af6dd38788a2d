import { chmodSync, mkdirSync, promises as fsp } from 'node:fs';
import type { ToolContext } from '../system/exec.js';
import type { Host, HostQuotas } from '../system/host.js';
import { mountContaining } from '../system/mount.js';
import type { ProjectQuotaFs } from '../system/project-quota.js';
import { ProjectIdAllocator } from './project-ids.js';

/** statfs(2) f_type of the filesystems with a quota backend. */
export const XFS_MAGIC = 0x58465342n;
export const EXT4_MAGIC = 0xef53n;
export const BTRFS_MAGIC = 0x9123683en;

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
  readonly kind: 'xfs-project' | 'ext4-project' | 'btrfs-qgroup' | 'none';
  /** Why sizes are or are not enforced, for logs, Probe and metrics. */
  readonly detail: string;
  /** Create an empty volume directory limited to `bytes`; returns the project id when one was used. */
  createDirectory(dir: string, bytes: bigint, tc?: ToolContext): Promise<number | undefined>;
  /** The pool's volumes hold project ids below `id`: new ones are handed out from there up. */
  projectIdsBelow(id: number): void;
  setLimit(dir: string, projectId: number | undefined, bytes: bigint, tc?: ToolContext): Promise<void>;
  /**
   * Limit a directory someone else made (a hostpath-provisioner volume) to `bytes`, its files as they
   * are: a project quota takes the tree over; where that cannot be done without moving the data (a
   * btrfs qgroup needs a subvolume), nothing is changed and `why` says so.
   */
  limitExisting(dir: string, bytes: bigint, tc?: ToolContext): Promise<ExistingLimit>;
  usage(dir: string, projectId: number | undefined): Promise<DirUsage | undefined>;
  /** Usage of every volume directory at once (one tool run), as a lookup. */
  usageLookup(): Promise<(dir: string, projectId: number | undefined) => DirUsage | undefined>;
  /** Lift the limit of a volume being deleted (projects outlive their directories). */
  release(projectId: number | undefined, tc?: ToolContext): Promise<void>;
}

/** What limitExisting did: the project id the directory now has, or why its size is not enforced. */
export type ExistingLimit = { enforced: true; projectId?: number } | { enforced: false; projectId?: undefined; why: string };

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
  projectIdsBelow(): void {}
  async setLimit(): Promise<void> {}
  async limitExisting(): Promise<ExistingLimit> {
    return { enforced: false, why: this.detail };
  }
  async usage(): Promise<undefined> {
    return undefined;
  }
  async usageLookup() {
    return () => undefined;
  }
  async release(): Promise<void> {}
}

/** XFS or ext4 project quotas: a project per volume directory, its hard limit the volume's capacity. */
class ProjectQuota implements QuotaBackend {
  readonly kind: 'xfs-project' | 'ext4-project';
  readonly detail: string;
  private readonly ids: ProjectIdAllocator;

  constructor(
    private readonly host: HostQuotas,
    private readonly fs: ProjectQuotaFs,
    private readonly mountPoint: string,
    device: string,
    metaDir: string,
  ) {
    this.kind = fs === 'xfs' ? 'xfs-project' : 'ext4-project';
    this.detail = `${fs === 'xfs' ? 'XFS' : 'ext4'} project quotas on ${mountPoint}`;
    this.ids = new ProjectIdAllocator(metaDir, device, () => this.idsInUse());
  }

  async createDirectory(dir: string, bytes: bigint, tc?: ToolContext): Promise<number> {
    await mkdirOpen(dir);
    const id = await this.ids.allocate();
    await this.host.setProject(this.fs, this.mountPoint, dir, id, tc);
    await this.host.setProjectLimit(this.fs, this.mountPoint, id, bytes, tc);
    return id;
  }
  projectIdsBelow(id: number): void {
    this.ids.atLeast(id);
  }
  async setLimit(_dir: string, projectId: number | undefined, bytes: bigint, tc?: ToolContext): Promise<void> {
    if (projectId !== undefined) await this.host.setProjectLimit(this.fs, this.mountPoint, projectId, bytes, tc);
  }
  async limitExisting(dir: string, bytes: bigint, tc?: ToolContext): Promise<ExistingLimit> {
    const id = await this.ids.allocate();
    // `project -s` marks every file and directory below, and sets inheritance for what comes later.
    await this.host.setProject(this.fs, this.mountPoint, dir, id, tc);
    await this.host.setProjectLimit(this.fs, this.mountPoint, id, bytes, tc);
    return { enforced: true, projectId: id };
  }
  async usage(dir: string, projectId: number | undefined): Promise<DirUsage | undefined> {
    if (projectId === undefined) return undefined;
    return (await this.usageLookup())(dir, projectId);
  }
  async usageLookup() {
    const report = await this.host.projectReport(this.fs, this.mountPoint);
    return (_dir: string, projectId: number | undefined): DirUsage | undefined => {
      const u = projectId === undefined ? undefined : report.get(projectId);
      return u && { usedBytes: u.usedBytes, limitBytes: u.hardBytes, usedInodes: u.usedInodes };
    };
  }
  async release(projectId: number | undefined, tc?: ToolContext): Promise<void> {
    if (projectId !== undefined) await this.host.setProjectLimit(this.fs, this.mountPoint, projectId, 0n, tc);
  }

  /** Projects the filesystem counts (an inode or a limit) and the ones the admin named in /etc/projects. */
  private async idsInUse(): Promise<Set<number>> {
    const used = new Set<number>();
    for (const [id, u] of await this.host.projectReport(this.fs, this.mountPoint)) {
      if (u.usedInodes > 0n || u.usedBytes > 0n || u.hardBytes > 0n) used.add(id);
    }
    const etc = await this.host.adminProjects();
    for (const line of etc.split('\n')) {
      const m = /^\s*(\d+):/.exec(line);
      if (m) used.add(Number(m[1]));
    }
    return used;
  }
}

class BtrfsQgroupQuota implements QuotaBackend {
  readonly kind = 'btrfs-qgroup' as const;
  readonly detail: string;
  constructor(
    private readonly host: HostQuotas,
    private readonly root: string,
  ) {
    this.detail = `btrfs qgroups on ${root} (a subvolume per volume)`;
  }
  async createDirectory(dir: string, bytes: bigint, tc?: ToolContext): Promise<undefined> {
    await this.host.btrfsCreateSubvolume(dir, tc);
    await fsp.chmod(dir, 0o777);
    if (bytes > 0n) await this.host.btrfsSetLimit(dir, bytes, tc);
    return undefined;
  }
  async setLimit(dir: string, _p: number | undefined, bytes: bigint, tc?: ToolContext): Promise<void> {
    await this.host.btrfsSetLimit(dir, bytes > 0n ? bytes : 'none', tc);
  }
  async limitExisting(dir: string): Promise<ExistingLimit> {
    // A qgroup limit set on a plain directory would land on the subvolume holding it: the whole pool.
    return { enforced: false, why: `${dir} is a plain directory, not a btrfs subvolume; a qgroup can limit it only if its data were moved into one` };
  }
  async usage(dir: string): Promise<DirUsage | undefined> {
    const u = await this.host.btrfsUsage(dir);
    return u && { usedBytes: u.referencedBytes, limitBytes: u.limitBytes };
  }
  async usageLookup() {
    const all = await this.host.btrfsUsageByPath(this.root);
    return (dir: string): DirUsage | undefined => {
      const u = all.get(dir);
      return u && { usedBytes: u.referencedBytes, limitBytes: u.limitBytes };
    };
  }
  projectIdsBelow(): void {}
  async release(): Promise<void> {}
}

/**
 * Finds what the filesystem under `root` can enforce (`metaDir` keeps the pool's project ids).
 * Nothing is switched on here: that is the admin's call, and the detail says how.
 */
export async function detectQuota(host: Host, root: string, metaDir: string): Promise<QuotaBackend> {
  const type = (await host.files.statfs(root)).type;
  if (type === XFS_MAGIC || type === EXT4_MAGIC) {
    const fs: ProjectQuotaFs = type === XFS_MAGIC ? 'xfs' : 'ext4';
    const mount = mountContaining(await host.mounts.table(), root);
    const mp = mount?.mountPoint ?? root;
    if (await host.quotas.projectQuotaOn(fs, mp)) return new ProjectQuota(host.quotas, fs, mp, mount?.device ?? mp, metaDir);
    if (fs === 'xfs') return new NoQuota(`XFS at ${mp} is mounted without project quotas (mount it with -o prjquota): sizes are not enforced`);
    const device = mount?.source ?? 'DEVICE';
    return new NoQuota(
      `ext4 at ${mp} has no project quotas on: sizes are not enforced (unmounted: tune2fs -O project,quota ${device}; then mount it with -o prjquota)`,
    );
  }
  if (type === BTRFS_MAGIC) {
    if (await host.quotas.btrfsQuotaOn(root)) return new BtrfsQgroupQuota(host.quotas, root);
    return new NoQuota(`btrfs quotas are off on ${root} ('btrfs quota enable'): sizes are not enforced`);
  }
  return new NoQuota(`filesystem type 0x${type.toString(16)} under ${root} has no supported quota: sizes are not enforced`);
}
