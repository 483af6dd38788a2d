/**
 * Volumes KubeVirt's hostpath-provisioner (HPP) made, served in place (src/volumes/hpp-volumes.ts)
 * through the real Controller and Node handlers over a FakeHost: found under their PV names, published,
 * measured, snapshotted, cloned, expanded and deleted; their data never moved to make them ours, a
 * record written (origin hpp) only once something about them changes.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseVolumeRecord } from '../../../src/format/records.js';
import { capability, createRequest, GiB, HandlerHarness, MiB, volumeId } from '../../helpers/handler-harness.js';
import { plantHppPool } from '../../helpers/hpp-pool.js';

const A = 'pvc-0a0a0a0a-1111-2222-3333-444444444444';
const B = 'pvc-0b0b0b0b-1111-2222-3333-444444444444';
const SNAP = 'snapshot-5e5e5e5e-1111-2222-3333-444444444444';

let h: HandlerHarness;
beforeEach(() => {
  h = new HandlerHarness();
  plantHppPool(h.poolRoot, {
    volumes: [
      { name: A, files: { 'marker.txt': 'volume A\n' }, diskImageBytes: 64 * 1024 * 1024 },
      { name: B, files: { 'marker.txt': 'volume B\n' } },
    ],
    snapshots: [{ id: SNAP, source: A }],
  });
});
afterEach(async () => {
  await h.dispose();
});

const hpp = (name: string) => path.join(h.poolRoot, 'csi', name);
const listReq = { max_entries: 0, starting_token: '' };
const listSnapshotsReq = (o: { snapshot_id?: string; source_volume_id?: string } = {}) => ({
  max_entries: 0,
  starting_token: '',
  source_volume_id: o.source_volume_id ?? '',
  snapshot_id: o.snapshot_id ?? '',
  secrets: {},
});
function publishReq(volume_id: string, target_path: string) {
  return {
    volume_id,
    publish_context: {},
    staging_target_path: '',
    target_path,
    volume_capability: capability('mount'),
    readonly: false,
    secrets: {},
    // As HPP's CreateVolume answered: the StorageClass parameters.
    volume_context: { storagePool: 'default' },
  } as never;
}
function podTarget(pod: string): string {
  const t = path.join(h.dir, 'pods', pod, 'volumes', 'v');
  mkdirSync(path.dirname(t), { recursive: true });
  return t;
}
const recordOf = (name: string) => path.join(h.poolRoot, '.hpp', 'volumes', `${name}.json`);

describe('an HPP pool, loaded', () => {
  it('lists the HPP volumes under their PV names, capacity unknown (0), and the HPP snapshot with its source', async () => {
    await h.start();
    const vols = await h.ctl('ListVolumes', listReq as never);
    expect(vols.code, vols.message).toBeUndefined();
    expect(vols.res!.entries!.map((e) => [e.volume!.volume_id, e.volume!.capacity_bytes])).toEqual([
      [A, '0'],
      [B, '0'],
    ]);
    const snaps = await h.ctl('ListSnapshots', listSnapshotsReq({ source_volume_id: A }) as never);
    expect(snaps.res!.entries!.map((e) => [e.snapshot!.snapshot_id, e.snapshot!.source_volume_id, e.snapshot!.ready_to_use])).toEqual([[SNAP, A, true]]);
    // Loading wrote nothing: no record is made up for a volume nothing has changed yet.
    expect(readdirSync(path.join(h.poolRoot, '.hpp', 'volumes'))).toEqual([]);
    expect(readdirSync(path.join(h.poolRoot, 'csi')).sort()).toEqual([A, B, 'snapshots'].sort());
  });

  it('answers ValidateVolumeCapabilities for an HPP volume', async () => {
    await h.start();
    const a = await h.ctl('ValidateVolumeCapabilities', { volume_id: A, volume_capabilities: [capability('mount')], volume_context: {}, parameters: {}, secrets: {}, mutable_parameters: {} } as never);
    expect(a.res?.confirmed, a.message).toBeTruthy();
  });
});

describe('NodePublishVolume / NodeUnpublishVolume of an HPP volume', () => {
  it('bind-mounts its directory where HPP left it, recording it (origin hpp) first; the publication survives a restart', async () => {
    await h.start();
    const target = podTarget('vm1');
    const a = await h.nd('NodePublishVolume', publishReq(A, target));
    expect(a.code, a.message).toBeUndefined();
    expect(h.host.calls).toContain(`bind ${hpp(A)} ${target}`);
    const rec = parseVolumeRecord(readFileSync(recordOf(A), 'utf8'), { file: recordOf(A), name: A, pool: 'default', root: h.poolRoot });
    expect(rec).toMatchObject({ id: A, name: A, origin: 'hpp', data: `csi/${A}`, mode: 'filesystem', capacityBytes: '0' });
    expect(readFileSync(path.join(hpp(A), 'marker.txt'), 'utf8')).toBe('volume A\n');

    await h.stop();
    await h.start();
    expect(Object.keys(h.volumes.get(A)!.publications)).toEqual([target]);
    const stats = await h.nd('NodeGetVolumeStats', { volume_id: A, volume_path: target, staging_target_path: '' } as never);
    expect(stats.code, stats.message).toBeUndefined();
    const un = await h.nd('NodeUnpublishVolume', { volume_id: A, target_path: target } as never);
    expect(un.code, un.message).toBeUndefined();
    expect(h.host.mountPoints()).not.toContain(target);
    expect(existsSync(path.join(hpp(A), 'marker.txt'))).toBe(true);
  });

  it('takes over a publication HPP made before the swap: a retried publish adds no mount, unpublish takes it down', async () => {
    const target = podTarget('running-vm');
    // A VM that kept running across the swap: its bind mount was made by HPP, unknown to us.
    await h.host.mounts.bind(hpp(B), target, { readOnly: false });
    await h.start();
    const calls = h.host.calls.length;
    expect((await h.nd('NodePublishVolume', publishReq(B, target))).code).toBeUndefined();
    expect(h.host.calls.slice(calls).filter((c) => c.startsWith('bind '))).toEqual([]);
    expect(Object.keys(h.volumes.get(B)!.publications)).toEqual([target]);
    expect((await h.nd('NodeUnpublishVolume', { volume_id: B, target_path: target } as never)).code).toBeUndefined();
    expect(h.host.mountPoints()).not.toContain(target);
  });

  it('unpublishes an HPP publication it never recorded (the VM stops after the swap)', async () => {
    const target = podTarget('stopping-vm');
    await h.host.mounts.bind(hpp(A), target, { readOnly: false });
    await h.start();
    const a = await h.nd('NodeUnpublishVolume', { volume_id: A, target_path: target } as never);
    expect(a.code, a.message).toBeUndefined();
    expect(h.host.mountPoints()).not.toContain(target);
  });

  it("removes HPP's ephemeral inline volume (kubelet's csi-<sha256> id) when its pod's mount is taken down, as HPP did", async () => {
    const eph = `csi-${'ab12'.repeat(16)}`;
    plantHppPool(h.poolRoot, { volumes: [{ name: eph, files: { scratch: 'x' } }] });
    const target = podTarget('eph-pod');
    await h.host.mounts.bind(hpp(eph), target, { readOnly: false });
    await h.start();
    const a = await h.nd('NodeUnpublishVolume', { volume_id: eph, target_path: target } as never);
    expect(a.code, a.message).toBeUndefined();
    await h.volumes.idle();
    expect(existsSync(hpp(eph))).toBe(false);
    expect(existsSync(recordOf(eph))).toBe(false);
    // A persistent HPP volume unpublished the same way stays.
    const t2 = podTarget('vm-pod');
    await h.host.mounts.bind(hpp(B), t2, { readOnly: false });
    expect((await h.nd('NodeUnpublishVolume', { volume_id: B, target_path: t2 } as never)).code).toBeUndefined();
    expect(existsSync(path.join(hpp(B), 'marker.txt'))).toBe(true);
  });

  it('finds an HPP volume whose directory appeared after the pool was loaded', async () => {
    await h.start();
    const late = 'pvc-1a7e1a7e-1111-2222-3333-444444444444';
    plantHppPool(h.poolRoot, { volumes: [{ name: late, files: { x: 'late\n' } }] });
    const target = podTarget('late');
    const a = await h.nd('NodePublishVolume', publishReq(late, target));
    expect(a.code, a.message).toBeUndefined();
    expect(h.host.calls).toContain(`bind ${hpp(late)} ${target}`);
  });

  it('answers NOT_FOUND for an id no pool holds, and for HPP volumes in a pool with hppVolumes "none"', async () => {
    await h.start();
    expect((await h.nd('NodePublishVolume', publishReq('pvc-nothing-here', podTarget('x')))).code).toBe('NOT_FOUND');
    await h.stop();
    await h.start({ hppVolumes: 'none' });
    expect((await h.nd('NodePublishVolume', publishReq(A, podTarget('y')))).code).toBe('NOT_FOUND');
    expect((await h.ctl('ListVolumes', listReq as never)).res!.entries).toEqual([]);
  });
});

describe('DeleteVolume of an HPP volume', () => {
  it('deletes its data (committed by its record, then the trash), and a retry answers OK', async () => {
    await h.start();
    const a = await h.ctl('DeleteVolume', { volume_id: B, secrets: {} });
    expect(a.code, a.message).toBeUndefined();
    await h.volumes.idle();
    expect(existsSync(hpp(B))).toBe(false);
    expect(existsSync(recordOf(B))).toBe(false);
    expect(readdirSync(path.join(h.poolRoot, '.hpp', 'trash'))).toEqual([]);
    expect(existsSync(hpp(A))).toBe(true);
    expect((await h.ctl('DeleteVolume', { volume_id: B, secrets: {} })).code).toBeUndefined();
  });

  it('refuses one that is published with FAILED_PRECONDITION, keeping its data', async () => {
    await h.start();
    const target = podTarget('busy');
    expect((await h.nd('NodePublishVolume', publishReq(B, target))).code).toBeUndefined();
    expect((await h.ctl('DeleteVolume', { volume_id: B, secrets: {} })).code).toBe('FAILED_PRECONDITION');
    expect(readFileSync(path.join(hpp(B), 'marker.txt'), 'utf8')).toBe('volume B\n');
  });

  it('answers UNAVAILABLE, not OK, for an id of HPP form while the pool that may hold it is not ready', async () => {
    rmSync(h.poolRoot, { recursive: true });
    await h.start();
    const a = await h.ctl('DeleteVolume', { volume_id: B, secrets: {} });
    expect(a.code).toBe('UNAVAILABLE');
    expect(a.message).toMatch(/not ready/);
    // An id that can name nothing at all is still a no-op.
    expect((await h.ctl('DeleteVolume', { volume_id: 'not/a volume', secrets: {} })).code).toBeUndefined();
  });
});

describe('snapshots, restores and clones', () => {
  it('snapshots an HPP volume, restores the snapshot and clones the volume, each with its data', async () => {
    await h.start();
    const snap = await h.ctl('CreateSnapshot', { name: 'snap-of-a', source_volume_id: A, secrets: {}, parameters: {} });
    expect(snap.code, snap.message).toBeUndefined();
    expect(snap.res!.snapshot!.source_volume_id).toBe(A);
    const restored = await h.ctl('CreateVolume', createRequest({ name: 'restored', required: 1n * GiB, source: { snapshot: snap.res!.snapshot!.snapshot_id } }));
    expect(restored.code, restored.message).toBeUndefined();
    expect(readFileSync(path.join(h.poolRoot, 'restored', 'marker.txt'), 'utf8')).toBe('volume A\n');
    const clone = await h.ctl('CreateVolume', createRequest({ name: 'clone', required: 1n * GiB, source: { volume: A } }));
    expect(clone.code, clone.message).toBeUndefined();
    expect(clone.res!.volume!.content_source).toEqual({ volume: { volume_id: A } });
    expect(readFileSync(path.join(h.poolRoot, 'clone', 'marker.txt'), 'utf8')).toBe('volume A\n');
    expect(existsSync(path.join(h.poolRoot, 'clone', 'disk.img'))).toBe(true);
    // The source is where it was.
    expect(readFileSync(path.join(hpp(A), 'marker.txt'), 'utf8')).toBe('volume A\n');
  });

  it("restores HPP's own snapshot, then deletes it with its directory", async () => {
    await h.start();
    const restored = await h.ctl('CreateVolume', createRequest({ name: 'from-hpp-snap', required: 128n * MiB, source: { snapshot: SNAP } }));
    expect(restored.code, restored.message).toBeUndefined();
    expect(readFileSync(path.join(h.poolRoot, 'from-hpp-snap', 'marker.txt'), 'utf8')).toBe('volume A\n');
    expect((await h.ctl('DeleteSnapshot', { snapshot_id: SNAP, secrets: {} })).code).toBeUndefined();
    await h.volumes.idle();
    expect(existsSync(path.join(h.poolRoot, 'csi', 'snapshots', SNAP))).toBe(false);
    expect((await h.ctl('ListSnapshots', listSnapshotsReq({ snapshot_id: SNAP }) as never)).res!.entries).toEqual([]);
    expect((await h.ctl('DeleteSnapshot', { snapshot_id: SNAP, secrets: {} })).code).toBeUndefined();
    expect(existsSync(hpp(A))).toBe(true);
  });
});

describe('ControllerExpandVolume of an HPP volume', () => {
  it('records the size an expansion asks for and limits the directory as it is with a project quota', async () => {
    await h.start();
    const a = await h.ctl('ControllerExpandVolume', { volume_id: A, capacity_range: { required_bytes: String(2n * GiB), limit_bytes: '0' }, secrets: {}, volume_capability: null });
    expect(a.code, a.message).toBeUndefined();
    expect(a.res).toMatchObject({ capacity_bytes: String(2n * GiB), node_expansion_required: false });
    const rec = h.volumes.get(A)!;
    expect(rec.projectId).toBeDefined();
    expect(h.host.projects.get(hpp(A))).toBe(rec.projectId);
    expect(h.host.projectLimits.get(rec.projectId!)).toBe(2n * GiB);
    await h.stop();
    await h.start();
    expect((await h.ctl('ListVolumes', listReq as never)).res!.entries!.find((e) => e.volume!.volume_id === A)!.volume!.capacity_bytes).toBe(String(2n * GiB));
  });

  it('on btrfs records the size and changes no qgroup: an HPP directory is no subvolume', async () => {
    rmSync(h.dir, { recursive: true, force: true });
    h = new HandlerHarness({ fs: { type: 'btrfs', quota: true } });
    plantHppPool(h.poolRoot, { volumes: [{ name: A }] });
    await h.start();
    const a = await h.ctl('ControllerExpandVolume', { volume_id: A, capacity_range: { required_bytes: String(GiB), limit_bytes: '0' }, secrets: {}, volume_capability: null });
    expect(a.code, a.message).toBeUndefined();
    expect(h.host.calls.filter((c) => c.includes('qgroup') || c.includes('limit'))).toEqual([]);
    expect(h.volumes.get(A)!.capacityBytes).toBe(String(GiB));
  });
});

describe('names HPP volumes have', () => {
  it('refuses a new volume of an HPP volume name with ALREADY_EXISTS', async () => {
    await h.start();
    const a = await h.ctl('CreateVolume', createRequest({ name: A, required: 8n * MiB }));
    expect(a.code).toBe('ALREADY_EXISTS');
    expect(a.message).toMatch(/hostpath-provisioner/);
  });

  it('takes no volume of ours named csi for the HPP directory', async () => {
    rmSync(path.join(h.poolRoot, 'csi'), { recursive: true });
    await h.start();
    expect((await h.ctl('CreateVolume', createRequest({ name: 'csi', required: 8n * MiB }))).code).toBeUndefined();
    mkdirSync(path.join(h.poolRoot, 'csi', 'pvc-inside-our-volume'));
    await h.stop();
    await h.start();
    expect((await h.ctl('ListVolumes', listReq as never)).res!.entries!.map((e) => e.volume!.volume_id)).toEqual([volumeId('csi')]);
  });

  it('serves HPP volumes directly in the pool root with hppVolumes ".", beside volumes of ours', async () => {
    rmSync(path.join(h.poolRoot, 'csi'), { recursive: true });
    plantHppPool(h.poolRoot, { dir: '.', volumes: [{ name: B, files: { 'marker.txt': 'root\n' } }] });
    await h.start({ hppVolumes: '.' });
    expect((await h.ctl('CreateVolume', createRequest({ name: 'mine', required: 8n * MiB }))).code).toBeUndefined();
    await h.stop();
    await h.start({ hppVolumes: '.' });
    expect((await h.ctl('ListVolumes', listReq as never)).res!.entries!.map((e) => e.volume!.volume_id).sort()).toEqual([B, volumeId('mine')].sort());
    const target = podTarget('root');
    expect((await h.nd('NodePublishVolume', publishReq(B, target))).code).toBeUndefined();
    expect(h.host.calls).toContain(`bind ${path.join(h.poolRoot, B)} ${target}`);
  });
});
