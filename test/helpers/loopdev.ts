import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';

/** A sparse file of `mib` MiB attached as a loop device; detach() undoes both. */
export interface TestLoop {
  device: string;
  file: string;
  detach(): void;
}

export function makeLoopDevice(file: string, mib: number): TestLoop {
  execFileSync('truncate', ['-s', `${mib}M`, file]);
  const device = execFileSync('losetup', ['--find', '--show', file]).toString().trim();
  return {
    device,
    file,
    detach() {
      // Only if the device still backs our file: cleanupDir may have detached it already and the number
      // may belong to someone else's test by now.
      let back = '';
      try {
        back = execFileSync('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE', device], { stdio: ['ignore', 'pipe', 'ignore'] })
          .toString()
          .trim();
      } catch {
        /* not attached */
      }
      if (back === file || back === `${file} (deleted)`) {
        try {
          execFileSync('losetup', ['-d', device]);
        } catch {
          /* already gone */
        }
      }
      rmSync(file, { force: true });
    },
  };
}

/** Unmount `dir` if something is mounted there (all layers). */
export function unmountAll(dir: string): void {
  for (;;) {
    try {
      execFileSync('mountpoint', ['-q', dir]);
    } catch {
      return;
    }
    execFileSync('umount', [dir]);
  }
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}
