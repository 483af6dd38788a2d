// The daemon's record store reads through the format's validator: what hppctl calls an unreadable
// record the daemon reports (file and field) and leaves alone, and the rest of the directory loads.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CorruptRecordError } from '../../src/format/corrupt.js';
import { deletingRecordFile, poolLayout, recordFile } from '../../src/format/layout.js';
import { formatRecord, type StoredVolumeRecord } from '../../src/format/records.js';
import { volumeStore } from '../../src/volumes/store.js';

const rec = (name: string, extra: Partial<StoredVolumeRecord> = {}): StoredVolumeRecord => ({
  version: 1,
  id: `n1:p:${name}`,
  name,
  pool: 'p',
  node: 'n1',
  mode: 'filesystem',
  data: name,
  capacityBytes: '1048576',
  parameters: {},
  createdAt: '2026-01-01T00:00:00.000Z',
  state: 'ready',
  ...extra,
});

describe('RecordStore.loadAll (the daemon side of the validator)', () => {
  let root: string;
  beforeEach(() => {
    root = path.join(mkdtempSync(path.join(os.tmpdir(), 'hpp-unit-store-')), 'pool');
    mkdirSync(poolLayout(root).volumesDir, { recursive: true });
  });
  afterEach(() => rmSync(path.dirname(root), { recursive: true, force: true }));

  it('loads good records, marks committed deletes, removes temp files and reports corrupt records by file and field', async () => {
    const dir = poolLayout(root).volumesDir;
    const store = volumeStore(dir, { name: 'p', root });
    await store.write(rec('good'));
    writeFileSync(deletingRecordFile(dir, 'dying'), formatRecord(rec('dying')));
    writeFileSync(recordFile(dir, 'outside'), formatRecord(rec('outside', { data: '../../etc' })));
    writeFileSync(recordFile(dir, 'other'), formatRecord(rec('other', { pool: 'q' })));
    writeFileSync(path.join(dir, '.good.json.tmp-1-0a1b2c3d'), '{"half":');
    const bad: Array<[string, unknown]> = [];
    const loaded = await store.loadAll((file, err) => bad.push([file, err]));
    expect(loaded.map((r) => [r.name, r.state]).sort()).toEqual([
      ['dying', 'deleting'],
      ['good', 'ready'],
    ]);
    expect(bad.map(([file, err]) => [path.basename(file), (err as CorruptRecordError).field]).sort()).toEqual([
      ['other.json', 'pool'],
      ['outside.json', 'data'],
    ]);
    for (const [file, err] of bad) {
      expect(err).toBeInstanceOf(CorruptRecordError);
      expect((err as Error).message).toContain(file);
      expect(existsSync(file), 'a corrupt record is left untouched').toBe(true);
    }
    expect(readdirSync(dir).sort()).toEqual(['dying.deleting', 'good.json', 'other.json', 'outside.json']);
  });
});
