// Concurrent calls against the real daemon: same-name creates collapse into one volume, different names
// proceed together, create/delete races end consistent on disk and in the daemon.
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { META_DIR, poolLayout, recordFile } from '../../src/format/layout.js';
import { MOUNT_CAP, cleanupDir, scratchDir, startDriver, type DriverProcess, type Msg } from '../helpers/driver.js';

function mountPointsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[4]!)
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

function codeOf(r: PromiseSettledResult<unknown>): string {
  return r.status === 'fulfilled' ? 'OK' : status[(r.reason as ServiceError).code] ?? String(r.reason);
}

describe('concurrent calls', () => {
  let dir: string;
  let pool: string;
  let d: DriverProcess;

  const create = (name: string, bytes = '1048576') =>
    d.clients.controller.CreateVolume({ name, volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: bytes } });
  const del = (name: string) => d.clients.controller.DeleteVolume({ volume_id: `test-node:default:${name}` });

  /** Volume directories in the pool (everything but the private .hpp area). */
  const volumeDirs = () => readdirSync(pool).filter((e) => e !== META_DIR).sort();
  const records = () => readdirSync(poolLayout(pool).volumesDir).sort();
  const tmpEntries = () => readdirSync(poolLayout(pool).tmpDir);
  const recordOf = (name: string) => recordFile(poolLayout(pool).volumesDir, name);
  async function listed(): Promise<string[]> {
    const res = await d.clients.controller.ListVolumes({});
    return res.entries.map((e: Msg) => e.volume.volume_id as string).sort();
  }

  beforeAll(async () => {
    dir = scratchDir('concurrency');
    pool = path.join(dir, 'pool');
    mkdirSync(pool);
    d = await startDriver({ dir, args: ['--pool', `default=${pool}`] });
  });

  afterAll(async () => {
    await d?.stop();
    if (dir) await cleanupDir(dir);
  });

  for (const n of [2, 10]) {
    it(`${n} concurrent CreateVolume calls with one name give one volume, one id, one directory`, async () => {
      const name = `same-${n}`;
      const results = await Promise.all(Array.from({ length: n }, () => create(name)));
      const ids = new Set(results.map((r) => r.volume.volume_id));
      expect([...ids]).toEqual([`test-node:default:${name}`]);
      expect(new Set(results.map((r) => r.volume.capacity_bytes))).toEqual(new Set(['1048576']));
      expect(volumeDirs().filter((e) => e === name || e.startsWith(name))).toEqual([name]);
      expect(records().filter((e) => e.startsWith(name))).toEqual([`${name}.json`]);
      expect(tmpEntries()).toEqual([]);
      expect((await listed()).filter((id) => id.endsWith(`:${name}`))).toEqual([`test-node:default:${name}`]);
    });
  }

  it('concurrent creates of one name with different sizes: one wins, the others are ALREADY_EXISTS', async () => {
    const name = 'same-size-race';
    const sizes = ['1048576', '2097152', '3145728', '4194304', '5242880'];
    const settled = await Promise.allSettled(sizes.map((s) => create(name, s)));
    const ok = settled.filter((r): r is PromiseFulfilledResult<Msg> => r.status === 'fulfilled');
    expect(ok).toHaveLength(1);
    expect(settled.map(codeOf).filter((c) => c !== 'OK')).toEqual(Array(sizes.length - 1).fill('ALREADY_EXISTS'));
    expect(volumeDirs().filter((e) => e === name)).toEqual([name]);
    // The record on disk has the size that the winner was told.
    const rec = JSON.parse(readFileSync(recordOf(name), 'utf8'));
    expect(rec.capacityBytes).toBe(ok[0]!.value.volume.capacity_bytes);
  });

  it('20 concurrent creates of different names all succeed, each with its own directory', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `par-${String(i).padStart(2, '0')}`);
    const started = Date.now();
    const results = await Promise.all(names.map((nm) => create(nm)));
    const ms = Date.now() - started;
    expect(results.map((r) => r.volume.volume_id).sort()).toEqual(names.map((nm) => `test-node:default:${nm}`));
    for (const nm of names) {
      expect(existsSync(path.join(pool, nm))).toBe(true);
      expect(existsSync(recordOf(nm))).toBe(true);
    }
    expect(tmpEntries()).toEqual([]);
    const all = await listed();
    for (const nm of names) expect(all).toContain(`test-node:default:${nm}`);
    // Twenty small creates (each a few fsyncs) must not take anywhere near a lock timeout.
    expect(ms).toBeLessThan(20_000);

    // And 20 concurrent deletes of them.
    await Promise.all(names.map((nm) => del(nm)));
    for (const nm of names) expect(existsSync(path.join(pool, nm))).toBe(false);
    const after = await listed();
    for (const nm of names) expect(after).not.toContain(`test-node:default:${nm}`);
  });

  it('concurrent create and delete of one name end consistent: record present iff directory present iff listed', async () => {
    for (let round = 0; round < 12; round++) {
      const name = `race-${round}`;
      if (round % 3 === 2) await create(name); // sometimes the volume exists before the race
      const ops: Array<Promise<unknown>> = [];
      for (let i = 0; i < 6; i++) ops.push((i + round) % 2 === 0 ? create(name) : del(name));
      const settled = await Promise.allSettled(ops);
      // Every call either did its work or found it done: no errors at all.
      expect(settled.map(codeOf)).toEqual(Array(ops.length).fill('OK'));
      const dirThere = existsSync(path.join(pool, name));
      const recThere = existsSync(recordOf(name));
      const inList = (await listed()).includes(`test-node:default:${name}`);
      expect({ name, dirThere, recThere, inList }).toEqual({ name, dirThere: recThere, recThere, inList: recThere });
      if (recThere) {
        const rec = JSON.parse(readFileSync(recordOf(name), 'utf8'));
        expect(rec.state).toBe('ready');
      }
      // The last call decides: the order the daemon serialised them in is arrival order per name.
      await del(name);
      expect(existsSync(path.join(pool, name))).toBe(false);
    }
    expect(tmpEntries()).toEqual([]);
  });

  it('concurrent publishes of one volume at one target mount it once; concurrent unpublishes leave nothing', async () => {
    const res = await create('pubrace');
    const id = res.volume.volume_id;
    const target = path.join(dir, 'targets', 'pubrace', 'mount');
    const pubs = await Promise.allSettled(
      Array.from({ length: 8 }, () => d.clients.node.NodePublishVolume({ volume_id: id, target_path: target, volume_capability: MOUNT_CAP, readonly: false })),
    );
    expect(pubs.map(codeOf)).toEqual(Array(8).fill('OK'));
    expect(mountPointsUnder(target)).toEqual([target]);
    const unpubs = await Promise.allSettled(Array.from({ length: 8 }, () => d.clients.node.NodeUnpublishVolume({ volume_id: id, target_path: target })));
    expect(unpubs.map(codeOf)).toEqual(Array(8).fill('OK'));
    expect(mountPointsUnder(target)).toEqual([]);
    expect(existsSync(target)).toBe(false);
    await del('pubrace');
  });

  it('concurrent publishes of one single-writer volume at different targets: exactly one succeeds', async () => {
    const cap = { access_mode: { mode: 'SINGLE_NODE_SINGLE_WRITER' }, mount: { fs_type: '', mount_flags: [] } };
    const res = await d.clients.controller.CreateVolume({ name: 'sswrace', volume_capabilities: [cap] });
    const id = res.volume.volume_id;
    const targets = Array.from({ length: 6 }, (_, i) => path.join(dir, 'targets', `ssw-${i}`, 'mount'));
    const settled = await Promise.allSettled(targets.map((t) => d.clients.node.NodePublishVolume({ volume_id: id, target_path: t, volume_capability: cap, readonly: false })));
    const codes = settled.map(codeOf);
    expect(codes.filter((c) => c === 'OK')).toHaveLength(1);
    expect(codes.filter((c) => c !== 'OK')).toEqual(Array(5).fill('FAILED_PRECONDITION'));
    const winner = targets[codes.indexOf('OK')]!;
    expect(mountPointsUnder(path.join(dir, 'targets')).filter((m) => m.includes('/ssw-'))).toEqual([winner]);
    await d.clients.node.NodeUnpublishVolume({ volume_id: id, target_path: winner });
    await del('sswrace');
  });

  it('NodePublish racing DeleteVolume: either published and kept, or deleted and nothing mounted', async () => {
    for (let round = 0; round < 6; round++) {
      const name = `pubdel-${round}`;
      const id = (await create(name)).volume.volume_id;
      const target = path.join(dir, 'targets', name, 'mount');
      const publish = () => d.clients.node.NodePublishVolume({ volume_id: id, target_path: target, volume_capability: MOUNT_CAP, readonly: false });
      // Alternate which call is sent first.
      const [p, r] =
        round % 2 === 0
          ? await Promise.allSettled([publish(), del(name)])
          : await Promise.allSettled([del(name), publish()]).then(([x, y]) => [y, x]);
      const outcome = [codeOf(p!), codeOf(r!)].join('/');
      if (outcome === 'OK/FAILED_PRECONDITION') {
        expect(mountPointsUnder(target)).toEqual([target]);
        expect(existsSync(path.join(pool, name))).toBe(true);
        await d.clients.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
        await del(name);
      } else {
        expect(outcome).toBe('NOT_FOUND/OK');
        expect(mountPointsUnder(target)).toEqual([]);
        expect(existsSync(target)).toBe(false);
      }
      expect(existsSync(path.join(pool, name))).toBe(false);
      expect(mountPointsUnder(pool)).toEqual([]);
    }
  });

  it('leaves the pool consistent: every record has its directory and every directory its record', async () => {
    const dirs = volumeDirs();
    const recs = records().map((r) => r.replace(/\.json$/, ''));
    expect(dirs).toEqual(recs);
    expect(await listed()).toEqual(recs.map((r) => `test-node:default:${r}`));
    expect(tmpEntries()).toEqual([]);
  });
});
