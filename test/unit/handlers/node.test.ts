/**
 * The Node handlers (src/csi/node.ts over src/volumes/node-volumes.ts), in-process over a FakeHost:
 * publish, unpublish, stats and node expansion, table-driven, with the codes the request wrapper
 * answers. No root, no mount: FakeHost's mount table and loop devices are the OS here.
 */
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ToolContext } from '../../../src/system/exec.js';
import { capability, createRequest, HandlerHarness, MiB, volumeId } from '../../helpers/handler-harness.js';
import { captureLog } from '../../helpers/log-capture.js';

let h: HandlerHarness;
beforeEach(async () => {
  h = await new HandlerHarness().start();
  expect((await h.ctl('CreateVolume', createRequest({ name: 'fs', required: 8n * MiB }))).code).toBeUndefined();
  expect((await h.ctl('CreateVolume', createRequest({ name: 'blk', kind: 'block', required: 8n * MiB }))).code).toBeUndefined();
});
afterEach(async () => {
  await h.dispose();
});

type Cap = ReturnType<typeof capability> | null;

function publishReq(o: { volume_id?: string; target_path: string; cap?: Cap; readonly?: boolean; flags?: string[]; mode?: string }) {
  let cap: Cap = o.cap === undefined ? capability('mount') : o.cap;
  if (cap && o.flags) cap = { ...cap, mount: { fs_type: '', mount_flags: o.flags, volume_mount_group: '' } } as Cap;
  if (cap && o.mode) cap = { ...cap, access_mode: { mode: o.mode } } as Cap;
  return {
    volume_id: o.volume_id ?? volumeId('fs'),
    publish_context: {},
    staging_target_path: '',
    target_path: o.target_path,
    volume_capability: cap,
    readonly: o.readonly ?? false,
    secrets: {},
    volume_context: {},
  } as never;
}

/** A pod's volume directory under the harness's dir, its parent made (as kubelet does). */
function podTarget(pod: string): string {
  const t = path.join(h.dir, 'pods', pod, 'volumes', 'v');
  mkdirSync(path.dirname(t), { recursive: true });
  return t;
}

const statsReq = (volume_id: string, volume_path: string) => ({ volume_id, volume_path, staging_target_path: '' });
const expandReq = (volume_id: string, volume_path: string, required: bigint) => ({
  volume_id,
  volume_path,
  capacity_range: { required_bytes: String(required), limit_bytes: '0' },
  staging_target_path: '',
  volume_capability: null,
  secrets: {},
});

