/**
 * What a component logs, kept for a test to read: a pino logger writing into an array of parsed lines,
 * and a call through the request wrapper (src/csi/rpc.ts unary) without gRPC.
 */
import * as grpc from '@grpc/grpc-js';
import { unary, type Handler } from '../../src/csi/rpc.js';
import { createLogger, type Logger } from '../../src/observe/logger.js';

export type LogLine = Record<string, unknown> & { level: number; msg: string };

export interface CapturedLog {
  log: Logger;
  lines: LogLine[];
  /** The same lines as written (JSON.parse hides a key written twice). */
  raw: string[];
  /** The lines with this message. */
  find(msg: string): LogLine[];
}

/** The daemon's logger (createLogger), at `level`, its lines kept. */
export function captureLog(level = 'debug'): CapturedLog {
  const lines: LogLine[] = [];
  const raw: string[] = [];
  const write = (l: string) => {
    raw.push(l);
    lines.push(JSON.parse(l) as LogLine);
  };
  const log = createLogger({ level, destination: { write } });
  return { log, lines, raw, find: (msg) => lines.filter((l) => l.msg === msg) };
}

export interface WrappedAnswer<Res> {
  res?: Res;
  err?: { code: grpc.status; details: string };
}

/** One call of `handler` through the request wrapper, as grpc-js would make it (no deadline, not cancelled). */
export function callWrapped<Req, Res>(method: string, handler: Handler<Req, Res>, req: Req, log: Logger): Promise<WrappedAnswer<Res>> {
  const wrapped = unary(method, handler, log);
  return new Promise((resolve) => {
    const call = { request: req, cancelled: false } as unknown as grpc.ServerUnaryCall<Req, Res>;
    wrapped(call, ((err: { code: grpc.status; details: string } | null, res?: Res) => resolve(err ? { err } : { res })) as grpc.sendUnaryData<Res>);
  });
}
