// The one record validator (src/format/records.ts): good records of each version read as they are,
// each kind of corruption is a corrupt error naming the file and the field, and every check it makes
// is caught by this table when it is dropped (a mutation check on the validator's own source).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isDriverError } from '../../src/errors.js';
import { CorruptRecordError } from '../../src/format/corrupt.js';
import * as records from '../../src/format/records.js';
import { formatRecord, parsePublicationLine, parseSnapshotRecord, parseVolumeRecord, replayPublications, toStored, type RecordContext } from '../../src/format/records.js';

const ROOT = '/pools/p';
const FILE = `${ROOT}/.hpp/volumes/vm1.json`;
const SNAP_FILE = `${ROOT}/.hpp/snapshot-records/s1.json`;
const CTX: RecordContext = { file: FILE, name: 'vm1', pool: 'p', root: ROOT };
const SNAP_CTX: RecordContext = { file: SNAP_FILE, name: 's1', pool: 'p', root: ROOT };

/** A volume record byte for byte as the daemon writes it today (JSON.stringify(rec, null, 1)). */
const CURRENT_VOLUME = `{
 "version": 1,
 "id": "n1:p:vm1",
 "name": "vm1",
 "pool": "p",
 "node": "n1",
 "mode": "filesystem",
 "data": "vm1",
 "capacityBytes": "1073741824",
 "parameters": {
  "storagePool": "p",
  "createDiskImage": "true"
 },
 "projectId": 1000,
 "preallocation": "none",
 "diskImage": {
  "overhead": "0.055"
 },
 "contentSource": {
  "kind": "snapshot",
  "id": "n1:p:s1",
  "method": "reflink"
 },
 "pvc": {
  "namespace": "vms",
  "name": "vm1-disk.0"
 },
 "createdAt": "2026-01-02T03:04:05.678Z",
 "state": "ready"
}
`;

/** Fields every volume record has had since block volumes (`data`); the optional ones came later. */
const MINIMAL_VOLUME = {
  version: 1,
  id: 'n1:p:vm1',
  name: 'vm1',
  pool: 'p',
  node: 'n1',
  mode: 'block',
  data: '.hpp/block/vm1.img',
  capacityBytes: '0',
  parameters: {},
  createdAt: '2024-01-01T00:00:00Z',
  state: 'ready',
};

/** A record from before the publication log: its publications inside it. */
const PRE_LOG_VOLUME = {
  ...MINIMAL_VOLUME,
  mode: 'filesystem',
  data: 'vm1',
  publications: { '/var/lib/kubelet/pods/x/volumes/v/mount': { readOnly: false, accessMode: 'SINGLE_NODE_WRITER', mountFlags: [] } },
};

const SNAPSHOT = {
  version: 1,
  id: 'n1:p:s1',
  name: 's1',
  pool: 'p',
  node: 'n1',
  sourceVolumeId: 'n1:p:vm1',
  mode: 'filesystem',
  data: '.hpp/snapshots/s1',
  sizeBytes: '1073741824',
  createdAt: '2026-01-02T03:04:05.678Z',
  method: 'reflink',
  diskImage: { overhead: '0.055' },
  state: 'ready',
};

const GOOD = JSON.parse(CURRENT_VOLUME) as Record<string, unknown>;

/** A hostpath-provisioner volume's record (volumes/hpp-volumes.ts): its id its name, its data where HPP put it. */
const HPP_VOLUME = { ...MINIMAL_VOLUME, id: 'vm1', mode: 'filesystem', data: 'csi/vm1', origin: 'hpp' };
const EPHEMERAL_VOLUME = { ...MINIMAL_VOLUME, id: 'vm1', mode: 'filesystem', data: 'vm1', ephemeral: true };
const HPP_SNAPSHOT = { ...SNAPSHOT, id: 's1', sourceVolumeId: 'vm1', data: 'csi/snapshots/s1/data', sizeBytes: '0', method: 'copy', origin: 'hpp' };

type Case = { what: string; field: string | undefined; text: string };

/** `base` with one field set (undefined: deleted), as file text. */
function mutate(base: Record<string, unknown>, field: string, value: unknown): string {
  const copy = JSON.parse(JSON.stringify(base)) as Record<string, unknown>;
  const [top, sub] = field.split('.') as [string, string | undefined];
  const target = sub === undefined ? copy : (copy[top] as Record<string, unknown>);
  const key = sub ?? top;
  if (value === undefined) delete target[key];
  else target[key] = value;
  return JSON.stringify(copy);
}

const one = (base: Record<string, unknown>, field: string, value: unknown, what: string, blame = field): Case => ({ what, field: blame, text: mutate(base, field, value) });

