import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCsi } from '../../src/csi/proto.js';
import { poolLayout, recordFile } from '../../src/format/layout.js';
import { replayPublications } from '../../src/format/records.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DRIVER_JS = path.join(ROOT, 'dist/cmd/hpp-csi-driver.js');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Msg = Record<string, any>;
type Rpc = (req: Msg) => Promise<Msg>;
type IdentityMethod = 'GetPluginInfo' | 'GetPluginCapabilities' | 'Probe';
type ControllerMethod =
  | 'CreateVolume'
  | 'DeleteVolume'
  | 'ControllerPublishVolume'
  | 'ControllerUnpublishVolume'
  | 'ValidateVolumeCapabilities'
  | 'ListVolumes'
  | 'GetCapacity'
  | 'ControllerGetCapabilities'
  | 'CreateSnapshot'
  | 'DeleteSnapshot'
  | 'ListSnapshots'
  | 'GetSnapshot'
  | 'ControllerExpandVolume'
  | 'ControllerGetVolume'
  | 'ControllerModifyVolume';
type NodeMethod =
  | 'NodeStageVolume'
  | 'NodeUnstageVolume'
  | 'NodePublishVolume'
  | 'NodeUnpublishVolume'
  | 'NodeGetVolumeStats'
  | 'NodeExpandVolume'
  | 'NodeGetCapabilities'
  | 'NodeGetInfo';
export type ServiceClient<M extends string = string> = Record<M, Rpc>;

export interface Clients {
  identity: ServiceClient<IdentityMethod>;
  controller: ServiceClient<ControllerMethod>;
  node: ServiceClient<NodeMethod>;
  close(): void;
}

function promisify<M extends string>(client: grpc.Client, service: { service: grpc.ServiceDefinition }): ServiceClient<M> {
  const out = {} as ServiceClient<M>;
  for (const name of Object.keys(service.service)) {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const fn = (client as any)[name].bind(client);
    out[name as M] = (req: Msg) =>
      new Promise((resolve, reject) => fn(req, (err: grpc.ServiceError | null, res: Msg) => (err ? reject(err) : resolve(res))));
  }
  return out;
}

/** Clients for the three CSI services; `options` e.g. `{ 'grpc.use_local_subchannel_pool': 1 }` for a connection of their own. */
export function connect(endpoint: string, options?: grpc.ChannelOptions): Clients {
  const csi = loadCsi();
  const creds = grpc.credentials.createInsecure();
  const id = new csi.Identity(endpoint, creds, options);
  const ctl = new csi.Controller(endpoint, creds, options);
  const nd = new csi.Node(endpoint, creds, options);
  return {
    identity: promisify(id, csi.Identity),
    controller: promisify(ctl, csi.Controller),
    node: promisify(nd, csi.Node),
    close() {
      id.close();
      ctl.close();
      nd.close();
    },
  };
}

/** Expect a call to fail with a gRPC status name, e.g. 'INVALID_ARGUMENT'. Returns the error. */
export async function expectCode(p: Promise<unknown>, code: keyof typeof grpc.status): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    if (e.code !== grpc.status[code]) {
      throw new Error(`expected ${code}, got ${grpc.status[e.code]}: ${e.details}`);
    }
    return e;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

export interface DriverProcess {
  endpoint: string;
  socket: string;
  child: ChildProcess;
  clients: Clients;
  logs(): string;
  /**
   * Wait until the logs match `pattern` and return them. Use this, not logs(), for a line the daemon
   * writes while serving a call: the reply can reach the test before the log line comes down the pipe.
   */
  waitForLog(pattern: string | RegExp, ms?: number): Promise<string>;
  /** SIGTERM and wait. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait: a crash. */
  kill(): Promise<void>;
}

