import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { watchForPath } from '../../src/system/path-watch.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-unit-path-watch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const settle = () => new Promise((r) => setTimeout(r, 100));

describe('watchForPath', () => {
  it('follows the directories on the way down and calls back once the path is there', async () => {
    const target = path.join(dir, 'a', 'b', 'pool');
    const seen = vi.fn();
    const w = watchForPath(target, seen);
    mkdirSync(path.join(dir, 'a'));
    await settle();
    mkdirSync(path.join(dir, 'a', 'b'));
    await settle();
    writeFileSync(path.join(dir, 'a', 'b', 'other'), '');
    await settle();
    expect(seen).not.toHaveBeenCalled();
    // Published as hpp-pool-device does: a temporary name renamed into place.
    writeFileSync(path.join(dir, 'a', 'b', '.pool.tmp'), '');
    renameSync(path.join(dir, 'a', 'b', '.pool.tmp'), target);
    await vi.waitFor(() => expect(seen).toHaveBeenCalledTimes(1), { timeout: 2_000, interval: 20 });
    rmSync(target);
    writeFileSync(target, '');
    await settle();
    expect(seen).toHaveBeenCalledTimes(1);
    w.close();
  });

  it('calls back at once for a path that is already there; a dangling symlink is not there', async () => {
    const there = vi.fn();
    watchForPath(dir, there).close();
    expect(there).toHaveBeenCalledTimes(1);

    const link = path.join(dir, 'link');
    symlinkSync(path.join(dir, 'link-target'), link);
    const seen = vi.fn();
    const w = watchForPath(link, seen);
    await settle();
    expect(seen).not.toHaveBeenCalled();
    // Here the link's target appears beside it, in the directory watched.
    writeFileSync(path.join(dir, 'link-target'), '');
    await vi.waitFor(() => expect(seen).toHaveBeenCalledTimes(1), { timeout: 2_000, interval: 20 });
    w.close();
  });

  it('close() stops it', async () => {
    const target = path.join(dir, 'closed');
    const seen = vi.fn();
    watchForPath(target, seen).close();
    mkdirSync(target);
    await settle();
    expect(seen).not.toHaveBeenCalled();
  });
});
