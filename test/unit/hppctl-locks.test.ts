import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { daemonLockState, parseProcLocks, takeDaemonLock } from '../../src/admin/locks.js';
import { ProcessLock } from '../../src/system/flock.js';

describe('/proc/locks', () => {
  it('parses holders and waiters, device numbers in hex', () => {
    const text = [
      '1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF',
      '1: -> FLOCK  ADVISORY  WRITE 4343 fd:01:1234567 0 EOF',
      '2: POSIX  ADVISORY  READ 77 00:1a:99 0 EOF',
      '3: OFDLCK ADVISORY  WRITE -1 103:02:5 0 EOF',
      'garbage',
    ].join('\n');
    expect(parseProcLocks(text)).toEqual([
      { type: 'FLOCK', pid: 4242, major: 253, minor: 1, inode: 1234567n, waiting: false },
      { type: 'FLOCK', pid: 4343, major: 253, minor: 1, inode: 1234567n, waiting: true },
      { type: 'POSIX', pid: 77, major: 0, minor: 26, inode: 99n, waiting: false },
      { type: 'OFDLCK', pid: -1, major: 259, minor: 2, inode: 5n, waiting: false },
    ]);
  });
});

describe('daemonLockState', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('sees a lock held in this process, with our pid, without taking it', async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hppctl-lock-'));
    const file = path.join(dir, 'daemon.lock');
    expect(await daemonLockState(file)).toEqual({ held: false });
    writeFileSync(file, '');
    expect(await daemonLockState(file)).toEqual({ held: false });
    const lock = new ProcessLock(file);
    expect(await lock.acquire()).toBe(true);
    try {
      expect(await daemonLockState(file)).toEqual({ held: true, pid: String(process.pid) });
      expect(await takeDaemonLock(file)).toBeUndefined();
    } finally {
      await lock.release();
    }
    expect(await daemonLockState(file)).toEqual({ held: false });
    const mine = await takeDaemonLock(file);
    expect(mine).toBeDefined();
    await mine!.release();
  });

  it('sees a lock held by another process', async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hppctl-lock-'));
    const file = path.join(dir, 'daemon.lock');
    writeFileSync(file, '');
    // util-linux flock(1) holds the lock while its command runs.
    const child = spawn('flock', ['--exclusive', '--nonblock', file, 'sleep', '30'], { stdio: 'ignore' });
    try {
      let state = await daemonLockState(file);
      for (let i = 0; i < 50 && !state.held; i++) {
        await new Promise((r) => setTimeout(r, 50));
        state = await daemonLockState(file);
      }
      expect(state).toEqual({ held: true, pid: String(child.pid) });
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
    }
  });
});