describe('NodePublishVolume', () => {
  it('bind-mounts a filesystem volume, records it, and answers a retry without a second mount', async () => {
    const target = podTarget('p1');
    const a = await h.nd('NodePublishVolume', publishReq({ target_path: target }));
    expect(a.code, a.message).toBeUndefined();
    expect(h.host.mountPoints().filter((m) => m === target)).toHaveLength(1);
    expect(Object.keys(h.volumes.get(volumeId('fs'))!.publications)).toEqual([target]);
    expect((await h.nd('NodePublishVolume', publishReq({ target_path: target }))).code).toBeUndefined();
    expect(h.host.mountPoints().filter((m) => m === target)).toHaveLength(1);
    expect(h.host.calls.filter((c) => c.startsWith('bind '))).toHaveLength(1);
  });

  it('publishes read-only with the allowed flags asked for', async () => {
    const target = podTarget('ro');
    const a = await h.nd('NodePublishVolume', publishReq({ target_path: target, readonly: true, flags: ['noexec', 'nosuid'] }));
    expect(a.code, a.message).toBeUndefined();
    expect(h.host.calls.find((c) => c.startsWith('bind '))).toMatch(/ ro noexec,nosuid$/);
    expect(h.volumes.get(volumeId('fs'))!.publications[target]).toMatchObject({ readOnly: true, mountFlags: ['noexec', 'nosuid'] });
  });

  it.each<{ what: string; req: () => object; code: string; message?: RegExp }>([
    { what: 'no volume_id', req: () => publishReq({ volume_id: '', target_path: podTarget('x') }), code: 'INVALID_ARGUMENT', message: /volume_id/ },
    { what: 'no target_path', req: () => publishReq({ target_path: '' }), code: 'INVALID_ARGUMENT', message: /target_path/ },
    { what: 'a relative target', req: () => publishReq({ target_path: 'pods/p/v' }), code: 'INVALID_ARGUMENT', message: /absolute/ },
    { what: 'a target with .. in it', req: () => publishReq({ target_path: `${h.dir}/pods/../pods/p/v` }), code: 'INVALID_ARGUMENT', message: /normalised/ },
    { what: 'a target with a NUL byte', req: () => publishReq({ target_path: `${h.dir}/pods/p\0/v` }), code: 'INVALID_ARGUMENT' },
    { what: 'a target inside the pool', req: () => publishReq({ target_path: path.join(h.poolRoot, 'x') }), code: 'INVALID_ARGUMENT', message: /overlaps storage pool/ },
    { what: 'a target around the pool', req: () => publishReq({ target_path: h.dir }), code: 'INVALID_ARGUMENT', message: /overlaps storage pool/ },
    { what: 'no capability', req: () => publishReq({ target_path: podTarget('x'), cap: null }), code: 'INVALID_ARGUMENT', message: /volume_capability/ },
    { what: 'a multi-node access mode', req: () => publishReq({ target_path: podTarget('x'), mode: 'MULTI_NODE_MULTI_WRITER' }), code: 'INVALID_ARGUMENT', message: /access mode/ },
    { what: 'a mount flag that is not allowed', req: () => publishReq({ target_path: podTarget('x'), flags: ['bind,remount'] }), code: 'INVALID_ARGUMENT', message: /mount flag/ },
    { what: 'a volume this node does not have', req: () => publishReq({ volume_id: volumeId('nope'), target_path: podTarget('x') }), code: 'NOT_FOUND' },
    { what: 'a block volume as a mount', req: () => publishReq({ volume_id: volumeId('blk'), target_path: podTarget('x') }), code: 'FAILED_PRECONDITION', message: /block volume/ },
    { what: 'a filesystem volume as a block device', req: () => publishReq({ target_path: podTarget('x'), cap: capability('block') }), code: 'FAILED_PRECONDITION' },
  ])('refuses $what with $code and mounts nothing', async ({ req, code, message }) => {
    const before = h.host.mountPoints();
    const a = await h.nd('NodePublishVolume', req() as never);
    expect(a.code, a.message).toBe(code);
    if (message) expect(a.message).toMatch(message);
    expect(h.host.mountPoints()).toEqual(before);
    expect(h.volumes.get(volumeId('fs'))!.publications).toEqual({});
  });

  it('refuses a target that is a symbolic link', async () => {
    const real = podTarget('real');
    mkdirSync(real);
    const link = path.join(h.dir, 'pods', 'link');
    symlinkSync(real, link);
    const a = await h.nd('NodePublishVolume', publishReq({ target_path: link }));
    expect(a.code).toBe('INVALID_ARGUMENT');
    expect(a.message).toMatch(/symbolic link/);
  });

  it('refuses a target where something else is mounted with ALREADY_EXISTS, leaving it alone', async () => {
    const target = podTarget('taken');
    mkdirSync(target);
    h.host.mountForeign(target);
    const a = await h.nd('NodePublishVolume', publishReq({ target_path: target }));
    expect(a.code).toBe('ALREADY_EXISTS');
    expect(h.host.mountPoints().filter((m) => m === target)).toHaveLength(1);
    expect(h.host.calls.some((c) => c.startsWith('umount'))).toBe(false);
  });

  it('keeps a single-writer volume to one target: a second one is FAILED_PRECONDITION', async () => {
    const first = podTarget('w1');
    expect((await h.nd('NodePublishVolume', publishReq({ target_path: first, mode: 'SINGLE_NODE_SINGLE_WRITER' }))).code).toBeUndefined();
    const second = await h.nd('NodePublishVolume', publishReq({ target_path: podTarget('w2'), mode: 'SINGLE_NODE_SINGLE_WRITER' }));
    expect(second.code).toBe('FAILED_PRECONDITION');
    expect(second.message).toContain(first);
    // Nor may a publication of another access mode join it.
    expect((await h.nd('NodePublishVolume', publishReq({ volume_id: volumeId('fs'), target_path: podTarget('w3') }))).code).toBe('FAILED_PRECONDITION');
  });

  it('publishes a block volume on a loop device of its image and records the device', async () => {
    const target = podTarget('dev');
    const a = await h.nd('NodePublishVolume', publishReq({ volume_id: volumeId('blk'), target_path: target, cap: capability('block') }));
    expect(a.code, a.message).toBeUndefined();
    expect(h.host.loopDevices.size).toBe(1);
    const [dev] = [...h.host.loopDevices.values()];
    expect(dev!.file).toBe(path.join(h.poolRoot, h.volumes.get(volumeId('blk'))!.data));
    expect(h.volumes.get(volumeId('blk'))!.publications[target]).toMatchObject({ device: dev!.name });
    expect(h.host.calls).toContain(`bind ${dev!.name} ${target}`);
  });
});

