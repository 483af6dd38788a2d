import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RefusedError, diskUsage, removeTree } from '../../src/system/walk.js';

const isRoot = process.getuid?.() === 0;

describe('diskUsage and removeTree', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hppctl-walk-'));
  });
  afterEach(() => {
    try {
      execFileSync('umount', [`${dir}/tree/mnt`], { stdio: 'ignore' });
    } catch {
      /* not mounted */
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const blocks = (p: string) => BigInt(statSync(p).blocks) * 512n;

  it('sums allocated blocks, counts hard links once, never follows symlinks, skips mount points', async () => {
    const t = `${dir}/tree`;
    mkdirSync(`${t}/sub/deeper`, { recursive: true });
    writeFileSync(`${t}/a.bin`, Buffer.alloc(256 * 1024, 1));
    linkSync(`${t}/a.bin`, `${t}/sub/a-again.bin`);
    writeFileSync(`${t}/sub/deeper/b.bin`, Buffer.alloc(64 * 1024, 2));
    execFileSync('truncate', ['-s', '1G', `${t}/sparse.img`]);
    mkdirSync(`${dir}/outside`);
    writeFileSync(`${dir}/outside/big.bin`, Buffer.alloc(1024 * 1024, 3));
    symlinkSync(`${dir}/outside`, `${t}/link`);
    for (let i = 0; i < 200; i++) writeFileSync(`${t}/sub/f${i}`, 'x');

    const expected = [t, `${t}/sub`, `${t}/sub/deeper`, `${t}/a.bin`, `${t}/sub/deeper/b.bin`, `${t}/sparse.img`, ...Array.from({ length: 200 }, (_, i) => `${t}/sub/f${i}`)]
      .map(blocks)
      .reduce((a, b) => a + b, BigInt(lstatSync(`${t}/link`).blocks) * 512n);
    const du = await diskUsage(t, { mountPoints: new Set(), concurrency: 3 });
    // The symlink's own blocks are included (none for a short link on most filesystems); its target is not.
    expect(du.bytes).toBe(expected);
    expect(du.entries).toBe(3 + 3 + 200 + 1);
    expect(du.errors).toBe(0);
    expect(du.bytes).toBeLessThan(2n * 1024n * 1024n);

    if (isRoot) {
      mkdirSync(`${t}/mnt`);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', `${t}/mnt`]);
      writeFileSync(`${t}/mnt/inside.bin`, Buffer.alloc(1024 * 1024, 4));
      const withMount = await diskUsage(t, { mountPoints: new Set([`${t}/mnt`]) });
      expect(withMount.skippedMounts).toEqual([`${t}/mnt`]);
      expect(withMount.bytes).toBe(expected);
      await expect(removeTree(t, new Set([`${t}/mnt`]))).rejects.toThrow(RefusedError);
      expect(existsSync(`${t}/a.bin`)).toBe(true);
      execFileSync('umount', [`${t}/mnt`]);
    }

    const res = await removeTree(t, new Set());
    expect(existsSync(t)).toBe(false);
    expect(existsSync(`${dir}/outside/big.bin`)).toBe(true);
    expect(res.files).toBe(2 + 1 + 1 + 1 + 200);
    expect(res.dirs).toBe(3 + (isRoot ? 1 : 0));
  });

  it('a single file or a missing path', async () => {
    writeFileSync(`${dir}/f`, Buffer.alloc(8192, 1));
    expect((await diskUsage(`${dir}/f`, { mountPoints: new Set() })).bytes).toBe(blocks(`${dir}/f`));
    expect(await diskUsage(`${dir}/none`, { mountPoints: new Set() })).toMatchObject({ bytes: 0n, errors: 1 });
    symlinkSync(`${dir}/f`, `${dir}/l`);
    await removeTree(`${dir}/l`, new Set());
    expect(existsSync(`${dir}/f`)).toBe(true);
  });
});
