// Random and hostile input through the real socket to every RPC the driver serves: FUZZ_REQUESTS
// requests (default 2,000) with names and ids holding '..', '/', NUL, unicode, ':' forging other
// pools and nodes, very long strings; int64 fields out of range, negative, not numbers; random
// capability combinations, parameter maps and target paths inside and outside the pool, some through
// symlinks planted into it. A seeded PRNG (FUZZ_SEED, else FAULT_SEED, else random; always logged)
// picks everything.
//
// Checked: the daemon never dies and still answers Probe; every answer is OK or a status from the
// expected set (never UNKNOWN; INTERNAL counted and each distinct message listed); nothing outside
// the pool and the test's own target directory changes (a sentinel tree beside the pool and the
// pool's parent are compared before and after); no mount appears outside the target directory.
import * as grpc from '@grpc/grpc-js';
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCsi } from '../../src/csi/proto.js';
import { BLOCK_CAP, MOUNT_CAP, cleanupDir, readVolumeRecord, scratchDir, type Msg } from '../helpers/driver.js';
import { Rng, intEnv, leftovers, loopsUnder, mountsUnder, readMountinfo, seedFromEnv, sha256, startGroupDaemon, type GroupDaemon } from '../helpers/faults.js';
import { makeLoopDevice, unmountAll, type TestLoop } from '../helpers/loopdev.js';
import { poolLayout, recordFileName } from '../../src/format/layout.js';

const REQUESTS = intEnv('FUZZ_REQUESTS', 2_000);
const SEED = process.env.FUZZ_SEED ? seedFromEnv('FUZZ_SEED') : seedFromEnv('FAULT_SEED');
const WORKERS = 8;
const DEADLINE_MS = 5_000;
const NODE = 'test-node';
const POOL = 'fz';
const MiB = 1024 * 1024;
const TOPOLOGY_KEY = 'topology.hostpath.csi/node';

console.log(`fuzz: seed=${SEED} (replay with FUZZ_SEED=${SEED}) requests=${REQUESTS}`);

const RPCS = [
  ['Controller', 'CreateVolume'],
  ['Controller', 'DeleteVolume'],
  ['Controller', 'ValidateVolumeCapabilities'],
  ['Controller', 'ListVolumes'],
  ['Controller', 'GetCapacity'],
  ['Controller', 'ControllerExpandVolume'],
  ['Controller', 'CreateSnapshot'],
  ['Controller', 'DeleteSnapshot'],
  ['Controller', 'ListSnapshots'],
  ['Node', 'NodePublishVolume'],
  ['Node', 'NodeUnpublishVolume'],
  ['Node', 'NodeGetVolumeStats'],
  ['Node', 'NodeExpandVolume'],
] as const;

