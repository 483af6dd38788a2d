import { readFileSync } from 'node:fs';
import { projectIdsFile } from '../format/layout.js';
import { formatProjectIds, parseProjectIds } from '../format/records.js';
import { writeFileAtomic } from '../system/atomic-file.js';

/** Project ids handed to volumes start here, above the ids a distribution or an admin uses for itself. */
export const FIRST_PROJECT_ID = 1000;
/** The largest id every kernel accepts (ids are 32-bit; -1 is reserved). */
const LAST_PROJECT_ID = 0xfffffffe;

/** Ids another owner holds on the filesystem: tagged on some inode, or given a limit. */
export type IdsInUse = () => Promise<Set<number>>;

/**
 * Hands out project ids for one pool, so that no two volumes ever share one, also across a crash,
 * a delete and re-create, or another pool on the same filesystem:
 * - ids only grow: the next one is recorded in `<pool>/.hpp/project-ids.json` (written
 *   temp-then-rename, fsynced) before the id is used, so a kill -9 at any point can skip an id but
 *   never hand it out twice, and a deleted volume's id (whose files may still sit in the trash) is
 *   never reused by this pool;
 * - an id the filesystem already counts (usage or a limit: another pool on it, an admin's project,
 *   a build that was abandoned) is skipped, and so is one this process handed out on the same
 *   filesystem (the check and the tagging of the directory are not one step);
 * - pools of this daemon on one filesystem also go above each other's recorded next id, so that an
 *   id another pool used for a volume since deleted (no longer counted once its files are gone) is
 *   not reused either: an id in the filesystem's quota report names one volume, ever;
 * - never by rewriting /etc/projects or /etc/projid, which belong to the admin.
 */
export class ProjectIdAllocator {
  private readonly file: string;
  private next = FIRST_PROJECT_ID;
  private loaded = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    metaDir: string,
    /** Identifies the filesystem (its device), for the ids handed out in this process. */
    private readonly filesystem: string,
    private readonly inUse: IdsInUse,
  ) {
    this.file = projectIdsFile(metaDir);
    onFilesystem(filesystem).files.add(this.file);
  }

  /** Ids already recorded by the pool's volumes: the next one is above all of them. */
  atLeast(id: number): void {
    if (id > this.next) this.next = id;
  }

  allocate(): Promise<number> {
    const p = this.queue.then(() => this.take());
    this.queue = p.catch(() => {});
    return p;
  }

  private async take(): Promise<number> {
    if (!this.loaded) {
      this.atLeast(readNext(this.file));
      this.loaded = true;
    }
    const shared = onFilesystem(this.filesystem);
    for (const other of shared.files) if (other !== this.file) this.atLeast(readNext(other));
    const used = await this.inUse();
    const mine = shared.handedOut;
    let id = this.next;
    while (used.has(id) || mine.has(id)) id++;
    if (id > LAST_PROJECT_ID) throw new Error(`project ids of the pool are exhausted (next would be ${id})`);
    // Taken before the first await, so that another pool's allocation on this filesystem skips it.
    mine.add(id);
    try {
      await writeFileAtomic(this.file, formatProjectIds({ next: id + 1 }));
    } catch (err) {
      mine.delete(id);
      throw new Error(`cannot record the next project id in ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    this.next = id + 1;
    return id;
  }
}

function readNext(file: string): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return FIRST_PROJECT_ID;
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
  return parseProjectIds(text, file, FIRST_PROJECT_ID);
}

/** Per filesystem, in this process: the id files of its pools, and the ids handed out on it. */
interface FilesystemIds {
  files: Set<string>;
  handedOut: Set<number>;
}
const byFilesystem = new Map<string, FilesystemIds>();
function onFilesystem(filesystem: string): FilesystemIds {
  let s = byFilesystem.get(filesystem);
  if (!s) byFilesystem.set(filesystem, (s = { files: new Set(), handedOut: new Set() }));
  return s;
}
