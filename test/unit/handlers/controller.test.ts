/**
 * The Controller handlers (src/csi/controller.ts) and the VolumeManager, in-process over a FakeHost:
 * no root, no daemon, no mount or tool run (FakeHost.calls shows what was asked of the OS).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseVolumeRecord } from '../../../src/format/records.js';
import { capability, createRequest, GiB, HandlerHarness, MiB, volumeId, type CreateVolumeSpec } from '../../helpers/handler-harness.js';
import { captureLog } from '../../helpers/log-capture.js';

let h: HandlerHarness;
beforeEach(async () => {
  h = await new HandlerHarness().start();
});
afterEach(async () => {
  await h.dispose();
});

const deleteReq = (volume_id: string) => ({ volume_id, secrets: {} });
const snapshotReq = (name: string, source_volume_id: string, parameters: Record<string, string> = {}) => ({ name, source_volume_id, secrets: {}, parameters });
const expandReq = (volume_id: string, required: bigint, kind: 'mount' | 'block' | null = null) => ({
  volume_id,
  capacity_range: { required_bytes: String(required), limit_bytes: '0' },
  secrets: {},
  volume_capability: kind ? capability(kind) : null,
});
const listSnapshotsReq = (o: { snapshot_id?: string; source_volume_id?: string } = {}) => ({
  max_entries: 0,
  starting_token: '',
  source_volume_id: o.source_volume_id ?? '',
  snapshot_id: o.snapshot_id ?? '',
  secrets: {},
});
const publishReq = (volume_id: string, target_path: string) => ({
  volume_id,
  publish_context: {},
  staging_target_path: '',
  target_path,
  volume_capability: capability('mount'),
  readonly: false,
  secrets: {},
  volume_context: {},
});

describe('CreateVolume', () => {
  it.each<{ what: string; req: CreateVolumeSpec; mode: string; capacity: bigint }>([
    { what: 'a filesystem volume of the size asked for', req: { name: 'fs1', required: 100n * MiB }, mode: 'filesystem', capacity: 100n * MiB },
    { what: 'a filesystem volume sized by its limit', req: { name: 'fs2', limit: 64n * MiB }, mode: 'filesystem', capacity: 64n * MiB },
    { what: 'a block volume rounded up to whole MiB', req: { name: 'b1', kind: 'block' as const, required: 10n * MiB + 1n }, mode: 'block', capacity: 11n * MiB },
    { what: 'a block volume of the default size', req: { name: 'b2', kind: 'block' as const }, mode: 'block', capacity: 1024n * MiB },
    {
      what: 'a volume with a disk image (sized up so disk.img holds 1 MiB)',
      req: { name: 'vm1', required: 1n * MiB, parameters: { createDiskImage: 'true' } },
      mode: 'filesystem',
      // The smallest capacity whose disk.img holds 1 MiB at 0.055: 1048575 × 1000 ÷ 945, plus 1.
      capacity: 1109604n,
    },
    { what: 'a preallocated block volume', req: { name: 'b3', kind: 'block' as const, required: 4n * MiB, parameters: { preallocation: 'true' } }, mode: 'block', capacity: 4n * MiB },
  ])('makes $what', async ({ req, mode, capacity }) => {
    const a = await h.ctl('CreateVolume', createRequest(req));
    expect(a.code, a.message).toBeUndefined();
    expect(a.res!.volume).toMatchObject({ volume_id: volumeId(req.name), capacity_bytes: capacity.toString(), volume_context: { storagePool: 'default' } });
    const rec = h.volumes.get(volumeId(req.name))!;
    expect(rec.mode).toBe(mode);
    const data = path.join(h.poolRoot, rec.data);
    if (mode === 'block') expect(statSync(data).size).toBe(Number(capacity));
    else {
      expect(statSync(data).isDirectory()).toBe(true);
      // The size is enforced by the filesystem's project quota: a project of its own, limited to the capacity.
      const project = h.host.projects.get(path.join(h.poolRoot, '.hpp', 'tmp', req.name));
      expect(project).toBeDefined();
      expect(h.host.projectLimits.get(project!)).toBe(capacity);
    }
  });

  it('gives disk.img to qemu and preallocates what is asked for', async () => {
    await h.ctl('CreateVolume', createRequest({ name: 'vm2', required: 64n * MiB, parameters: { createDiskImage: 'true', preallocation: 'true' } }));
    const rec = h.volumes.get(volumeId('vm2'))!;
    expect(rec.preallocation).toBe('fallocate');
    expect([...h.host.owners.values()]).toEqual([{ uid: 107, gid: 107 }]);
    expect(h.host.preallocated).toHaveLength(1);
    expect(existsSync(path.join(h.poolRoot, rec.data, 'disk.img'))).toBe(true);
  });

  it('answers a retry with the same volume, and refuses the name with other properties', async () => {
    const first = await h.ctl('CreateVolume', createRequest({ name: 'same', required: 10n * MiB }));
    const again = await h.ctl('CreateVolume', createRequest({ name: 'same', required: 10n * MiB }));
    expect(again).toEqual(first);
    expect(h.volumes.list()).toHaveLength(1);
    for (const [req, why] of [
      [createRequest({ name: 'same', required: 20n * MiB }), /capacity 10485760/],
      [createRequest({ name: 'same', kind: 'block', required: 10n * MiB }), /volume mode filesystem/],
      [createRequest({ name: 'same', required: 10n * MiB, parameters: { preallocation: 'true' } }), /other parameters/],
    ] as const) {
      const a = await h.ctl('CreateVolume', req);
      expect(a.code).toBe('ALREADY_EXISTS');
      expect(a.message).toMatch(why);
    }
  });

  it.each([
    { what: 'no name', req: createRequest({ name: '' }), code: 'INVALID_ARGUMENT', message: /name is required/ },
    { what: 'a bad name', req: createRequest({ name: 'a/b' }), code: 'INVALID_ARGUMENT', message: /is not allowed/ },
    { what: 'an unknown parameter', req: createRequest({ name: 'p1', parameters: { storagepool: 'x' } }), code: 'INVALID_ARGUMENT', message: /unknown parameter "storagepool"/ },
    { what: 'an unknown pool', req: createRequest({ name: 'p2', parameters: { storagePool: 'nope' } }), code: 'INVALID_ARGUMENT', message: /storage pool "nope" is not configured/ },
    { what: 'a bad boolean', req: createRequest({ name: 'p3', parameters: { preallocation: 'yes' } }), code: 'INVALID_ARGUMENT', message: /must be "true" or "false"/ },
    { what: 'required above limit', req: createRequest({ name: 'p4', required: 2n * MiB, limit: MiB }), code: 'INVALID_ARGUMENT', message: /is above limit_bytes/ },
    { what: 'a disk image on a block volume', req: createRequest({ name: 'p5', kind: 'block', parameters: { createDiskImage: 'true' } }), code: 'INVALID_ARGUMENT', message: /Filesystem volumes only/ },
    { what: 'more than the pool holds', req: createRequest({ name: 'p6', required: 11n * GiB }), code: 'OUT_OF_RANGE', message: /more than pool default holds/ },
    { what: 'more than the pool can promise now', req: createRequest({ name: 'p7', required: 9n * GiB }), code: 'RESOURCE_EXHAUSTED', message: /can promise/ },
    { what: 'a source snapshot that does not exist', req: createRequest({ name: 'p8', source: { snapshot: volumeId('nosnap') } }), code: 'NOT_FOUND', message: /does not exist/ },
    { what: 'a source on another node', req: createRequest({ name: 'p9', source: { volume: 'n2:default:v' } }), code: 'FAILED_PRECONDITION', message: /lives on node n2/ },
  ])('refuses $what with $code', async ({ req, code, message }) => {
    const a = await h.ctl('CreateVolume', req);
    expect(a.code).toBe(code);
    expect(a.message).toMatch(message);
    expect(h.volumes.list()).toEqual([]);
    // Nothing was left behind in the pool's build area.
    expect(readdirSync(path.join(h.poolRoot, '.hpp', 'tmp'))).toEqual([]);
  });

  it('restores a snapshot and clones a volume, larger than their source', async () => {
    await h.ctl('CreateVolume', createRequest({ name: 'src', required: 10n * MiB }));
    writeFileSync(path.join(h.poolRoot, 'src', 'data'), 'hello');
    const snap = await h.ctl('CreateSnapshot', snapshotReq('s1', volumeId('src')));
    expect(snap.code, snap.message).toBeUndefined();
    const restored = await h.ctl('CreateVolume', createRequest({ name: 'restored', required: 20n * MiB, source: { snapshot: snap.res!.snapshot!.snapshot_id } }));
    const clone = await h.ctl('CreateVolume', createRequest({ name: 'clone', source: { volume: volumeId('src') } }));
    expect(restored.res!.volume).toMatchObject({ capacity_bytes: String(20n * MiB), content_source: { snapshot: { snapshot_id: volumeId('s1') } } });
    // No size asked for: the clone takes its source's.
    expect(clone.res!.volume).toMatchObject({ capacity_bytes: String(10n * MiB), content_source: { volume: { volume_id: volumeId('src') } } });
    for (const name of ['restored', 'clone']) expect(h.volumes.get(volumeId(name))!.contentSource?.method).toBe('reflink');
    const tooSmall = await h.ctl('CreateVolume', createRequest({ name: 'small', required: MiB, source: { volume: volumeId('src') } }));
    expect(tooSmall.code).toBe('OUT_OF_RANGE');
  });
});

describe('DeleteVolume', () => {
  it('deletes a volume, and answers OK for an unknown or foreign-looking id', async () => {
    await h.ctl('CreateVolume', createRequest({ name: 'gone', required: MiB }));
    for (const id of [volumeId('gone'), volumeId('gone'), volumeId('never'), 'not-an-id']) {
      const a = await h.ctl('DeleteVolume', deleteReq(id));
      expect(a, id).toEqual({ res: {} });
    }
    expect(h.volumes.list()).toEqual([]);
    expect(existsSync(path.join(h.poolRoot, 'gone'))).toBe(false);
    // Its project's limit is lifted (projects outlive their directories).
    expect([...h.host.projectLimits.values()]).toEqual([0n]);
  });

  it.each([
    { what: 'no id', id: '', code: 'INVALID_ARGUMENT' },
    { what: 'a volume of another node', id: 'n2:default:v', code: 'FAILED_PRECONDITION' },
  ])('refuses $what with $code', async ({ id, code }) => {
    expect((await h.ctl('DeleteVolume', deleteReq(id))).code).toBe(code);
  });

  it('refuses a published volume with FAILED_PRECONDITION, and deletes it once unpublished', async () => {
    await h.ctl('CreateVolume', createRequest({ name: 'pub', required: MiB }));
    const target = path.join(h.dir, 'pods', 'p1', 'volume');
    mkdirSync(path.dirname(target), { recursive: true });
    const published = await h.nd('NodePublishVolume', publishReq(volumeId('pub'), target));
    expect(published.code, published.message).toBeUndefined();
    expect(h.host.mountPoints()).toContain(target);

    const refused = await h.ctl('DeleteVolume', deleteReq(volumeId('pub')));
    expect(refused.code).toBe('FAILED_PRECONDITION');
    expect(refused.message).toContain(target);

    expect((await h.nd('NodeUnpublishVolume', { volume_id: volumeId('pub'), target_path: target })).code).toBeUndefined();
    expect(h.host.mountPoints()).not.toContain(target);
    expect(await h.ctl('DeleteVolume', deleteReq(volumeId('pub')))).toEqual({ res: {} });
  });

  it('detaches the loop devices of a block volume it deletes', async () => {
    await h.ctl('CreateVolume', createRequest({ name: 'blk', kind: 'block', required: MiB }));
    const image = path.join(h.poolRoot, h.volumes.get(volumeId('blk'))!.data);
    await h.host.loops.withTable((t) => t.attach(image, { readOnly: false }));
    expect(h.host.loopDevices.size).toBe(1);
    expect(await h.ctl('DeleteVolume', deleteReq(volumeId('blk')))).toEqual({ res: {} });
    expect(h.host.loopDevices.size).toBe(0);
    expect(h.host.calls).toContain('losetup --detach /dev/loop0');
  });
});

describe('snapshots', () => {
  it('creates, lists, filters and deletes snapshots; a retry is answered with the same one', async () => {
    await h.ctl('CreateVolume', createRequest({ name: 'v1', required: MiB }));
    await h.ctl('CreateVolume', createRequest({ name: 'v2', kind: 'block', required: MiB }));
    const s1 = await h.ctl('CreateSnapshot', snapshotReq('s1', volumeId('v1')));
    const s2 = await h.ctl('CreateSnapshot', snapshotReq('s2', volumeId('v2')));
    expect(s1.res!.snapshot).toMatchObject({ snapshot_id: volumeId('s1'), source_volume_id: volumeId('v1'), size_bytes: String(MiB), ready_to_use: true });
    expect(await h.ctl('CreateSnapshot', snapshotReq('s1', volumeId('v1')))).toEqual(s1);

    const ids = async (o: Parameters<typeof listSnapshotsReq>[0]) => (await h.ctl('ListSnapshots', listSnapshotsReq(o))).res!.entries!.map((e) => e.snapshot!.snapshot_id);
    expect(await ids({})).toEqual([volumeId('s1'), volumeId('s2')]);
    expect(await ids({ source_volume_id: volumeId('v2') })).toEqual([volumeId('s2')]);
    expect(await ids({ snapshot_id: volumeId('s1') })).toEqual([volumeId('s1')]);
    expect(await ids({ snapshot_id: volumeId('none') })).toEqual([]);

    expect(s2.res!.snapshot!.snapshot_id).toBe(volumeId('s2'));
    for (const id of [volumeId('s2'), volumeId('s2'), 'garbage']) expect(await h.ctl('DeleteSnapshot', { snapshot_id: id, secrets: {} })).toEqual({ res: {} });
    expect(await ids({})).toEqual([volumeId('s1')]);
  });

  it.each([
    { what: 'a name taken by a snapshot of another volume', req: snapshotReq('taken', volumeId('other')), code: 'ALREADY_EXISTS' },
    { what: 'an unknown source', req: snapshotReq('s9', volumeId('nope')), code: 'NOT_FOUND' },
    { what: 'no source', req: snapshotReq('s9', ''), code: 'INVALID_ARGUMENT' },
    { what: 'a parameter', req: snapshotReq('s9', volumeId('base'), { x: 'y' }), code: 'INVALID_ARGUMENT' },
    { what: 'a source on another node', req: snapshotReq('s9', 'n2:default:v'), code: 'FAILED_PRECONDITION' },
  ])('refuses $what with $code', async ({ req, code }) => {
    await h.ctl('CreateVolume', createRequest({ name: 'base', required: MiB }));
    await h.ctl('CreateVolume', createRequest({ name: 'other', required: MiB }));
    await h.ctl('CreateSnapshot', snapshotReq('taken', volumeId('base')));
    expect((await h.ctl('CreateSnapshot', req)).code).toBe(code);
  });

  it('keeps a volume\'s snapshots when the volume is deleted', async () => {
    await h.ctl('CreateVolume', createRequest({ name: 'v', required: MiB }));
    await h.ctl('CreateSnapshot', snapshotReq('keep', volumeId('v')));
    expect(await h.ctl('DeleteVolume', deleteReq(volumeId('v')))).toEqual({ res: {} });
    expect((await h.ctl('ListSnapshots', listSnapshotsReq())).res!.entries).toHaveLength(1);
  });
});

describe('ControllerExpandVolume', () => {
  it.each([
    { what: 'a filesystem volume: its project limit', kind: 'mount' as const, to: 50n * MiB, capacity: 50n * MiB, nodeExpansion: false },
    { what: 'a block volume: its image, rounded to MiB', kind: 'block' as const, to: 50n * MiB + 5n, capacity: 51n * MiB, nodeExpansion: true },
  ])('grows $what', async ({ kind, to, capacity, nodeExpansion }) => {
    await h.ctl('CreateVolume', createRequest({ name: 'x', kind, required: 10n * MiB }));
    const a = await h.ctl('ControllerExpandVolume', expandReq(volumeId('x'), to));
    expect(a).toEqual({ res: { capacity_bytes: capacity.toString(), node_expansion_required: nodeExpansion } });
    const rec = h.volumes.get(volumeId('x'))!;
    expect(rec.capacityBytes).toBe(capacity.toString());
    if (kind === 'block') expect(statSync(path.join(h.poolRoot, rec.data)).size).toBe(Number(capacity));
    else expect(h.host.projectLimits.get(rec.projectId!)).toBe(capacity);
    // Asking for what it has already is a no-op.
    expect(await h.ctl('ControllerExpandVolume', expandReq(volumeId('x'), to))).toEqual(a);
  });

  it.each([
    { what: 'a shrink', id: volumeId('e'), to: MiB, kind: null, code: 'OUT_OF_RANGE' },
    { what: 'an unknown volume', id: volumeId('none'), to: 20n * MiB, kind: null, code: 'NOT_FOUND' },
    { what: 'the wrong access type', id: volumeId('e'), to: 20n * MiB, kind: 'block' as const, code: 'INVALID_ARGUMENT' },
    { what: 'more than the pool can promise', id: volumeId('e'), to: 9n * GiB, kind: null, code: 'RESOURCE_EXHAUSTED' },
  ])('refuses $what with $code', async ({ id, to, kind, code }) => {
    await h.ctl('CreateVolume', createRequest({ name: 'e', required: 10n * MiB }));
    expect((await h.ctl('ControllerExpandVolume', expandReq(id, to, kind))).code).toBe(code);
    expect(h.volumes.get(volumeId('e'))!.capacityBytes).toBe(String(10n * MiB));
  });
});

describe('a cancelled call', () => {
  it('stops the preallocation of a volume being built and leaves nothing behind', async () => {
    h.host.preallocateHangs = true;
    const ac = new AbortController();
    const cx = { ...h.context(), signal: ac.signal };
    const pending = h.ctl('CreateVolume', createRequest({ name: 'slow', kind: 'block', required: MiB, parameters: { preallocation: 'true' } }), cx);
    setTimeout(() => ac.abort(new Error('the caller cancelled the call')), 20);
    const a = await pending;
    expect(a.message).toMatch(/cancelled/);
    expect(h.volumes.list()).toEqual([]);
    expect(readdirSync(path.join(h.poolRoot, '.hpp', 'tmp'))).toEqual([]);
    // The name is free again: the CO's retry builds the volume.
    h.host.preallocateHangs = false;
    expect((await h.ctl('CreateVolume', createRequest({ name: 'slow', kind: 'block', required: MiB, parameters: { preallocation: 'true' } }))).code).toBeUndefined();
  });
});

describe('restart', () => {
  it('loads the same volumes and snapshots again, finishing what a crash left', async () => {
    await h.ctl('CreateVolume', createRequest({ name: 'fs', required: 10n * MiB }));
    await h.ctl('CreateVolume', createRequest({ name: 'blk', kind: 'block', required: 2n * MiB }));
    await h.ctl('CreateSnapshot', snapshotReq('snap', volumeId('fs')));
    const volumesBefore = h.volumes.list();
    const snapshotsBefore = h.volumes.listSnapshots();
    await h.stop();

    // What a crash leaves: a build with no record in tmp/, a loop device over an image no volume owns.
    mkdirSync(path.join(h.poolRoot, '.hpp', 'tmp', 'half-built'));
    const stray = path.join(h.poolRoot, '.hpp', 'block', 'stray.img');
    writeFileSync(stray, '');
    await h.host.loops.withTable((t) => t.attach(stray, { readOnly: false }));

    await h.start();
    expect(h.volumes.list()).toEqual(volumesBefore);
    expect(h.volumes.listSnapshots()).toEqual(snapshotsBefore);
    expect(readdirSync(path.join(h.poolRoot, '.hpp', 'tmp'))).toEqual([]);
    expect(h.host.loopDevices.size).toBe(0);
    // New project ids go on from where the old ones stopped.
    await h.ctl('CreateVolume', createRequest({ name: 'fs2', required: MiB }));
    expect(h.volumes.get(volumeId('fs2'))!.projectId).toBeGreaterThan(h.volumes.get(volumeId('fs'))!.projectId!);
    // And the daemon's state answers calls as before.
    expect((await h.ctl('ListVolumes', { max_entries: 0, starting_token: '' })).res!.entries!.map((e) => e.volume!.volume_id)).toEqual([
      volumeId('blk'),
      volumeId('fs'),
      volumeId('fs2'),
    ]);
  });

  it('asks the OS for no tool run and no mount of its own', async () => {
    await h.ctl('CreateVolume', createRequest({ name: 'fs', required: MiB }));
    await h.ctl('CreateVolume', createRequest({ name: 'blk', kind: 'block', required: MiB }));
    await h.ctl('CreateSnapshot', snapshotReq('s', volumeId('fs')));
    await h.ctl('ControllerExpandVolume', expandReq(volumeId('fs'), 2n * MiB));
    await h.ctl('DeleteVolume', deleteReq(volumeId('blk')));
    expect(h.host.calls.filter((c) => !/^(xfs_quota|reflink|fallocate|chown) /.test(c))).toEqual([]);
  });
});

/** What csi-provisioner adds to the StorageClass parameters with --extra-create-metadata. */
const PVC_METADATA = { 'csi.storage.k8s.io/pvc/name': 'vm1-disk', 'csi.storage.k8s.io/pvc/namespace': 'vms', 'csi.storage.k8s.io/pv/name': 'pvc-1' };

