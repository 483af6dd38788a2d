import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { openCall, type CallContext } from '../observe/call-context.js';
import type { Logger } from '../observe/logger.js';
import { redactSecrets } from '../observe/logger.js';
import { unsupported } from '../errors.js';
import type { RpcObserver } from '../observe/rpc-observer.js';
import { requestSubject } from './call-subject.js';
import { errField, isInternal, rpcLevel } from './rpc-log.js';
import { toStatus } from './status.js';

/**
 * One RPC: the request as grpc-js hands it over (proto-loader's `__Output` type: snake_case, int64 as
 * string, every non-oneof field present, unset messages null) to the response to send (the input type).
 * `cx` is the call's context: its deadline, a signal aborted when the caller cancels, its log.
 */
export type Handler<Req, Res> = (req: Req, cx: CallContext) => Promise<Res>;

/** The method names of a generated service definition, without grpc's string index signature. */
export type MethodName<D> = keyof { [K in keyof D as string extends K ? never : K]: D[K] } & string;

/** The request a method of service D receives (its `__Output` type). */
export type RequestOf<D, M extends MethodName<D>> = D[M] extends MethodDefinition<infer _In, infer _Res, infer ReqOut, infer _ResOut> ? ReqOut : never;
/** The response a method of service D sends (its input type). */
export type ResponseOf<D, M extends MethodName<D>> = D[M] extends MethodDefinition<infer _In, infer Res, infer _ReqOut, infer _ResOut> ? Res : never;

/**
 * Handlers for methods of a service, typed from its generated definition (e.g. ControllerDefinition).
 * A method left out is answered UNIMPLEMENTED by bindService.
 */
export type ServiceHandlers<D> = { [M in MethodName<D>]?: Handler<RequestOf<D, M>, ResponseOf<D, M>> };

const MAX_DETAILS = 2048;


/** The call's deadline in ms since the epoch; undefined when it has none (grpc-js says Infinity). */
function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown>): number | undefined {
  // A call made up by hand (a test, an in-process caller) may have none of grpc-js's methods.
  if (typeof call.getDeadline !== 'function') return undefined;
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * Adapts an async handler to grpc-js: a call context (request id, deadline, aborted when the client
 * cancels before its deadline: see openCall), one log line per call (method, subject, duration, code;
 * its level by the answer: see rpc-log.ts), every thrown error mapped once (csi/status.ts) to a gRPC
 * status with its cause, secrets never logged. What the request is about (its volume, target, PVC, pod:
 * call-subject.ts) is on every line of the call, and handlers add what they find (the PVC of a volume).
 */
export function unary<Req, Res>(method: string, handler: Handler<Req, Res>, log: Logger, observer?: RpcObserver): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const started = process.hrtime.bigint();
    const req = (call.request ?? {}) as Req;
    const scope = openCall(log, { deadline: deadlineOf(call), fields: requestSubject(method, req) });
    const { cx } = scope;
    if (typeof call.on === 'function') call.on('cancelled', () => scope.cancel('the caller cancelled the call'));
    if (call.cancelled) scope.cancel('the caller cancelled the call');
    const callLog = cx.log;
    handler(req, cx).then(
      (res) => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        observer?.observe(method, 'OK', ms / 1000);
        callLog[rpcLevel(method, grpc.status.OK)]({ method, ms: round(ms), code: 'OK' }, 'rpc');
        if (callLog.isLevelEnabled('debug')) callLog.debug({ method, req: redactSecrets(req) }, 'rpc request');
        callback(null, res);
      },
      (err: unknown) => {
        const e = toStatus(err);
        // Messages quote request fields; a huge field must not make a huge status (clients drop those).
        if (e.message.length > MAX_DETAILS) e.message = `${e.message.slice(0, MAX_DETAILS)}... (${e.message.length - MAX_DETAILS} more characters)`;
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        const code = grpc.status[e.code] ?? String(e.code);
        observer?.observe(method, code, ms / 1000);
        // A bug's line carries the request, to reproduce it with.
        const fields = { method, ms: round(ms), code, err: errField(e.code, e.message, e.cause ?? e), ...(isInternal(e.code) ? { req: redactSecrets(req) } : {}) };
        callLog[rpcLevel(method, e.code)](fields, 'rpc');
        callback({ code: e.code, details: e.message });
      },
    );
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

export interface BindOptions {
  observer?: RpcObserver;
  /** Put before the method name in logs and metrics ("peer." on the peer endpoint). */
  prefix?: string;
  /** The message of the UNIMPLEMENTED answer of a method that has no handler. */
  unimplemented?: (method: string) => string;
}

export type UnaryImplementation = Record<string, grpc.handleUnaryCall<unknown, unknown>>;

/**
 * The grpc-js implementation of `service` (a definition from loadCsi()): each method with a handler is
 * served by it, every other unary method of the definition answers UNIMPLEMENTED (logged and counted
 * like any call). Streaming methods are left to grpc-js, which answers UNIMPLEMENTED itself.
 */
export function bindService<D extends grpc.ServiceDefinition>(service: D, handlers: ServiceHandlers<D>, log: Logger, opts: BindOptions = {}): UnaryImplementation {
  const given = handlers as Partial<Record<string, Handler<unknown, unknown>>>;
  const methods = Object.entries(service as grpc.ServiceDefinition);
  for (const name of Object.keys(given)) {
    if (!methods.some(([m]) => m === name)) throw new Error(`handler ${name} is not a method of the service (${methods.map(([m]) => m).join(', ')})`);
  }
  const message = opts.unimplemented ?? ((method: string) => `${method} is not supported by this driver`);
  const impl: UnaryImplementation = {};
  for (const [name, def] of methods) {
    if (def.requestStream || def.responseStream) continue;
    const handler =
      given[name] ??
      (async () => {
        throw unsupported(message(name));
      });
    impl[name] = unary(`${opts.prefix ?? ''}${name}`, handler, log, opts.observer);
  }
  return impl;
}
