/**
 * A Host that keeps the OS in memory: a mount table, a loop table, project quotas and qgroups,
 * filesystem figures, file owners. Files and directories are real (a tmp dir, no root needed); only
 * what needs privileges or a particular kernel is modelled. Every call is recorded in `calls`, so a
 * test can say what the code asked of the OS, and no tool ever runs (`tools.run` refuses).
 */
import { constants, promises as fsp, statSync } from 'node:fs';
import path from 'node:path';
import { internal, ToolError } from '../../src/errors.js';
import { abortReason, throwIfCancelled } from '../../src/observe/call-context.js';
import { BTRFS_MAGIC, EXT4_MAGIC, XFS_MAGIC } from '../../src/pools/quota.js';
import type { ExecOptions, ExecResult, ToolContext } from '../../src/system/exec.js';
import type { FilesystemStats, Host, HostData, HostFiles, HostLoops, HostMounts, HostQuotas, HostTools } from '../../src/system/host.js';
import { devString, fileIdentity, type DetachOutcome, type LoopDevice, type LoopStatus, type LoopTableTurn } from '../../src/system/loop.js';
import { mountAt, type MountEntry } from '../../src/system/mount.js';
import type { ProjectQuotaFs, ProjectUsage } from '../../src/system/project-quota.js';
import type { BtrfsUsage } from '../../src/system/btrfs.js';

export interface FakeFilesystem {
  /** Where it is mounted (a real directory, e.g. a tmp dir standing for the pool's filesystem). */
  mountPoint: string;
  type: 'xfs' | 'ext4' | 'btrfs' | 'tmpfs';
  /** Project quotas (xfs, ext4) or qgroups (btrfs) are on. */
  quota: boolean;
  totalBytes: bigint;
  freeBytes: bigint;
}

const MAGIC: Record<FakeFilesystem['type'], bigint> = { xfs: XFS_MAGIC, ext4: EXT4_MAGIC, btrfs: BTRFS_MAGIC, tmpfs: 0x01021994n };
const LOOP_MAJOR = 7;

export class FakeHost implements Host {
  /** What was asked of the OS, one line per call: "bind /a /b", "losetup --detach /dev/loop0", ... */
  readonly calls: string[] = [];
  readonly filesystems: FakeFilesystem[];
  private readonly mountTable: MountEntry[] = [];
  private nextMountId = 100;
  /** Attached loop devices by name. */
  readonly loopDevices = new Map<string, LoopDevice & { file: string }>();
  /** Project id of each tagged directory, and each project's hard limit. */
  readonly projects = new Map<string, number>();
  readonly projectLimits = new Map<number, bigint>();
  readonly qgroupLimits = new Map<string, bigint>();
  readonly owners = new Map<string, { uid: number; gid: number }>();
  readonly preallocated: Array<{ file: string; offset: bigint; length: bigint }> = [];
  /** Set to make preallocation wait until its caller gives up (the test of a cancelled call). */
  preallocateHangs = false;

  readonly mounts: HostMounts;
  readonly loops: HostLoops;
  readonly quotas: HostQuotas;
  readonly data: HostData;
  readonly files: HostFiles;
  readonly tools: HostTools;

  constructor(opts: { filesystems: FakeFilesystem[] }) {
    this.filesystems = opts.filesystems;
    this.addMount({ mountPoint: '/', source: '/dev/root', fsType: 'ext4', device: '8:1' });
    for (const [i, fs] of this.filesystems.entries()) this.addMount({ mountPoint: fs.mountPoint, source: `/dev/fake${i}`, fsType: fs.type, device: `253:${i}` });
    this.mounts = this.makeMounts();
    this.loops = this.makeLoops();
    this.quotas = this.makeQuotas();
    this.data = this.makeData();
    this.files = this.makeFiles();
    this.tools = this.makeTools();
  }

  /** The filesystem `p` lives on (longest mount point that is a prefix). */
  filesystemOf(p: string): FakeFilesystem | undefined {
    let best: FakeFilesystem | undefined;
    for (const fs of this.filesystems) {
      if ((p === fs.mountPoint || p.startsWith(`${fs.mountPoint}/`)) && (!best || fs.mountPoint.length > best.mountPoint.length)) best = fs;
    }
    return best;
  }

  /** Mount points in the table now (the fake's own view of /proc/self/mountinfo). */
  mountPoints(): string[] {
    return this.mountTable.map((m) => m.mountPoint);
  }

  /** Something else mounted at `mountPoint` (a tmpfs of another user, an earlier pod's volume). */
  mountForeign(mountPoint: string): void {
    this.addMount({ mountPoint, source: 'tmpfs', fsType: 'tmpfs', device: '0:77' });
  }

  private addMount(m: { mountPoint: string; source: string; fsType: string; device: string; root?: string; options?: string[] }): void {
    this.mountTable.push({
      mountId: this.nextMountId++,
      parentId: 1,
      device: m.device,
      root: m.root ?? '/',
      mountPoint: m.mountPoint,
      options: m.options ?? ['rw'],
      fsType: m.fsType,
      source: m.source,
      superOptions: ['rw'],
    });
  }

