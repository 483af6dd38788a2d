import type { CopyMethod } from '../system/copy.js';
import { DriverError } from '../errors.js';
import { isNamespace, isObjectName } from '../volumes/kube-objects.js';
import { corruptRecord } from './corrupt.js';
import { resolveInside } from './layout.js';
import { upgradeSnapshotRecord, upgradeVolumeRecord } from './migrations.js';

/*
 * The records a pool keeps (docs/design.md, "On-disk format") and the one validator they are read
 * through, by the daemon (volumes/store.ts, publication-log.ts) and by hppctl (admin/inspect.ts) alike.
 */

export type VolumeMode = 'filesystem' | 'block';

/** Who made a volume or snapshot that is not this driver's own (see VolumeRecord.origin). */
export type VolumeOrigin = 'hpp';

export interface Publication {
  readOnly: boolean;
  accessMode: string;
  mountFlags: string[];
  /** Block volumes: the loop device bound onto the target. */
  device?: string;
}

export type Publications = Record<string, Publication>;

/** What the daemon keeps about one volume, in `<pool>/.hpp/volumes/<name>.json`. */
export interface VolumeRecord {
  version: 1;
  id: string;
  name: string;
  pool: string;
  node: string;
  mode: VolumeMode;
  /** Where the data is, relative to the pool root: the directory of a filesystem volume, the image file of a block volume. */
  data: string;
  /** Decimal string: JSON has no 64-bit integers. 0 means "no size requested". */
  capacityBytes: string;
  parameters: Record<string, string>;
  /** How the data was allocated: sparse ('none'), fallocate(2), or written with zeros ('full'). */
  preallocation?: 'none' | 'fallocate' | 'full';
  /** Present when the volume holds a KubeVirt disk.img; the overhead its size was computed with. */
  diskImage?: { overhead: string };
  /** The snapshot or volume this one was filled from, and how the data was copied. */
  contentSource?: { kind: 'snapshot' | 'volume'; id: string; method: CopyMethod };
  /** XFS project id limiting a filesystem volume, when the pool enforces sizes with project quotas. */
  projectId?: number;
  /** The PVC the volume was made for, when the CO said (csi-provisioner's --extra-create-metadata). */
  pvc?: { namespace: string; name: string };
  /**
   * 'hpp': a volume KubeVirt's hostpath-provisioner made, served in place (volumes/hpp-volumes.ts): its id
   * is its name (the PV name), its capacity 0 until an expansion says it ("unknown"). Absent: ours.
   */
  origin?: VolumeOrigin;
  /**
   * A CSI ephemeral inline volume: made by NodePublishVolume, removed by NodeUnpublishVolume (and on
   * the next start when no pod has it any more). Its id is its name, kubelet's id for it.
   */
  ephemeral?: true;
  createdAt: string;
  state: 'ready' | 'deleting';
  /** Target paths this volume is published at on this node (kept in the publication log, see publication-log.ts). */
  publications: Publications;
}

/**
 * A volume record as stored: without its publications, which have their own file. Records written
 * before that still carry them, and are moved over when a pool is loaded (see migrations.ts).
 */
export type StoredVolumeRecord = Omit<VolumeRecord, 'publications'> & { publications?: Publications };

/** What the daemon keeps about one snapshot, in `<pool>/.hpp/snapshot-records/<name>.json`. */
export interface SnapshotRecord {
  version: 1;
  /** `<node>:<pool>:<name>`, like volume ids (snapshots and volumes are looked up in separate tables). */
  id: string;
  name: string;
  pool: string;
  node: string;
  sourceVolumeId: string;
  mode: VolumeMode;
  /** Where the data is, relative to the pool root: `.hpp/snapshots/<name>`. */
  data: string;
  /** The source's capacity: the smallest volume the snapshot can be restored into. */
  sizeBytes: string;
  createdAt: string;
  method: CopyMethod;
  /** Copied from the source so a restored volume knows it holds a disk.img. */
  diskImage?: { overhead: string };
  /** 'hpp': an HPP snapshot (`data` is its `data/` directory; its id its name; its size 0, unknown). */
  origin?: VolumeOrigin;
  state: 'ready' | 'deleting';
}

/** One line of the publication log: a volume's whole set of publications. */
export interface PublicationLogEntry {
  name: string;
  publications: Publications;
}

/** Where a record file is, and what its place says it must hold. */
export interface RecordContext {
  file: string;
  /** The name its file name gives (`<name>.json`). */
  name: string;
  /** The pool it is in. */
  pool: string;
  /** The pool's root, which `data` must stay inside. */
  root: string;
}

/** The record without its publications, as it is written. */
export function toStored(rec: VolumeRecord): StoredVolumeRecord {
  const { publications, ...stored } = rec;
  void publications;
  return stored;
}

