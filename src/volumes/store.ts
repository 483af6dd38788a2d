import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fsyncDir, isAtomicTempName, readJsonIfExists, writeFileAtomic } from '../system/atomic-file.js';
import type { Pool } from '../pools/pool.js';
import { isValidName } from './ids.js';
import type { VolumeRecord } from './record.js';

/** Durable volume metadata of one pool: each write is atomic (temp + fsync + rename + dir fsync). */
export class VolumeStore {
  constructor(private readonly pool: Pool) {}

  async write(rec: VolumeRecord): Promise<void> {
    await writeFileAtomic(this.pool.metadataPath(rec.name), `${JSON.stringify(rec, null, 1)}\n`);
  }

  async read(name: string): Promise<VolumeRecord | undefined> {
    return readJsonIfExists<VolumeRecord>(this.pool.metadataPath(name));
  }

  async remove(name: string): Promise<void> {
    await fsp.rm(this.pool.metadataPath(name), { force: true });
    await fsyncDir(this.pool.volumesDir);
  }

  /** Every record in the pool. Leftover temp files from a crash are removed; unreadable files are reported. */
  async loadAll(onBad: (file: string, err: unknown) => void): Promise<VolumeRecord[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.pool.volumesDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: VolumeRecord[] = [];
    for (const n of names) {
      const file = path.join(this.pool.volumesDir, n);
      if (isAtomicTempName(n)) {
        await fsp.rm(file, { force: true });
        continue;
      }
      if (!n.endsWith('.json') || !isValidName(n.slice(0, -5))) continue;
      try {
        const rec = JSON.parse(await fsp.readFile(file, 'utf8')) as VolumeRecord;
        if (rec.version !== 1 || rec.name !== n.slice(0, -5) || rec.pool !== this.pool.name) {
          throw new Error('record does not match its file name or pool');
        }
        rec.publications ??= {};
        out.push(rec);
      } catch (err) {
        onBad(file, err);
      }
    }
    return out;
  }
}