  private record(line: string, tc?: ToolContext): void {
    throwIfCancelled(tc?.signal);
    this.calls.push(line);
  }

  private makeMounts(): HostMounts {
    return {
      backend: 'fake',
      table: async () => this.mountTable.map((m) => ({ ...m })),
      points: async () => new Set(this.mountPoints()),
      mountedAt: async (p) => mountAt(this.mountTable, p),
      bind: async (source, target, o, tc) => {
        this.record(`bind ${source} ${target}${o.readOnly ? ' ro' : ''}${o.flags?.length ? ` ${o.flags.join(',')}` : ''}`, tc);
        const on = mountAt(this.mountTable, source);
        this.addMount({ mountPoint: target, source, fsType: on?.fsType ?? 'none', device: on?.device ?? '0:0', root: source, options: o.readOnly ? ['ro'] : ['rw'] });
      },
      unmount: async (target, tc) => {
        this.record(`umount ${target}`, tc);
        const i = this.mountTable.map((m) => m.mountPoint).lastIndexOf(target);
        if (i < 0) throw new ToolError(`umount ${target}`, { stdout: '', stderr: `umount: ${target}: not mounted.`, code: 32 });
        this.mountTable.splice(i, 1);
      },
      mountFilesystem: async (device, mountPoint, o, tc) => {
        this.record(`mount -t ${o.type} ${device} ${mountPoint}`, tc);
        this.addMount({ mountPoint, source: device, fsType: o.type, device: '253:99', options: o.options });
      },
    };
  }

  private makeLoops(): HostLoops {
    const table = this.loopDevices;
    const attach = async (file: string, o: { readOnly: boolean }): Promise<LoopDevice> => {
      const id = await fileIdentity(file);
      for (const d of table.values()) if (d.backDev === id.dev && d.backIno === id.ino && d.readOnly === o.readOnly && !d.detaching) return d;
      let n = 0;
      while (table.has(`/dev/loop${n}`)) n++;
      const dev = { name: `/dev/loop${n}`, devNum: `${LOOP_MAJOR}:${n}`, backFile: file, backIno: id.ino, backDev: id.dev, readOnly: o.readOnly, directIo: true, detaching: false, file };
      this.calls.push(`losetup --find --show ${file}`);
      table.set(dev.name, dev);
      return dev;
    };
    const status = async (device: string): Promise<LoopStatus | undefined> => {
      const d = table.get(device);
      return d && { backing: { dev: d.backDev, ino: d.backIno }, readOnly: d.readOnly, detaching: d.detaching };
    };
    return {
      list: async () => [...table.values()].map((d) => ({ ...d, backFile: this.exists(d.file) ? d.file : `${d.file} (deleted)` })),
      devicesFor: async (file) => {
        const id = await fileIdentity(file);
        return [...table.values()].filter((d) => d.backDev === id.dev && d.backIno === id.ino);
      },
      status,
      withTable: async <T>(fn: (turn: LoopTableTurn) => Promise<T>, tc?: ToolContext) => {
        throwIfCancelled(tc?.signal);
        return fn({ attach, status });
      },
      detach: async (device, tc): Promise<DetachOutcome> => {
        this.record(`losetup --detach ${device}`, tc);
        table.delete(device);
        return { device, detached: true };
      },
      refreshCapacity: async (device, tc) => this.record(`losetup --set-capacity ${device}`, tc),
      deviceSize: async (device) => {
        const d = table.get(device);
        if (!d) throw internal(`no loop device ${device}`);
        return BigInt(statSync(d.file).size);
      },
      deviceWithNumber: (rdev) => {
        const num = devString(rdev);
        return [...table.values()].find((d) => d.devNum === num)?.name;
      },
    };
  }

  private exists(p: string): boolean {
    return statSync(p, { throwIfNoEntry: false }) !== undefined;
  }

