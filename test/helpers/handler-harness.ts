/**
 * The daemon's handlers in-process: the real controllerService and nodeService over a real
 * VolumeManager and Pool, on a tmp dir, with the OS faked (FakeHost). No root, no daemon, no gRPC.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import type { DriverContext } from '../../src/csi/context.js';
import { controllerService } from '../../src/csi/controller.js';
import { nodeService } from '../../src/csi/node.js';
import { toStatus } from '../../src/csi/status.js';
import type { ControllerHandlers, NodeHandlers } from '../../src/csi/types.js';
import type { Handler } from '../../src/csi/rpc.js';
import { openCall, type CallContext } from '../../src/observe/call-context.js';
import { silentLogger, type Logger } from '../../src/observe/logger.js';
import { Pool } from '../../src/pools/pool.js';
import type { PoolConfig } from '../../src/pools/config.js';
import { VolumeManager } from '../../src/volumes/manager.js';
import { FakeHost, type FakeFilesystem } from './fake-host.js';
import { callWrapped, type WrappedAnswer } from './log-capture.js';

export const NODE = 'n1';
export const GiB = 1024n ** 3n;
export const MiB = 1024n ** 2n;

export interface Answer<T> {
  res?: T;
  /** The gRPC status name of a failure ("INVALID_ARGUMENT"), as the request wrapper would answer. */
  code?: string;
  message?: string;
}

type Req<H, M extends keyof H> = H[M] extends ((req: infer R, cx: CallContext) => Promise<unknown>) | undefined ? R : never;
type Res<H, M extends keyof H> = H[M] extends ((req: never, cx: CallContext) => Promise<infer R>) | undefined ? R : never;

export class HandlerHarness {
  readonly dir: string;
  readonly poolRoot: string;
  readonly host: FakeHost;
  volumes!: VolumeManager;
  controller!: ControllerHandlers;
  node!: NodeHandlers;
  private readonly log: Logger;

  /** `log`: the daemon's log (the handlers', the manager's, every call's); silent unless given. */
  constructor(opts: { fs?: Partial<FakeFilesystem>; log?: Logger } = {}) {
    this.log = opts.log ?? silentLogger();
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-handlers-'));
    this.poolRoot = path.join(this.dir, 'pool');
    mkdirSync(this.poolRoot);
    this.host = new FakeHost({
      filesystems: [{ mountPoint: this.poolRoot, type: 'xfs', quota: true, totalBytes: 10n * GiB, freeBytes: 8n * GiB, ...opts.fs }],
    });
  }

  /** Starts (or, after stop(), restarts) the daemon's state over the same pool and fake OS; `pool`: more of its configuration. */
  async start(pool: Partial<Omit<PoolConfig, 'name' | 'path'>> = {}): Promise<this> {
    const cfg: PoolConfig = { name: 'default', path: this.poolRoot, useNamingPrefix: false, overcommitRatio: 1, ...pool };
    this.volumes = new VolumeManager(NODE, [new Pool(cfg, this.host, this.log)], this.host, this.log, { labelVolume: null });
    await this.volumes.start();
    const ctx: DriverContext = { driverName: 'kubevirt.io.hostpath-provisioner', version: 'test', node: NODE, volumes: this.volumes, log: this.log };
    this.controller = controllerService(ctx);
    this.node = nodeService(ctx);
    return this;
  }

  async stop(): Promise<void> {
    await this.volumes.close();
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** A call's context, as the request wrapper makes it. */
  context(): CallContext {
    return openCall(this.log).cx;
  }

  /** Calls a Controller handler the way the request wrapper does, with errors mapped by toStatus. */
  ctl<M extends keyof ControllerHandlers & string>(method: M, req: Req<ControllerHandlers, M>, cx = this.context()): Promise<Answer<Res<ControllerHandlers, M>>> {
    const handler = this.controller[method] as unknown as (r: unknown, c: CallContext) => Promise<Res<ControllerHandlers, M>>;
    return answer(() => handler(req, cx));
  }

  nd<M extends keyof NodeHandlers & string>(method: M, req: Req<NodeHandlers, M>, cx = this.context()): Promise<Answer<Res<NodeHandlers, M>>> {
    const handler = this.node[method] as unknown as (r: unknown, c: CallContext) => Promise<Res<NodeHandlers, M>>;
    return answer(() => handler(req, cx));
  }

  /** A Controller or Node handler called through the request wrapper, which logs its `rpc` line to the harness's log. */
  wrapped(service: 'controller' | 'node', method: string, req: unknown): Promise<WrappedAnswer<unknown>> {
    const handlers = (service === 'controller' ? this.controller : this.node) as Record<string, Handler<unknown, unknown> | undefined>;
    const handler = handlers[method];
    if (!handler) throw new Error(`no ${service} handler ${method}`);
    return callWrapped(method, handler, req, this.log);
  }
}

async function answer<T>(call: () => Promise<T>): Promise<Answer<T>> {
  try {
    return { res: await call() };
  } catch (err) {
    const e = toStatus(err);
    return { code: status[e.code], message: e.message };
  }
}

export function volumeId(name: string): string {
  return `${NODE}:default:${name}`;
}

const accessMode = { mode: 'SINGLE_NODE_WRITER' as const };

export function capability(kind: 'mount' | 'block') {
  return kind === 'block'
    ? { access_type: 'block' as const, block: {}, mount: null, access_mode: accessMode }
    : { access_type: 'mount' as const, mount: { fs_type: '', mount_flags: [], volume_mount_group: '' }, block: null, access_mode: accessMode };
}

/** A CreateVolume request as grpc-js hands it over (every field present, int64 as strings). */
export interface CreateVolumeSpec {
  name: string;
  kind?: 'mount' | 'block';
  required?: bigint;
  limit?: bigint;
  parameters?: Record<string, string>;
  source?: { snapshot?: string; volume?: string };
}

export function createRequest(o: CreateVolumeSpec) {
  const src = o.source;
  return {
    name: o.name,
    capacity_range: o.required !== undefined || o.limit !== undefined ? { required_bytes: String(o.required ?? 0n), limit_bytes: String(o.limit ?? 0n) } : null,
    volume_capabilities: [capability(o.kind ?? 'mount')],
    parameters: o.parameters ?? {},
    secrets: {},
    volume_content_source: src
      ? src.snapshot
        ? { type: 'snapshot' as const, snapshot: { snapshot_id: src.snapshot }, volume: null }
        : { type: 'volume' as const, volume: { volume_id: src.volume! }, snapshot: null }
      : null,
    accessibility_requirements: null,
    mutable_parameters: {},
  } as never;
}
