import { statSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

export interface PathWatch {
  close(): void;
}

/** Whether `p` is there, symlinks followed (a dangling one is not). */
function present(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

function nearestPresentAncestor(p: string): string {
  let dir = path.dirname(p);
  while (dir !== path.dirname(dir) && !present(dir)) dir = path.dirname(dir);
  return dir;
}

/**
 * Calls `onAppear` once, when `target` comes into existence: a pool directory created, a device node
 * published. inotify on the nearest existing ancestor, moving down as the directories on the way
 * appear, so nothing polls. Best effort: a mount (which inotify does not report) or a watch that cannot
 * be set up (inotify limits) leaves it to the caller's timed retry. Does not keep the process alive.
 */
export function watchForPath(target: string, onAppear: () => void): PathWatch {
  let watcher: FSWatcher | undefined;
  let watched: string | undefined;
  let done = false;
  const close = () => {
    done = true;
    watcher?.close();
    watcher = undefined;
  };
  const check = () => {
    if (done) return;
    if (present(target)) {
      close();
      onAppear();
      return;
    }
    const dir = nearestPresentAncestor(target);
    if (dir === watched && watcher) return;
    watcher?.close();
    watched = dir;
    try {
      watcher = watch(dir, { persistent: false }, check);
      watcher.on('error', close);
    } catch {
      close();
      return;
    }
    // What appeared between the look and the watch is seen by looking once more.
    check();
  };
  check();
  return { close };
}
