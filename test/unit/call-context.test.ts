/**
 * A call its caller gave up on stops its work: exec's run() kills the tool, and the request wrapper
 * (src/csi/rpc.ts) aborts the call's context when a gRPC client cancels before its deadline; a call that times out
 * goes on, for the CO's retry to find done.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { loadCsi } from '../../src/csi/proto.js';
import { bindService } from '../../src/csi/rpc.js';
import { annotate, DEADLINE_SLACK_MS, openCall, rootContext, uncancellable } from '../../src/observe/call-context.js';
import { pino } from 'pino';
import { silentLogger } from '../../src/observe/logger.js';
import { run } from '../../src/system/exec.js';
import { createHost } from '../../src/system/linux-host.js';
import { createRequest, HandlerHarness, MiB } from '../helpers/handler-harness.js';

/** Pids of processes whose command line is exactly `argv`. */
function processesRunning(argv: string[]): number[] {
  const want = `${argv.join('\0')}\0`;
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8') === want) pids.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return pids;
}

/** A `sleep` nobody else runs: its argument is unique to this test. */
function uniqueSleep(): string[] {
  return ['sleep', `30.${randomInt(1_000_000, 9_999_999)}`];
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

describe('exec run() with a signal', () => {
  it('kills the tool when the signal is aborted, and rejects with the reason at once', async () => {
    const argv = uniqueSleep();
    const scope = openCall(silentLogger());
    const started = Date.now();
    const running = run(argv[0]!, argv.slice(1), { signal: scope.cx.signal });
    expect(await waitFor(() => processesRunning(argv).length === 1, 5_000)).toBe(true);
    setTimeout(() => scope.cancel('the caller cancelled the call'), 100);
    await expect(running).rejects.toMatchObject({ kind: 'cancelled', message: expect.stringMatching(/cancelled the call/) });
    expect(Date.now() - started).toBeLessThan(5_000);
    // 'close' came after the child exited: nothing of it is left.
    expect(processesRunning(argv)).toEqual([]);
  });

  it('runs nothing for a signal aborted already', async () => {
    const scope = openCall(silentLogger());
    scope.cancel('gone before it started');
    const argv = uniqueSleep();
    await expect(run(argv[0]!, argv.slice(1), { signal: scope.cx.signal })).rejects.toMatchObject({ kind: 'cancelled' });
    expect(processesRunning(argv)).toEqual([]);
  });

  it('a cancel before the deadline aborts; one at or past it is the caller timing out and aborts nothing; a root context is never aborted', () => {
    const early = openCall(silentLogger(), { deadline: Date.now() + 60_000 });
    early.cancel('the caller cancelled the call');
    expect(early.cx.signal.reason).toMatchObject({ kind: 'cancelled', message: expect.stringMatching(/cancelled the call/) });
    const late = openCall(silentLogger(), { deadline: Date.now() + DEADLINE_SLACK_MS / 2 });
    late.cancel('the caller cancelled the call');
    expect(late.cx.signal.aborted).toBe(false);
    const past = openCall(silentLogger(), { deadline: Date.now() - 1 });
    past.cancel('the caller cancelled the call');
    expect(past.cx.signal.aborted).toBe(false);
    expect(openCall(silentLogger()).cx.signal.aborted).toBe(false);
    expect(rootContext(silentLogger()).signal.aborted).toBe(false);
  });
});

describe('the Linux host', () => {
  it('logs a call\'s tool runs as exec with the call\'s request id', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    const host = createHost({ log, mountBackend: { kind: 'tools', why: 'test' } });
    const { cx } = openCall(log);
    await host.tools.run('true', [], cx);
    expect(lines.find((l) => l.msg === 'exec')).toMatchObject({ component: 'exec', requestId: cx.requestId, cmd: 'true', exit: 0 });
    expect(host.mounts.backend).toBe('mount(8) (test)');
  });

  it("logs them with what the call is about, once known (the volume's PVC), its failures and its clean-up's too", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    const host = createHost({ log, mountBackend: { kind: 'tools', why: 'test' } });
    const { cx } = openCall(log, { fields: { volume_id: 'n1:default:v1' } });
    await host.tools.run('true', [], cx);
    annotate(cx, { pvc: 'vms/disk-1' });
    await expect(host.tools.run('false', [], uncancellable(cx))).rejects.toMatchObject({ kind: 'tool-failed' });
    const [first, second, failed] = lines.filter((l) => l.component === 'exec');
    expect(first).toMatchObject({ msg: 'exec', requestId: cx.requestId, volume_id: 'n1:default:v1', cmd: 'true' });
    expect(first).not.toHaveProperty('pvc');
    for (const l of [second, failed]) expect(l).toMatchObject({ requestId: cx.requestId, volume_id: 'n1:default:v1', pvc: 'vms/disk-1', cmd: 'false' });
    expect(failed).toMatchObject({ msg: 'exec failed', level: 40 });
  });
});

