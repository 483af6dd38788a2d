import fs from 'node:fs';

interface DirState {
  /** The fsync under way, if any. */
  running?: Promise<void>;
  /** The one that starts when it ends, shared by everyone who asked meanwhile. */
  next?: Promise<void>;
}

const dirs = new Map<string, DirState>();

/**
 * fsync(2) of a directory, group-committed: one fsync makes durable every change made in the directory
 * before it started, so callers who ask while one is running share the next one instead of queueing one
 * each (16 creates in flight in one record directory cost two directory fsyncs, not sixteen). A caller
 * never shares an fsync that started before it asked: that one might have missed its rename. An error
 * reaches every caller who shared the fsync, and the next caller starts afresh.
 */
export function syncDir(dir: string): Promise<void> {
  let st = dirs.get(dir);
  if (!st) dirs.set(dir, (st = {}));
  if (!st.running) return start(dir, st);
  st.next ??= st.running.then(
    () => start(dir, st),
    () => start(dir, st),
  );
  return st.next;
}

function start(dir: string, st: DirState): Promise<void> {
  const p = fsyncPath(dir).finally(() => {
    if (st.running === p) st.running = undefined;
    if (!st.running && !st.next) dirs.delete(dir);
  });
  st.running = p;
  st.next = undefined;
  return p;
}

// Opening and closing a directory take microseconds and stay synchronous (see atomic-file.ts); the
// fsync waits for the disk and goes to the thread pool.
async function fsyncPath(dir: string): Promise<void> {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
  } finally {
    fs.closeSync(fd);
  }
}
