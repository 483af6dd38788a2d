/**
 * hack/csi-client.mjs against a real daemon: the README's try-out, snapshots, restores, clones and
 * expansion (controller and node) included, sizes given as 10Mi.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DISK_IMAGE } from '../../src/format/layout.js';
import { ROOT, cleanupDir, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';

const SCRIPT = path.join(ROOT, 'hack/csi-client.mjs');
const MiB = 1024 * 1024;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

describe('hack/csi-client.mjs against the daemon', () => {
  let dir: string;
  let pool: string;
  let d: DriverProcess;

  function client(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    return new Promise((resolve) => {
      execFile('node', [SCRIPT, d.endpoint, ...args], { encoding: 'utf8' }, (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, out: stdout, err: stderr });
      });
    });
  }

  async function ok(...args: string[]): Promise<Json> {
    const r = await client(...args);
    expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
    return JSON.parse(r.out) as Json;
  }

  beforeAll(async () => {
    dir = scratchDir('csi-client');
    pool = path.join(dir, 'pool');
    mkdirSync(pool);
    d = await startDriver({ dir, args: ['--pool', `default=${pool}`] });
  });
  afterAll(async () => {
    await d?.stop();
    await cleanupDir(dir);
  });

  it('create, snapshot, list, restore, clone, expand (controller and node), unpublish, delete', async () => {
    const created = await ok('create', 'vm1', '10Mi', 'mount', 'createDiskImage=true');
    const id = created.volume.volume_id as string;
    expect(id).toBe('test-node:default:vm1');
    expect(created.volume.capacity_bytes).toBe(String(10 * MiB));
    writeFileSync(path.join(pool, 'vm1', 'marker'), 'from vm1');

    const snap = await ok('create-snapshot', 'vm1-snap', id);
    const sid = snap.snapshot.snapshot_id as string;
    expect(snap.snapshot).toMatchObject({ source_volume_id: id, ready_to_use: true, size_bytes: String(10 * MiB) });
    const listed = await ok('list-snapshots', '--source', id);
    expect(listed.entries.map((e: Json) => e.snapshot.snapshot_id)).toEqual([sid]);
    expect((await ok('list-snapshots', '--id', sid)).entries).toHaveLength(1);
    // hppctl reads the same snapshot from the pool on disk, beside the daemon.
    const hppctl = JSON.parse(execFileSync('node', [path.join(ROOT, 'dist/cmd/hppctl.js'), '--pool', `default=${pool}`, 'snapshots', '--json'], { encoding: 'utf8' }));
    expect(hppctl.snapshots).toEqual([
      expect.objectContaining({ id: sid, sourceVolumeId: id, sizeBytes: String(10 * MiB), state: 'ready', data: 'present', diskImage: true, method: expect.stringMatching(/^(reflink|copy)$/) }),
    ]);
    expect(hppctl.builds).toEqual([]);

    // Restore into a larger volume: the data of the moment, disk.img grown to CDI's size for 20Mi.
    writeFileSync(path.join(pool, 'vm1', 'marker'), 'changed after the snapshot');
    const restored = await ok('restore', 'vm1-restored', sid, '20Mi');
    expect(restored.volume).toMatchObject({ capacity_bytes: String(20 * MiB), content_source: { snapshot: { snapshot_id: sid } } });
    expect(readFileSync(path.join(pool, 'vm1-restored', 'marker'), 'utf8')).toBe('from vm1');
    expect(statSync(path.join(pool, 'vm1-restored', DISK_IMAGE)).size).toBe(18 * MiB);

    const cloned = await ok('clone', 'vm1-clone', id, '16Mi');
    expect(cloned.volume).toMatchObject({ capacity_bytes: String(16 * MiB), content_source: { volume: { volume_id: id } } });
    expect(readFileSync(path.join(pool, 'vm1-clone', 'marker'), 'utf8')).toBe('changed after the snapshot');
    const cid = cloned.volume.volume_id as string;

    // Published, then expanded online: the controller raises the capacity, the node grows disk.img.
    const target = path.join(dir, 'target');
    await ok('publish', cid, target);
    expect(existsSync(path.join(target, 'marker'))).toBe(true);
    expect(statSync(path.join(target, DISK_IMAGE)).size).toBe(15 * MiB);
    const grown = await ok('expand', cid, '32Mi', target);
    expect(grown.controller.capacity_bytes).toBe(String(32 * MiB));
    expect(grown.node.capacity_bytes).toBe(String(32 * MiB));
    expect(statSync(path.join(target, DISK_IMAGE)).size).toBe(30 * MiB);
    const stats = await ok('stats', cid, target);
    expect(stats.usage.length).toBeGreaterThan(0);
    await ok('unpublish', cid, target);

    await ok('delete-snapshot', sid);
    expect((await ok('list-snapshots')).entries).toEqual([]);
    for (const v of [id, cid, restored.volume.volume_id as string]) await ok('delete', v);
    expect((await ok('list')).entries).toEqual([]);
  });

  it('a CSI error: exit 1 with the status name; a bad size: exit 2 before any call', async () => {
    const missing = await client('restore', 'nothing', 'test-node:default:no-such-snapshot', '1Mi');
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^NOT_FOUND: /);
    const calls = d.lines();
    const bad = await client('create', 'x', '1MB');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('invalid size "1MB"');
    expect(d.lines()).toBe(calls);
  });
});
