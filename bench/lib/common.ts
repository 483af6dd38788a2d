// What every benchmark uses: paths, sizes, the pool and node names, the CSI capabilities, clocks and
// environment knobs.
import path from 'node:path';
import { packageRoot } from '../../src/util/package-root.js';

export { nowMs } from '../../test/helpers/process-log.js';

export const ROOT = packageRoot();
export const BENCH_DIR = path.join(ROOT, 'bench');
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const POOL_NAME = 'bench';
export const NODE_NAME = 'bench-node';
export const MOUNT_CAP = { access_mode: { mode: 'SINGLE_NODE_WRITER' }, mount: { fs_type: '', mount_flags: [] } };
export const BLOCK_CAP = { access_mode: { mode: 'SINGLE_NODE_WRITER' }, block: {} };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An integer from the environment, or the default; refuses garbage instead of guessing. */
export function envInt(name: string, dflt: number, min = 1): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${v} is not an integer >= ${min}`);
  return n;
}

export const fmtBytes = (b: number): string => (Math.abs(b) >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / MiB).toFixed(1)} MiB`);