/** The text a record is written as (temp-then-rename, see volumes/store.ts). */
export function formatRecord(rec: StoredVolumeRecord | SnapshotRecord): string {
  return `${JSON.stringify(rec, null, 1)}\n`;
}

/** A volume record file's text, validated (and upgraded when older: migrations.ts); throws CorruptRecordError. */
export function parseVolumeRecord(text: string, ctx: RecordContext): StoredVolumeRecord {
  const r = new Fields(upgradeVolumeRecord(parseObject(text, ctx.file), ctx.file), ctx.file);
  r.owner(ctx);
  r.oneOf('mode', ['filesystem', 'block']);
  r.dataInside(ctx);
  r.decimal('capacityBytes');
  r.string('id');
  r.optionalMap('publications');
  r.string('node');
  r.stringMap('parameters');
  r.string('createdAt');
  r.oneOf('state', ['ready', 'deleting']);
  r.optionalOneOf('preallocation', ['none', 'fallocate', 'full']);
  r.optionalDiskImage();
  r.optionalContentSource();
  r.optionalProjectId();
  r.optionalPvc();
  r.optionalOrigin();
  r.optionalEphemeral();
  return r.raw as unknown as StoredVolumeRecord;
}

/** A snapshot record file's text, validated; throws CorruptRecordError. */
export function parseSnapshotRecord(text: string, ctx: RecordContext): SnapshotRecord {
  const r = new Fields(upgradeSnapshotRecord(parseObject(text, ctx.file), ctx.file), ctx.file);
  r.owner(ctx);
  r.oneOf('mode', ['filesystem', 'block']);
  r.dataInside(ctx);
  r.decimal('sizeBytes');
  r.string('id');
  r.string('node');
  r.string('sourceVolumeId');
  r.string('createdAt');
  r.oneOf('method', ['reflink', 'copy']);
  r.oneOf('state', ['ready', 'deleting']);
  r.optionalDiskImage();
  r.optionalOrigin();
  return r.raw as unknown as SnapshotRecord;
}

/** One line of the publication log; throws CorruptRecordError for a line that is not whole (a torn write). */
export function parsePublicationLine(line: string, file: string): PublicationLogEntry {
  const r = new Fields(parseObject(line, file), file);
  r.string('name');
  r.map('publications');
  return r.raw as unknown as PublicationLogEntry;
}

/** The text of one publication log line. */
export function formatPublicationLine(entry: PublicationLogEntry): string {
  return `${JSON.stringify({ name: entry.name, publications: entry.publications })}\n`;
}

/**
 * Replays a publication log's text: the last line of each volume wins; lines that are not whole (a
 * crash or a power cut cut them short: the log is never fsynced) are counted and skipped.
 */
export function replayPublications(text: string, file = 'publications.log'): { state: Map<string, Publications>; badLines: number } {
  const state = new Map<string, Publications>();
  let badLines = 0;
  for (const l of text.split('\n')) {
    if (l === '') continue;
    try {
      const e = parsePublicationLine(l, file);
      state.set(e.name, e.publications);
    } catch {
      badLines++;
    }
  }
  return { state, badLines };
}

/** `<pool>/.hpp/project-ids.json`: the next project id the pool hands out (ids only grow, see pools/project-ids.ts). */
export interface ProjectIdsRecord {
  next: number;
}

/** The next project id in the file's text; `atLeast`: the first id any pool hands out. */
export function parseProjectIds(text: string, file: string, atLeast: number): number {
  let next: unknown;
  try {
    next = (JSON.parse(text) as Partial<ProjectIdsRecord>).next;
  } catch {
    next = undefined;
  }
  if (typeof next !== 'number' || !Number.isInteger(next) || next < atLeast) {
    throw new DriverError('corrupt', `${file} does not hold a valid next project id: ${text.trim().slice(0, 200)}`);
  }
  return next;
}

export function formatProjectIds(rec: ProjectIdsRecord): string {
  return `${JSON.stringify({ next: rec.next })}\n`;
}

/**
 * The `data` of a record file the validator refused, when the file is JSON at all and has one: never
 * trusted as a record, only so that what such a record may own is kept (hppctl).
 */
export function unvalidatedData(text: string): string | undefined {
  try {
    const data = (JSON.parse(text) as { data?: unknown } | null)?.data;
    return typeof data === 'string' ? data : undefined;
  } catch {
    return undefined;
  }
}

function parseObject(text: string, file: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw corruptRecord(file, undefined, `not JSON (${(err as Error).message})`, err);
  }
  if (!isObject(raw)) throw corruptRecord(file, undefined, 'not a JSON object');
  return raw;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The checks, each naming the field it is about. */
class Fields {
  constructor(
    readonly raw: Record<string, unknown>,
    private readonly file: string,
  ) {}

