import { constants, promises as fsp } from 'node:fs';
import path from 'node:path';
import { throwIfCancelled } from '../observe/call-context.js';
import { run, type ToolContext } from './exec.js';

export type CopyMethod = 'reflink' | 'copy';

const NO_REFLINK = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOSYS', 'EBADF', 'EPERM']);

/**
 * Copy one regular file: a reflink (FICLONE: O(1), extents shared until written) where the
 * filesystem can, else a sparse-aware copy (`cp --sparse=always`) so holes stay holes.
 */
export async function copyFile(src: string, dst: string, tc: ToolContext = {}): Promise<CopyMethod> {
  throwIfCancelled(tc.signal);
  try {
    await fsp.copyFile(src, dst, constants.COPYFILE_FICLONE_FORCE | constants.COPYFILE_EXCL);
    return 'reflink';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (!NO_REFLINK.has(code)) throw err;
  }
  await fsp.rm(dst, { force: true });
  await run('cp', ['--sparse=always', '--no-dereference', src, dst], tc);
  return 'copy';
}

/** Ownership, mode and times of `src` onto `dst` (not following symlinks). */
async function copyAttributes(src: string, dst: string): Promise<void> {
  const st = await fsp.lstat(src);
  await fsp.lchown(dst, st.uid, st.gid);
  if (!st.isSymbolicLink()) await fsp.chmod(dst, st.mode & 0o7777);
  await fsp.lutimes(dst, st.atime, st.mtime);
}

/**
 * Copy the contents of directory `src` into the existing directory `dst`: files by reflink or sparse
 * copy, symlinks as symlinks (never followed), directories recreated; owners, modes and times kept.
 * Device nodes, sockets and FIFOs are skipped (a volume's data never needs them). Returns 'reflink'
 * only when every file was reflinked.
 */
export async function copyTree(src: string, dst: string, tc: ToolContext = {}): Promise<CopyMethod> {
  let method: CopyMethod = 'reflink';
  const walk = async (from: string, to: string): Promise<void> => {
    for (const entry of await fsp.readdir(from, { withFileTypes: true })) {
      throwIfCancelled(tc.signal);
      const a = path.join(from, entry.name);
      const b = path.join(to, entry.name);
      if (entry.isDirectory()) {
        await fsp.mkdir(b);
        await walk(a, b);
      } else if (entry.isFile()) {
        if ((await copyFile(a, b, tc)) === 'copy') method = 'copy';
      } else if (entry.isSymbolicLink()) {
        await fsp.symlink(await fsp.readlink(a), b);
      } else {
        continue;
      }
      await copyAttributes(a, b);
    }
  };
  await walk(src, dst);
  await copyAttributes(src, dst);
  return method;
}