describe('NodeUnpublishVolume', () => {
  it('takes the mount off and forgets the publication; a retry is OK', async () => {
    const target = podTarget('u1');
    expect((await h.nd('NodePublishVolume', publishReq({ target_path: target }))).code).toBeUndefined();
    expect(await h.nd('NodeUnpublishVolume', { volume_id: volumeId('fs'), target_path: target })).toEqual({ res: {} });
    expect(h.host.mountPoints()).not.toContain(target);
    expect(h.volumes.get(volumeId('fs'))!.publications).toEqual({});
    expect(await h.nd('NodeUnpublishVolume', { volume_id: volumeId('fs'), target_path: target })).toEqual({ res: {} });
  });

  it('detaches the loop device of a block volume when its last publication goes', async () => {
    const target = podTarget('u2');
    expect((await h.nd('NodePublishVolume', publishReq({ volume_id: volumeId('blk'), target_path: target, cap: capability('block') }))).code).toBeUndefined();
    expect(await h.nd('NodeUnpublishVolume', { volume_id: volumeId('blk'), target_path: target })).toEqual({ res: {} });
    expect(h.host.loopDevices.size).toBe(0);
  });

  it.each<{ what: string; req: () => { volume_id: string; target_path: string }; code: string }>([
    { what: 'no volume_id', req: () => ({ volume_id: '', target_path: podTarget('x') }), code: 'INVALID_ARGUMENT' },
    { what: 'a relative target', req: () => ({ volume_id: volumeId('fs'), target_path: 'x/y' }), code: 'INVALID_ARGUMENT' },
    { what: 'a volume this node does not have', req: () => ({ volume_id: volumeId('nope'), target_path: podTarget('x') }), code: 'NOT_FOUND' },
  ])('refuses $what with $code', async ({ req, code }) => {
    expect((await h.nd('NodeUnpublishVolume', req())).code).toBe(code);
  });

  it('leaves a mount that is not the volume alone: FAILED_PRECONDITION', async () => {
    const target = podTarget('foreign');
    mkdirSync(target);
    h.host.mountForeign(target);
    const a = await h.nd('NodeUnpublishVolume', { volume_id: volumeId('fs'), target_path: target });
    expect(a.code).toBe('FAILED_PRECONDITION');
    expect(h.host.mountPoints()).toContain(target);
  });
});

describe('NodeGetVolumeStats', () => {
  it('reports a published volume by its quota, and a missing one as NOT_FOUND', async () => {
    const target = podTarget('s1');
    expect((await h.nd('NodePublishVolume', publishReq({ target_path: target }))).code).toBeUndefined();
    const a = await h.nd('NodeGetVolumeStats', statsReq(volumeId('fs'), target));
    expect(a.code, a.message).toBeUndefined();
    const bytes = a.res!.usage!.find((u) => u.unit === 'BYTES');
    expect(bytes?.total).toBe(String(8n * MiB));
    expect(a.res!.volume_condition).toMatchObject({ abnormal: false });
    expect((await h.nd('NodeGetVolumeStats', statsReq(volumeId('nope'), target))).code).toBe('NOT_FOUND');
    expect((await h.nd('NodeGetVolumeStats', statsReq(volumeId('fs'), podTarget('never')))).code).toBe('NOT_FOUND');
  });

  it.each([
    { what: 'no volume_path', path: '', code: 'INVALID_ARGUMENT' },
    { what: 'a volume_path with a NUL byte', path: '/a\0/b', code: 'INVALID_ARGUMENT' },
    // No volume is at a relative path: NOT_FOUND, as the spec asks and csi-sanity checks.
    { what: 'a relative volume_path', path: 'a/b', code: 'NOT_FOUND' },
  ])('refuses $what with $code', async ({ path: p, code }) => {
    expect((await h.nd('NodeGetVolumeStats', statsReq(volumeId('fs'), p))).code).toBe(code);
  });
});

