// Daemon restarts (SIGTERM and kill -9), the pool's single-daemon lock, and crash reconciliation on start.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { META_DIR, deletingRecordFile, poolLayout, recordFile } from '../../src/format/layout.js';
import { MOUNT_CAP, cleanupDir, expectCode, scratchDir, startDriver, type DriverProcess, type Msg } from '../helpers/driver.js';

function mountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

function isMounted(p: string): boolean {
  return mountPoints().includes(p);
}

async function listAll(d: DriverProcess): Promise<Array<{ id: string; capacity: string; topology: unknown }>> {
  const res = await d.clients.controller.ListVolumes({});
  expect(res.next_token).toBe('');
  return res.entries
    .map((e: Msg) => ({ id: e.volume.volume_id as string, capacity: e.volume.capacity_bytes as string, topology: e.volume.accessible_topology }))
    .sort((a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : 1));
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('daemon restart', () => {
  let dir: string;
  let pool: string;
  const daemons: DriverProcess[] = [];

  async function start(extra: string[] = []): Promise<DriverProcess> {
    const d = await startDriver({ dir, args: ['--pool', `default=${pool}`, ...extra] });
    daemons.push(d);
    return d;
  }

  beforeEach(() => {
    dir = scratchDir('restart');
    pool = path.join(dir, 'pool');
    mkdirSync(pool);
  });

  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.kill();
    await cleanupDir(dir);
  });

  /** Create 3 volumes, publish one, write a file through it; returns what must survive. */
  async function populate(d: DriverProcess) {
    const sizes = ['1048576', '2097152', '5242880'];
    const created: Array<{ id: string; capacity: string }> = [];
    for (const [i, size] of sizes.entries()) {
      const res = await d.clients.controller.CreateVolume({ name: `vol-${i}`, volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: size } });
      created.push({ id: res.volume.volume_id, capacity: res.volume.capacity_bytes });
    }
    const target = path.join(dir, 'targets', 'pod-1', 'mount');
    await d.clients.node.NodePublishVolume({ volume_id: created[1]!.id, target_path: target, volume_capability: MOUNT_CAP, readonly: false });
    writeFileSync(path.join(target, 'payload.bin'), 'important data\n'.repeat(1000));
    const before = await listAll(d);
    expect(before.map((v) => v.id)).toEqual(created.map((c) => c.id).sort());
    return { created, target, published: created[1]!.id, before };
  }

  async function checkAfterRestart(d: DriverProcess, st: Awaited<ReturnType<typeof populate>>) {
    expect((await d.clients.identity.Probe({})).ready?.value).toBe(true);
    const after = await listAll(d);
    expect(after).toEqual(st.before);
    expect(after.map((v) => [v.id, v.capacity])).toEqual(
      [...st.created].sort((a, b) => (a.id < b.id ? -1 : 1)).map((c) => [c.id, c.capacity]),
    );
    expect(isMounted(st.target)).toBe(true);
    expect(readFileSync(path.join(st.target, 'payload.bin'), 'utf8')).toBe('important data\n'.repeat(1000));
    expect(readFileSync(path.join(pool, 'vol-1', 'payload.bin'), 'utf8')).toBe('important data\n'.repeat(1000));
    // The publication was remembered: the volume is still in use.
    await expectCode(d.clients.controller.DeleteVolume({ volume_id: st.published }), 'FAILED_PRECONDITION');
    // Republish with the same arguments is idempotent across the restart.
    await d.clients.node.NodePublishVolume({ volume_id: st.published, target_path: st.target, volume_capability: MOUNT_CAP, readonly: false });
    expect(mountPoints().filter((m) => m === st.target)).toHaveLength(1);
    await d.clients.node.NodeUnpublishVolume({ volume_id: st.published, target_path: st.target });
    expect(isMounted(st.target)).toBe(false);
    expect(existsSync(st.target)).toBe(false);
    // The file outlives the publication, and the volume can now be deleted.
    expect(readFileSync(path.join(pool, 'vol-1', 'payload.bin'), 'utf8')).toBe('important data\n'.repeat(1000));
    await d.clients.controller.DeleteVolume({ volume_id: st.published });
    expect(existsSync(path.join(pool, 'vol-1'))).toBe(false);
    // Volumes keep working after the restart.
    const res = await d.clients.controller.CreateVolume({ name: 'vol-new', volume_capabilities: [MOUNT_CAP] });
    expect(res.volume.volume_id).toBe('test-node:default:vol-new');
  }

  it('SIGTERM, then a new daemon on the same pool: same volumes, mount and data intact, unpublish works', async () => {
    const d1 = await start();
    const st = await populate(d1);
    expect(await d1.stop()).toBe(0);
    expect(existsSync(d1.socket)).toBe(false);
    // Shutdown does not unmount published volumes: pods keep running while the daemon restarts.
    expect(isMounted(st.target)).toBe(true);
    const d2 = await start();
    expect(d2.logs()).not.toMatch(/in use by another daemon/);
    await checkAfterRestart(d2, st);
  });

  it('kill -9, then a new daemon on the same pool: same volumes, mount and data intact, unpublish works', async () => {
    const d1 = await start();
    const st = await populate(d1);
    await d1.kill();
    expect(d1.child.signalCode).toBe('SIGKILL');
    expect(isMounted(st.target)).toBe(true);
    // The kernel dropped the dead daemon's flock: the new one loads the pool.
    const d2 = await start();
    expect(d2.logs()).not.toMatch(/in use by another daemon/);
    await checkAfterRestart(d2, st);
  });

  it('a reboot-like restart (bind mount gone, target directory still there) re-makes the publication on start', async () => {
    const d1 = await start();
    const st = await populate(d1);
    await d1.kill();
    execFileSync('umount', [st.target]);
    expect(isMounted(st.target)).toBe(false);
    // A pod that went away while the node was down: its target directory is gone too.
    const gone = path.join(dir, 'targets', 'pod-gone', 'mount');
    const d2 = await start();
    await d2.clients.node.NodePublishVolume({ volume_id: st.created[0]!.id, target_path: gone, volume_capability: MOUNT_CAP, readonly: true });
    await d2.kill();
    execFileSync('umount', [gone]);
    rmSync(path.join(dir, 'targets', 'pod-gone'), { recursive: true });

    const d3 = await start();
    expect(isMounted(st.target)).toBe(true);
    expect(isMounted(gone)).toBe(false);
    expect(existsSync(gone)).toBe(false);
    expect(readFileSync(path.join(st.target, 'payload.bin'), 'utf8')).toBe('important data\n'.repeat(1000));
    // The forgotten publication no longer blocks deletion.
    await d3.clients.controller.DeleteVolume({ volume_id: st.created[0]!.id });
    await checkAfterRestart(d3, { ...st, before: st.before.filter((v) => v.id !== st.created[0]!.id), created: st.created.slice(1) });
  });

  it('a second daemon on a pool in use does not load it (Probe not ready, log says in use) until the first stops', async () => {
    const d1 = await start();
    await d1.clients.controller.CreateVolume({ name: 'owned', volume_capabilities: [MOUNT_CAP] });
    const d2 = await start();
    const probe = await d2.clients.identity.Probe({});
    expect(probe.ready?.value).toBe(false);
    expect(d2.logs()).toMatch(/in use by another daemon/);
    expect(d2.logs()).toContain(`pid ${d1.child.pid}`);
    // It serves nothing from the pool: no volumes listed, no creates, no deletes.
    expect((await d2.clients.controller.ListVolumes({})).entries).toEqual([]);
    await expectCode(d2.clients.controller.CreateVolume({ name: 'intruder', volume_capabilities: [MOUNT_CAP] }), 'UNAVAILABLE');
    await expectCode(d2.clients.controller.DeleteVolume({ volume_id: 'test-node:default:owned' }), 'UNAVAILABLE');
    expect(existsSync(path.join(pool, 'intruder'))).toBe(false);
    expect(existsSync(path.join(pool, 'owned'))).toBe(true);
    // The first daemon is unaffected.
    expect((await d1.clients.identity.Probe({})).ready?.value).toBe(true);
    expect((await listAll(d1)).map((v) => v.id)).toEqual(['test-node:default:owned']);
    // Once the owner is gone, the waiting daemon takes the pool over on its next probe.
    expect(await d1.stop()).toBe(0);
    await waitFor('second daemon ready', async () => (await d2.clients.identity.Probe({})).ready?.value === true);
    expect((await listAll(d2)).map((v) => v.id)).toEqual(['test-node:default:owned']);
  });

  it('publications: kept in the publication log, torn lines skipped, records from before the log migrated, log compacted on start', async () => {
    const d1 = await start();
    const L = poolLayout(pool);
    const log = L.publicationLog;
    const target = (n: string) => path.join(dir, 'targets', n, 'mount');
    for (const name of ['old', 'pub', 'gone']) {
      await d1.clients.controller.CreateVolume({ name, volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: '4096' } });
      await d1.clients.node.NodePublishVolume({ volume_id: `test-node:default:${name}`, target_path: target(name), volume_capability: MOUNT_CAP, readonly: false });
    }
    await d1.clients.node.NodeUnpublishVolume({ volume_id: 'test-node:default:gone', target_path: target('gone') });
    await d1.clients.controller.DeleteVolume({ volume_id: 'test-node:default:gone' });
    // One line per change, the records do not carry publications.
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Msg);
    expect(lines.map((l) => [l.name, Object.keys(l.publications).length])).toEqual([['old', 1], ['pub', 1], ['gone', 1], ['gone', 0]]);
    expect(JSON.parse(readFileSync(recordFile(L.volumesDir, 'old'), 'utf8'))).not.toHaveProperty('publications');
    const oldPubs = lines[0]!.publications as Msg;
    expect(await d1.stop()).toBe(0);

    // 'old' as an earlier version wrote it: publications inside the record and not in the log; and
    // the log ends with a line a crash cut short.
    const oldRecord = JSON.parse(readFileSync(recordFile(L.volumesDir, 'old'), 'utf8')) as Msg;
    writeFileSync(recordFile(L.volumesDir, 'old'), JSON.stringify({ ...oldRecord, publications: oldPubs }));
    writeFileSync(log, `${readFileSync(log, 'utf8').split('\n').filter((l) => l && !l.includes('"old"')).join('\n')}\n{"name":"pub","publica`);

    const d2 = await start();
    expect((await d2.clients.identity.Probe({})).ready?.value).toBe(true);
    expect(d2.logs()).toMatch(/"badLines":1,"msg":"skipped torn lines of the publication log/);
    // Compacted: one line per published volume, the old record's publications moved in, the record stripped.
    const after = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Msg);
    expect(after.map((l) => l.name).sort()).toEqual(['old', 'pub']);
    expect(after.find((l) => l.name === 'old')!.publications).toEqual(oldPubs);
    expect(JSON.parse(readFileSync(recordFile(L.volumesDir, 'old'), 'utf8'))).not.toHaveProperty('publications');
    for (const name of ['old', 'pub']) {
      // Still known as published: the volume cannot be deleted before its unpublish.
      await expectCode(d2.clients.controller.DeleteVolume({ volume_id: `test-node:default:${name}` }), 'FAILED_PRECONDITION');
      await d2.clients.node.NodeUnpublishVolume({ volume_id: `test-node:default:${name}`, target_path: target(name) });
      expect(existsSync(target(name))).toBe(false);
      await d2.clients.controller.DeleteVolume({ volume_id: `test-node:default:${name}` });
    }
  });

  it('start-up reconcile: uncommitted tmp data removed, interrupted delete finished, interrupted create moved into place', async () => {
    // A first run lays out <pool>/.hpp and gives a real record to compare with.
    const d1 = await start();
    await d1.clients.controller.CreateVolume({ name: 'keep', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: '4096' } });
    expect(await d1.stop()).toBe(0);
    const L = poolLayout(pool);
    const realRecord = JSON.parse(readFileSync(recordFile(L.volumesDir, 'keep'), 'utf8')) as Record<string, unknown>;
    expect(realRecord).toMatchObject({ version: 1, id: 'test-node:default:keep', name: 'keep', pool: 'default', node: 'test-node', state: 'ready' });

    // Planted records are the daemon's own record with another name (so they follow src/format/records.ts).
    const record = (name: string, state: 'ready' | 'deleting', capacityBytes = '1048576') => ({
      ...(JSON.parse(JSON.stringify(realRecord).replaceAll('keep', name)) as object),
      state,
      capacityBytes,
      publications: {},
    });
    const writeRecord = (name: string, rec: object) => writeFileSync(recordFile(L.volumesDir, name), `${JSON.stringify(rec, null, 1)}\n`);
    expect(record('x', 'ready')).toMatchObject({ id: 'test-node:default:x', name: 'x' });

    // 1. A create that died before its record was written: data in tmp, no record.
    mkdirSync(path.join(L.tmpDir, 'orphan'));
    writeFileSync(path.join(L.tmpDir, 'orphan', 'junk'), 'x');
    // 2. A delete that died after marking the record: record 'deleting', data still in place.
    writeRecord('dying', record('dying', 'deleting'));
    mkdirSync(path.join(pool, 'dying'));
    writeFileSync(path.join(pool, 'dying', 'old'), 'x');
    // 2b. A delete that died after moving the data away but before removing the record.
    writeRecord('dying2', record('dying2', 'deleting'));
    // 2c. A delete committed by renaming the record to <name>.deleting, data still in place.
    writeFileSync(deletingRecordFile(L.volumesDir, 'gone'), JSON.stringify(record('gone', 'ready')));
    mkdirSync(path.join(pool, 'gone'));
    // 2d. A stale mark next to a live record of the same name (a power cut undid the mark's unlink and
    // the name was used again): the live volume and its data stay.
    writeFileSync(deletingRecordFile(L.volumesDir, 'keep'), JSON.stringify(record('keep', 'ready')));
    writeFileSync(path.join(pool, 'keep', 'precious'), 'x');
    // 3. A create that died after its record was written but before the rename into place.
    writeRecord('half', record('half', 'ready', '2097152'));
    mkdirSync(path.join(L.tmpDir, 'half'));
    writeFileSync(path.join(L.tmpDir, 'half', 'content'), 'made before the crash');
    // 4. A record write that died between open and rename leaves a temp file.
    writeFileSync(path.join(L.volumesDir, '.keep.json.tmp-12345-0a1b2c3d'), '{"half":');

    const d2 = await start();
    expect((await d2.clients.identity.Probe({})).ready?.value).toBe(true);
    const ids = (await listAll(d2)).map((v) => v.id);
    expect(ids).toEqual(['test-node:default:half', 'test-node:default:keep']);

    expect(readdirSync(L.tmpDir)).toEqual([]);
    expect(existsSync(path.join(pool, 'orphan'))).toBe(false);

    expect(existsSync(path.join(pool, 'dying'))).toBe(false);
    expect(existsSync(recordFile(L.volumesDir, 'dying'))).toBe(false);
    expect(existsSync(recordFile(L.volumesDir, 'dying2'))).toBe(false);
    expect(existsSync(path.join(pool, 'gone'))).toBe(false);
    expect(readFileSync(path.join(pool, 'keep', 'precious'), 'utf8')).toBe('x');
    await waitFor('trash emptied', () => readdirSync(L.trashDir).length === 0);

    expect(readFileSync(path.join(pool, 'half', 'content'), 'utf8')).toBe('made before the crash');
    const half = (await listAll(d2)).find((v) => v.id === 'test-node:default:half')!;
    expect(half.capacity).toBe('2097152');

    expect(readdirSync(L.volumesDir).sort()).toEqual(['half.json', 'keep.json']);
    expect(readdirSync(pool).sort()).toEqual([META_DIR, 'half', 'keep']);

    // The finished volumes behave like any other.
    const t = path.join(dir, 'targets', 'half', 'mount');
    await d2.clients.node.NodePublishVolume({ volume_id: 'test-node:default:half', target_path: t, volume_capability: MOUNT_CAP, readonly: false });
    expect(readFileSync(path.join(t, 'content'), 'utf8')).toBe('made before the crash');
    await d2.clients.node.NodeUnpublishVolume({ volume_id: 'test-node:default:half', target_path: t });
    await d2.clients.controller.DeleteVolume({ volume_id: 'test-node:default:half' });
    await d2.clients.controller.DeleteVolume({ volume_id: 'test-node:default:keep' });
    expect(readdirSync(pool)).toEqual([META_DIR]);
  });
});
