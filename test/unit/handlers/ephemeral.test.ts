/**
 * CSI ephemeral inline volumes (src/volumes/ephemeral.ts): made by NodePublishVolume under kubelet's id,
 * sized from the pod's volumeAttributes, removed by NodeUnpublishVolume, and on a restart when no pod
 * has them any more. Through the real Node handlers over a FakeHost.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { capability, HandlerHarness, MiB } from '../../helpers/handler-harness.js';
import { plantHppPool } from '../../helpers/hpp-pool.js';

/** kubelet's id for an inline volume: csi- and the sha256 of the pod's uid and the volume's name. */
const ID = `csi-${'5a'.repeat(32)}`;
const ID2 = `csi-${'6b'.repeat(32)}`;

let h: HandlerHarness;
beforeEach(async () => {
  h = await new HandlerHarness().start();
});
afterEach(async () => {
  await h.dispose();
});

function podTarget(pod: string): string {
  const t = path.join(h.dir, 'pods', pod, 'volumes', 'scratch');
  mkdirSync(path.dirname(t), { recursive: true });
  return t;
}
function publishReq(volume_id: string, target_path: string, attrs: Record<string, string> = {}, kind: 'mount' | 'block' = 'mount') {
  return {
    volume_id,
    publish_context: {},
    staging_target_path: '',
    target_path,
    volume_capability: capability(kind),
    readonly: false,
    secrets: {},
    volume_context: { 'csi.storage.k8s.io/ephemeral': 'true', 'csi.storage.k8s.io/pod.name': 'p', 'csi.storage.k8s.io/pod.namespace': 'ns', ...attrs },
  } as never;
}
const unpublish = (volume_id: string, target_path: string) => h.nd('NodeUnpublishVolume', { volume_id, target_path } as never);
const records = () => readdirSync(path.join(h.poolRoot, '.hpp', 'volumes'));

describe('an ephemeral inline volume', () => {
  it('is made at NodePublishVolume with the size asked for (a limit), published, and removed at NodeUnpublishVolume', async () => {
    const target = podTarget('p1');
    const a = await h.nd('NodePublishVolume', publishReq(ID, target, { size: '64Mi' }));
    expect(a.code, a.message).toBeUndefined();
    const rec = h.volumes.get(ID)!;
    expect(rec).toMatchObject({ id: ID, name: ID, ephemeral: true, capacityBytes: String(64n * MiB), mode: 'filesystem' });
    expect(h.host.projectLimits.get(rec.projectId!)).toBe(64n * MiB);
    expect(h.host.calls).toContain(`bind ${path.join(h.poolRoot, ID)} ${target}`);
    // kubelet's retry: no second volume, no second mount.
    expect((await h.nd('NodePublishVolume', publishReq(ID, target, { size: '64Mi' }))).code).toBeUndefined();
    expect(h.host.calls.filter((c) => c.startsWith('bind '))).toHaveLength(1);
    expect((await unpublish(ID, target)).code).toBeUndefined();
    await h.volumes.idle();
    expect(existsSync(path.join(h.poolRoot, ID))).toBe(false);
    expect(records()).toEqual([]);
    expect(h.volumes.get(ID)).toBeUndefined();
  });

  it('without a size has no limit, as hostpath-provisioner made them', async () => {
    expect((await h.nd('NodePublishVolume', publishReq(ID, podTarget('p2')))).code).toBeUndefined();
    expect(h.volumes.get(ID)!.capacityBytes).toBe('0');
  });

  it.each<{ what: string; attrs: Record<string, string>; kind?: 'block'; id?: string; code: string; message: RegExp }>([
    { what: 'a size that is no size', attrs: { size: 'lots' }, code: 'INVALID_ARGUMENT', message: /volume attribute size "lots"/ },
    { what: 'an unknown attribute', attrs: { sise: '1Gi' }, code: 'INVALID_ARGUMENT', message: /unknown parameter "sise"/ },
    { what: 'a pool this node lacks', attrs: { storagePool: 'elsewhere' }, code: 'INVALID_ARGUMENT', message: /storage pool "elsewhere"/ },
    { what: 'createDiskImage', attrs: { createDiskImage: 'true', size: '1Gi' }, code: 'INVALID_ARGUMENT', message: /persistent volumes/ },
    { what: 'block access', attrs: {}, kind: 'block', code: 'INVALID_ARGUMENT', message: /Filesystem volume/ },
    { what: 'an id no volume can have', attrs: {}, id: 'csi/../x', code: 'INVALID_ARGUMENT', message: /ephemeral volume name/ },
    { what: 'more than the pool holds', attrs: { size: '1Ti' }, code: 'OUT_OF_RANGE', message: /more than pool default holds/ },
  ])('refuses $what with $code and makes nothing', async ({ attrs, kind, id, code, message }) => {
    const a = await h.nd('NodePublishVolume', publishReq(id ?? ID, podTarget('bad'), attrs, kind));
    expect(a.code).toBe(code);
    expect(a.message).toMatch(message);
    expect(records()).toEqual([]);
    expect(readdirSync(h.poolRoot)).toEqual(['.hpp']);
  });

  it('whose publish fails is removed again: nothing is left', async () => {
    const target = podTarget('busy');
    h.host.mountForeign(target);
    const a = await h.nd('NodePublishVolume', publishReq(ID, target, { size: '8Mi' }));
    expect(a.code).toBe('ALREADY_EXISTS');
    await h.volumes.idle();
    expect(records()).toEqual([]);
    expect(existsSync(path.join(h.poolRoot, ID))).toBe(false);
  });

  it('after a restart: kept while its pod has it, removed when its pod went while the daemon was down', async () => {
    const kept = podTarget('stays');
    const gone = podTarget('goes');
    expect((await h.nd('NodePublishVolume', publishReq(ID, kept, { size: '8Mi' }))).code).toBeUndefined();
    expect((await h.nd('NodePublishVolume', publishReq(ID2, gone, { size: '8Mi' }))).code).toBeUndefined();
    await h.stop();
    // The second pod was deleted meanwhile: kubelet's directory of it is gone (its mount with it).
    await h.host.mounts.unmount(gone);
    rmSync(path.join(h.dir, 'pods', 'goes'), { recursive: true });
    await h.start();
    await h.volumes.idle();
    expect(h.volumes.get(ID2)).toBeUndefined();
    expect(existsSync(path.join(h.poolRoot, ID2))).toBe(false);
    expect(Object.keys(h.volumes.get(ID)!.publications)).toEqual([kept]);
    expect(records()).toEqual([`${ID}.json`]);
  });

  it('is refused, changing nothing, for an id that names a persistent volume', async () => {
    await h.stop();
    plantHppPool(h.poolRoot, { volumes: [{ name: 'pvc-persistent', files: { keep: 'me' } }] });
    await h.start();
    const a = await h.nd('NodePublishVolume', publishReq('pvc-persistent', podTarget('x')));
    expect(a.code).toBe('FAILED_PRECONDITION');
    expect(readFileSync(path.join(h.poolRoot, 'csi', 'pvc-persistent', 'keep'), 'utf8')).toBe('me');
    expect(records()).toEqual([]);
  });
});
