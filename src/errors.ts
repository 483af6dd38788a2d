/**
 * What can go wrong, in the driver's own terms. The volume domain, the pools and the system layer
 * throw these (or plain Node system errors); which gRPC status a caller gets is decided once, at the
 * edge (src/csi/status.ts). Nothing here knows about gRPC.
 */
export type ErrorKind =
  /** The request itself is wrong: a malformed id, an unknown parameter, a bad flag. */
  | 'invalid-input'
  | 'not-found'
  /** Something of that name exists and is not what was asked for. */
  | 'conflict'
  /** A size the driver can never serve (more than the pool holds, under a minimum, over a limit). */
  | 'out-of-range'
  /** Not enough space (or loop devices, or quota) now; may succeed once some is freed. */
  | 'no-space'
  /** Another operation on the same thing is in progress; retry later. */
  | 'busy'
  /** The thing is in a state that forbids this (still published, has mounts inside). */
  | 'precondition'
  /** A pool or a peer is not reachable or not ready yet. */
  | 'unavailable'
  /** The driver does not do this. */
  | 'unsupported'
  /** The caller gave up (cancelled the call, or its deadline passed): the work was stopped. */
  | 'cancelled'
  /** On-disk state that cannot be read or contradicts itself. */
  | 'corrupt'
  /** An external tool exited with a failure. */
  | 'tool-failed'
  /** A system call the addon made failed. */
  | 'syscall-failed'
  /** A bug or an invariant broken; nothing the caller can fix. */
  | 'internal';

export class DriverError extends Error {
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DriverError';
    this.kind = kind;
  }
}

export const invalidInput = (msg: string) => new DriverError('invalid-input', msg);
export const notFound = (msg: string) => new DriverError('not-found', msg);
export const conflict = (msg: string) => new DriverError('conflict', msg);
export const outOfRange = (msg: string) => new DriverError('out-of-range', msg);
export const noSpace = (msg: string, cause?: unknown) => new DriverError('no-space', msg, { cause });
export const busy = (msg: string) => new DriverError('busy', msg);
export const precondition = (msg: string) => new DriverError('precondition', msg);
export const unavailable = (msg: string, cause?: unknown) => new DriverError('unavailable', msg, { cause });
export const unsupported = (msg: string) => new DriverError('unsupported', msg);
export const cancelled = (msg: string, cause?: unknown) => new DriverError('cancelled', msg, { cause });
export const corrupt = (msg: string, cause?: unknown) => new DriverError('corrupt', msg, { cause });
export const internal = (msg: string, cause?: unknown) => new DriverError('internal', msg, { cause });

export interface ToolResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** A tool failed: the command line, its exit code and what it printed. */
export class ToolError extends DriverError {
  readonly result: ToolResult;
  readonly commandLine: string;
  /** The tool said the disk or the quota is full (ENOSPC/EDQUOT in its words). */
  readonly outOfSpace: boolean;

  constructor(commandLine: string, result: ToolResult, opts: { outOfSpace?: boolean } = {}) {
    const printed = (result.stderr || result.stdout).trim().slice(0, 2000);
    super('tool-failed', `command failed: ${commandLine}: exit ${result.code}${printed ? `: ${printed}` : ''}`);
    this.name = 'ToolError';
    this.result = result;
    this.commandLine = commandLine;
    this.outOfSpace = opts.outOfSpace ?? false;
  }
}

/** A system call made through the addon failed: the call written as a command line, and the errno. */
export class SyscallError extends DriverError {
  readonly errno: number;
  readonly errnoName: string;

  constructor(callLine: string, errno: number, errnoName: string, text: string) {
    super('syscall-failed', `system call failed: ${callLine}: ${errnoName} (${text})`);
    this.name = 'SyscallError';
    this.errno = errno;
    this.errnoName = errnoName;
  }
}

export function isDriverError(err: unknown, kind?: ErrorKind): err is DriverError {
  return err instanceof DriverError && (kind === undefined || err.kind === kind);
}