  private makeQuotas(): HostQuotas {
    const quotaOn = (mp: string, type: FakeFilesystem['type']) => {
      const fs = this.filesystemOf(mp);
      return fs !== undefined && fs.type === type && fs.quota;
    };
    const qgroup = (p: string): BtrfsUsage => ({ referencedBytes: 0n, limitBytes: this.qgroupLimits.get(p) ?? 0n });
    return {
      projectQuotaOn: async (fs: ProjectQuotaFs, mp) => quotaOn(mp, fs),
      setProject: async (_fs, _mp, dir, id, tc) => {
        this.record(`xfs_quota project -s -p ${dir} ${id}`, tc);
        this.projects.set(dir, id);
      },
      setProjectLimit: async (_fs, _mp, id, bytes, tc) => {
        this.record(`xfs_quota limit -p bhard=${bytes} ${id}`, tc);
        this.projectLimits.set(id, bytes);
      },
      projectReport: async () => {
        const report = new Map<number, ProjectUsage>();
        for (const [dir, id] of this.projects) report.set(id, { usedBytes: 0n, hardBytes: this.projectLimits.get(id) ?? 0n, usedInodes: this.exists(dir) ? 1n : 0n });
        for (const [id, hard] of this.projectLimits) if (!report.has(id)) report.set(id, { usedBytes: 0n, hardBytes: hard, usedInodes: 0n });
        return report;
      },
      adminProjects: async () => '',
      btrfsQuotaOn: async (p) => quotaOn(p, 'btrfs'),
      btrfsCreateSubvolume: async (p, tc) => {
        this.record(`btrfs subvolume create ${p}`, tc);
        await fsp.mkdir(p);
      },
      btrfsSetLimit: async (p, bytes, tc) => {
        this.record(`btrfs qgroup limit ${bytes} ${p}`, tc);
        if (bytes === 'none') this.qgroupLimits.delete(p);
        else this.qgroupLimits.set(p, bytes);
      },
      btrfsUsage: async (p) => qgroup(p),
      btrfsUsageByPath: async () => new Map([...this.qgroupLimits.keys()].map((p) => [p, qgroup(p)])),
    };
  }

  private makeData(): HostData {
    // The fake filesystems reflink: a copy of every file, reported as a reflink.
    const copyFile = async (src: string, dst: string, tc?: ToolContext) => {
      this.record(`reflink ${src} ${dst}`, tc);
      await fsp.copyFile(src, dst, constants.COPYFILE_EXCL);
      return 'reflink' as const;
    };
    const copyTree = async (src: string, dst: string, tc?: ToolContext) => {
      for (const e of await fsp.readdir(src, { withFileTypes: true })) {
        const a = path.join(src, e.name);
        const b = path.join(dst, e.name);
        if (e.isDirectory()) {
          await fsp.mkdir(b);
          await copyTree(a, b, tc);
        } else if (e.isFile()) await copyFile(a, b, tc);
        else if (e.isSymbolicLink()) await fsp.symlink(await fsp.readlink(a), b);
      }
      return 'reflink' as const;
    };
    return {
      copyFile,
      copyTree,
      preallocate: async (file, offset, length, tc) => {
        if (length <= 0n) return 'none';
        this.record(`fallocate --offset ${offset} --length ${length} ${file}`, tc);
        tc.onProgress?.(0n, length);
        if (this.preallocateHangs) {
          const { signal } = tc;
          await new Promise<void>((_, reject) => {
            if (signal?.aborted) reject(abortReason(signal));
            signal?.addEventListener('abort', () => reject(abortReason(signal)), { once: true });
          });
        }
        this.preallocated.push({ file, offset, length });
        tc.onProgress?.(length, length);
        return 'fallocate';
      },
    };
  }

  private makeFiles(): HostFiles {
    return {
      statfs: async (p): Promise<FilesystemStats> => {
        const fs = this.filesystemOf(p);
        if (!fs) throw internal(`the fake host has no filesystem holding ${p}`);
        return { type: MAGIC[fs.type], totalBytes: fs.totalBytes, freeBytes: fs.freeBytes, availableBytes: fs.freeBytes };
      },
      shows: async (p) => {
        // A bind shows its source: the source's inode, or a loop device's number (the fake's devices have no node).
        const top = mountAt(this.mountTable, p);
        if (top && top.root !== '/') {
          const dev = this.loopDevices.get(top.root);
          if (dev) return { dev: 0n, ino: 0n, rdev: deviceNumber(dev.devNum) };
          p = top.root;
        }
        const st = statSync(p, { bigint: true, throwIfNoEntry: false });
        return st && { dev: st.dev, ino: st.ino, ...(st.isBlockDevice() ? { rdev: st.rdev } : {}) };
      },
      chown: async (p, uid, gid) => {
        this.calls.push(`chown ${uid}:${gid} ${p}`);
        this.owners.set(p, { uid, gid });
      },
      selinuxEnabled: () => false,
      labelForContainers: async (p, tc) => this.record(`chcon ${p}`, tc),
    };
  }

  private makeTools(): HostTools {
    const refuse = (line: string): never => {
      this.calls.push(line);
      throw internal(`the fake host runs no tools: ${line}`);
    };
    return {
      run: async (cmd: string, args: string[], _o?: ExecOptions): Promise<ExecResult> => refuse([cmd, ...args].join(' ')),
      probeDevice: async (device) => refuse(`blkid -p ${device}`),
      mkfsXfs: async (device) => refuse(`mkfs.xfs ${device}`),
    };
  }
}

/** "7:3" as the kernel's dev_t encoding (what devString decodes). */
function deviceNumber(majorMinor: string): bigint {
  const [major, minor] = majorMinor.split(':').map((n) => BigInt(n)) as [bigint, bigint];
  return ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);
}