describe('annotate', () => {
  it("adds fields to the call's later lines and to its fields, first value kept; a root context is left alone", () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    const { cx } = openCall(log);
    annotate(cx, { pvc: 'ns/a', pod: undefined });
    annotate(cx, { pvc: 'ns/b' });
    cx.log.info('x');
    expect(cx.fields).toEqual({ pvc: 'ns/a' });
    expect(lines[0]).toMatchObject({ requestId: cx.requestId, pvc: 'ns/a' });
    const root = rootContext(log);
    annotate(root, { pvc: 'ns/a' });
    root.log.info('y');
    expect(root.fields).toEqual({});
    expect(lines[1]).not.toHaveProperty('pvc');
  });
});

describe('a gRPC call cancelled by its client', () => {
  let server: grpc.Server | undefined;
  let harness: HandlerHarness | undefined;
  afterEach(async () => {
    server?.forceShutdown();
    server = undefined;
    await harness?.dispose();
    harness = undefined;
  });

  async function serve(impl: grpc.UntypedServiceImplementation): Promise<grpc.Client> {
    const csi = loadCsi();
    server = new grpc.Server();
    server.addService(csi.Controller.service, impl);
    const port = await new Promise<number>((resolve, reject) => server!.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    const Client = grpc.makeGenericClientConstructor(csi.Controller.service, 'Controller');
    return new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  }

  it('kills the tool its handler runs', async () => {
    const argv = uniqueSleep();
    let handlerError: unknown;
    const csi = loadCsi();
    const client = await serve(
      bindService(
        csi.Controller.service,
        {
          ControllerGetCapabilities: async (_req, cx) => {
            try {
              await run(argv[0]!, argv.slice(1), cx);
            } catch (err) {
              handlerError = err;
              throw err;
            }
            return { capabilities: [] };
          },
        },
        silentLogger(),
      ),
    );
    const call = (client as unknown as Record<string, (req: object, cb: (e: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall>).ControllerGetCapabilities!({}, () => {});
    expect(await waitFor(() => processesRunning(argv).length === 1, 5_000)).toBe(true);
    const cancelledAt = Date.now();
    call.cancel();
    expect(await waitFor(() => processesRunning(argv).length === 0 && handlerError !== undefined, 5_000)).toBe(true);
    expect(Date.now() - cancelledAt).toBeLessThan(2_000);
    expect(handlerError).toMatchObject({ kind: 'cancelled' });
    client.close();
  });

  it('lets the tool of a call whose deadline passed run to its end: the CO retries a timeout and finds the work done', async () => {
    const argv = ['sleep', `1.${randomInt(1_000_000, 9_999_999)}`];
    let finished: unknown;
    const csi = loadCsi();
    const client = await serve(
      bindService(
        csi.Controller.service,
        {
          ControllerGetCapabilities: async (_req, cx) => {
            await run(argv[0]!, argv.slice(1), cx);
            finished = 'done';
            return { capabilities: [] };
          },
        },
        silentLogger(),
      ),
    );
    const answer = await new Promise<grpc.ServiceError | null>((resolve) =>
      (client as unknown as Record<string, (req: object, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall>).ControllerGetCapabilities!(
        {},
        new grpc.Metadata(),
        { deadline: Date.now() + 300 },
        resolve,
      ),
    );
    expect(answer?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(processesRunning(argv)).toHaveLength(1);
    expect(await waitFor(() => finished === 'done', 5_000)).toBe(true);
    expect(processesRunning(argv)).toEqual([]);
    client.close();
  });

  it('stops a CreateVolume whose preallocation is under way, leaving no volume', async () => {
    harness = await new HandlerHarness().start();
    harness.host.preallocateHangs = true;
    const csi = loadCsi();
    const client = await serve(bindService(csi.Controller.service, harness.controller, silentLogger()));
    const answer = new Promise<grpc.ServiceError | null>((resolve) => {
      const call = (client as unknown as Record<string, (req: object, cb: (e: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall>).CreateVolume!(
        createRequest({ name: 'cancelled', kind: 'block', required: MiB, parameters: { preallocation: 'true' } }),
        resolve,
      );
      void waitFor(() => harness!.host.calls.some((c) => c.startsWith('fallocate')), 5_000).then(() => call.cancel());
    });
    expect((await answer)?.code).toBe(grpc.status.CANCELLED);
    // The build is abandoned behind the answer: its directory in tmp/ goes.
    const tmp = path.join(harness.poolRoot, '.hpp', 'tmp');
    expect(await waitFor(() => readdirSync(tmp).length === 0, 5_000)).toBe(true);
    expect(harness.volumes.list()).toEqual([]);
    expect(harness.host.preallocated).toEqual([]);
    client.close();
  });
});
