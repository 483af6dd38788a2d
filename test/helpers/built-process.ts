// One of our built commands (dist/cmd/*.js) run by node as a child process, its output kept, and the
// ways to end it: SIGTERM with a deadline, kill -9 of it alone or of its whole process group. No vitest
// here: bench/ uses it too.
import { spawn, type ChildProcess } from 'node:child_process';
import { ProcessLog, nowMs, type ProcessLogOptions } from './process-log.js';

export interface SpawnOptions extends ProcessLogOptions {
  /** The built entry point, e.g. dist/cmd/hpp-csi-driver.js. */
  script: string;
  args: string[];
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** Flags for node itself, before the script (--cpu-prof, ...). */
  nodeArgs?: string[];
  /** A command the node process runs under, e.g. ['unshare', '--pid', '--fork']. */
  wrapper?: string[];
  /**
   * Lead a process group of its own, so that a kill -9 takes the tools it runs (mount, losetup, cp,
   * xfs_quota) down in the same instant, as the kernel does to a container's processes when its init dies.
   */
  group?: boolean;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class BuiltProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly log: ProcessLog;
  /** Resolves with the exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
  /** Resolves once it has exited and its pipes are drained (or shortly after exit: orphaned tools may hold them). */
  readonly finished: Promise<void>;
  /** nowMs() and Date.now() just before the spawn. */
  readonly spawnedAt: number;
  readonly spawnedAtEpochMs: number;
  private readonly group: boolean;

  constructor(opts: SpawnOptions) {
    const argv = [...(opts.wrapper ?? []), process.execPath, ...(opts.nodeArgs ?? []), opts.script, ...opts.args];
    this.group = opts.group ?? false;
    this.spawnedAtEpochMs = Date.now();
    this.spawnedAt = nowMs();
    this.child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
      detached: this.group,
    });
    if (this.child.pid === undefined) throw new Error(`cannot run ${argv.join(' ')}`);
    this.pid = this.child.pid;
    this.log = new ProcessLog(opts);
    this.log.attach(this.child.stdout!);
    this.log.attach(this.child.stderr!);
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    const closed = new Promise<void>((resolve) => this.child.once('close', () => resolve()));
    this.finished = this.exited.then(() => Promise.race([closed, sleep(200)]));
  }

  alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Its exit code, or the signal that ended it. */
  exitStatus(): number | string | null {
    return this.child.exitCode ?? this.child.signalCode;
  }

  /**
   * Wait until its output contains `ready`; throws with the output when it exits first, and kills it
   * (SIGKILL) and throws when `ms` pass. `what` names it in the error ("driver exited with 2: ...").
   */
  async waitReady(ready: string, ms: number, what: string): Promise<void> {
    const served = this.log.waitFor(ready, ms).then(
      () => true,
      () => false,
    );
    const outcome = await Promise.race([served, this.exited.then(() => 'exited' as const)]);
    if (outcome === true) return;
    if (outcome === 'exited' || !this.alive()) {
      await this.finished;
      throw new Error(`${what} exited with ${this.exitStatus()}:\n${this.log.text()}`);
    }
    this.killHard();
    await this.exited;
    throw new Error(`${what} did not start within ${ms} ms:\n${this.log.text()}`);
  }

  /** SIGTERM and wait for the exit; SIGKILL (its group, with `group`) after `timeoutMs`. Its exit code. */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    if (!this.alive()) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const t = Number.isFinite(timeoutMs) ? setTimeout(() => this.killHard(), timeoutMs) : undefined;
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }

  /** kill -9 (of the whole group, with `group`: a container dying) and wait until it has exited. */
  async kill(): Promise<void> {
    if (this.alive()) this.killHard();
    await this.exited;
  }

  /** SIGKILL the whole process group (the daemon and the tools it is running), without waiting. */
  killGroup(): void {
    if (!this.group) throw new Error('killGroup: not started as a process group (group: true)');
    signal(-this.pid, 'SIGKILL');
  }

  /** Send `sig` to this process alone (not its group), without waiting; nothing when it is gone. */
  signal(sig: NodeJS.Signals): void {
    signal(this.pid, sig);
  }

  /** Resolves when it has exited and, with `group`, every process of its group is gone (killed after `ms`). */
  async reaped(group: boolean, ms = 15_000): Promise<void> {
    await this.exited;
    if (!group) return;
    const until = Date.now() + ms;
    while (groupAlive(this.pid)) {
      if (Date.now() > until) {
        this.killGroup();
        await sleep(50);
        if (groupAlive(this.pid)) throw new Error(`process group ${this.pid} does not go away`);
        return;
      }
      await sleep(10);
    }
  }

  private killHard(): void {
    if (this.group) signal(-this.pid, 'SIGKILL');
    else signal(this.pid, 'SIGKILL');
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}
