import { spawn } from 'node:child_process';
import os from 'node:os';
import { status } from '@grpc/grpc-js';
import { CsiError } from '../csi/errors.js';
import type { Logger } from '../observe/logger.js';
import { silentLogger } from '../observe/logger.js';

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface ExecOptions {
  /** Exit codes that are not failures (default: only 0). */
  okCodes?: number[];
  timeoutMs?: number;
  input?: string;
  /** Status to answer with when the command fails (default INTERNAL). */
  failCode?: status;
}

let log: Logger = silentLogger();

export function setExecLogger(l: Logger): void {
  log = l;
}

/** Thrown when a tool fails: carries the command line, exit code and what it printed. */
export class ExecError extends CsiError {
  readonly result: ExecResult;
  readonly commandLine: string;

  constructor(code: status, commandLine: string, result: ExecResult) {
    const printed = (result.stderr || result.stdout).trim().slice(0, 2000);
    super(code, `command failed: ${commandLine}: exit ${result.code}${printed ? `: ${printed}` : ''}`);
    this.result = result;
    this.commandLine = commandLine;
  }
}

export function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * The one place the daemon runs external tools. No shell is involved; every call is logged with its
 * command line and duration, and a failure becomes an ExecError (a gRPC status) with what the tool printed.
 */
export async function run(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const commandLine = [cmd, ...args].map(quote).join(' ');
  const started = process.hrtime.bigint();
  const result = await new Promise<ExecResult>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      reject(new CsiError(status.INTERNAL, `cannot run ${commandLine}: ${err.code ?? ''} ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ stdout, stderr: signal ? `${stderr}killed by ${signal}` : stderr, code: code ?? 128 });
    });
    if (opts.timeoutMs) timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const ok = (opts.okCodes ?? [0]).includes(result.code);
  log.debug({ cmd: commandLine, exit: result.code, ms: Math.round(ms * 10) / 10 }, 'exec');
  if (!ok) {
    log.warn({ cmd: commandLine, exit: result.code, stderr: result.stderr.trim().slice(0, 500) }, 'exec failed');
    // A full pool is the CO's to act on, whichever tool hit it.
    const full = /No space left on device|Disk quota exceeded/i.test(result.stderr);
    throw new ExecError(full ? status.RESOURCE_EXHAUSTED : (opts.failCode ?? status.INTERNAL), commandLine, result);
  }
  return result;
}

const ERRNO_NAMES = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/** Thrown when a system call made through syscall() fails: carries the call as text and the errno. */
export class SyscallError extends CsiError {
  readonly errno: number;

  constructor(code: status, callLine: string, errno: number, text: string) {
    super(code, `system call failed: ${callLine}: ${ERRNO_NAMES.get(errno) ?? `errno ${errno}`} (${text})`);
    this.errno = errno;
  }
}

/**
 * The twin of run() for the few system calls Node does not offer (made by our addon): logged like a
 * tool, with `callLine` written as the equivalent command, and a failure answered as a gRPC status
 * that names the call and the errno.
 */
export async function syscall(callLine: string, call: () => Promise<void>): Promise<void> {
  const started = process.hrtime.bigint();
  let failure: { errno: number; message: string } | undefined;
  try {
    await call();
  } catch (err) {
    const e = err as { errno?: unknown; message?: string };
    if (typeof e.errno !== 'number') throw err;
    failure = { errno: e.errno, message: e.message ?? '' };
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  log.debug({ call: callLine, errno: failure?.errno ?? 0, ms: Math.round(ms * 100) / 100 }, 'syscall');
  if (failure) {
    log.warn({ call: callLine, errno: failure.errno, error: failure.message }, 'syscall failed');
    const full = failure.errno === os.constants.errno.ENOSPC || failure.errno === os.constants.errno.EDQUOT;
    throw new SyscallError(full ? status.RESOURCE_EXHAUSTED : status.INTERNAL, callLine, failure.errno, failure.message);
  }
}
