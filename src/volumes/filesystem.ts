import { existsSync, lstatSync, mkdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { internal } from '../errors.js';
import type { ToolContext } from '../system/exec.js';
import type { Host } from '../system/host.js';

/** Bind-mount the volume directory onto a target directory, created if missing. */
export async function publishDirectory(host: Host, source: string, target: string, opts: { readOnly: boolean; flags: string[] }, tc?: ToolContext): Promise<void> {
  if (!existsSync(source)) throw internal(`volume data is missing at ${source}`);
  mkdirSync(target, { recursive: true, mode: 0o750 });
  await host.mounts.bind(source, target, { readOnly: opts.readOnly, flags: opts.flags }, tc);
}

export type UnpublishOutcome = 'removed' | 'nothing-there' | 'not-ours';

/**
 * Unmount every layer of this volume at `target`, then remove the target itself if it is what a
 * publish makes: an empty directory (filesystem volume) or an empty file (block volume). Nothing is
 * removed when nothing of ours was there (`recorded` false and no mount of ours): an unpublish of a
 * path we never published must not delete whatever a caller names. Never removes anything recursively.
 */
export async function unmountAndRemoveTarget(
  host: Host,
  target: string,
  opts: { recorded: boolean; isOurs: () => Promise<boolean>; log?: { warn(o: object, m: string): void } },
  tc?: ToolContext,
): Promise<UnpublishOutcome> {
  let unmounted = false;
  for (;;) {
    const mounted = await host.mounts.mountedAt(target);
    if (!mounted) break;
    if (!(opts.recorded || (await opts.isOurs()))) return 'not-ours';
    await host.mounts.unmount(target, tc);
    unmounted = true;
  }
  if (!opts.recorded && !unmounted) return 'nothing-there';
  try {
    const st = lstatSync(target);
    if (st.isDirectory()) rmdirSync(target);
    else if (st.isFile() && st.size === 0) unlinkSync(target);
    else opts.log?.warn({ target }, 'unpublished target is not an empty file or directory; left in place');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      opts.log?.warn({ target }, 'unpublished target directory is not empty; left in place');
    } else if (code !== 'ENOENT') {
      throw internal(`cannot remove target ${target} after unmount: ${code}`, err);
    }
  }
  return 'removed';
}

/** Do the two paths show the same inode (a bind mount of a volume's directory shows the directory)? */
export async function sameInode(host: Host, a: string, b: string): Promise<boolean> {
  try {
    const [sa, sb] = await Promise.all([host.files.shows(a), host.files.shows(b)]);
    return sa !== undefined && sb !== undefined && sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}
