import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fsyncDir, isAtomicTempName, writeFileAtomic } from '../system/atomic-file.js';
import { isValidName } from './ids.js';

interface StoredRecord {
  version: 1;
  name: string;
  pool: string;
  state: 'ready' | 'deleting';
}

/** A record renamed to `<name>.deleting`: its delete is committed and is finished on the next start. */
const DELETING_SUFFIX = '.deleting';

/**
 * What a file name in a record directory stands for: `<name>.json` a record, `<name>.deleting` a record
 * whose delete is committed. undefined for anything else (temp files, names no volume can have).
 */
export function recordFileName(file: string): { name: string; deleting: boolean } | undefined {
  const deleting = file.endsWith(DELETING_SUFFIX);
  const name = deleting ? file.slice(0, -DELETING_SUFFIX.length) : file.endsWith('.json') ? file.slice(0, -'.json'.length) : undefined;
  return name !== undefined && isValidName(name) ? { name, deleting } : undefined;
}

/**
 * Durable records of one kind in one pool, a JSON file per name in `dir`; each write is atomic
 * (temp + fsync + rename + dir fsync).
 */
export class RecordStore<T extends StoredRecord> {
  constructor(
    private readonly dir: string,
    private readonly pool: string,
  ) {}

  private file(name: string): string {
    return path.join(this.dir, `${name}.json`);
  }

  private deletingFile(name: string): string {
    return path.join(this.dir, `${name}${DELETING_SUFFIX}`);
  }

  /**
   * Commit a delete: one rename of the record to `<name>.deleting` (made durable), cheaper than
   * writing a new version of it. loadAll() reads such a file as the record in state 'deleting'.
   */
  async markDeleting(name: string): Promise<void> {
    fs.renameSync(this.file(name), this.deletingFile(name));
    await fsyncDir(this.dir);
  }

  async write(rec: T): Promise<void> {
    await writeFileAtomic(this.file(rec.name), `${JSON.stringify(rec, null, 1)}\n`);
  }

  /** Forget a record; `durable: false` when a power cut bringing it back is harmless (see its callers). */
  async remove(name: string, opts: { durable?: boolean } = {}): Promise<void> {
    fs.rmSync(this.file(name), { force: true });
    fs.rmSync(this.deletingFile(name), { force: true });
    if (opts.durable !== false) await fsyncDir(this.dir);
  }

  /** Every record. Leftover temp files from a crash are removed; unreadable files are reported and left alone. */
  async loadAll(onBad: (file: string, err: unknown) => void): Promise<T[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: T[] = [];
    for (const n of names) {
      const file = path.join(this.dir, n);
      if (isAtomicTempName(n)) {
        await fsp.rm(file, { force: true });
        continue;
      }
      const parsed = recordFileName(n);
      if (!parsed) continue;
      const { name: stem, deleting } = parsed;
      if (deleting && names.includes(`${stem}.json`)) {
        // Left from a delete whose last unlink a power cut undid, then a volume of the same name was
        // made: the live record wins, and the stale mark must not take that volume's data away.
        fs.rmSync(file, { force: true });
        continue;
      }
      try {
        const rec = JSON.parse(await fsp.readFile(file, 'utf8')) as T;
        if (rec.version !== 1 || rec.name !== stem || rec.pool !== this.pool) {
          throw new Error('record does not match its file name or pool');
        }
        if (deleting) rec.state = 'deleting';
        out.push(rec);
      } catch (err) {
        onBad(file, err);
      }
    }
    return out;
  }
}