const VOLUME_CASES: Case[] = [
  { what: 'not JSON (a torn write)', field: undefined, text: '{"version": 1, "name": "vm' },
  { what: 'a JSON array', field: undefined, text: '[]' },
  { what: 'JSON null', field: undefined, text: 'null' },
  one(GOOD, 'version', 2, 'a version from the future'),
  one(GOOD, 'version', undefined, 'no version'),
  one(GOOD, 'name', 'vm2', 'another name than its file'),
  one(GOOD, 'pool', 'q', 'another pool'),
  one(GOOD, 'mode', 'tape', 'an unknown mode'),
  one(GOOD, 'data', undefined, 'no data path'),
  one(GOOD, 'data', '../../etc', 'data outside the pool'),
  one(GOOD, 'data', '/etc/passwd', 'an absolute data path'),
  one(GOOD, 'data', '.', 'the pool root as data'),
  one(GOOD, 'capacityBytes', 1073741824, 'capacity as a number'),
  one(GOOD, 'capacityBytes', '-1', 'a negative capacity'),
  one(GOOD, 'id', undefined, 'no id'),
  one(GOOD, 'publications', [], 'publications as an array'),
  one(GOOD, 'node', 7, 'a node that is no string'),
  one(GOOD, 'parameters', undefined, 'no parameters'),
  one(GOOD, 'parameters.createDiskImage', true, 'a parameter that is no string'),
  one(GOOD, 'createdAt', undefined, 'no creation time'),
  one(GOOD, 'state', 'gone', 'an unknown state'),
  one(GOOD, 'preallocation', 'some', 'an unknown preallocation method'),
  one(GOOD, 'diskImage', '0.055', 'diskImage that is no object'),
  one(GOOD, 'diskImage.overhead', 0.055, 'a disk image overhead that is no string'),
  one(GOOD, 'contentSource', 'n1:p:s1', 'contentSource that is no object'),
  one(GOOD, 'contentSource.kind', 'backup', 'a content source of an unknown kind'),
  one(GOOD, 'contentSource.id', undefined, 'a content source without id'),
  one(GOOD, 'contentSource.method', 'rsync', 'a content source copied an unknown way'),
  one(GOOD, 'projectId', '1000', 'a project id as a string'),
  one(GOOD, 'projectId', 1.5, 'a fractional project id'),
  one(GOOD, 'pvc', 'vms/vm1-disk.0', 'pvc that is no object'),
  one(GOOD, 'pvc.namespace', undefined, 'a PVC without namespace'),
  one(GOOD, 'pvc.namespace', 'VMs', 'a PVC namespace that is no Kubernetes namespace'),
  one(GOOD, 'pvc.name', 'vm1/disk', 'a PVC name that is no Kubernetes name'),
  one(GOOD, 'pvc.name', 'x'.repeat(254), 'a PVC name longer than Kubernetes allows'),
  one(HPP_VOLUME, 'origin', 'csi-driver', 'an unknown origin'),
  one(HPP_VOLUME, 'id', 'n1:p:vm1', 'an HPP volume whose id is not its name'),
  one(EPHEMERAL_VOLUME, 'ephemeral', 'yes', 'an ephemeral mark that is not true'),
  one(EPHEMERAL_VOLUME, 'id', 'n1:p:vm1', 'an ephemeral volume whose id is not its name'),
];

const SNAPSHOT_CASES: Case[] = [
  { what: 'not JSON', field: undefined, text: '{"vers' },
  one(SNAPSHOT, 'version', 0, 'an unknown version'),
  one(SNAPSHOT, 'name', 's2', 'another name than its file'),
  one(SNAPSHOT, 'pool', 'q', 'another pool'),
  one(SNAPSHOT, 'mode', 'fs', 'an unknown mode'),
  one(SNAPSHOT, 'data', '../x', 'data outside the pool'),
  one(SNAPSHOT, 'sizeBytes', '1e9', 'a size that is no decimal'),
  one(SNAPSHOT, 'id', 5, 'an id that is no string'),
  one(SNAPSHOT, 'node', undefined, 'no node'),
  one(SNAPSHOT, 'sourceVolumeId', undefined, 'no source'),
  one(SNAPSHOT, 'createdAt', null, 'a null creation time'),
  one(SNAPSHOT, 'method', 'dd', 'an unknown copy method'),
  one(SNAPSHOT, 'state', 'ok', 'an unknown state'),
  one(SNAPSHOT, 'diskImage.overhead', undefined, 'a disk image without overhead'),
  one(HPP_SNAPSHOT, 'origin', 7, 'an origin that is no string'),
  one(HPP_SNAPSHOT, 'id', 'n1:p:s1', 'an HPP snapshot whose id is not its name'),
];