describe('the PVC a volume is for', () => {
  it('is kept in the record (read back through the validator after a restart), not with the parameters', async () => {
    const a = await h.ctl('CreateVolume', createRequest({ name: 'pvc-1', required: MiB, parameters: { preallocation: 'false', ...PVC_METADATA } }));
    expect(a.code, a.message).toBeUndefined();
    const rec = h.volumes.get(volumeId('pvc-1'))!;
    expect(rec.pvc).toEqual({ namespace: 'vms', name: 'vm1-disk' });
    expect(rec.parameters).toEqual({ preallocation: 'false' });
    const file = path.join(h.poolRoot, '.hpp', 'volumes', 'pvc-1.json');
    expect(parseVolumeRecord(readFileSync(file, 'utf8'), { file, name: 'pvc-1', pool: 'default', root: h.poolRoot }).pvc).toEqual({ namespace: 'vms', name: 'vm1-disk' });
    await h.stop();
    await h.start();
    expect(h.volumes.get(volumeId('pvc-1'))!.pvc).toEqual({ namespace: 'vms', name: 'vm1-disk' });
  });

  it('plays no part in the comparison of a repeated CreateVolume: the retry, and one without the metadata, get the same volume', async () => {
    const req = () => createRequest({ name: 'pvc-1', required: MiB, parameters: { storagePool: 'default', ...PVC_METADATA } });
    const first = await h.ctl('CreateVolume', req());
    expect(first.code, first.message).toBeUndefined();
    expect(await h.ctl('CreateVolume', req())).toEqual(first);
    expect(await h.ctl('CreateVolume', createRequest({ name: 'pvc-1', required: MiB, parameters: { storagePool: 'default' } }))).toEqual(first);
    expect(h.volumes.list()).toHaveLength(1);
    // A volume made without it (an older driver, no --extra-create-metadata) answers a retry with it.
    await h.ctl('CreateVolume', createRequest({ name: 'old', required: MiB }));
    expect((await h.ctl('CreateVolume', createRequest({ name: 'old', required: MiB, parameters: PVC_METADATA }))).code).toBeUndefined();
    expect(h.volumes.get(volumeId('old'))!.pvc).toBeUndefined();
  });

  it.each([
    { what: 'a PVC name that is no Kubernetes name', parameters: { ...PVC_METADATA, 'csi.storage.k8s.io/pvc/name': 'VM1 disk' }, message: /csi.storage.k8s.io\/pvc\/name is not a Kubernetes object name: "VM1 disk"/ },
    { what: 'a namespace that is no Kubernetes namespace', parameters: { ...PVC_METADATA, 'csi.storage.k8s.io/pvc/namespace': 'a.b' }, message: /pvc\/namespace is not a Kubernetes namespace/ },
  ])('refuses $what with INVALID_ARGUMENT, making nothing', async ({ parameters, message }) => {
    const a = await h.ctl('CreateVolume', createRequest({ name: 'pvc-1', required: MiB, parameters }));
    expect(a).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });
    expect(h.volumes.list()).toEqual([]);
  });

  it('never refuses the other csi.storage.k8s.io/ keys, nor a PVC name without its namespace (kept nowhere then)', async () => {
    const a = await h.ctl('CreateVolume', createRequest({ name: 'p', required: MiB, parameters: { 'csi.storage.k8s.io/pv/name': 'p', 'csi.storage.k8s.io/pvc/name': 'c', 'csi.storage.k8s.io/fstype': 'xfs' } }));
    expect(a.code, a.message).toBeUndefined();
    expect(h.volumes.get(volumeId('p'))!.pvc).toBeUndefined();
  });
});

