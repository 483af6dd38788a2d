import { status } from '@grpc/grpc-js';

/*
 * How the request wrapper logs a call's answer (its `rpc` line): at which level, and with what error.
 * `jq 'select(.level >= 40)'` is meant to show every call that failed.
 */

export type RpcLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * Asked over and over by kubelet and the sidecars and changing nothing (Probe every few seconds,
 * NodeGetCapabilities before each stats call, NodeGetVolumeStats about once a minute for every
 * published volume, GetCapacity every --capacity-poll-interval for every StorageClass and node):
 * their answers are debug, or a node with a hundred volumes writes a hundred info
 * lines a minute that say nothing; their failures are logged as any other.
 */
const ROUTINE_METHODS = new Set(['Probe', 'GetPluginInfo', 'GetPluginCapabilities', 'NodeGetCapabilities', 'ControllerGetCapabilities', 'NodeGetVolumeStats', 'GetCapacity']);

/**
 * The driver's side failed, or could not serve the call now: the node's operator has something to
 * look at (a bug, a pool gone, a full pool, a call that took too long).
 */
const SERVER_FAILURES = new Set([status.INTERNAL, status.UNKNOWN, status.DATA_LOSS, status.UNAVAILABLE, status.RESOURCE_EXHAUSTED, status.DEADLINE_EXCEEDED]);

/**
 * The level of a call's `rpc` line. OK is info (debug for the routine methods); a server-side
 * failure (SERVER_FAILURES) is error; every other code is warn: the request was refused
 * (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, OUT_OF_RANGE, ABORTED,
 * UNAUTHENTICATED, PERMISSION_DENIED), asked for what the driver does not do (UNIMPLEMENTED: a CO
 * and driver that disagree on capabilities), or was CANCELLED by its caller before its deadline,
 * which stopped and threw away work the CO will ask for again.
 */
export function rpcLevel(method: string, code: status): RpcLevel {
  if (code === status.OK) return ROUTINE_METHODS.has(bareMethod(method)) ? 'debug' : 'info';
  return SERVER_FAILURES.has(code) ? 'error' : 'warn';
}

/** A bug or a failure nobody foresaw: its line carries the stack of the cause, and the request. */
export function isInternal(code: status): boolean {
  return code === status.INTERNAL || code === status.UNKNOWN;
}

/**
 * The `err` field of a failed call's line: the message it was answered with, and for INTERNAL the
 * stack of what was thrown (the status's cause, else the status itself), pino's shape for an error.
 */
export function errField(code: status, message: string, cause: unknown): { type: string; message: string; stack?: string } {
  const thrown = cause instanceof Error ? cause : undefined;
  const field: { type: string; message: string; stack?: string } = { type: thrown?.name ?? 'Error', message };
  if (isInternal(code) && thrown?.stack) field.stack = thrown.stack;
  return field;
}

/** "peer.Probe" → "Probe": the peer endpoint's methods are prefixed in logs and metrics. */
function bareMethod(method: string): string {
  const dot = method.lastIndexOf('.');
  return dot < 0 ? method : method.slice(dot + 1);
}
