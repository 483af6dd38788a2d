/**
 * The daemon's log as a reader of it gets it (README "Logs"): one rpc line per call at the level of its
 * answer, routine calls at debug, failures with one `err` field, and every line of a call (its tool
 * runs and system calls included) with the call's request id and the PVC and pod it is about.
 */
import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_CAP, cleanupDir, expectCode, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';

type Line = Record<string, unknown> & { level: number; msg: string };

const PVC = { 'csi.storage.k8s.io/pvc/name': 'vm1-disk', 'csi.storage.k8s.io/pvc/namespace': 'vms', 'csi.storage.k8s.io/pv/name': 'pvc-logs-1' };
const POD = { 'csi.storage.k8s.io/pod.name': 'virt-launcher-vm1-x7k2p', 'csi.storage.k8s.io/pod.namespace': 'vms', 'csi.storage.k8s.io/pod.uid': 'u1', 'csi.storage.k8s.io/ephemeral': 'false' };

describe('the daemon log', () => {
  let dir: string;
  let d: DriverProcess;
  const lines = (): Line[] =>
    d
      .logs()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Line);
  const rpcOf = (method: string): Line[] => lines().filter((l) => l.msg === 'rpc' && l.method === method);

  beforeAll(async () => {
    dir = scratchDir('logs');
    mkdirSync(`${dir}/pool`);
    mkdirSync(`${dir}/pods/u1/volumes`, { recursive: true });
    d = await startDriver({ dir, args: ['--pool', `default=${dir}/pool`] });
  });
  afterAll(async () => {
    await d?.stop();
    await cleanupDir(dir);
  });

  it('names the PVC and the pod, and the request id, on every line of the calls about a volume, tool runs included', async () => {
    const ctl = d.clients.controller;
    const node = d.clients.node;
    const created = await ctl.CreateVolume({ name: 'pvc-logs-1', volume_capabilities: [BLOCK_CAP], capacity_range: { required_bytes: String(8 * 1024 * 1024) }, parameters: { preallocation: 'true', ...PVC } });
    const id = created.volume.volume_id as string;
    const target = `${dir}/pods/u1/volumes/blk`;
    await node.NodePublishVolume({ volume_id: id, target_path: target, volume_capability: BLOCK_CAP, volume_context: { storagePool: 'default', ...POD } });
    await node.NodeUnpublishVolume({ volume_id: id, target_path: target });
    await ctl.DeleteVolume({ volume_id: id });
    // The answer can come before the daemon's output has reached us.
    await d.waitForLog(/"method":"DeleteVolume".*"msg":"rpc"/);

    for (const [method, pod, runsTools] of [
      ['CreateVolume', undefined, true],
      ['NodePublishVolume', 'vms/virt-launcher-vm1-x7k2p', true],
      ['NodeUnpublishVolume', undefined, true],
      ['DeleteVolume', undefined, false],
    ] as const) {
      const [rpc] = rpcOf(method);
      expect(rpc, method).toMatchObject({ level: 30, code: 'OK', pvc: 'vms/vm1-disk', requestId: expect.stringMatching(/^[0-9a-f]{12}$/) });
      expect(rpc!.pod).toBe(pod);
      const ofCall = lines().filter((l) => l.requestId === rpc!.requestId);
      const tools = ofCall.filter((l) => l.component === 'exec');
      // The block volume's tool runs and system calls: fallocate, losetup and the bind mount, the unmount.
      if (runsTools) expect(tools.length, `${method}: no exec line`).toBeGreaterThan(0);
      for (const l of ofCall) expect(l, `${method}: ${l.msg}`).toMatchObject({ pvc: 'vms/vm1-disk' });
      if (pod) for (const l of ofCall) expect(l.pod).toBe(pod);
    }
  });

  it('writes a refused call at warn with its one err field; Probe answers at debug', async () => {
    await expectCode(d.clients.controller.CreateVolume({ name: 'pvc-logs-2', volume_capabilities: [BLOCK_CAP], parameters: { storagepool: 'default', ...PVC } }), 'INVALID_ARGUMENT');
    await d.waitForLog(/"volume_name":"pvc-logs-2".*"msg":"rpc"/);
    const [refused] = rpcOf('CreateVolume').filter((l) => l.volume_name === 'pvc-logs-2');
    expect(refused).toMatchObject({ level: 40, code: 'INVALID_ARGUMENT', pvc: 'vms/vm1-disk', err: { message: expect.stringContaining('unknown parameter "storagepool"') } });
    expect(refused).not.toHaveProperty('error');
    expect(refused!.err).not.toHaveProperty('stack');
    await d.clients.identity.Probe({});
    await d.waitForLog(/"method":"Probe".*"msg":"rpc"/);
    expect(rpcOf('Probe').at(-1)).toMatchObject({ level: 20, code: 'OK' });
  });
});
