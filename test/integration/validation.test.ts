// Request validation and the read-only RPCs of the real daemon: hostile names, parameters, capacity ranges,
// capabilities, ListVolumes paging, GetCapacity, Probe on a missing pool, Identity and NodeGetInfo.
import { lstatSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { META_DIR, TRASH_DIR, poolLayout } from '../../src/format/layout.js';
import { BLOCK_CAP, MOUNT_CAP, cleanupDir, expectCode, scratchDir, startDriver, type DriverProcess, type Msg } from '../helpers/driver.js';

const TOPOLOGY_KEY = 'topology.hostpath.csi/node';

/**
 * Every path under `root` (relative, sorted), with a type marker. Left out: the daemon's lock file and the
 * contents of the trash, which a background sweep empties at its own pace.
 */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of readdirSync(path.join(root, rel))) {
      const r = rel ? `${rel}/${e}` : e;
      if (r === path.relative(root, poolLayout(root).lockFile) || r.startsWith(`${TRASH_DIR}/`)) continue;
      const st = lstatSync(path.join(root, r));
      out.push(`${r}${st.isDirectory() ? '/' : ''}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out.sort();
}

/** The daemon's own files beside its pools: its socket and the lock file that goes with it. */
function socketFiles(d: DriverProcess): string[] {
  const sock = path.basename(d.socket);
  return [sock, `${sock}.lock`];
}

function cap(mode: string, type: 'mount' | 'block' = 'mount'): Msg {
  return type === 'mount' ? { access_mode: { mode }, mount: { fs_type: '', mount_flags: [] } } : { access_mode: { mode }, block: {} };
}

describe('validation against a running daemon', () => {
  let dir: string;
  let pool: string;
  let d: DriverProcess;

  const create = (req: Msg) => d.clients.controller.CreateVolume({ volume_capabilities: [MOUNT_CAP], ...req });

  beforeAll(async () => {
    dir = scratchDir('validation');
    pool = path.join(dir, 'pool');
    mkdirSync(pool);
    d = await startDriver({ dir, args: ['--pool', `default=${pool}`] });
  });

  afterAll(async () => {
    await d?.stop();
    if (dir) await cleanupDir(dir);
  });

  it('Probe is ready', async () => {
    expect((await d.clients.identity.Probe({})).ready?.value).toBe(true);
  });

  it('hostile volume names are INVALID_ARGUMENT and create nothing in the pool', async () => {
    const before = tree(pool);
    expect(before).toContain(`${META_DIR}/`);
    const hostile = ['../../etc', '..', '.', '', ' spaces ', 'a/b', '/abs', 'a\u0000b', 'x'.repeat(300), 'x'.repeat(129), '.hpp', '.hidden', 'a\\b', 'tab\tname', 'name\n', 'émoji-🙂', '-leading-dash'];
    for (const name of hostile) {
      const err = await expectCode(create({ name }), 'INVALID_ARGUMENT').catch((e: Error) => {
        throw new Error(`name ${JSON.stringify(name)}: ${e.message}`);
      });
      expect(err.details).toMatch(/name/);
    }
    expect(tree(pool)).toEqual(before);
    expect(readdirSync(path.dirname(pool)).filter((e) => e !== 'pool' && !socketFiles(d).includes(e))).toEqual([]);
  });

  it('names up to 128 characters from the allowed set are accepted', async () => {
    const name = `a${'b'.repeat(126)}9`;
    expect(name).toHaveLength(128);
    const res = await create({ name });
    expect(res.volume.volume_id).toBe(`test-node:default:${name}`);
    const res2 = await create({ name: 'pvc-0f1e2d3c.4b5a_6978' });
    expect(res2.volume.volume_id).toBe('test-node:default:pvc-0f1e2d3c.4b5a_6978');
    await d.clients.controller.DeleteVolume({ volume_id: res.volume.volume_id });
    await d.clients.controller.DeleteVolume({ volume_id: res2.volume.volume_id });
  });

  it('an unknown storagePool is INVALID_ARGUMENT naming the pool; an unknown parameter key is INVALID_ARGUMENT', async () => {
    const before = tree(pool);
    const e1 = await expectCode(create({ name: 'p1', parameters: { storagePool: 'no-such-pool' } }), 'INVALID_ARGUMENT');
    expect(e1.details).toContain('no-such-pool');
    const e2 = await expectCode(create({ name: 'p2', parameters: { storagepool: 'default' } }), 'INVALID_ARGUMENT');
    expect(e2.details).toContain('storagepool');
    await expectCode(create({ name: 'p3', parameters: { storagePool: 'default', fsType: 'xfs' } }), 'INVALID_ARGUMENT');
    expect(tree(pool)).toEqual(before);
    // The CO's own keys (--extra-create-metadata) and the right pool name are fine.
    const ok = await create({
      name: 'p4',
      parameters: { storagePool: 'default', 'csi.storage.k8s.io/pvc/name': 'claim', 'csi.storage.k8s.io/pvc/namespace': 'ns', 'csi.storage.k8s.io/pv/name': 'p4' },
    });
    expect(ok.volume.volume_id).toBe('test-node:default:p4');
    expect(ok.volume.volume_context).toEqual({ storagePool: 'default' });
    await d.clients.controller.DeleteVolume({ volume_id: ok.volume.volume_id });
  });

  it('the same name with an incompatible size is ALREADY_EXISTS; a compatible repeat returns the volume', async () => {
    const first = await create({ name: 'sized', capacity_range: { required_bytes: '1048576' } });
    expect(first.volume.capacity_bytes).toBe('1048576');
    await expectCode(create({ name: 'sized', capacity_range: { required_bytes: '2097152' } }), 'ALREADY_EXISTS');
    await expectCode(create({ name: 'sized', capacity_range: { required_bytes: '524288', limit_bytes: '786432' } }), 'ALREADY_EXISTS');
    const again = await create({ name: 'sized', capacity_range: { required_bytes: '1048576' } });
    expect(again.volume).toEqual(first.volume);
    // A mount volume asked for again as block is a different volume: ALREADY_EXISTS.
    await expectCode(d.clients.controller.CreateVolume({ name: 'sized', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: '1048576' } }), 'ALREADY_EXISTS');
    await d.clients.controller.DeleteVolume({ volume_id: first.volume.volume_id });
  });

  it('bad capacity ranges are INVALID_ARGUMENT and create nothing', async () => {
    const before = tree(pool);
    await expectCode(create({ name: 'r1', capacity_range: { required_bytes: '2097152', limit_bytes: '1048576' } }), 'INVALID_ARGUMENT');
    await expectCode(create({ name: 'r2', capacity_range: { required_bytes: '-1' } }), 'INVALID_ARGUMENT');
    await expectCode(create({ name: 'r3', capacity_range: { limit_bytes: '-1048576' } }), 'INVALID_ARGUMENT');
    await expectCode(create({ name: 'r4', capacity_range: { required_bytes: '-9223372036854775808' } }), 'INVALID_ARGUMENT');
    expect(tree(pool)).toEqual(before);
  });

  it('unsupported or inconsistent capabilities are INVALID_ARGUMENT', async () => {
    const before = tree(pool);
    for (const mode of ['MULTI_NODE_MULTI_WRITER', 'MULTI_NODE_READER_ONLY', 'MULTI_NODE_SINGLE_WRITER', 'UNKNOWN']) {
      await expectCode(create({ name: 'c1', volume_capabilities: [cap(mode)] }), 'INVALID_ARGUMENT');
    }
    const mixed = await expectCode(create({ name: 'c2', volume_capabilities: [MOUNT_CAP, BLOCK_CAP] }), 'INVALID_ARGUMENT');
    expect(mixed.details).toMatch(/block/);
    await expectCode(create({ name: 'c3', volume_capabilities: [] }), 'INVALID_ARGUMENT');
    await expectCode(create({ name: 'c4', volume_capabilities: [{ access_mode: { mode: 'SINGLE_NODE_WRITER' } }] }), 'INVALID_ARGUMENT');
    await expectCode(create({ name: 'c5', volume_capabilities: [{ mount: {} }] }), 'INVALID_ARGUMENT');
    expect(tree(pool)).toEqual(before);
  });

  it('ValidateVolumeCapabilities: supported mode confirmed, MULTI_NODE_* not confirmed with a message, unknown volume NOT_FOUND', async () => {
    const v = await create({ name: 'validate-me' });
    const id = v.volume.volume_id;
    for (const mode of ['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER']) {
      const res = await d.clients.controller.ValidateVolumeCapabilities({ volume_id: id, volume_capabilities: [cap(mode)] });
      expect(res.confirmed, mode).not.toBeNull();
      expect(res.confirmed.volume_capabilities[0].access_mode.mode).toBe(mode);
    }
    for (const mode of ['MULTI_NODE_MULTI_WRITER', 'MULTI_NODE_READER_ONLY', 'MULTI_NODE_SINGLE_WRITER']) {
      const res = await d.clients.controller.ValidateVolumeCapabilities({ volume_id: id, volume_capabilities: [cap(mode)] });
      expect(res.confirmed, mode).toBeNull();
      expect(res.message, mode).not.toBe('');
    }
    // One unsupported capability among supported ones: not confirmed.
    const mixed = await d.clients.controller.ValidateVolumeCapabilities({ volume_id: id, volume_capabilities: [MOUNT_CAP, cap('MULTI_NODE_MULTI_WRITER')] });
    expect(mixed.confirmed).toBeNull();
    // A filesystem volume is not a block volume.
    const block = await d.clients.controller.ValidateVolumeCapabilities({ volume_id: id, volume_capabilities: [BLOCK_CAP] });
    expect(block.confirmed).toBeNull();
    expect(block.message).toMatch(/block|filesystem/);

    await expectCode(d.clients.controller.ValidateVolumeCapabilities({ volume_id: 'test-node:default:nope', volume_capabilities: [MOUNT_CAP] }), 'NOT_FOUND');
    await expectCode(d.clients.controller.ValidateVolumeCapabilities({ volume_id: 'garbage', volume_capabilities: [MOUNT_CAP] }), 'NOT_FOUND');
    await expectCode(d.clients.controller.ValidateVolumeCapabilities({ volume_id: '', volume_capabilities: [MOUNT_CAP] }), 'INVALID_ARGUMENT');
    await expectCode(d.clients.controller.ValidateVolumeCapabilities({ volume_id: id, volume_capabilities: [] }), 'INVALID_ARGUMENT');
    await d.clients.controller.DeleteVolume({ volume_id: id });
  });

  it('GetCapacity: positive for the pool, 0 for another node\'s topology or an unknown pool', async () => {
    const plain = await d.clients.controller.GetCapacity({});
    expect(BigInt(plain.available_capacity)).toBeGreaterThan(0n);
    const named = await d.clients.controller.GetCapacity({ parameters: { storagePool: 'default' }, volume_capabilities: [MOUNT_CAP] });
    expect(BigInt(named.available_capacity)).toBeGreaterThan(0n);
    const here = await d.clients.controller.GetCapacity({ accessible_topology: { segments: { [TOPOLOGY_KEY]: 'test-node' } } });
    expect(BigInt(here.available_capacity)).toBeGreaterThan(0n);
    const other = await d.clients.controller.GetCapacity({ accessible_topology: { segments: { [TOPOLOGY_KEY]: 'other-node' } } });
    expect(other.available_capacity).toBe('0');
    const otherPool = await d.clients.controller.GetCapacity({ parameters: { storagePool: 'elsewhere' } });
    expect(otherPool.available_capacity).toBe('0');
    const multi = await d.clients.controller.GetCapacity({ volume_capabilities: [cap('MULTI_NODE_MULTI_WRITER')] });
    expect(multi.available_capacity).toBe('0');
  });

  it('DeleteVolume of an unknown or garbage id is OK and touches nothing', async () => {
    const keep = await create({ name: 'keep-me' });
    const before = tree(pool);
    for (const id of ['garbage', 'test-node:default:nope', 'test-node:no-such-pool:x', '../../etc', 'test-node:default:../../etc', 'a:b:c:d', 'test-node:default:', ':::']) {
      await d.clients.controller.DeleteVolume({ volume_id: id }).catch((e: Error) => {
        throw new Error(`DeleteVolume ${JSON.stringify(id)}: ${e.message}`);
      });
    }
    await expectCode(d.clients.controller.DeleteVolume({ volume_id: '' }), 'INVALID_ARGUMENT');
    expect(tree(pool)).toEqual(before);
    await d.clients.controller.DeleteVolume({ volume_id: keep.volume.volume_id });
    // Deleting twice is OK.
    await d.clients.controller.DeleteVolume({ volume_id: keep.volume.volume_id });
  });

  it('CreateVolume honours the requisite topology: another node only is RESOURCE_EXHAUSTED, this node is fine', async () => {
    const before = tree(pool);
    const other = { requisite: [{ segments: { [TOPOLOGY_KEY]: 'other-node' } }], preferred: [{ segments: { [TOPOLOGY_KEY]: 'other-node' } }] };
    await expectCode(create({ name: 'topo-other', accessibility_requirements: other }), 'RESOURCE_EXHAUSTED');
    expect(tree(pool)).toEqual(before);
    const here = {
      requisite: [{ segments: { [TOPOLOGY_KEY]: 'other-node' } }, { segments: { [TOPOLOGY_KEY]: 'test-node' } }],
      preferred: [{ segments: { [TOPOLOGY_KEY]: 'other-node' } }],
    };
    const v = await create({ name: 'topo-here', accessibility_requirements: here });
    expect(v.volume.accessible_topology).toEqual([{ segments: { [TOPOLOGY_KEY]: 'test-node' } }]);
    await d.clients.controller.DeleteVolume({ volume_id: v.volume.volume_id });
  });

  it('NodeGetInfo gives the node id and the topology key', async () => {
    const info = await d.clients.node.NodeGetInfo({});
    expect(info.node_id).toBe('test-node');
    expect(info.accessible_topology.segments).toEqual({ [TOPOLOGY_KEY]: 'test-node' });
  });

  it('created volumes carry the node topology', async () => {
    const v = await create({ name: 'topo' });
    expect(v.volume.accessible_topology).toEqual([{ segments: { [TOPOLOGY_KEY]: 'test-node' } }]);
    await d.clients.controller.DeleteVolume({ volume_id: v.volume.volume_id });
  });

  it('GetPluginInfo has the default driver name', async () => {
    const info = await d.clients.identity.GetPluginInfo({});
    expect(info.name).toBe('kubevirt.io.hostpath-provisioner');
    expect(info.vendor_version).not.toBe('');
  });
});

describe('ListVolumes pagination', () => {
  let dir: string;
  let d: DriverProcess;
  const ids: string[] = [];

  beforeAll(async () => {
    dir = scratchDir('paging');
    mkdirSync(path.join(dir, 'pool'));
    d = await startDriver({ dir, args: ['--pool', `default=${dir}/pool`] });
    for (const n of ['e', 'c', 'a', 'd', 'b']) {
      const res = await d.clients.controller.CreateVolume({ name: `page-${n}`, volume_capabilities: [MOUNT_CAP] });
      ids.push(res.volume.volume_id);
    }
  });

  afterAll(async () => {
    await d?.stop();
    if (dir) await cleanupDir(dir);
  });

  async function walk(max: number): Promise<{ pages: string[][]; seen: string[] }> {
    const pages: string[][] = [];
    let token = '';
    for (let i = 0; i < 20; i++) {
      const res = await d.clients.controller.ListVolumes({ max_entries: max, starting_token: token });
      pages.push(res.entries.map((e: Msg) => e.volume.volume_id));
      token = res.next_token;
      if (!token) break;
    }
    expect(token).toBe('');
    return { pages, seen: pages.flat() };
  }

  it('max_entries 2 over 5 volumes walks every volume exactly once', async () => {
    const { pages, seen } = await walk(2);
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    expect(seen).toHaveLength(5);
    expect(new Set(seen).size).toBe(5);
    expect([...seen].sort()).toEqual([...ids].sort());
  });

  it('max_entries 0 (or more than there are) gives everything in one page', async () => {
    for (const max of [0, 5, 100]) {
      const res = await d.clients.controller.ListVolumes({ max_entries: max });
      expect(res.entries).toHaveLength(5);
      expect(res.next_token).toBe('');
    }
  });

  it('a volume deleted in the middle of a walk does not make the walk repeat or skip the others', async () => {
    const first = await d.clients.controller.ListVolumes({ max_entries: 2 });
    const got: string[] = first.entries.map((e: Msg) => e.volume.volume_id);
    const sorted = [...ids].sort();
    // Delete one already returned and one not yet returned.
    await d.clients.controller.DeleteVolume({ volume_id: got[0] });
    await d.clients.controller.DeleteVolume({ volume_id: sorted[4] });
    let token = first.next_token as string;
    while (token) {
      const res = await d.clients.controller.ListVolumes({ max_entries: 2, starting_token: token });
      got.push(...res.entries.map((e: Msg) => e.volume.volume_id));
      token = res.next_token;
    }
    expect(got).toEqual(sorted.slice(0, 4));
    // Put them back for the other tests.
    for (const id of [got[0]!, sorted[4]!]) {
      await d.clients.controller.CreateVolume({ name: id.split(':')[2], volume_capabilities: [MOUNT_CAP] });
    }
  });

  it('a negative max_entries is INVALID_ARGUMENT', async () => {
    await expectCode(d.clients.controller.ListVolumes({ max_entries: -1 }), 'INVALID_ARGUMENT');
  });

  it('a bogus starting_token is ABORTED', async () => {
    for (const token of ['bogus', 'not:a:valid/token', '../../etc', 'x'.repeat(500)]) {
      await expectCode(d.clients.controller.ListVolumes({ max_entries: 2, starting_token: token }), 'ABORTED');
    }
  });
});

describe('pool missing at start', () => {
  let dir: string;
  let d: DriverProcess;

  beforeAll(async () => {
    dir = scratchDir('missing');
    d = await startDriver({ dir, args: ['--pool', `default=${dir}/later`] });
  });

  afterAll(async () => {
    await d?.stop();
    if (dir) await cleanupDir(dir);
  });

  it('Probe is not ready while the pool directory is missing, and ready once it appears', async () => {
    const probe = await d.clients.identity.Probe({});
    expect(probe.ready?.value).toBe(false);
    await expectCode(d.clients.controller.CreateVolume({ name: 'early', volume_capabilities: [MOUNT_CAP] }), 'UNAVAILABLE');
    expect((await d.clients.controller.GetCapacity({})).available_capacity).toBe('0');
    // The driver never creates a pool root itself: a missing root is a missing disk.
    expect(readdirSync(dir).filter((e) => !socketFiles(d).includes(e))).toEqual([]);

    mkdirSync(path.join(dir, 'later'));
    expect((await d.clients.identity.Probe({})).ready?.value).toBe(true);
    const res = await d.clients.controller.CreateVolume({ name: 'late', volume_capabilities: [MOUNT_CAP] });
    expect(res.volume.volume_id).toBe('test-node:default:late');
    expect(readdirSync(path.join(dir, 'later')).sort()).toEqual([META_DIR, 'late']);
    expect(BigInt((await d.clients.controller.GetCapacity({})).available_capacity)).toBeGreaterThan(0n);
  });
});

describe('driver and node names from flags', () => {
  let dir: string;
  const daemons: DriverProcess[] = [];

  beforeAll(() => {
    dir = scratchDir('names');
    mkdirSync(path.join(dir, 'pool'));
  });

  afterEach(async () => {
    for (const x of daemons.splice(0)) await x.stop();
  });

  afterAll(async () => {
    if (dir) await cleanupDir(dir);
  });

  it('--driver-name sets the plugin name; --node-name sets node id, topology and volume ids', async () => {
    const x = await startDriver({ dir, node: 'worker-7.example', args: ['--pool', `default=${dir}/pool`, '--driver-name', 'hostpath.example.org'] });
    daemons.push(x);
    expect((await x.clients.identity.GetPluginInfo({})).name).toBe('hostpath.example.org');
    const info = await x.clients.node.NodeGetInfo({});
    expect(info.node_id).toBe('worker-7.example');
    expect(info.accessible_topology.segments).toEqual({ [TOPOLOGY_KEY]: 'worker-7.example' });
    const v = await x.clients.controller.CreateVolume({ name: 'named', volume_capabilities: [MOUNT_CAP] });
    expect(v.volume.volume_id).toBe('worker-7.example:default:named');
    // A volume id of another node is not ours to publish.
    await expectCode(
      x.clients.node.NodePublishVolume({ volume_id: 'test-node:default:named', target_path: `${dir}/t/mount`, volume_capability: MOUNT_CAP }),
      'NOT_FOUND',
    );
    await x.clients.controller.DeleteVolume({ volume_id: v.volume.volume_id });
  });

  it('an invalid --driver-name stops the daemon at start', async () => {
    await expect(startDriver({ dir, args: ['--pool', `default=${dir}/pool`, '--driver-name', '-bad name-'] })).rejects.toThrow(/exited with 2/);
  });
});

describe('two pools', () => {
  let dir: string;
  let d: DriverProcess;

  beforeAll(async () => {
    dir = scratchDir('twopools');
    mkdirSync(path.join(dir, 'fast'));
    mkdirSync(path.join(dir, 'slow'));
    d = await startDriver({ dir, args: ['--pool', `fast=${dir}/fast`, '--pool', `slow=${dir}/slow`] });
  });

  afterAll(async () => {
    await d?.stop();
    if (dir) await cleanupDir(dir);
  });

  it('storagePool picks the pool; without it the request is INVALID_ARGUMENT; one name lives in one pool only', async () => {
    const e = await expectCode(d.clients.controller.CreateVolume({ name: 'nopool', volume_capabilities: [MOUNT_CAP] }), 'INVALID_ARGUMENT');
    expect(e.details).toMatch(/storagePool/);
    const a = await d.clients.controller.CreateVolume({ name: 'in-fast', volume_capabilities: [MOUNT_CAP], parameters: { storagePool: 'fast' } });
    expect(a.volume.volume_id).toBe('test-node:fast:in-fast');
    expect(readdirSync(path.join(dir, 'fast'))).toContain('in-fast');
    expect(readdirSync(path.join(dir, 'slow'))).not.toContain('in-fast');
    await expectCode(d.clients.controller.CreateVolume({ name: 'in-fast', volume_capabilities: [MOUNT_CAP], parameters: { storagePool: 'slow' } }), 'INVALID_ARGUMENT');
    expect(readdirSync(path.join(dir, 'slow'))).not.toContain('in-fast');
    expect(BigInt((await d.clients.controller.GetCapacity({ parameters: { storagePool: 'slow' } })).available_capacity)).toBeGreaterThan(0n);
    await d.clients.controller.DeleteVolume({ volume_id: a.volume.volume_id });
    expect(readdirSync(path.join(dir, 'fast'))).not.toContain('in-fast');
  });
});
