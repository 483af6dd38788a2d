import { mkdtempSync, readFileSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { poolLayout, recordFile } from '../../src/format/layout.js';
import { replayPublications } from '../../src/format/records.js';
import { launchDaemon, type Daemon } from './daemon.js';
import type { Msg } from './csi-client.js';

export { DRIVER_JS, ROOT } from './daemon.js';
export { connect, expectCode, type Clients, type Msg, type ServiceClient } from './csi-client.js';

/** A daemon started by startDriver: see test/helpers/daemon.ts. */
export type DriverProcess = Daemon;

/** A scratch directory under /tmp for one test file, removed by the caller's cleanup. */
export function scratchDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `hpp-${prefix}-`));
}

/**
 * Start the built daemon (dist/) as a child process on its own socket and wait until it serves.
 * `args` are extra driver flags, typically --pool NAME=DIR; `socket` a path to serve on (default: a
 * fresh one in `dir`).
 */
export function startDriver(opts: { dir: string; args: string[]; node?: string; env?: Record<string, string>; socket?: string }): Promise<DriverProcess> {
  return launchDaemon({
    socket: opts.socket ?? path.join(opts.dir, `csi-${Math.random().toString(36).slice(2, 8)}.sock`),
    node: opts.node ?? 'test-node',
    // Metrics off unless a test asks (a later flag wins): parallel daemons must not fight over :8080.
    metricsAddress: 'off',
    args: opts.args,
    env: opts.env,
    // HPP_TEST_START_MS: slower machines (the kernel tier's emulated VM) take longer to start node.
    startMs: Number(process.env.HPP_TEST_START_MS ?? 15_000),
  });
}

export const MOUNT_CAP = { access_mode: { mode: 'SINGLE_NODE_WRITER' }, mount: { fs_type: '', mount_flags: [] } };
export const BLOCK_CAP = { access_mode: { mode: 'SINGLE_NODE_WRITER' }, block: {} };

/** Unmount anything left under `dir` (deepest first) and remove it: tests never leak mounts. */
export async function cleanupDir(dir: string): Promise<void> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  const targets = text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  const { execFileSync } = await import('node:child_process');
  for (const t of targets) {
    try {
      execFileSync('umount', [t]);
    } catch {
      execFileSync('umount', ['-l', t]);
    }
  }
  // Loop devices whose image lives under `dir` (a test that failed while a block volume was published).
  const loops = JSON.parse(execFileSync('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']).toString() || '{}') as {
    loopdevices?: Array<{ name: string; 'back-file': string | null }>;
  };
  for (const l of loops.loopdevices ?? []) {
    if ((l['back-file'] ?? '').startsWith(`${dir}/`)) execFileSync('losetup', ['-d', l.name]);
  }
  await fsp.rm(dir, { recursive: true, force: true });
}

/**
 * A volume's record as the daemon sees it: `.hpp/volumes/<name>.json` with its publications from the
 * pool's publication log (the last line of the volume wins). undefined when there is no record.
 */
export function readVolumeRecord(pool: string, name: string): Msg | undefined {
  let rec: Msg;
  try {
    rec = JSON.parse(readFileSync(recordFile(poolLayout(pool).volumesDir, name), 'utf8')) as Msg;
  } catch {
    return undefined;
  }
  rec.publications = readPublicationLog(pool).get(name) ?? rec.publications ?? {};
  return rec;
}

/** The pool's publication log replayed as the daemon replays it: publications by volume name. */
export function readPublicationLog(pool: string): Map<string, Msg> {
  try {
    return replayPublications(readFileSync(poolLayout(pool).publicationLog, 'utf8')).state;
  } catch {
    return new Map();
  }
}