  private fail(field: string, problem: string): never {
    throw corruptRecord(this.file, field, problem);
  }

  /** The record is the one its file name and pool say. */
  owner(ctx: RecordContext): void {
    if (this.raw.name !== ctx.name) this.fail('name', `names ${JSON.stringify(this.raw.name)}, not ${ctx.name}`);
    if (this.raw.pool !== ctx.pool) this.fail('pool', `belongs to pool ${JSON.stringify(this.raw.pool)}, not ${ctx.pool}`);
  }

  dataInside(ctx: RecordContext): void {
    const data = this.raw.data;
    if (typeof data !== 'string') this.fail('data', 'is missing (no data path)');
    try {
      resolveInside(ctx.root, data, ctx.pool);
    } catch (err) {
      this.fail('data', (err as Error).message);
    }
  }

  string(field: string): void {
    if (typeof this.raw[field] !== 'string') this.fail(field, `is ${describe(this.raw[field])}, not a string`);
  }

  decimal(field: string): void {
    const v = this.raw[field];
    if (typeof v !== 'string' || !/^\d+$/.test(v)) this.fail(field, `is ${describe(v)}, not a decimal string`);
  }

  oneOf(field: string, values: string[]): void {
    const v = this.raw[field];
    if (typeof v !== 'string' || !values.includes(v)) this.fail(field, `is ${describe(v)}, not one of ${values.join(', ')}`);
  }

  optionalOneOf(field: string, values: string[]): void {
    if (this.raw[field] !== undefined) this.oneOf(field, values);
  }

  map(field: string): void {
    if (!isObject(this.raw[field])) this.fail(field, `is ${describe(this.raw[field])}, not an object`);
  }

  optionalMap(field: string): void {
    if (this.raw[field] !== undefined) this.map(field);
  }

  stringMap(field: string): void {
    this.map(field);
    for (const [k, v] of Object.entries(this.raw[field] as Record<string, unknown>)) {
      if (typeof v !== 'string') this.fail(`${field}.${k}`, `is ${describe(v)}, not a string`);
    }
  }

  optionalDiskImage(): void {
    const d = this.raw.diskImage;
    if (d === undefined) return;
    if (!isObject(d)) this.fail('diskImage', `is ${describe(d)}, not an object`);
    if (typeof d.overhead !== 'string') this.fail('diskImage.overhead', `is ${describe(d.overhead)}, not a string`);
  }

  optionalContentSource(): void {
    const c = this.raw.contentSource;
    if (c === undefined) return;
    if (!isObject(c)) this.fail('contentSource', `is ${describe(c)}, not an object`);
    if (c.kind !== 'snapshot' && c.kind !== 'volume') this.fail('contentSource.kind', `is ${describe(c.kind)}, not one of snapshot, volume`);
    if (typeof c.id !== 'string') this.fail('contentSource.id', `is ${describe(c.id)}, not a string`);
    if (c.method !== 'reflink' && c.method !== 'copy') this.fail('contentSource.method', `is ${describe(c.method)}, not one of reflink, copy`);
  }

  optionalPvc(): void {
    const p = this.raw.pvc;
    if (p === undefined) return;
    if (!isObject(p)) this.fail('pvc', `is ${describe(p)}, not an object`);
    if (!isNamespace(p.namespace)) this.fail('pvc.namespace', `is ${describe(p.namespace)}, not a Kubernetes namespace`);
    if (!isObjectName(p.name)) this.fail('pvc.name', `is ${describe(p.name)}, not a Kubernetes object name`);
  }

  /** An ephemeral volume is known by kubelet's id for it, its name. */
  optionalEphemeral(): void {
    if (this.raw.ephemeral === undefined) return;
    if (this.raw.ephemeral !== true) this.fail('ephemeral', `is ${describe(this.raw.ephemeral)}, not true`);
    if (this.raw.id !== this.raw.name) this.fail('id', `is ${describe(this.raw.id)}; an ephemeral volume has its name as id`);
  }

  /** An HPP volume or snapshot is known by its name alone: its id must be that name. */
  optionalOrigin(): void {
    if (this.raw.origin === undefined) return;
    this.oneOf('origin', ['hpp']);
    if (this.raw.id !== this.raw.name) this.fail('id', `is ${describe(this.raw.id)}; a record of origin hpp has its name as id`);
  }

  optionalProjectId(): void {
    const p = this.raw.projectId;
    if (p !== undefined && !(typeof p === 'number' && Number.isInteger(p) && p >= 0)) this.fail('projectId', `is ${describe(p)}, not a project id (an integer >= 0)`);
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  const text = JSON.stringify(v);
  return text.length > 60 ? `${text.slice(0, 60)}...` : text;
}