/** Poll `logs()` until it matches `pattern`; the logs on success, an error that shows their tail on timeout. */
export async function waitForLogs(logs: () => string, pattern: string | RegExp, ms = 5_000): Promise<string> {
  const matches = (out: string) => (typeof pattern === 'string' ? out.includes(pattern) : pattern.test(out));
  const until = Date.now() + ms;
  while (!matches(logs())) {
    if (Date.now() > until) throw new Error(`no log line matching ${String(pattern)} within ${ms} ms; the logs end with:\n${logs().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return logs();
}

/** A scratch directory under /tmp for one test file, removed by the caller's cleanup. */
export function scratchDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `hpp-${prefix}-`));
}

/**
 * Start the built daemon (dist/) as a child process on its own socket and wait until it serves.
 * `args` are extra driver flags, typically --pool NAME=DIR; `socket` a path to serve on (default: a
 * fresh one in `dir`).
 */
export async function startDriver(opts: { dir: string; args: string[]; node?: string; env?: Record<string, string>; socket?: string }): Promise<DriverProcess> {
  if (!existsSync(DRIVER_JS)) throw new Error(`${DRIVER_JS} is missing: run 'npm run build' before the tests`);
  const socket = opts.socket ?? path.join(opts.dir, `csi-${Math.random().toString(36).slice(2, 8)}.sock`);
  const endpoint = `unix://${socket}`;
  // Metrics off unless a test asks (a later flag wins): parallel daemons must not fight over :8080.
  const child = spawn(process.execPath, [DRIVER_JS, '--endpoint', endpoint, '--node-name', opts.node ?? 'test-node', '--log-level', 'debug', '--metrics-address', 'off', ...opts.args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // HPP_TEST_START_MS: slower machines (the kernel tier's emulated VM) take longer to start node.
  const deadline = Date.now() + Number(process.env.HPP_TEST_START_MS ?? 15_000);
  while (!out.includes('"serving CSI"')) {
    if (child.exitCode !== null) throw new Error(`driver exited with ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`driver did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const clients = connect(endpoint);
  return {
    endpoint,
    socket,
    child,
    clients,
    logs: () => out,
    waitForLog: (pattern, ms) => waitForLogs(() => out, pattern, ms),
    async stop() {
      clients.close();
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      clients.close();
      if (child.exitCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

export const MOUNT_CAP = { access_mode: { mode: 'SINGLE_NODE_WRITER' }, mount: { fs_type: '', mount_flags: [] } };
export const BLOCK_CAP = { access_mode: { mode: 'SINGLE_NODE_WRITER' }, block: {} };

/** Unmount anything left under `dir` (deepest first) and remove it: tests never leak mounts. */
export async function cleanupDir(dir: string): Promise<void> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  const targets = text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  const { execFileSync } = await import('node:child_process');
  for (const t of targets) {
    try {
      execFileSync('umount', [t]);
    } catch {
      execFileSync('umount', ['-l', t]);
    }
  }
  // Loop devices whose image lives under `dir` (a test that failed while a block volume was published).
  const loops = JSON.parse(execFileSync('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']).toString() || '{}') as {
    loopdevices?: Array<{ name: string; 'back-file': string | null }>;
  };
  for (const l of loops.loopdevices ?? []) {
    if ((l['back-file'] ?? '').startsWith(`${dir}/`)) execFileSync('losetup', ['-d', l.name]);
  }
  await fsp.rm(dir, { recursive: true, force: true });
}

/**
 * A volume's record as the daemon sees it: `.hpp/volumes/<name>.json` with its publications from the
 * pool's publication log (the last line of the volume wins). undefined when there is no record.
 */
export function readVolumeRecord(pool: string, name: string): Msg | undefined {
  let rec: Msg;
  try {
    rec = JSON.parse(readFileSync(recordFile(poolLayout(pool).volumesDir, name), 'utf8')) as Msg;
  } catch {
    return undefined;
  }
  rec.publications = readPublicationLog(pool).get(name) ?? rec.publications ?? {};
  return rec;
}

/** The pool's publication log replayed as the daemon replays it: publications by volume name. */
export function readPublicationLog(pool: string): Map<string, Msg> {
  try {
    return replayPublications(readFileSync(poolLayout(pool).publicationLog, 'utf8')).state;
  } catch {
    return new Map();
  }
}
