import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The directory holding package.json, found from this file both in src/ (tests) and dist/ (built). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'proto'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the package root (package.json beside proto/)');
    dir = up;
  }
}