/** What a well-behaved driver may answer to anything. INTERNAL is counted and listed, not refused. */
const EXPECTED = new Set(['OK', 'INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'OUT_OF_RANGE', 'RESOURCE_EXHAUSTED', 'ABORTED', 'FAILED_PRECONDITION', 'UNIMPLEMENTED']);

// ---------------------------------------------------------------------------------------------------
// Snapshots of what must not change

/** Every entry below `root`: type, mode, size, mtime and content (files) or link target. */
function treeSnapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (p: string, rel: string) => {
    const st = lstatSync(p, { bigint: true });
    let what = '';
    if (st.isSymbolicLink()) what = `link ${readlinkSync(p)}`;
    else if (st.isFile()) what = `file ${sha256(readFileSync(p))}`;
    else if (st.isDirectory()) what = 'dir';
    else what = 'other';
    out.set(rel || '.', `${what} mode=${st.mode.toString(8)} uid=${st.uid} size=${st.size} mtime=${st.mtimeNs} ino=${st.ino}`);
    if (st.isDirectory()) for (const e of readdirSync(p).sort()) walk(path.join(p, e), path.join(rel, e));
  };
  walk(root, '');
  return out;
}

/** The pool's parent: its own stat and its entries', except those the test lets change. */
function parentSnapshot(dir: string, mutable: Set<string>): Map<string, string> {
  const out = new Map<string, string>();
  const st = lstatSync(dir, { bigint: true });
  out.set('.', `mode=${st.mode.toString(8)} mtime=${st.mtimeNs} entries=${readdirSync(dir).sort().join(',')}`);
  for (const e of readdirSync(dir)) {
    if (mutable.has(e)) continue;
    const s = lstatSync(path.join(dir, e), { bigint: true });
    out.set(e, `mode=${s.mode.toString(8)} size=${s.isDirectory() ? '-' : s.size} mtime=${s.mtimeNs} ino=${s.ino}`);
  }
  return out;
}

function diffMaps(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of before) {
    if (!after.has(k)) out.push(`${k}: removed (was ${v})`);
    else if (after.get(k) !== v) out.push(`${k}: ${v} -> ${after.get(k)}`);
  }
  for (const [k, v] of after) if (!before.has(k)) out.push(`${k}: added (${v})`);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Hostile values

class Gen {
  /** Volume and snapshot ids the driver handed out during the run (so later calls hit real ones). */
  readonly liveVolumes = new Set<string>();
  readonly liveModes = new Map<string, 'mount' | 'block'>();
  readonly liveSnapshots = new Set<string>();
  private hugeLeft = 1;

  constructor(
    readonly r: Rng,
    private readonly dirs: { dir: string; pool: string; targets: string; sentinel: string },
  ) {}

  validName(): string {
    const first = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
    const rest = `${first}._-`;
    let s = this.r.pick([...first]);
    for (let i = this.r.int(0, this.r.chance(0.1) ? 127 : 12); i > 0; i--) s += this.r.pick([...rest]);
    return s;
  }

  unicode(): string {
    return this.r.pick(['völume', '卷', 'тom', '\u202eevil', 'a\u0301', '😀', '\ud800', '\udfff', 'ａｂｃ', 'x\u200by', '\u0000', '\ufeffbom', 'ß'.repeat(70)]);
  }

  name(): string {
    switch (this.r.int(0, 9)) {
      case 0:
      case 1:
      case 2:
        return this.validName();
      case 3:
        return this.r.pick(['seedfs', 'seedblk', 'seedimg', 'seedsnap', 'planted-link', 'planted-dir', 'x'.repeat(128)]);
      case 4:
        return this.r.pick(['', '.', '..', '.hpp', '../x', '../../etc', 'a/b', '/abs', 'a\0b', ' ', '-x', '.x', 'x/', 'x\\y', '~', '*', '$(id)', '`id`', 'a;b']);
      case 5:
        return this.unicode();
      case 6: {
        // Strings of 100 KB and more are few per run: each costs a deadline when it breaks the connection.
        let n = this.r.pick([129, 255, 256, 4096, 65_536, 200_000]);
        if (n > 65_536 && this.hugeLeft-- <= 0) n = 65_536;
        return 'x'.repeat(n);
      }
      case 7:
        return this.r.pick([`${NODE}:${POOL}:seedfs`, 'a:b', `${POOL}:x`, ':', '::x', 'x:']);
      case 8:
        return this.r.pick([this.dirs.pool, `${this.dirs.pool}/seedfs`, `${this.dirs.sentinel}/file`, this.dirs.sentinel]);
      default:
        return `${this.validName()}${this.r.pick(['', '..', '/', '\0', ':', '%2e%2e', '\n'])}${this.validName()}`;
    }
  }

  node(): string {
    return this.r.chance(0.7) ? NODE : this.r.pick(['other-node', '', 'TEST-NODE', '..', 'a/b', 'test-node\0', NODE.repeat(20), 'ｔest-node']);
  }

  poolName(): string {
    return this.r.chance(0.7) ? POOL : this.r.pick(['other', '', '..', 'FZ', 'fz/..', 'fz\0', 'default', 'legacy', '.hpp']);
  }

  /** A volume that exists (a seed, or one created during the run) and its access type. */
  knownVolume(): [string, 'mount' | 'block'] {
    const seeds: Array<[string, 'mount' | 'block']> = [
      [`${NODE}:${POOL}:seedfs`, 'mount'],
      [`${NODE}:${POOL}:seedblk`, 'block'],
      [`${NODE}:${POOL}:seedimg`, 'mount'],
    ];
    const live = [...this.liveModes].filter(([id]) => this.liveVolumes.has(id));
    return this.r.pick(live.length && this.r.chance(0.5) ? live : seeds);
  }

  volumeId(): string {
    const live = [...this.liveVolumes];
    switch (this.r.int(0, 7)) {
      case 0:
      case 1:
        return live.length ? this.r.pick(live) : `${NODE}:${POOL}:seedfs`;
      case 2:
        return this.r.pick([`${NODE}:${POOL}:seedfs`, `${NODE}:${POOL}:seedblk`, `${NODE}:${POOL}:seedimg`]);
      case 3:
        return `${this.node()}:${this.poolName()}:${this.name()}`;
      case 4:
        return this.r.pick(['', ':', '::', ':::', `${NODE}:${POOL}:seedfs:extra`, `${NODE}::seedfs`, `:${POOL}:seedfs`, `${NODE}:${POOL}:`, `${NODE}:${POOL}:seedsnap`]);
      case 5:
        return this.snapshotId();
      default:
        return this.name();
    }
  }

  snapshotId(): string {
    const live = [...this.liveSnapshots];
    if (live.length && this.r.chance(0.4)) return this.r.pick(live);
    return this.r.chance(0.5) ? `${NODE}:${POOL}:seedsnap` : `${this.node()}:${this.poolName()}:${this.name()}`;
  }

  int64(): string | number {
    switch (this.r.int(0, 9)) {
      case 0:
        return '0';
      case 1:
        return String(this.r.int(1, 64) * MiB);
      case 2:
        return String(this.r.int(1, 4096));
      case 3:
        return String(this.r.int(0, 2048) * MiB);
      case 4:
        return this.r.pick(['-1', '-4096', '-9223372036854775808', String(-MiB)]);
      case 5:
        return this.r.pick(['9223372036854775807', '9223372036854775806', '4611686018427387904', String(2 ** 53 + 1), '18446744073709551615']);
      case 6:
        return this.r.pick(['abc', '1e9', ' 12', '12.5', '0x10', '١٢', '+5', '0b1', 'NaN', 'Infinity']);
      case 7:
        return this.r.pick([MiB, -1, 1e30, 0.5, Number.MAX_SAFE_INTEGER]);
      case 8:
        return this.r.pick(['9223372036854775808', '99999999999999999999999', '-9223372036854775809']);
      default:
        return String(this.r.int(1, 1023) * 1024 * 1024 + this.r.int(0, 1));
    }
  }

  capacityRange(): Msg | null {
    if (this.r.chance(0.15)) return null;
    const out: Msg = {};
    if (this.r.chance(0.8)) out.required_bytes = this.int64();
    if (this.r.chance(0.3)) out.limit_bytes = this.int64();
    return out;
  }

  accessMode(): Msg | null {
    if (this.r.chance(0.08)) return null;
    const modes = ['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER', 'MULTI_NODE_READER_ONLY', 'MULTI_NODE_SINGLE_WRITER', 'MULTI_NODE_MULTI_WRITER', 'UNKNOWN'];
    return { mode: this.r.chance(0.9) ? this.r.pick(modes) : this.r.pick([99, -1, 7, 'BOGUS']) };
  }

  mountFlags(): string[] {
    const flags = ['ro', 'rw', 'noexec', 'nosuid', 'nodev', 'noatime', 'bind', 'remount', 'rw,exec', 'x=y', '', '--bind', 'suid', 'context="x"', 'a'.repeat(1000), 'rbind', 'shared', 'loop', 'uid=0', '\0'];
    return Array.from({ length: this.r.int(0, 3) }, () => this.r.pick(flags));
  }

  capability(): Msg {
    const c: Msg = {};
    const am = this.accessMode();
    if (am) c.access_mode = am;
    switch (this.r.int(0, 9)) {
      case 0:
        break; // no access type
      case 1:
        c.mount = { fs_type: 'xfs' };
        c.block = {};
        break;
      case 2:
      case 3:
      case 4:
        c.block = {};
        break;
      default:
        c.mount = { fs_type: this.r.pick(['', '', 'xfs', 'ext4', 'nfs', '../x']), mount_flags: this.r.chance(0.6) ? [] : this.mountFlags(), volume_mount_group: this.r.chance(0.9) ? '' : this.r.pick(['107', 'root', '-1']) };
    }
    return c;
  }

  /** A well-formed capability most of the time, a random one otherwise. */
  goodOrRandomCap(): Msg {
    return this.r.chance(0.6) ? this.r.pick([MOUNT_CAP, BLOCK_CAP, { access_mode: { mode: 'SINGLE_NODE_READER_ONLY' }, mount: {} }, { access_mode: { mode: 'SINGLE_NODE_MULTI_WRITER' }, block: {} }]) : this.capability();
  }

  capabilities(): Msg[] {
    const n = this.r.chance(0.1) ? 0 : this.r.int(1, 3);
    return Array.from({ length: n }, () => this.goodOrRandomCap());
  }

  parameters(): Record<string, string> {
    const out: Record<string, string> = {};
    const keys = ['storagePool', 'createDiskImage', 'preallocation', 'filesystemOverhead', 'storagepool', 'csi.storage.k8s.io/pvc/name', 'csi.storage.k8s.io/pvc/namespace', 'csi.storage.k8s.io/pv/name', 'csi.storage.k8s.io/x', '', 'a\0', '卷', 'x'.repeat(300)];
    const values: Record<string, string[]> = {
      storagePool: [POOL, POOL, 'other', '', '..', 'FZ', `${POOL}\0`, '../fz'],
      createDiskImage: ['true', 'false', 'TRUE', '1', '', 'yes'],
      preallocation: ['true', 'false', 'True', '', '0'],
      filesystemOverhead: ['0', '0.055', '0.5', '0.999', '1', '1.5', '-0.1', '.', 'NaN', '0.0000000001', '', '1e-3'],
    };
    for (let i = this.r.chance(0.3) ? 0 : this.r.int(1, 4); i > 0; i--) {
      const k = this.r.chance(0.8) ? this.r.pick(keys.slice(0, 4)) : this.r.pick(keys);
      out[k] = values[k] && this.r.chance(0.8) ? this.r.pick(values[k]!) : this.r.pick(['', 'x', '../../etc', '\0', 'x'.repeat(2000), this.unicode()]);
    }
    return out;
  }

  smallMap(): Record<string, string> {
    const out: Record<string, string> = {};
    for (let i = this.r.int(0, 2); i > 0; i--) out[this.r.pick(['storagePool', 'k', '', 'csi.storage.k8s.io/pod.name', this.unicode()])] = this.r.pick(['v', '', POOL, this.unicode()]);
    return out;
  }

  topology(): Msg {
    const seg: Record<string, string> = {};
    if (this.r.chance(0.8)) seg[TOPOLOGY_KEY] = this.node();
    if (this.r.chance(0.2)) seg[this.r.pick(['zone', '', TOPOLOGY_KEY.toUpperCase()])] = this.r.pick(['a', NODE, '']);
    return { segments: seg };
  }

  /** Targets a publish may be given: ours, or ones the driver must refuse. Never elsewhere on the host. */
  publishTarget(): string {
    const T = this.dirs.targets;
    const P = this.dirs.pool;
    switch (this.r.int(0, 9)) {
      case 0:
      case 1:
      case 2:
      case 3:
        return path.join(T, `t${this.r.int(0, 7)}`, this.r.pick(['mount', 'dev']));
      case 4:
      {
        // Built by hand: path.join would fold a '..' away (and give our target directory itself).
        const sub = this.r.pick(['', 'x', 'tmp/x', 'y/z', '..']);
        return `${T}/${this.r.pick(['to-pool', 'to-vol', 'to-hpp', 'to-block', 'to-snaps'])}${sub ? `/${sub}` : ''}`;
      }
      case 5:
        return this.r.pick([P, `${P}/`, `${P}/seedfs`, `${P}/x`, `${P}/.hpp`, `${P}/.hpp/tmp/x`, `${P}/.hpp/block/seedblk.img`, `${P}/seedfs/escape/x`, this.dirs.dir]);
      case 6:
        return this.r.pick(['', 'relative/x', `${T}/../pool/x`, `${T}/./t1/mount`, `${T}//t1/mount`, `${T}/t1/mount/`, `${T}/t1\0/mount`, `${T}/${'x'.repeat(5000)}`, `${T}/../../${path.basename(this.dirs.dir)}/pool/seedfs`]);
      case 7:
        return path.join(T, this.unicode(), 'mount');
      default:
        return path.join(T, `n${this.r.int(0, 30)}`, this.validName());
    }
  }

  /**
   * Paths for unpublish, stats and expand: also existing things outside the pool and our targets, all
   * of them inside the sentinel tree. Never real system paths: NodeUnpublishVolume may remove what it
   * is pointed at (see the sentinel check), and this is a shared machine.
   */
  anyPath(): string {
    if (this.r.chance(0.6)) return this.publishTarget();
    const S = this.dirs.sentinel;
    return this.r.pick([`${S}/file`, `${S}/dir`, `${S}/dir/nested.txt`, `${S}/empty`, `${S}/link-to-file`, `${S}/link-out`, S, `${this.dirs.pool}/seedfs`, `${this.dirs.pool}/.hpp/block/seedblk.img`]);
  }

  request(method: string): Msg {
    const r = this.r;
    const maybe = <T>(p: number, v: () => T): T | undefined => (r.chance(p) ? v() : undefined);
    const strip = (m: Msg) => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined));
    switch (method) {
      case 'CreateVolume': {
        let src: Msg | undefined;
        if (r.chance(0.25)) {
          src = r.pick<Msg>([{ snapshot: { snapshot_id: this.snapshotId() } }, { volume: { volume_id: this.volumeId() } }, {}, { snapshot: {}, volume: { volume_id: this.volumeId() } }]);
        }
        return strip({
          name: r.chance(0.5) ? this.validName() : this.name(),
          capacity_range: this.capacityRange(),
          volume_capabilities: this.capabilities(),
          parameters: this.parameters(),
          secrets: maybe(0.1, () => ({ password: 'hunter2' })),
          volume_content_source: src,
          accessibility_requirements: maybe(0.2, () => ({ requisite: Array.from({ length: r.int(0, 2) }, () => this.topology()), preferred: Array.from({ length: r.int(0, 2) }, () => this.topology()) })),
          mutable_parameters: maybe(0.05, () => this.smallMap()),
        });
      }
      case 'DeleteVolume':
        return strip({ volume_id: this.volumeId(), secrets: maybe(0.1, () => this.smallMap()) });
      case 'ValidateVolumeCapabilities':
        return strip({ volume_id: this.volumeId(), volume_capabilities: this.capabilities(), volume_context: maybe(0.3, () => this.smallMap()), parameters: maybe(0.3, () => this.parameters()) });
      case 'ListVolumes':
      case 'ListSnapshots': {
        const m: Msg = {};
        if (r.chance(0.5)) m.max_entries = r.pick([0, 1, 2, 5, -1, -2147483648, 2147483647, r.int(0, 50)]);
        if (r.chance(0.4)) m.starting_token = r.chance(0.5) ? this.volumeId() : this.name();
        if (method === 'ListSnapshots') {
          if (r.chance(0.3)) m.snapshot_id = this.snapshotId();
          if (r.chance(0.3)) m.source_volume_id = this.volumeId();
        }
        return m;
      }
      case 'GetCapacity':
        return strip({ volume_capabilities: maybe(0.7, () => this.capabilities()), parameters: maybe(0.7, () => this.parameters()), accessible_topology: maybe(0.3, () => this.topology()) });
      case 'ControllerExpandVolume':
        return strip({ volume_id: this.volumeId(), capacity_range: this.capacityRange(), volume_capability: maybe(0.6, () => this.goodOrRandomCap()) });
      case 'CreateSnapshot':
        return strip({ name: r.chance(0.5) ? this.validName() : this.name(), source_volume_id: this.volumeId(), parameters: maybe(0.3, () => this.parameters()) });
      case 'DeleteSnapshot':
        return strip({ snapshot_id: r.chance(0.8) ? this.snapshotId() : this.volumeId() });
      case 'NodePublishVolume':
        if (r.chance(0.35)) {
          // Plausible: a real volume with its own access type at one of our targets.
          const [id, mode] = this.knownVolume();
          return { volume_id: id, target_path: path.join(this.dirs.targets, `t${r.int(0, 7)}`, mode === 'block' ? 'dev' : 'mount'), volume_capability: mode === 'block' ? BLOCK_CAP : MOUNT_CAP, readonly: r.chance(0.2) };
        }
        return strip({
          volume_id: this.volumeId(),
          target_path: this.publishTarget(),
          staging_target_path: maybe(0.1, () => this.publishTarget()),
          volume_capability: maybe(0.95, () => this.goodOrRandomCap()),
          readonly: r.chance(0.3),
          publish_context: maybe(0.1, () => this.smallMap()),
          volume_context: maybe(0.3, () => this.smallMap()),
          secrets: maybe(0.05, () => ({ token: 'secret' })),
        });
      case 'NodeUnpublishVolume':
        return { volume_id: r.chance(0.4) ? this.knownVolume()[0] : this.volumeId(), target_path: this.anyPath() };
      case 'NodeGetVolumeStats':
        return strip({ volume_id: this.volumeId(), volume_path: this.anyPath(), staging_target_path: maybe(0.1, () => this.anyPath()) });
      case 'NodeExpandVolume':
        return strip({ volume_id: this.volumeId(), volume_path: this.anyPath(), capacity_range: this.capacityRange(), volume_capability: maybe(0.5, () => this.goodOrRandomCap()) });
      default:
        throw new Error(method);
    }
  }
}

