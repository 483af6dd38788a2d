import { status } from '@grpc/grpc-js';
import os from 'node:os';
import { DriverError, SyscallError, ToolError, type ErrorKind } from '../errors.js';

/**
 * A gRPC status that is already decided: one a peer answered with (relayed by the router as it
 * came), or one made here at the edge. Everything else is mapped by toStatus().
 */
export class StatusError extends Error {
  readonly code: status;

  constructor(code: status, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StatusError';
    this.code = code;
  }
}

const BY_KIND: Record<ErrorKind, status> = {
  'invalid-input': status.INVALID_ARGUMENT,
  'not-found': status.NOT_FOUND,
  conflict: status.ALREADY_EXISTS,
  'out-of-range': status.OUT_OF_RANGE,
  'no-space': status.RESOURCE_EXHAUSTED,
  busy: status.ABORTED,
  precondition: status.FAILED_PRECONDITION,
  unavailable: status.UNAVAILABLE,
  unsupported: status.UNIMPLEMENTED,
  cancelled: status.CANCELLED,
  corrupt: status.INTERNAL,
  'tool-failed': status.INTERNAL,
  'syscall-failed': status.INTERNAL,
  internal: status.INTERNAL,
};

const FULL_ERRNOS = new Set([os.constants.errno.ENOSPC, os.constants.errno.EDQUOT]);

/** The one mapping from what went wrong to the status a CO gets. */
export function statusOf(err: unknown): status {
  if (err instanceof StatusError) return err.code;
  // A full pool is the CO's to act on, whichever tool or call hit it.
  if (err instanceof ToolError) return err.outOfSpace ? status.RESOURCE_EXHAUSTED : status.INTERNAL;
  if (err instanceof SyscallError) return FULL_ERRNOS.has(err.errno) ? status.RESOURCE_EXHAUSTED : status.INTERNAL;
  if (err instanceof DriverError) return BY_KIND[err.kind];
  const code = systemErrorCode(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') return status.RESOURCE_EXHAUSTED;
  if (code === 'EBUSY') return status.FAILED_PRECONDITION;
  return status.INTERNAL;
}

/** Node's errno name of a system error ("ENOSPC"), undefined for anything else. */
function systemErrorCode(err: unknown): string | undefined {
  if (!err || typeof err !== 'object' || !('code' in err)) return undefined;
  const e = err as NodeJS.ErrnoException;
  if (typeof e.code !== 'string') return undefined;
  // Node 20's libuv names EDQUOT "UNKNOWN"; the errno number tells.
  if (e.errno === -os.constants.errno.EDQUOT) return 'EDQUOT';
  return e.code;
}

/** The message a CO gets: a system error's errno, call and path come first. */
export function messageOf(err: unknown): string {
  const code = err instanceof DriverError || err instanceof StatusError ? undefined : systemErrorCode(err);
  if (code) {
    const e = err as NodeJS.ErrnoException & { dest?: string };
    const where = [e.syscall, e.path, e.dest].filter(Boolean).join(' ');
    return `${code}${where ? ` (${where})` : ''}: ${e.message}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Any thrown value as the status to answer with. */
export function toStatus(err: unknown): StatusError {
  if (err instanceof StatusError) return err;
  return new StatusError(statusOf(err), messageOf(err), { cause: err });
}