describe('the log of a Controller call', () => {
  it('names the PVC on the rpc line of every call about the volume, at the level of its answer', async () => {
    const cap = captureLog();
    const lh = await new HandlerHarness({ log: cap.log }).start();
    try {
      const made = await lh.wrapped('controller', 'CreateVolume', createRequest({ name: 'pvc-1', required: MiB, parameters: PVC_METADATA }));
      expect(made.err).toBeUndefined();
      const refused = await lh.wrapped('controller', 'CreateVolume', createRequest({ name: 'pvc-2', required: 11n * GiB, parameters: { ...PVC_METADATA, 'csi.storage.k8s.io/pvc/name': 'too-big' } }));
      expect(refused.err?.details).toMatch(/more than pool default holds/);
      await lh.wrapped('controller', 'ControllerExpandVolume', expandReq(volumeId('pvc-1'), 2n * MiB));
      await lh.wrapped('controller', 'CreateSnapshot', snapshotReq('snap-1', volumeId('pvc-1')));
      await lh.wrapped('controller', 'DeleteVolume', deleteReq(volumeId('pvc-1')));
      const rpc = cap.find('rpc').map((l) => ({ method: l.method, level: l.level, code: l.code, pvc: l.pvc, requestId: typeof l.requestId }));
      expect(rpc).toEqual([
        { method: 'CreateVolume', level: 30, code: 'OK', pvc: 'vms/vm1-disk', requestId: 'string' },
        { method: 'CreateVolume', level: 40, code: 'OUT_OF_RANGE', pvc: 'vms/too-big', requestId: 'string' },
        { method: 'ControllerExpandVolume', level: 30, code: 'OK', pvc: 'vms/vm1-disk', requestId: 'string' },
        { method: 'CreateSnapshot', level: 30, code: 'OK', pvc: 'vms/vm1-disk', requestId: 'string' },
        { method: 'DeleteVolume', level: 30, code: 'OK', pvc: 'vms/vm1-disk', requestId: 'string' },
      ]);
      expect(new Set(cap.find('rpc').map((l) => l.requestId)).size).toBe(5);
    } finally {
      await lh.dispose();
    }
  });
});