// ---------------------------------------------------------------------------------------------------

describe('fuzzing every RPC through the real socket', () => {
  let dir: string;
  let loop: TestLoop | undefined;
  let pool: string;
  let targets: string;
  let sentinel: string;
  let d: GroupDaemon | undefined;
  const clients: grpc.Client[] = [];

  beforeAll(async () => {
    dir = scratchDir('faults-fuzz');
    mkdirSync(path.join(dir, 'dev'));
    loop = makeLoopDevice(path.join(dir, 'dev', 'pool.img'), 1024);
    pool = path.join(dir, 'pool');
    targets = path.join(dir, 'targets');
    sentinel = path.join(dir, 'sentinel');
    // The sentinel tree beside the pool: nothing may touch it.
    mkdirSync(path.join(sentinel, 'dir', 'sub'), { recursive: true });
    mkdirSync(path.join(sentinel, 'empty'));
    writeFileSync(path.join(sentinel, 'file'), 'sentinel file\n');
    writeFileSync(path.join(sentinel, 'dir', 'nested.txt'), 'nested\n');
    writeFileSync(path.join(sentinel, 'dir', 'sub', 'deep.bin'), Buffer.alloc(4096, 7));
    symlinkSync(path.join(sentinel, 'file'), path.join(sentinel, 'link-to-file'));
    symlinkSync('/etc/hostname', path.join(sentinel, 'link-out'));
    d = await startGroupDaemon({ dir, args: ['--pool', `${POOL}=${pool}:device=${loop.device}`], startMs: 60_000 });
    // Seeds: real volumes and a snapshot so that many calls get past validation.
    const c = d.clients.controller;
    await c.CreateVolume({ name: 'seedfs', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(16 * MiB) } });
    await c.CreateVolume({ name: 'seedblk', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(16 * MiB) } });
    await c.CreateVolume({ name: 'seedimg', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(32 * MiB) }, parameters: { createDiskImage: 'true' } });
    writeFileSync(path.join(pool, 'seedfs', 'data.txt'), 'seed data\n');
    // Symlinks planted into the pool: out of a volume, and in the pool root next to the volumes.
    symlinkSync(sentinel, path.join(pool, 'seedfs', 'escape'));
    symlinkSync(sentinel, path.join(pool, 'planted-link'));
    mkdirSync(path.join(pool, 'planted-dir'));
    await c.CreateSnapshot({ name: 'seedsnap', source_volume_id: `${NODE}:${POOL}:seedfs` });
    // Our target directory, with symlinks leading into the pool.
    mkdirSync(targets);
    for (let i = 0; i < 8; i++) mkdirSync(path.join(targets, `t${i}`));
    symlinkSync(pool, path.join(targets, 'to-pool'));
    symlinkSync(path.join(pool, 'seedfs'), path.join(targets, 'to-vol'));
    const layout = poolLayout(pool);
    symlinkSync(layout.metaDir, path.join(targets, 'to-hpp'));
    symlinkSync(layout.blockDir, path.join(targets, 'to-block'));
    symlinkSync(layout.snapshotsDir, path.join(targets, 'to-snaps'));
  }, 120_000);

  afterAll(async () => {
    for (const cl of clients) cl.close();
    await d?.kill().catch(() => {});
    if (!dir) return;
    await cleanupDir(targets).catch(() => {});
    unmountAll(pool);
    loop?.detach();
    await cleanupDir(dir);
    const left = leftovers(dir);
    if (left.length) throw new Error(`left behind: ${left.join('; ')}`);
  });

  it(`${REQUESTS} random and hostile requests: no crash, only expected codes, nothing outside the pool touched`, async () => {
    const daemon = d!;
    const csi = loadCsi();
    const creds = grpc.credentials.createInsecure();
    // A connection of our own (not shared with other channels of this process), replaced when a
    // call breaks it, so one broken HTTP/2 session does not take the rest of the run with it.
    const opts = { 'grpc.use_local_subchannel_pool': 1 };
    const connect = () => {
      const c = { Controller: new csi.Controller(daemon.endpoint, creds, opts), Node: new csi.Node(daemon.endpoint, creds, opts), raw: new grpc.Client(daemon.endpoint, creds, opts), gen: ++generation };
      clients.push(c.Controller, c.Node, c.raw);
      return c;
    };
    let generation = 0;
    let conn = connect();
    let reconnects = 0;

    // The pool and our targets change by design; the sentinel is compared entry by entry on its own.
    const mutable = new Set(['pool', 'targets', 'sentinel']);
    const sentinelBefore = treeSnapshot(sentinel);
    const parentBefore = parentSnapshot(dir, mutable);
    // New mounts that are ours (under the scratch directory, of the pool's filesystem, or of a loop
    // device backed by a file of ours) must all be under the target directory. Mounts other people
    // make on this shared machine meanwhile are none of our business.
    const mountsBefore = new Set(readMountinfo().map((m) => `${m.mountPoint} ${m.device} ${m.root}`));
    const poolDev = readMountinfo().find((m) => m.mountPoint === pool)!.device;
    const foreignMounts = new Set<string>();
    const checkMounts = () => {
      const ourLoops = new Set(loopsUnder(dir).map((l) => l.name));
      for (const m of readMountinfo()) {
        const key = `${m.mountPoint} ${m.device} ${m.root}`;
        if (mountsBefore.has(key) || m.mountPoint.startsWith(`${targets}/`)) continue;
        const ours = m.mountPoint === dir || m.mountPoint.startsWith(`${dir}/`) || m.device === poolDev || (m.fsType === 'devtmpfs' && ourLoops.has(`/dev${m.root}`));
        if (ours) foreignMounts.add(`${key} (${m.fsType} ${m.source})`);
      }
    };

    const gen = new Gen(new Rng(SEED), { dir, pool, targets, sentinel });
    const codes = new Map<string, number>();
    const byRpc = new Map<string, Map<string, number>>();
    const internals = new Map<string, { count: number; example: string; rpc: string }>();
    const unexpected: string[] = [];
    /** Calls that got no answer from the driver: the connection broke (UNAVAILABLE) or hung (DEADLINE_EXCEEDED). */
    const transport: string[] = [];
    let clientRefused = 0;
    let rawSent = 0;
    const rawCodes = new Map<string, number>();
    let sent = 0;
    let next = 0;
    const started = Date.now();

    /** Paths sent to the node RPCs stay inside the scratch directory (or are not usable paths at all). */
    const confined = (p: unknown) => {
      if (typeof p !== 'string' || p === '' || !p.startsWith('/') || p.includes('\0')) return true;
      const abs = path.resolve(p);
      return abs === dir || abs.startsWith(`${dir}/`);
    };
    const norm = (s: string) =>
      s
        .replaceAll(dir, '<dir>')
        .replace(/\/dev\/loop\d+/g, '/dev/loopN')
        .replace(/\b[0-9a-f]{6,}\b/g, 'H')
        .replace(/\d+/g, 'N')
        .replace(/"[^"]{40,}"/g, '"<long>"')
        .slice(0, 300);

    const call = (c: typeof conn, service: 'Controller' | 'Node', method: string, req: Msg) =>
      new Promise<{ code: string; details: string }>((resolve) => {
        try {
          // eslint-disable-next-line @typescript-eslint/no-explicit-any
          (c[service] as any)[method](req, { deadline: Date.now() + DEADLINE_MS }, (err: grpc.ServiceError | null) => {
            if (!err) resolve({ code: 'OK', details: '' });
            else resolve({ code: grpc.status[err.code] ?? String(err.code), details: err.details ?? '' });
          });
        } catch (err) {
          resolve({ code: 'CLIENT', details: String(err) });
        }
      });

    const rawInternals = new Set<string>();
    const rawCall = (c: typeof conn, pathName: string, buf: Buffer) =>
      new Promise<string>((resolve) =>
        c.raw.makeUnaryRequest(pathName, (x: Buffer) => x, (x: Buffer) => x, buf, { deadline: Date.now() + DEADLINE_MS }, (err) => {
          if (err?.code === grpc.status.INTERNAL) rawInternals.add(norm(err.details ?? ''));
          resolve(err ? (grpc.status[err.code] ?? String(err.code)) : 'OK');
        }),
      );
    /** A call failed at the transport: note it and give later calls a fresh connection. */
    const transportFailed = (c: typeof conn) => {
      if (c.gen !== conn.gen) return;
      reconnects++;
      for (const cl of [c.Controller, c.Node, c.raw]) cl.close();
      conn = connect();
    };
    const TRANSPORT = new Set(['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'CANCELLED']);

    // Pinned probes: hostile requests every run sends once, at random places in the stream, so that
    // what they test does not depend on the seed's luck.
    const S = sentinel;
    const seedfs = `${NODE}:${POOL}:seedfs`;
    const pinned: Array<[(typeof RPCS)[number][0], string, Msg]> = [
      ['Controller', 'ValidateVolumeCapabilities', { volume_id: `${NODE}:${POOL}:${'x'.repeat(200_000)}`, volume_capabilities: [MOUNT_CAP] }],
      ['Controller', 'ListVolumes', { starting_token: 'y'.repeat(200_000) }],
      ['Node', 'NodeUnpublishVolume', { volume_id: seedfs, target_path: `${S}/file` }],
      ['Node', 'NodeUnpublishVolume', { volume_id: seedfs, target_path: `${S}/empty` }],
      ['Node', 'NodeUnpublishVolume', { volume_id: `${NODE}:${POOL}:seedblk`, target_path: `${S}/dir/nested.txt` }],
      ['Node', 'NodePublishVolume', { volume_id: seedfs, target_path: `${targets}/${'z'.repeat(5000)}/mount`, volume_capability: MOUNT_CAP }],
      ['Node', 'NodePublishVolume', { volume_id: seedfs, target_path: `${targets}/to-vol/x`, volume_capability: MOUNT_CAP }],
      ['Node', 'NodePublishVolume', { volume_id: seedfs, target_path: `${targets}/to-pool`, volume_capability: MOUNT_CAP }],
      ['Node', 'NodePublishVolume', { volume_id: `${NODE}:${POOL}:seedblk`, target_path: `${pool}/seedfs/escape/dev`, volume_capability: BLOCK_CAP }],
      ['Controller', 'CreateVolume', { name: 'planted-link', volume_capabilities: [MOUNT_CAP] }],
      ['Controller', 'CreateVolume', { name: 'planted-dir', volume_capabilities: [MOUNT_CAP] }],
      ['Controller', 'CreateVolume', { name: 'pin-clone', volume_capabilities: [MOUNT_CAP], volume_content_source: { volume: { volume_id: seedfs } } }],
      ['Controller', 'CreateVolume', { name: 'pin-x', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: '9223372036854775807' } }],
      ['Controller', 'CreateVolume', { name: 'pin-y', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: '-1' } }],
      ['Controller', 'DeleteVolume', { volume_id: `${NODE}:${POOL}:..` }],
      ['Controller', 'DeleteVolume', { volume_id: `other-node:${POOL}:seedfs` }],
      ['Controller', 'DeleteSnapshot', { snapshot_id: `${NODE}:${POOL}:../volumes/seedfs` }],
    ];
    const pinnedAt = new Map<number, (typeof pinned)[number]>();
    for (const p of pinned) {
      let at = gen.r.int(0, Math.max(0, REQUESTS - 1));
      while (pinnedAt.has(at) && pinnedAt.size < REQUESTS) at = (at + 1) % Math.max(1, REQUESTS);
      pinnedAt.set(at, p);
    }

    async function worker(): Promise<void> {
      for (;;) {
        const i = next++;
        if (i >= REQUESTS) return;
        if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) return;
        if (i % 250 === 0) checkMounts();
        const pin = pinnedAt.get(i);
        const [service, method] = pin ?? RPCS[gen.r.int(0, RPCS.length - 1)]!;
        if (!pin && gen.r.chance(0.02)) {
          // Bytes that may not even be a protobuf message.
          const buf = gen.r.bytes(gen.r.int(0, 64));
          const c = conn;
          const code = await rawCall(c, `/csi.v1.${service}/${method}`, buf);
          rawSent++;
          rawCodes.set(code, (rawCodes.get(code) ?? 0) + 1);
          if (TRANSPORT.has(code)) {
            transport.push(`raw ${method} (${buf.length} bytes) -> ${code}`);
            transportFailed(c);
          } else if (code === 'UNKNOWN') unexpected.push(`raw ${method}: ${code}`);
          continue;
        }
        const req = pin ? pin[2] : gen.request(method);
        if (!pin && gen.r.chance(0.03)) {
          // A field of the wrong type: the client's encoder refuses some of these (not counted).
          const keys = Object.keys(req);
          const k = keys.length ? gen.r.pick(keys) : 'name';
          req[k] = gen.r.pick<unknown>(['x', 5, [1, 2], { a: 1 }, true, -1, null]);
        }
        for (const f of ['target_path', 'volume_path', 'staging_target_path']) {
          if (!confined(req[f])) throw new Error(`test bug: ${method} ${f} ${JSON.stringify(req[f])} leads outside ${dir}`);
        }
        const c = conn;
        const res = await call(c, service, method, req);
        if (TRANSPORT.has(res.code)) transportFailed(c);
        if (res.code === 'CLIENT' || (res.code === 'INTERNAL' && res.details.startsWith('Request message serialization failure'))) {
          clientRefused++;
          continue;
        }
        sent++;
        codes.set(res.code, (codes.get(res.code) ?? 0) + 1);
        const per = byRpc.get(method) ?? new Map<string, number>();
        per.set(res.code, (per.get(res.code) ?? 0) + 1);
        byRpc.set(method, per);
        if (res.code === 'OK') {
          if (method === 'CreateVolume' && typeof req.name === 'string') {
            const id = `${NODE}:${POOL}:${req.name}`;
            gen.liveVolumes.add(id);
            gen.liveModes.set(id, (req.volume_capabilities as Msg[]).some((c) => c.block) ? 'block' : 'mount');
          }
          if (method === 'DeleteVolume' && typeof req.volume_id === 'string') gen.liveVolumes.delete(req.volume_id);
          if (method === 'CreateSnapshot' && typeof req.name === 'string') gen.liveSnapshots.add(`${NODE}:${POOL}:${req.name}`);
        }
        if (res.code === 'INTERNAL') {
          const key = `${method}: ${norm(res.details)}`;
          const e = internals.get(key) ?? { count: 0, example: `${method} ${JSON.stringify(req).slice(0, 600)} -> ${res.details.slice(0, 600)}`, rpc: method };
          e.count++;
          internals.set(key, e);
        } else if (TRANSPORT.has(res.code)) {
          transport.push(`${method} ${JSON.stringify(req).slice(0, 300)} (${JSON.stringify(req).length} chars) -> ${res.code}: ${res.details.slice(0, 200)}`);
        } else if (!EXPECTED.has(res.code)) {
          unexpected.push(`${method} ${JSON.stringify(req).slice(0, 300)} (${JSON.stringify(req).length} chars) -> ${res.code}: ${res.details.slice(0, 200)}`);
        }
      }
    }
    await Promise.all(Array.from({ length: WORKERS }, () => worker()));
    const fuzzMs = Date.now() - started;
    checkMounts();

    // The daemon is alive and answers.
    const alive = daemon.child.exitCode === null && daemon.child.signalCode === null;
    const probe = alive ? await daemon.clients.identity.Probe({}) : undefined;

    // Clean up through the driver: every recorded publication, every snapshot, every volume.
    const cleanupErrors: string[] = [];
    if (alive) {
      const recorded = readdirSync(poolLayout(pool).volumesDir).map(recordFileName);
      for (const { name } of recorded.filter((f) => f !== undefined && !f.deleting) as Array<{ name: string }>) {
        const rec = readVolumeRecord(pool, name)!;
        for (const t of Object.keys(rec.publications ?? {})) {
          await daemon.clients.node.NodeUnpublishVolume({ volume_id: rec.id, target_path: t }).catch((e: grpc.ServiceError) => cleanupErrors.push(`unpublish ${rec.id} ${t}: ${e.details}`));
        }
      }
      for (const e of (await daemon.clients.controller.ListSnapshots({})).entries as Msg[]) {
        await daemon.clients.controller.DeleteSnapshot({ snapshot_id: e.snapshot.snapshot_id }).catch((er: grpc.ServiceError) => cleanupErrors.push(`delete snapshot ${e.snapshot.snapshot_id}: ${er.details}`));
      }
      for (const e of (await daemon.clients.controller.ListVolumes({})).entries as Msg[]) {
        await daemon.clients.controller.DeleteVolume({ volume_id: e.volume.volume_id }).catch((er: grpc.ServiceError) => cleanupErrors.push(`delete volume ${e.volume.volume_id}: ${er.details}`));
      }
    }
    const targetMounts = mountsUnder(targets).map((m) => m.mountPoint);
    const poolLoops = loopsUnder(pool).map((l) => `${l.name}=${l.backFile}`);
    const sentinelDiff = diffMaps(sentinelBefore, treeSnapshot(sentinel));
    const parentDiff = diffMaps(parentBefore, parentSnapshot(dir, mutable));
    const exitCode = alive ? await daemon.stop() : daemon.child.exitCode;

    const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(' ');
    console.log(`fuzz: seed=${SEED} requests=${REQUESTS} answered=${sent} client-refused=${clientRefused} raw-bytes=${rawSent} in ${fuzzMs} ms (${WORKERS} in flight)`);
    console.log(`fuzz codes: ${sorted(codes)}`);
    console.log(`fuzz calls without an answer: ${transport.length} (connections replaced: ${reconnects})`);
    console.log(`fuzz raw-bytes codes: ${sorted(rawCodes)}; INTERNAL messages: ${[...rawInternals].slice(0, 5).join(' | ')}`);
    for (const [rpc, per] of [...byRpc].sort()) console.log(`fuzz ${rpc}: ${sorted(per)}`);
    console.log(`fuzz INTERNAL: ${[...internals.values()].reduce((a, e) => a + e.count, 0)} answers, ${internals.size} distinct`);
    for (const [key, e] of internals) console.log(`fuzz INTERNAL x${e.count} ${key}\n    e.g. ${e.example}`);
    for (const u of unexpected.slice(0, 20)) console.log(`fuzz UNEXPECTED ${u}`);
    // The calls that broke their connection are the big ones; the rest were in flight on it.
    const bigOnes = transport.filter((t) => Number(/\((\d+) chars\)/.exec(t)?.[1] ?? 0) > 60_000);
    for (const u of bigOnes) console.log(`fuzz NO ANSWER (large request) ${u.slice(0, 160)}...${u.slice(-160)}`);
    console.log(`fuzz NO ANSWER: ${transport.length - bigOnes.length} more calls that were in flight on the broken connections`);
    for (const s of sentinelDiff) console.log(`fuzz SENTINEL CHANGED ${s}`);
    for (const s of parentDiff) console.log(`fuzz POOL PARENT CHANGED ${s}`);
    for (const s of foreignMounts) console.log(`fuzz FOREIGN MOUNT ${s}`);
    for (const s of cleanupErrors) console.log(`fuzz CLEANUP ${s}`);

    expect(alive, `daemon died during the fuzz:\n${daemon.logs().slice(-3000)}`).toBe(true);
    expect(probe?.ready?.value).toBe(true);
    expect(exitCode).toBe(0);
    expect(sent).toBeGreaterThan(REQUESTS * 0.8);
    expect.soft(unexpected, 'answers outside the expected set (UNKNOWN, ...)').toEqual([]);
    expect.soft(transport, 'calls that got no answer (connection broken or hung)').toEqual([]);
    expect.soft(sentinelDiff, 'the sentinel tree beside the pool changed').toEqual([]);
    expect.soft(parentDiff, "the pool's parent directory changed").toEqual([]);
    expect.soft([...foreignMounts], 'mounts outside the test target directory').toEqual([]);
    expect.soft(cleanupErrors, 'cleanup through the driver failed').toEqual([]);
    expect.soft(targetMounts, 'mounts left under the target directory after unpublishing everything recorded').toEqual([]);
    expect.soft(poolLoops, 'loop devices of pool images left after unpublishing everything recorded').toEqual([]);
    // The secrets of requests never reach the log.
    expect.soft(daemon.logs()).not.toContain('hunter2');
  }, 120_000 + REQUESTS * 25);
});
