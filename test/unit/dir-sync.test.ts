import fs, { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { syncDir } from '../../src/system/dir-sync.js';

describe('syncDir (group commit of directory fsyncs)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-unit-dirsync-'));
  });
  afterEach(() => {
    vi.restoreAllMocks();
    rmSync(dir, { recursive: true, force: true });
  });

  it('callers who ask while an fsync runs share the next one; none shares one that started before it asked', async () => {
    const fsyncs: number[] = [];
    const real = fs.fsync;
    vi.spyOn(fs, 'fsync').mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      fsyncs.push(fd);
      setTimeout(() => real(fd, cb), 20);
    }) as typeof fs.fsync);
    const first = syncDir(dir);
    expect(fsyncs).toHaveLength(1);
    const joined = Array.from({ length: 15 }, () => syncDir(dir));
    // They wait for a second fsync, started after the first one ends.
    expect(fsyncs).toHaveLength(1);
    await first;
    await Promise.all(joined);
    expect(fsyncs).toHaveLength(2);
    await syncDir(dir);
    expect(fsyncs).toHaveLength(3);
  });

  it('an error reaches every caller who shared the fsync; the next caller starts afresh', async () => {
    const real = fs.fsync;
    let fail = true;
    vi.spyOn(fs, 'fsync').mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      if (fail) setTimeout(() => cb(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })), 5);
      else real(fd, cb);
    }) as typeof fs.fsync);
    const a = syncDir(dir);
    const b = syncDir(dir);
    const c = syncDir(dir);
    await expect(a).rejects.toMatchObject({ code: 'EIO' });
    await expect(b).rejects.toMatchObject({ code: 'EIO' });
    await expect(c).rejects.toMatchObject({ code: 'EIO' });
    fail = false;
    writeFileSync(path.join(dir, 'x'), 'x');
    await expect(syncDir(dir)).resolves.toBeUndefined();
  });

  it('a missing directory fails with ENOENT', async () => {
    await expect(syncDir(path.join(dir, 'nope'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
