// The tail of deletes (DeleteFinisher): a delete's `.deleting` mark goes only after the move of its data
// into the trash is durable, a burst of deletes shares the fsyncs, and a create of the same name or data
// path waits for the tail.
import fs, { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { deletingRecordFile, poolLayout } from '../../src/format/layout.js';
import { DeleteFinisher } from '../../src/volumes/delete-finisher.js';
import { volumeStore } from '../../src/volumes/store.js';
import { captureLog } from '../helpers/log-capture.js';

describe('DeleteFinisher', () => {
  let root: string;
  let volumes: string;
  let trash: string;
  let fsynced: string[];
  let failWith: NodeJS.ErrnoException | undefined;
  const mark = (name: string) => deletingRecordFile(volumes, name);

  beforeEach(() => {
    root = path.join(mkdtempSync(path.join(os.tmpdir(), 'hpp-unit-finisher-')), 'pool');
    volumes = poolLayout(root).volumesDir;
    trash = poolLayout(root).trashDir;
    mkdirSync(volumes, { recursive: true });
    mkdirSync(trash, { recursive: true });
    fsynced = [];
    failWith = undefined;
    const real = fs.fsync;
    const openSync = fs.openSync;
    const fdPath = new Map<number, string>();
    vi.spyOn(fs, 'openSync').mockImplementation(((p: fs.PathLike, ...rest: unknown[]) => {
      const fd = (openSync as (...a: unknown[]) => number)(p, ...rest);
      fdPath.set(fd, String(p));
      return fd;
    }) as typeof fs.openSync);
    vi.spyOn(fs, 'fsync').mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      fsynced.push(fdPath.get(fd) ?? `fd ${fd}`);
      if (failWith) setImmediate(() => cb(failWith!));
      else real(fd, cb);
    }) as typeof fs.fsync);
  });
  afterEach(() => {
    vi.restoreAllMocks();
    rmSync(path.dirname(root), { recursive: true, force: true });
  });

  const finisher = () => new DeleteFinisher(volumeStore(volumes, { name: 'p', root }), captureLog().log, 'p');

  it('unlinks the marks of a burst of deletes only after one fsync of each directory their data left and of the trash', async () => {
    const f = finisher();
    for (const n of ['a', 'b', 'c']) {
      writeFileSync(mark(n), '{}');
      f.add(n, path.join(root, n), [root, trash]);
    }
    expect(['a', 'b', 'c'].every((n) => existsSync(mark(n)))).toBe(true);
    await f.idle();
    expect(['a', 'b', 'c'].some((n) => existsSync(mark(n)))).toBe(false);
    expect(fsynced.sort()).toEqual([root, trash].sort());
  });

  it('settled() waits for a pending delete of the same name or data path and finishes it now; others pass at once', async () => {
    const f = finisher();
    writeFileSync(mark('a'), '{}');
    f.add('a', path.join(root, 'dir-a'), [root, trash]);
    await f.settled('other', path.join(root, 'other'));
    expect(existsSync(mark('a'))).toBe(true);
    await f.settled('x', path.join(root, 'dir-a'));
    expect(existsSync(mark('a'))).toBe(false);
    writeFileSync(mark('b'), '{}');
    f.add('b', path.join(root, 'b'), []);
    await f.settled('b', path.join(root, 'elsewhere'));
    expect(existsSync(mark('b'))).toBe(false);
  });

  it('when the fsync fails the marks stay (the next start finishes those deletes), a create of the name fails with the cause, and a later batch finishes them', async () => {
    const { log, find } = captureLog();
    const f = new DeleteFinisher(volumeStore(volumes, { name: 'p', root }), log, 'p');
    writeFileSync(mark('a'), '{}');
    f.add('a', path.join(root, 'a'), [root, trash]);
    failWith = Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    const err = await f.settled('a', path.join(root, 'a')).catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain('EIO');
    expect((err as Error).cause).toMatchObject({ code: 'EIO' });
    expect(existsSync(mark('a'))).toBe(true);
    expect(find('could not make deleted data durably trashed; the deletes are retried, and the next start finishes them')).toHaveLength(1);
    failWith = undefined;
    await f.settled('a', path.join(root, 'a'));
    expect(existsSync(mark('a'))).toBe(false);
  });
});
