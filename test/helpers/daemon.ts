// The one launcher of the built daemon (dist/cmd/hpp-csi-driver.js) for the tests and the benchmarks:
// spawn it on a unix socket, wait until it serves, keep its log, stop or kill -9 it, CSI clients for it.
// No vitest here: bench/ imports it too (compiled by tsconfig.bench.json).
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { ChannelOptions } from '@grpc/grpc-js';
import { packageRoot } from '../../src/util/package-root.js';
import { BuiltProcess, type SpawnOptions } from './built-process.js';
import { connect, type CallDefaults, type Clients } from './csi-client.js';

export const ROOT = packageRoot();
export const DRIVER_JS = path.join(ROOT, 'dist/cmd/hpp-csi-driver.js');

/** The daemon logs this once its CSI socket is bound and answers. */
const SERVING = '"serving CSI"';

export interface DaemonOptions extends Omit<SpawnOptions, 'script' | 'args'> {
  /** The socket path to serve on (`--endpoint unix://<socket>`). */
  socket: string;
  /** `--node-name`. */
  node: string;
  /** `--log-level`; debug unless told. */
  logLevel?: string;
  /** `--metrics-address` when given (e.g. 'off'); else the daemon's default. */
  metricsAddress?: string;
  /** More driver flags, after the ones above (a later flag wins): --pool NAME=DIR, ... */
  args?: string[];
  /** How long it may take until it serves; 20 s unless told. */
  startMs?: number;
  /** Options of its CSI clients' channel. */
  channel?: ChannelOptions;
  /** Deadline of its clients' calls. */
  calls?: CallDefaults;
}

export class Daemon extends BuiltProcess {
  readonly endpoint: string;
  readonly socket: string;
  /** Set once it serves (launchDaemon returns only then). */
  clients!: Clients;

  constructor(opts: DaemonOptions) {
    const endpoint = `unix://${opts.socket}`;
    super({
      ...opts,
      script: DRIVER_JS,
      args: [
        '--endpoint',
        endpoint,
        '--node-name',
        opts.node,
        '--log-level',
        opts.logLevel ?? 'debug',
        ...(opts.metricsAddress === undefined ? [] : ['--metrics-address', opts.metricsAddress]),
        ...(opts.args ?? []),
      ],
    });
    this.endpoint = endpoint;
    this.socket = opts.socket;
  }

  /** Its output so far (pino JSON lines). */
  logs(): string {
    return this.log.text();
  }

  /**
   * Wait until the logs match `pattern` and return them. Use this, not logs(), for a line the daemon
   * writes while serving a call: the reply can reach the caller before the log line comes down the pipe.
   */
  waitForLog(pattern: string | RegExp, ms?: number): Promise<string> {
    return this.log.waitFor(pattern, ms);
  }

  /** Number of lines it has printed so far. */
  lines(): number {
    return this.log.lines();
  }

  /** Resolves true when it has printed `n` lines in all, false when it exits first or `ms` pass. */
  waitLines(n: number, ms: number): Promise<boolean> {
    return this.log.waitLines(n, ms, this.exited);
  }

  /** SIGKILL only the daemon, without waiting: tools it started run on, orphaned. */
  killDaemonOnly(): void {
    this.signal('SIGKILL');
  }

  override stop(timeoutMs?: number): Promise<number | null> {
    this.clients?.close();
    return super.stop(timeoutMs);
  }

  override kill(): Promise<void> {
    this.clients?.close();
    return super.kill();
  }
}

/** Start the daemon and wait until it serves; throws with its output when it exits or does not start. */
export async function launchDaemon(opts: DaemonOptions): Promise<Daemon> {
  if (!existsSync(DRIVER_JS)) throw new Error(`${DRIVER_JS} is missing: run 'npm run build' first`);
  const d = new Daemon(opts);
  await d.waitReady(SERVING, opts.startMs ?? 20_000, 'driver');
  d.clients = connect(d.endpoint, opts.channel, opts.calls);
  return d;
}
