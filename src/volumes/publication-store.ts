import fs from 'node:fs';
import path from 'node:path';
import { isAtomicTempName, writeFileAtomic } from '../system/atomic-file.js';
import { isValidName } from './ids.js';
import type { Publication } from './record.js';

interface PublicationFile {
  version: 1;
  name: string;
  publications: Record<string, Publication>;
}

/**
 * Where each volume is published, a JSON file per published volume in `<pool>/.hpp/publications`,
 * apart from the volume's record. This is state that a power cut takes away anyway (mounts and loop
 * devices do not survive it, and kubelet publishes again after one), so it is written atomically
 * (temp + rename: a kill -9 sees the old or the new file) but never fsynced; a file a power cut left
 * torn is read as "no publications". The volume record, which must survive, keeps its fsyncs.
 */
export class PublicationStore {
  constructor(readonly dir: string) {}

  file(name: string): string {
    return path.join(this.dir, `${name}.json`);
  }

  /** The volume's publications; undefined when it has no file. Throws when the file is unreadable. */
  read(name: string): Record<string, Publication> | undefined {
    let text: string;
    try {
      text = fs.readFileSync(this.file(name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return parsePublications(text, name);
  }

  async write(name: string, publications: Record<string, Publication>): Promise<void> {
    if (Object.keys(publications).length === 0) {
      this.remove(name);
      return;
    }
    const body: PublicationFile = { version: 1, name, publications };
    await writeFileAtomic(this.file(name), `${JSON.stringify(body, null, 1)}\n`, { sync: false });
  }

  remove(name: string): void {
    fs.rmSync(this.file(name), { force: true });
  }

  /** Removes temp files a crash left and the files of volumes that no longer exist; returns what it removed. */
  prune(volumeNames: Set<string>): string[] {
    let entries: string[];
    try {
      entries = fs.readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const removed: string[] = [];
    for (const n of entries) {
      const stem = n.endsWith('.json') ? n.slice(0, -5) : undefined;
      if (isAtomicTempName(n) || (stem !== undefined && isValidName(stem) && !volumeNames.has(stem))) {
        fs.rmSync(path.join(this.dir, n), { force: true });
        removed.push(n);
      }
    }
    return removed;
  }
}

/** A publications file's content, checked. */
export function parsePublications(text: string, name: string): Record<string, Publication> {
  const raw = JSON.parse(text) as Partial<PublicationFile> | null;
  if (!raw || typeof raw !== 'object' || raw.version !== 1 || raw.name !== name) {
    throw new Error(`not the publications file of volume ${name}`);
  }
  const pubs = raw.publications;
  if (!pubs || typeof pubs !== 'object' || Array.isArray(pubs)) throw new Error('publications is not an object');
  return pubs;
}
