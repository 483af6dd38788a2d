import fs from 'node:fs';
import path from 'node:path';
import { deletingRecordFile, isRecordTempName, recordFile, recordFileName } from '../format/layout.js';
import { formatRecord, parseSnapshotRecord, parseVolumeRecord, type RecordContext, type SnapshotRecord, type StoredVolumeRecord } from '../format/records.js';
import { fsyncDir, writeFileAtomic } from '../system/atomic-file.js';

/** Reads one record file's text (format/records.ts); throws a corrupt error naming the file and field. */
type RecordParser<T> = (text: string, ctx: RecordContext) => T;

/**
 * Durable records of one kind in one pool, a JSON file per name in `dir`; each write is atomic
 * (temp + fsync + rename + dir fsync).
 */
export class RecordStore<T extends StoredVolumeRecord | SnapshotRecord> {
  constructor(
    private readonly dir: string,
    private readonly pool: { name: string; root: string },
    private readonly parse: RecordParser<T>,
  ) {}

  /**
   * Commit a delete: one rename of the record to `<name>.deleting` (made durable), cheaper than
   * writing a new version of it. loadAll() reads such a file as the record in state 'deleting'.
   */
  async markDeleting(name: string): Promise<void> {
    fs.renameSync(recordFile(this.dir, name), deletingRecordFile(this.dir, name));
    await fsyncDir(this.dir);
  }

  async write(rec: T): Promise<void> {
    await writeFileAtomic(recordFile(this.dir, rec.name), formatRecord(rec));
  }

  /** Forget a record; `durable: false` when a power cut bringing it back is harmless (see its callers). */
  async remove(name: string, opts: { durable?: boolean } = {}): Promise<void> {
    fs.rmSync(recordFile(this.dir, name), { force: true });
    fs.rmSync(deletingRecordFile(this.dir, name), { force: true });
    if (opts.durable !== false) await fsyncDir(this.dir);
  }

  /**
   * Every record. Leftover temp files from a crash are removed; unreadable files are reported and left
   * alone. Read synchronously: a record is a few hundred bytes in the page cache, read in microseconds,
   * where an asynchronous read costs four thread-pool round trips (open, stat, read, close), which with
   * a thousand records was most of a start.
   */
  loadAll(onBad: (file: string, err: unknown) => void): T[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const present = new Set(names);
    const out: T[] = [];
    for (const n of names) {
      const file = path.join(this.dir, n);
      if (isRecordTempName(n)) {
        fs.rmSync(file, { force: true });
        continue;
      }
      const parsed = recordFileName(n);
      if (!parsed) continue;
      const { name: stem, deleting } = parsed;
      if (deleting && present.has(path.basename(recordFile(this.dir, stem)))) {
        // Left from a delete whose last unlink a power cut undid, then a volume of the same name was
        // made: the live record wins, and the stale mark must not take that volume's data away.
        fs.rmSync(file, { force: true });
        continue;
      }
      try {
        const rec = this.parse(fs.readFileSync(file, 'utf8'), { file, name: stem, pool: this.pool.name, root: this.pool.root });
        if (deleting) rec.state = 'deleting';
        out.push(rec);
      } catch (err) {
        onBad(file, err);
      }
    }
    return out;
  }
}

export function volumeStore(dir: string, pool: { name: string; root: string }): RecordStore<StoredVolumeRecord> {
  return new RecordStore(dir, pool, parseVolumeRecord);
}

export function snapshotStore(dir: string, pool: { name: string; root: string }): RecordStore<SnapshotRecord> {
  return new RecordStore(dir, pool, parseSnapshotRecord);
}
