/**
 * The native parts are optional at install (src/native/install.mjs): a node-gyp build that fails leaves
 * `npm ci` succeeding with a clear message (unless HPP_NATIVE=required), and the daemon works without
 * them: mount(8) for our addon (native-mount.ts, tested in mount.test.ts), flock(1) for fs-ext. The whole
 * `npm ci` without a compiler is hack/check-no-compiler.sh (a phase of .ci/run).
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { flockWithTool, ProcessLock } from '../../src/system/flock.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

describe('src/native/install.mjs', () => {
  // npm hands the script its node-gyp as npm_config_node_gyp: one that cannot run stands for a
  // machine without the toolchain (nothing is built or cleaned in src/native/build).
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, [path.join(ROOT, 'src', 'native', 'install.mjs')], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, HPP_NATIVE: '', npm_config_node_gyp: path.join(ROOT, 'no-such-node-gyp.js'), ...env },
    });

  it('a failed build is not a failed install: it says so and what the daemon does instead', () => {
    const res = run({});
    expect(res.status, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/hpp-csi-driver install: the native mount addon \(src\/native\) was not built \(node-gyp rebuild: exit status 1\)/);
    expect(res.stderr).toMatch(/mount\(8\) and umount\(8\) instead/);
    expect(res.stderr).toMatch(/npm run build:native/);
  });

  it('HPP_NATIVE=required makes it one (.ci/run, the Dockerfile, the e2e image)', () => {
    const res = run({ HPP_NATIVE: 'required' });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/HPP_NATIVE=required: failing the install/);
  });

  it('package.json runs it as the install script, and fs-ext is an optional dependency', async () => {
    const pkg = JSON.parse(await fsp.readFile(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
    expect(pkg.scripts!.install).toBe('node src/native/install.mjs');
    expect(pkg.optionalDependencies?.['fs-ext']).toBeDefined();
    expect(pkg.dependencies?.['fs-ext']).toBeUndefined();
    const lock = JSON.parse(await fsp.readFile(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { optional?: boolean }> };
    expect(lock.packages['node_modules/fs-ext']?.optional).toBe(true);
    expect(lock.packages['node_modules/nan']?.optional, 'fs-ext alone needs nan').toBe(true);
  });
});

describe('locks without fs-ext: flock(1) on our descriptor', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-flock-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const fsExt = (() => {
    try {
      return createRequire(import.meta.url)('fs-ext') as { flock(fd: number, flags: string, cb: (err: NodeJS.ErrnoException | null) => void): void };
    } catch {
      return undefined;
    }
  })();

  it('holds the lock after flock(1) has exited, against another open of the file, until we close it', async () => {
    const file = path.join(dir, 'daemon.lock');
    await fsp.writeFile(file, '');
    const a = await fsp.open(file, 'r');
    const b = await fsp.open(file, 'r');
    try {
      expect(await flockWithTool(a.fd)).toBe(true);
      expect(await flockWithTool(b.fd), 'held by a (another open file description)').toBe(false);
      if (fsExt) {
        // The kernel's flock(2), as fs-ext takes it, sees the same lock.
        const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => fsExt.flock(b.fd, 'exnb', resolve));
        expect(err?.code).toMatch(/EAGAIN|EWOULDBLOCK/);
      }
      await a.close();
      expect(await flockWithTool(b.fd), 'a closed: free again').toBe(true);
    } finally {
      await a.close().catch(() => {});
      await b.close();
    }
  });

  it('ProcessLock (whichever way it locks) refuses a second holder and lets go on release', async () => {
    const file = path.join(dir, 'pool.lock');
    const first = new ProcessLock(file);
    const second = new ProcessLock(file);
    expect(await first.acquire()).toBe(true);
    expect(await second.acquire()).toBe(false);
    const other = await fsp.open(file, 'r');
    try {
      expect(await flockWithTool(other.fd), 'a flock(1) of another description sees it too').toBe(false);
    } finally {
      await other.close();
    }
    expect((await fsp.readFile(file, 'utf8')).trim()).toBe(String(process.pid));
    await first.release();
    expect(await second.acquire()).toBe(true);
    await second.release();
  });
});
