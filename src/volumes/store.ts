import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fsyncDir, isAtomicTempName, readJsonIfExists, writeFileAtomic } from '../system/atomic-file.js';
import { isValidName } from './ids.js';

interface StoredRecord {
  version: 1;
  name: string;
  pool: string;
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

  /** See AtomicWriteOptions.durable: only state that may go back a step after a power cut skips it. */
  async write(rec: T, opts: { durable?: boolean } = {}): Promise<void> {
    await writeFileAtomic(this.file(rec.name), `${JSON.stringify(rec, null, 1)}\n`, opts);
  }

  async read(name: string): Promise<T | undefined> {
    return readJsonIfExists<T>(this.file(name));
  }

  /** Forget a record; `durable: false` when a power cut bringing it back is harmless (see its callers). */
  async remove(name: string, opts: { durable?: boolean } = {}): Promise<void> {
    fs.rmSync(this.file(name), { force: true });
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
      if (!n.endsWith('.json') || !isValidName(n.slice(0, -5))) continue;
      try {
        const rec = JSON.parse(await fsp.readFile(file, 'utf8')) as T;
        if (rec.version !== 1 || rec.name !== n.slice(0, -5) || rec.pool !== this.pool) {
          throw new Error('record does not match its file name or pool');
        }
        out.push(rec);
      } catch (err) {
        onBad(file, err);
      }
    }
    return out;
  }
}
