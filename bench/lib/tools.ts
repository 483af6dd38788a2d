// Running external tools (no shell, LC_ALL=C so their output parses the same everywhere).
import { execFileSync, spawn, type ExecFileSyncOptions } from 'node:child_process';
import { nowMs } from './common.js';

/** Run a tool synchronously; returns stdout, throws with stderr on failure. */
export function sh(cmd: string, args: string[], opts: ExecFileSyncOptions = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' }, ...opts }).toString();
}

export interface ToolRun {
  stdout: string;
  stderr: string;
  code: number | null;
  ms: number;
}

/** Run a tool asynchronously; resolves with stdout, stderr, exit code and wall time (never throws on exit code). */
export function runTool(cmd: string, args: string[]): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const started = nowMs();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ stdout, stderr, code, ms: nowMs() - started }));
  });
}

/** The stderr of a failed sh(), else the error's message. */
export function toolError(err: unknown): string {
  const e = err as { stderr?: unknown; message?: string };
  return e.stderr ? String(e.stderr) : (e.message ?? String(err));
}
