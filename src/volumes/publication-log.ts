import fs from 'node:fs';
import { noSpace } from '../errors.js';
import { publicationLogTemp } from '../format/layout.js';
import { formatPublicationLine, replayPublications, type Publications } from '../format/records.js';

/** Rewrite the log once it grows past this; it holds one line per change. */
const COMPACT_BYTES = 4 * 1024 * 1024;

/**
 * Where the volumes of a pool are published: an append-only log, `<pool>/.hpp/publications.log`,
 * one JSON line per change holding the volume's whole set of publications (the last line of a volume
 * wins). A change is one write(2) to a file already open, with no file to create and nothing to
 * fsync, so publish and unpublish never wait for the disk.
 *
 * It is state that a power cut takes away anyway (mounts and loop devices do not survive one, and
 * kubelet publishes again afterwards), so it is never fsynced: a line a crash or a power cut left torn
 * is skipped. The volume records, which must survive, keep their fsyncs. Each load rewrites the log
 * with the current state (temp + rename), so it starts clean and stays small.
 */
export class PublicationLog {
  private fd?: number;
  private bytes = 0;

  constructor(readonly file: string) {}

  /** The publications in the log, by volume name, and how many lines could not be read. */
  read(): { state: Map<string, Publications>; badLines: number } {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: new Map(), badLines: 0 };
      throw err;
    }
    return replayPublications(text, this.file);
  }

  /**
   * Rewrite the log with just `state` (volumes without publications left out) and append from there.
   * Synchronous from start to end, so no append can slip in between the old file and the new one.
   */
  compact(state: Map<string, Publications>): void {
    let text = '';
    for (const [name, pubs] of state) if (Object.keys(pubs).length > 0) text += line(name, pubs);
    // One daemon per pool (flock), so a fixed temp name: a crash leaves at most this one, overwritten next time.
    const tmp = publicationLogTemp(this.file);
    fs.writeFileSync(tmp, text, { mode: 0o600 });
    fs.renameSync(tmp, this.file);
    const fd = fs.openSync(this.file, fs.constants.O_WRONLY | fs.constants.O_APPEND);
    this.close();
    this.fd = fd;
    this.bytes = Buffer.byteLength(text);
  }

  /** Record a volume's publications now. Returns true when the log has grown enough to compact. */
  append(name: string, publications: Publications): boolean {
    if (this.fd === undefined) throw new Error(`publication log ${this.file} is not open`);
    const data = Buffer.from(line(name, publications));
    try {
      const n = fs.writeSync(this.fd, data);
      if (n !== data.length) throw noSpace(`short write to ${this.file} (${n} of ${data.length} bytes)`);
    } catch (err) {
      // Never leave half a line for the next one to be glued to.
      fs.ftruncateSync(this.fd, this.bytes);
      throw err;
    }
    this.bytes += data.length;
    return this.bytes > COMPACT_BYTES;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

function line(name: string, publications: Publications): string {
  return formatPublicationLine({ name, publications });
}