const LINE_FILE = `${ROOT}/.hpp/publications.log`;
const LINE_CASES: Case[] = [
  { what: 'a torn line', field: undefined, text: '{"name":"vm1","publica' },
  { what: 'no name', field: 'name', text: '{"publications":{}}' },
  { what: 'publications as an array', field: 'publications', text: '{"name":"vm1","publications":[]}' },
  { what: 'publications null', field: 'publications', text: '{"name":"vm1","publications":null}' },
];

function expectCorrupt(fn: () => unknown, file: string, field: string | undefined): CorruptRecordError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'the record was accepted').toBeInstanceOf(CorruptRecordError);
  const e = thrown as CorruptRecordError;
  expect(isDriverError(e, 'corrupt')).toBe(true);
  expect(e.file).toBe(file);
  expect(e.field).toBe(field);
  expect(e.message).toContain(file);
  if (field) expect(e.message).toContain(`${field}: `);
  return e;
}

describe('volume records', () => {
  it('the current record, as the daemon writes it, reads as it is and is written back byte for byte', () => {
    const rec = parseVolumeRecord(CURRENT_VOLUME, CTX);
    expect(rec).toEqual(GOOD);
    expect(formatRecord(rec)).toBe(CURRENT_VOLUME);
  });

  it('a version 1 record with only the fields every version wrote reads as it is', () => {
    expect(parseVolumeRecord(JSON.stringify(MINIMAL_VOLUME), CTX)).toEqual(MINIMAL_VOLUME);
  });

  it('a record from before the publication log keeps its publications (moved to the log by the loader)', () => {
    const rec = parseVolumeRecord(JSON.stringify(PRE_LOG_VOLUME), CTX);
    expect(rec.publications).toEqual(PRE_LOG_VOLUME.publications);
    expect(toStored({ ...rec, publications: rec.publications! })).not.toHaveProperty('publications');
  });

  it('a record in state deleting (written so by older versions before the rename mark) reads as deleting', () => {
    expect(parseVolumeRecord(mutate(GOOD, 'state', 'deleting'), CTX).state).toBe('deleting');
  });

  it.each(VOLUME_CASES)('corrupt: $what → the file and field $field named', ({ text, field }) => {
    expectCorrupt(() => parseVolumeRecord(text, CTX), FILE, field);
  });
});

describe('snapshot records', () => {
  it('a snapshot record reads as it is, with and without a disk image', () => {
    expect(parseSnapshotRecord(JSON.stringify(SNAPSHOT), SNAP_CTX)).toEqual(SNAPSHOT);
    expect(parseSnapshotRecord(JSON.stringify(HPP_SNAPSHOT), SNAP_CTX)).toEqual(HPP_SNAPSHOT);
    expect(parseVolumeRecord(JSON.stringify(HPP_VOLUME), CTX)).toEqual(HPP_VOLUME);
    expect(parseVolumeRecord(JSON.stringify(EPHEMERAL_VOLUME), CTX)).toEqual(EPHEMERAL_VOLUME);
    const { diskImage, ...plain } = SNAPSHOT;
    void diskImage;
    expect(parseSnapshotRecord(JSON.stringify(plain), SNAP_CTX)).toEqual(plain);
  });

  it.each(SNAPSHOT_CASES)('corrupt: $what → the file and field $field named', ({ text, field }) => {
    expectCorrupt(() => parseSnapshotRecord(text, SNAP_CTX), SNAP_FILE, field);
  });
});

describe('publication log lines', () => {
  it('a line reads as the volume and its publications; the last line of a volume wins, torn lines are counted', () => {
    const pubs = PRE_LOG_VOLUME.publications;
    expect(parsePublicationLine(JSON.stringify({ name: 'vm1', publications: pubs }), LINE_FILE)).toEqual({ name: 'vm1', publications: pubs });
    const text = `${JSON.stringify({ name: 'vm1', publications: pubs })}\n${JSON.stringify({ name: 'vm1', publications: {} })}\n{"name":"vm2","pub`;
    const { state, badLines } = replayPublications(text, LINE_FILE);
    expect(state).toEqual(new Map([['vm1', {}]]));
    expect(badLines).toBe(1);
  });

  it.each(LINE_CASES)('not a line: $what → field $field named', ({ text, field }) => {
    expectCorrupt(() => parsePublicationLine(text, LINE_FILE), LINE_FILE, field);
  });
});

