/**
 * The request wrapper's log (src/csi/rpc.ts, src/csi/rpc-log.ts, src/csi/call-subject.ts): one `rpc`
 * line per call at the level its answer calls for, one `err` field with a stack only for INTERNAL, the
 * request id and what the call is about (volume, PVC, pod) on every line of the call. A fake handler
 * throws each kind of error; the daemon's logger writes into an array.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { aboutVolume } from '../../src/csi/call-subject.js';
import { StatusError } from '../../src/csi/status.js';
import { busy, cancelled, conflict, corrupt, internal, invalidInput, noSpace, notFound, outOfRange, precondition, ToolError, unavailable, unsupported } from '../../src/errors.js';
import { annotate, type CallContext } from '../../src/observe/call-context.js';
import type { VolumeRecord } from '../../src/format/records.js';
import { callWrapped, captureLog } from '../helpers/log-capture.js';

const WARN = 40;
const ERROR = 50;

function enospc(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
}

async function failWith(thrown: () => unknown, method = 'CreateVolume', req: object = { name: 'v1', secrets: { token: 'hunter2' } }) {
  const cap = captureLog();
  const answer = await callWrapped(
    method,
    async () => {
      throw thrown();
    },
    req,
    cap.log,
  );
  const rpc = cap.find('rpc');
  expect(rpc).toHaveLength(1);
  return { answer, line: rpc[0]!, cap };
}

describe('the level of a failed call', () => {
  it.each<{ what: string; thrown: () => unknown; code: keyof typeof grpc.status; level: number }>([
    { what: 'invalid input', thrown: () => invalidInput('bad parameter'), code: 'INVALID_ARGUMENT', level: WARN },
    { what: 'not found', thrown: () => notFound('no volume v1'), code: 'NOT_FOUND', level: WARN },
    { what: 'a conflict', thrown: () => conflict('v1 exists with other parameters'), code: 'ALREADY_EXISTS', level: WARN },
    { what: 'a precondition', thrown: () => precondition('still published'), code: 'FAILED_PRECONDITION', level: WARN },
    { what: 'out of range', thrown: () => outOfRange('more than the pool holds'), code: 'OUT_OF_RANGE', level: WARN },
    { what: 'busy', thrown: () => busy('another call holds name/v1'), code: 'ABORTED', level: WARN },
    { what: 'unsupported', thrown: () => unsupported('ControllerPublishVolume is not supported'), code: 'UNIMPLEMENTED', level: WARN },
    { what: 'cancelled', thrown: () => cancelled('request x: the caller cancelled the call'), code: 'CANCELLED', level: WARN },
    { what: 'a peer refusing the token', thrown: () => new StatusError(grpc.status.UNAUTHENTICATED, 'bad token'), code: 'UNAUTHENTICATED', level: WARN },
    { what: 'no space', thrown: () => noSpace('pool default can promise 0 bytes'), code: 'RESOURCE_EXHAUSTED', level: ERROR },
    { what: 'a full disk (errno)', thrown: enospc, code: 'RESOURCE_EXHAUSTED', level: ERROR },
    { what: 'a tool out of space', thrown: () => new ToolError('fallocate -l 1 f', { code: 1, stdout: '', stderr: 'No space left on device' }, { outOfSpace: true }), code: 'RESOURCE_EXHAUSTED', level: ERROR },
    { what: 'a pool not ready', thrown: () => unavailable('pool default is preparing'), code: 'UNAVAILABLE', level: ERROR },
    { what: 'a peer timing out', thrown: () => new StatusError(grpc.status.DEADLINE_EXCEEDED, 'node n2 did not answer'), code: 'DEADLINE_EXCEEDED', level: ERROR },
    { what: 'a bug', thrown: () => internal('invariant broken'), code: 'INTERNAL', level: ERROR },
    { what: 'a corrupt record', thrown: () => corrupt('v1.json is not JSON'), code: 'INTERNAL', level: ERROR },
    { what: 'a failed tool', thrown: () => new ToolError('mkfs.xfs /dev/x', { code: 1, stdout: '', stderr: 'bad' }), code: 'INTERNAL', level: ERROR },
    { what: 'a TypeError', thrown: () => new TypeError("Cannot read properties of undefined (reading 'x')"), code: 'INTERNAL', level: ERROR },
  ])('$what: $code at $level', async ({ thrown, code, level }) => {
    const { answer, line, cap } = await failWith(thrown);
    expect(answer.err?.code).toBe(grpc.status[code]);
    expect(line).toMatchObject({ level, method: 'CreateVolume', code, volume_name: 'v1', err: { message: answer.err!.details } });
    // One error field: `err`, with a stack and the request for INTERNAL only.
    expect(line).not.toHaveProperty('error');
    if (code === 'INTERNAL') {
      expect((line.err as { stack?: string }).stack).toMatch(/^\w*Error: .*\n\s+at /);
      expect(line.req).toMatchObject({ name: 'v1', secrets: '[REDACTED]' });
    } else {
      expect(line.err).not.toHaveProperty('stack');
      expect(line).not.toHaveProperty('req');
    }
    expect(cap.raw.join('')).not.toContain('hunter2');
  });

  it('the stack of INTERNAL is the thrown error\'s, naming its type', async () => {
    const { line } = await failWith(() => new TypeError('boom'));
    expect(line.err).toMatchObject({ type: 'TypeError', message: 'boom', stack: expect.stringContaining('TypeError: boom') });
  });

  it('an answer is info, a routine question (Probe, GetPluginInfo, NodeGetCapabilities, ...) debug, also on the peer endpoint; a failing Probe is logged as any failure', async () => {
    const cap = captureLog();
    for (const method of ['CreateVolume', 'NodePublishVolume', 'GetCapacity', 'Probe', 'GetPluginInfo', 'GetPluginCapabilities', 'NodeGetCapabilities', 'ControllerGetCapabilities', 'NodeGetVolumeStats', 'peer.Probe']) {
      expect((await callWrapped(method, async () => ({}), {}, cap.log)).err).toBeUndefined();
    }
    const levels = Object.fromEntries(cap.find('rpc').map((l) => [l.method, l.level]));
    expect(levels).toEqual({
      CreateVolume: 30,
      NodePublishVolume: 30,
      GetCapacity: 20,
      Probe: 20,
      GetPluginInfo: 20,
      GetPluginCapabilities: 20,
      NodeGetCapabilities: 20,
      ControllerGetCapabilities: 20,
      NodeGetVolumeStats: 20,
      'peer.Probe': 20,
    });
    const { line } = await failWith(() => unavailable('pool default is gone'), 'Probe', {});
    expect(line).toMatchObject({ level: ERROR, code: 'UNAVAILABLE' });
  });

  it("at the daemon's default level (info) the routine answers are not written at all", async () => {
    const cap = captureLog('info');
    await callWrapped('Probe', async () => ({}), {}, cap.log);
    await callWrapped('NodeGetCapabilities', async () => ({}), {}, cap.log);
    await callWrapped('NodeGetVolumeStats', async () => ({}), { volume_id: 'n1:default:v1' }, cap.log);
    await callWrapped('GetCapacity', async () => ({}), {}, cap.log);
    await callWrapped('CreateVolume', async () => ({}), { name: 'v1' }, cap.log);
    expect(cap.find('rpc').map((l) => l.method)).toEqual(['CreateVolume']);
  });
});

describe('every line of a call', () => {
  const rec = { id: 'n1:default:v1', name: 'v1', pvc: { namespace: 'vms', name: 'disk-1' } } as VolumeRecord;

  it('carries the request id and what the request names: volume, PVC of CreateVolume parameters, no `name` key twice', async () => {
    const cap = captureLog();
    let seen: CallContext | undefined;
    await callWrapped(
      'CreateVolume',
      async (_req, cx) => {
        seen = cx;
        cx.log.info({ step: 1 }, 'building');
        return {};
      },
      { name: 'pvc-0f1e', parameters: { 'csi.storage.k8s.io/pvc/name': 'disk-1', 'csi.storage.k8s.io/pvc/namespace': 'vms', 'csi.storage.k8s.io/pv/name': 'pvc-0f1e' } },
      cap.log,
    );
    const [building, rpc] = [cap.find('building')[0]!, cap.find('rpc')[0]!];
    expect(seen!.requestId).toMatch(/^[0-9a-f]{12}$/);
    for (const l of [building, rpc]) expect(l).toMatchObject({ requestId: seen!.requestId, volume_name: 'pvc-0f1e', pvc: 'vms/disk-1', name: 'hpp-csi-driver' });
    expect(seen!.fields).toEqual({ volume_name: 'pvc-0f1e', pvc: 'vms/disk-1' });
    // (The debug `rpc request` line has the request's own name inside `req`.)
    const written = cap.raw.filter((_raw, i) => cap.lines[i]!.msg !== 'rpc request');
    expect(written).toHaveLength(2);
    for (const raw of written) expect(raw.match(/"name":/g)).toHaveLength(1);
  });

  it('carries the pod of a NodePublishVolume volume_context, and the PVC its handler found in the record, on the rpc line too', async () => {
    const cap = captureLog();
    await callWrapped(
      'NodePublishVolume',
      async (_req, cx) => {
        cx.log.info('before');
        aboutVolume(cx, rec);
        cx.log.warn('after');
        return {};
      },
      {
        volume_id: rec.id,
        target_path: '/var/lib/kubelet/pods/u/volumes/v',
        volume_context: { storagePool: 'default', 'csi.storage.k8s.io/pod.name': 'virt-launcher-vm1-abcde', 'csi.storage.k8s.io/pod.namespace': 'vms' },
      },
      cap.log,
    );
    const about = { volume_id: rec.id, target_path: '/var/lib/kubelet/pods/u/volumes/v', pod: 'vms/virt-launcher-vm1-abcde' };
    expect(cap.find('before')[0]).toMatchObject(about);
    expect(cap.find('before')[0]).not.toHaveProperty('pvc');
    expect(cap.find('after')[0]).toMatchObject({ ...about, pvc: 'vms/disk-1' });
    expect(cap.find('rpc')[0]).toMatchObject({ ...about, pvc: 'vms/disk-1', level: 30 });
  });

  it('a failed call names its PVC too (the point of warn: which claim cannot be made)', async () => {
    const { line } = await failWith(() => invalidInput('unknown parameter "storagepool"'), 'CreateVolume', {
      name: 'pvc-1',
      parameters: { storagepool: 'x', 'csi.storage.k8s.io/pvc/name': 'claim', 'csi.storage.k8s.io/pvc/namespace': 'ns' },
    });
    expect(line).toMatchObject({ level: WARN, pvc: 'ns/claim', volume_name: 'pvc-1', code: 'INVALID_ARGUMENT' });
  });

  it('leaves out names that are not Kubernetes names, and never writes a key twice when annotated again', async () => {
    const cap = captureLog();
    await callWrapped(
      'NodePublishVolume',
      async (_req, cx) => {
        annotate(cx, { pvc: 'a/b' });
        annotate(cx, { pvc: 'c/d', volume_id: 'other', requestId: 'forged', extra: '' });
        return {};
      },
      { volume_id: 'n1:default:v1', volume_context: { 'csi.storage.k8s.io/pod.name': 'Bad\nName', 'csi.storage.k8s.io/pod.namespace': 'ns' } },
      cap.log,
    );
    const line = cap.find('rpc')[0]!;
    expect(line).not.toHaveProperty('pod');
    expect(line).not.toHaveProperty('extra');
    expect(line).toMatchObject({ pvc: 'a/b', volume_id: 'n1:default:v1' });
    expect(line.requestId).toMatch(/^[0-9a-f]{12}$/);
    for (const key of ['pvc', 'volume_id', 'requestId']) expect(cap.raw[0]!.split(`"${key}":`)).toHaveLength(2);
  });
});
