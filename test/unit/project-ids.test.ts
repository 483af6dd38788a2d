import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FIRST_PROJECT_ID, ProjectIdAllocator } from '../../src/pools/project-ids.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'hpp-projids-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => mkdtempSync(path.join(root, `m${n++}-`));
const none = async () => new Set<number>();

describe('ProjectIdAllocator', () => {
  it('hands out growing ids from 1000 and records the next one before returning', async () => {
    const dir = freshDir();
    const a = new ProjectIdAllocator(dir, `fs-${dir}`, none);
    expect(await a.allocate()).toBe(FIRST_PROJECT_ID);
    expect(JSON.parse(readFileSync(path.join(dir, 'project-ids.json'), 'utf8'))).toEqual({ next: FIRST_PROJECT_ID + 1 });
    expect(await a.allocate()).toBe(FIRST_PROJECT_ID + 1);
  });

  it('never hands an id out twice across a restart, even one whose volume was deleted', async () => {
    const dir = freshDir();
    const first = new ProjectIdAllocator(dir, `fs-a-${dir}`, none);
    const ids = [await first.allocate(), await first.allocate(), await first.allocate()];
    // A restart: a new process (another filesystem key, so nothing remembered in memory), no volume records left.
    const again = new ProjectIdAllocator(dir, `fs-b-${dir}`, none);
    again.atLeast(0);
    const next = await again.allocate();
    expect(ids).not.toContain(next);
    expect(next).toBe(Math.max(...ids) + 1);
  });

  it('goes above the ids the records hold when the file is missing (a pool made before it existed)', async () => {
    const dir = freshDir();
    const a = new ProjectIdAllocator(dir, `fs-${dir}`, none);
    a.atLeast(1500);
    expect(await a.allocate()).toBe(1500);
  });

  it('skips ids the filesystem counts (another pool, an admin project, an abandoned build)', async () => {
    const dir = freshDir();
    const a = new ProjectIdAllocator(dir, `fs-${dir}`, async () => new Set([1000, 1001, 1003]));
    expect(await a.allocate()).toBe(1002);
    expect(await a.allocate()).toBe(1004);
  });

  it('two pools on one filesystem get different ids, also when allocating at the same time', async () => {
    const fsKey = `shared-${freshDir()}`;
    const a = new ProjectIdAllocator(freshDir(), fsKey, none);
    const b = new ProjectIdAllocator(freshDir(), fsKey, none);
    const got = await Promise.all([a.allocate(), b.allocate(), a.allocate(), b.allocate(), a.allocate()]);
    expect(new Set(got).size).toBe(got.length);
  });

  it("an id one pool used for a volume since deleted is not reused by another pool on the filesystem after a restart", async () => {
    const [dirA, dirB] = [freshDir(), freshDir()];
    const before = `fs-before-${dirA}`;
    await new ProjectIdAllocator(dirA, before, none).allocate();
    const deleted = await new ProjectIdAllocator(dirB, before, none).allocate();
    // A restart (a new filesystem key: nothing in memory); B's volume is gone, so the filesystem counts nothing.
    const after = `fs-after-${dirA}`;
    const a = new ProjectIdAllocator(dirA, after, none);
    new ProjectIdAllocator(dirB, after, none);
    expect(await a.allocate()).toBeGreaterThan(deleted);
  });

  it('concurrent allocations in one pool are distinct and the record is the highest plus one', async () => {
    const dir = freshDir();
    const a = new ProjectIdAllocator(dir, `fs-${dir}`, none);
    const got = await Promise.all(Array.from({ length: 20 }, () => a.allocate()));
    expect(new Set(got).size).toBe(20);
    expect(JSON.parse(readFileSync(path.join(dir, 'project-ids.json'), 'utf8')).next).toBe(Math.max(...got) + 1);
  });

  it('a damaged record is an error naming the file, and nothing is handed out', async () => {
    const dir = freshDir();
    writeFileSync(path.join(dir, 'project-ids.json'), '{"next": "x"');
    const a = new ProjectIdAllocator(dir, `fs-${dir}`, none);
    await expect(a.allocate()).rejects.toThrow(`${path.join(dir, 'project-ids.json')} does not hold a valid next project id`);
    expect(readFileSync(path.join(dir, 'project-ids.json'), 'utf8')).toBe('{"next": "x"');
  });

  it('a failing usage check hands nothing out and the next call works', async () => {
    const dir = freshDir();
    let fail = true;
    const a = new ProjectIdAllocator(dir, `fs-${dir}`, async () => {
      if (fail) throw new Error('xfs_quota failed');
      return new Set();
    });
    await expect(a.allocate()).rejects.toThrow('xfs_quota failed');
    fail = false;
    expect(await a.allocate()).toBe(FIRST_PROJECT_ID);
  });
});