describe('every check of the validator is caught by the tables above when it is dropped', () => {
  const SRC = path.resolve(__dirname, '../../src');
  const source = readFileSync(path.join(SRC, 'format/records.ts'), 'utf8');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'hpp-format-mutant-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  /** What a reader says of a record: accepted, or the field and problem it is refused for. */
  const verdict = (read: () => unknown): string => {
    try {
      read();
      return 'accepted';
    } catch (err) {
      const e = err as { field?: string; problem?: string };
      return `${e.field}: ${e.problem}`;
    }
  };
  /** A mutant misjudges a case when it says something else of it than the validator does. */
  const misjudged = (read: () => unknown, c: Case): boolean => verdict(read) !== verdictOf.get(c);
  const verdictOf = new Map<Case, string>();

  /** Where the body of the validator `fn` is in the source. */
  const bodyOf = (fn: string): [number, number] => {
    const start = source.indexOf(`export function ${fn}(`);
    return [start, source.indexOf('\n}\n', start)];
  };

  /** The validator's calls of its checks, one per line: `r.decimal('capacityBytes');`. */
  const checkLines = (fn: string): string[] => {
    const [start, end] = bodyOf(fn);
    return source.slice(start, end).split('\n').filter((l) => /^\s+r\.\w+\(/.test(l));
  };

  /** records.ts with `line` of `fn` removed, importable from a temp dir (its relative imports made absolute). */
  async function mutant(fn: string, line: string, n: number): Promise<typeof records> {
    const [start, end] = bodyOf(fn);
    const body = source.slice(start, end);
    const cut = source.slice(0, start) + body.replace(`${line}\n`, '') + source.slice(end);
    expect(cut.length).toBe(source.length - line.length - 1);
    const text = cut.replaceAll("from './", `from '${SRC}/format/`).replaceAll("from '../", `from '${SRC}/`);
    const file = path.join(tmp, `records-${n}.ts`);
    writeFileSync(file, text);
    return (await import(file)) as typeof records;
  }

  const tables: Array<[string, (m: typeof records, text: string) => unknown, Case[]]> = [
    ['parseVolumeRecord', (m, t) => m.parseVolumeRecord(t, CTX), VOLUME_CASES],
    ['parseSnapshotRecord', (m, t) => m.parseSnapshotRecord(t, SNAP_CTX), SNAPSHOT_CASES],
    ['parsePublicationLine', (m, t) => m.parsePublicationLine(t, LINE_FILE), LINE_CASES],
  ];

  for (const [, call, cases] of tables) for (const c of cases) verdictOf.set(c, verdict(() => call(records, c.text)));

  it('finds the checks it drops', () => {
    expect([...verdictOf.values()]).not.toContain('accepted');
    expect(checkLines('parseVolumeRecord').length).toBeGreaterThanOrEqual(14);
    expect(checkLines('parseSnapshotRecord').length).toBeGreaterThanOrEqual(11);
    expect(checkLines('parsePublicationLine')).toHaveLength(2);
  });

  /** The lines of the checks themselves (in class Fields): each `... this.fail(...)`. */
  const failLines = (): string[] => {
    const start = source.indexOf('class Fields');
    return source.slice(start).split('\n').filter((l) => /^\s+(if \(.*\) )?this\.fail\(/.test(l));
  };

  it('each single condition: without it, some corrupt record or line of the tables is accepted or blamed on another field', async () => {
    const lines = failLines();
    expect(lines.length).toBeGreaterThanOrEqual(12);
    const survivors: string[] = [];
    for (const [i, line] of lines.entries()) {
      const text = source.replace(`${line}\n`, '').replaceAll("from './", `from '${SRC}/format/`).replaceAll("from '../", `from '${SRC}/`);
      const file = path.join(tmp, `fields-${i}.ts`);
      writeFileSync(file, text);
      const m = (await import(file)) as typeof records;
      if (!tables.some(([, call, cases]) => cases.some((c) => misjudged(() => call(m, c.text), c)))) survivors.push(line.trim());
    }
    expect(survivors, 'conditions no case of the tables needs').toEqual([]);
  });

  let n = 0;
  for (const [fn, call, cases] of tables) {
    it(`${fn}: without any one of its checks, some corrupt record of the table is accepted or blamed on another field`, async () => {
      const survivors: string[] = [];
      for (const line of checkLines(fn)) {
        const m = await mutant(fn, line, n++);
        if (!cases.some((c) => misjudged(() => call(m, c.text), c))) survivors.push(line.trim());
      }
      expect(survivors, 'checks no case of the table needs').toEqual([]);
    });
  }
});
