import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import os from 'node:os';
import { internal, SyscallError, ToolError, type ToolResult } from '../errors.js';
import { abortReason } from '../observe/call-context.js';
import type { Logger } from '../observe/logger.js';
import { silentLogger } from '../observe/logger.js';

export type ExecResult = ToolResult;

/** Whom a tool runs for: where its log lines go (a call's carry its request id), and what stops it. */
export interface ToolContext {
  log?: Logger;
  /** The call the tool runs for (a CallContext is a ToolContext): the host tags its exec lines with it. */
  requestId?: string;
  /** What that call is about (its volume, PVC, pod: CallContext.fields): on its exec lines too. */
  fields?: Readonly<Record<string, string>>;
  /** Aborted: the tool is killed (SIGKILL) and run() rejects with the abort's reason. */
  signal?: AbortSignal;
}

export interface ExecOptions extends ToolContext {
  /** Exit codes that are not failures (default: only 0). */
  okCodes?: number[];
  timeoutMs?: number;
  input?: string;
  /** Open file descriptors of ours the tool gets as its fd 3, 4, ... (flock(1) locks an inherited fd). */
  passFds?: number[];
}

const silent = silentLogger();

export function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * The one place the daemon runs external tools. No shell is involved; every call is logged with its
 * command line and duration, and a failure becomes a ToolError with what the tool printed.
 */
export async function run(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const commandLine = [cmd, ...args].map(quote).join(' ');
  const log = opts.log ?? silent;
  const { signal: abort } = opts;
  if (abort?.aborted) throw abortReason(abort);
  const started = process.hrtime.bigint();
  let aborted = false;
  const result = await new Promise<ExecResult>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe', ...(opts.passFds ?? [])], env: { ...process.env, LC_ALL: 'C' } }) as ChildProcessWithoutNullStreams;
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      aborted = true;
      child.kill('SIGKILL');
    };
    const settled = () => {
      if (timer) clearTimeout(timer);
      abort?.removeEventListener('abort', onAbort);
    };
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      settled();
      reject(internal(`cannot run ${commandLine}: ${err.code ?? ''} ${err.message}`, err));
    });
    // 'close' comes after the child has exited and its pipes are drained: nothing of it is left.
    child.on('close', (code, signal) => {
      settled();
      resolve({ stdout, stderr: signal ? `${stderr}killed by ${signal}` : stderr, code: code ?? 128 });
    });
    if (opts.timeoutMs) timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    abort?.addEventListener('abort', onAbort, { once: true });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (aborted && abort) {
    log.info({ cmd: commandLine, ms: Math.round(ms * 10) / 10 }, 'exec killed: its caller gave up');
    throw abortReason(abort);
  }
  const ok = (opts.okCodes ?? [0]).includes(result.code);
  log.debug({ cmd: commandLine, exit: result.code, ms: Math.round(ms * 10) / 10 }, 'exec');
  if (!ok) {
    log.warn({ cmd: commandLine, exit: result.code, stderr: result.stderr.trim().slice(0, 500) }, 'exec failed');
    // The tools print strerror(ENOSPC/EDQUOT) when they hit a full pool or quota.
    const outOfSpace = /No space left on device|Disk quota exceeded/i.test(result.stderr);
    throw new ToolError(commandLine, result, { outOfSpace });
  }
  return result;
}

const ERRNO_NAMES = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/**
 * The twin of run() for the few system calls Node does not offer (made by our addon): logged like a
 * tool, with `callLine` written as the equivalent command, and a failure thrown as a SyscallError
 * that names the call and the errno.
 */
export async function syscall(callLine: string, call: () => Promise<void>, tc: ToolContext = {}): Promise<void> {
  const log = tc.log ?? silent;
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
    log.warn({ call: callLine, errno: failure.errno, err: failure.message }, 'syscall failed');
    throw new SyscallError(callLine, failure.errno, ERRNO_NAMES.get(failure.errno) ?? `errno ${failure.errno}`, failure.message);
  }
}
