import { status } from '@grpc/grpc-js';
import os from 'node:os';

/** An error that already knows which gRPC status it must be answered with. */
export class CsiError extends Error {
  readonly code: status;

  constructor(code: status, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CsiError';
    this.code = code;
  }
}

export const invalidArgument = (msg: string) => new CsiError(status.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new CsiError(status.NOT_FOUND, msg);
export const alreadyExists = (msg: string) => new CsiError(status.ALREADY_EXISTS, msg);
export const outOfRange = (msg: string) => new CsiError(status.OUT_OF_RANGE, msg);
export const resourceExhausted = (msg: string) => new CsiError(status.RESOURCE_EXHAUSTED, msg);
export const aborted = (msg: string) => new CsiError(status.ABORTED, msg);
export const failedPrecondition = (msg: string) => new CsiError(status.FAILED_PRECONDITION, msg);
export const unimplemented = (msg: string) => new CsiError(status.UNIMPLEMENTED, msg);
export const unavailable = (msg: string) => new CsiError(status.UNAVAILABLE, msg);
export const internal = (msg: string, cause?: unknown) => new CsiError(status.INTERNAL, msg, { cause });

/**
 * Turns any thrown value into a CsiError. Node system errors keep their errno code, syscall and path
 * in the message, and the common storage ones get the status a CO can act on.
 */
export function toCsiError(err: unknown): CsiError {
  if (err instanceof CsiError) return err;
  if (err && typeof err === 'object' && 'code' in err && typeof (err as NodeJS.ErrnoException).code === 'string') {
    const e = err as NodeJS.ErrnoException;
    // Node 20's libuv names EDQUOT "UNKNOWN"; the errno number tells.
    if (e.errno === -os.constants.errno.EDQUOT) e.code = 'EDQUOT';
    const where = [e.syscall, e.path, (e as { dest?: string }).dest].filter(Boolean).join(' ');
    const msg = `${e.code}${where ? ` (${where})` : ''}: ${e.message}`;
    switch (e.code) {
      case 'ENOSPC':
      case 'EDQUOT':
        return new CsiError(status.RESOURCE_EXHAUSTED, msg, { cause: err });
      case 'EBUSY':
        return new CsiError(status.FAILED_PRECONDITION, msg, { cause: err });
      default:
        return new CsiError(status.INTERNAL, msg, { cause: err });
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return new CsiError(status.INTERNAL, message, { cause: err });
}