describe('NodeExpandVolume', () => {
  it('refreshes the loop devices of a grown block volume and answers its capacity', async () => {
    const target = podTarget('e1');
    expect((await h.nd('NodePublishVolume', publishReq({ volume_id: volumeId('blk'), target_path: target, cap: capability('block') }))).code).toBeUndefined();
    const grown = await h.ctl('ControllerExpandVolume', { volume_id: volumeId('blk'), capacity_range: { required_bytes: String(16n * MiB), limit_bytes: '0' }, secrets: {}, volume_capability: null } as never);
    expect(grown.code, grown.message).toBeUndefined();
    const a = await h.nd('NodeExpandVolume', expandReq(volumeId('blk'), target, 16n * MiB));
    expect(a.code, a.message).toBeUndefined();
    expect(a.res!.capacity_bytes).toBe(String(16n * MiB));
    const [dev] = [...h.host.loopDevices.values()];
    expect(h.host.calls).toContain(`losetup --set-capacity ${dev!.name}`);
  });

  it.each([
    { what: 'more than the controller grew it to', required: 32n * MiB, code: 'FAILED_PRECONDITION' },
  ])('refuses $what with $code', async ({ required, code }) => {
    const target = podTarget('e2');
    expect((await h.nd('NodePublishVolume', publishReq({ target_path: target }))).code).toBeUndefined();
    expect((await h.nd('NodeExpandVolume', expandReq(volumeId('fs'), target, required))).code).toBe(code);
  });

  it.each([
    { what: 'no volume_path', path: '', code: 'INVALID_ARGUMENT' },
    { what: 'a volume_path with a NUL byte', path: '/a\0/b', code: 'INVALID_ARGUMENT' },
    { what: 'a path the volume is not at', path: '/nowhere/at/all', code: 'NOT_FOUND' },
  ])('refuses $what with $code', async ({ path: p, code }) => {
    expect((await h.nd('NodeExpandVolume', expandReq(volumeId('fs'), p, 0n))).code).toBe(code);
  });
});

describe('the log of a Node call', () => {
  it("names the volume's PVC (from its record) and the pod (from volume_context) on the call's lines and its host calls", async () => {
    const cap = captureLog();
    const lh = await new HandlerHarness({ log: cap.log }).start();
    try {
      const parameters = { 'csi.storage.k8s.io/pvc/name': 'vm1-disk', 'csi.storage.k8s.io/pvc/namespace': 'vms', 'csi.storage.k8s.io/pv/name': 'pvc-1' };
      expect((await lh.ctl('CreateVolume', createRequest({ name: 'pvc-1', required: MiB, parameters }))).code).toBeUndefined();
      const seen: ToolContext[] = [];
      const bind = lh.host.mounts.bind.bind(lh.host.mounts);
      lh.host.mounts.bind = (source, target, o, tc) => {
        if (tc) seen.push(tc);
        return bind(source, target, o, tc);
      };
      const target = path.join(lh.dir, 'pods', 'u1', 'volumes', 'v');
      mkdirSync(path.dirname(target), { recursive: true });
      const req = {
        ...(publishReq({ volume_id: volumeId('pvc-1'), target_path: target }) as object),
        volume_context: { storagePool: 'default', 'csi.storage.k8s.io/pod.name': 'virt-launcher-vm1-x7k2p', 'csi.storage.k8s.io/pod.namespace': 'vms', 'csi.storage.k8s.io/pod.uid': 'u1' },
      };
      expect((await lh.wrapped('node', 'NodePublishVolume', req)).err).toBeUndefined();
      expect((await lh.wrapped('node', 'NodeGetVolumeStats', statsReq(volumeId('pvc-1'), target))).err).toBeUndefined();
      expect((await lh.wrapped('node', 'NodeGetVolumeStats', statsReq(volumeId('nope'), target))).err?.code).toBe(5);
      expect((await lh.wrapped('node', 'NodeUnpublishVolume', { volume_id: volumeId('pvc-1'), target_path: target })).err).toBeUndefined();
      const rpc = cap.find('rpc');
      expect(rpc.map((l) => [l.method, l.level, l.code, l.pvc, l.pod])).toEqual([
        ['NodePublishVolume', 30, 'OK', 'vms/vm1-disk', 'vms/virt-launcher-vm1-x7k2p'],
        ['NodeGetVolumeStats', 20, 'OK', 'vms/vm1-disk', undefined],
        ['NodeGetVolumeStats', 40, 'NOT_FOUND', undefined, undefined],
        ['NodeUnpublishVolume', 30, 'OK', 'vms/vm1-disk', undefined],
      ]);
      // The bind mount was asked for with the call's request id and what it is about: the host logs its tool runs with them.
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ requestId: rpc[0]!.requestId, fields: { volume_id: volumeId('pvc-1'), pvc: 'vms/vm1-disk', pod: 'vms/virt-launcher-vm1-x7k2p' } });
    } finally {
      await lh.dispose();
    }
  });
});
