import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../observe/logger.js';
import { redactSecrets } from '../observe/logger.js';
import type { RpcObserver } from '../observe/rpc-observer.js';
import { toStatus } from './status.js';

// Request and response messages as proto-loader gives them (snake_case, int64 as string).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Msg = Record<string, any>;
export type Handler = (req: Msg) => Promise<Msg>;

const MAX_DETAILS = 2048;


/** Fields worth a place in every log line: which volume or target a call was about. */
function subject(req: Msg): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ['volume_id', 'name', 'target_path', 'source_volume_id', 'snapshot_id']) {
    if (typeof req[k] === 'string' && req[k]) out[k] = req[k];
  }
  return out;
}

/**
 * Adapts an async handler to grpc-js: one log line per call (method, subject, duration, code), every
 * thrown error mapped once (csi/status.ts) to a gRPC status with its cause, secrets never logged.
 */
export function unary(method: string, handler: Handler, log: Logger, observer?: RpcObserver): grpc.handleUnaryCall<Msg, Msg> {
  return (call, callback) => {
    const started = process.hrtime.bigint();
    const req = call.request ?? {};
    handler(req).then(
      (res) => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        observer?.observe(method, 'OK', ms / 1000);
        log.info({ method, ...subject(req), ms: round(ms), code: 'OK' }, 'rpc');
        if (log.isLevelEnabled('debug')) log.debug({ method, req: redactSecrets(req) }, 'rpc request');
        callback(null, res);
      },
      (err: unknown) => {
        const e = toStatus(err);
        // Messages quote request fields; a huge field must not make a huge status (clients drop those).
        if (e.message.length > MAX_DETAILS) e.message = `${e.message.slice(0, MAX_DETAILS)}... (${e.message.length - MAX_DETAILS} more characters)`;
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        const code = grpc.status[e.code] ?? String(e.code);
        observer?.observe(method, code, ms / 1000);
        const level = e.code === grpc.status.INTERNAL || e.code === grpc.status.UNKNOWN ? 'error' : 'info';
        log[level]({ method, ...subject(req), ms: round(ms), code, error: e.message, req: level === 'error' ? redactSecrets(req) : undefined }, 'rpc');
        callback({ code: e.code, details: e.message });
      },
    );
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

export function bindService(
  methods: Record<string, Handler>,
  log: Logger,
  observer?: RpcObserver,
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(methods)) impl[name] = unary(name, handler, log, observer);
  return impl;
}
