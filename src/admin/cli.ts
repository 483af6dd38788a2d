import { parseArgs } from 'node:util';
import { parsePools } from '../config/options.js';
import { ConfigError, LEGACY_POOL_NAME, type PoolConfig } from '../pools/config.js';

export const HPPCTL_USAGE = `Usage: hppctl [pool flags] COMMAND [options]

Reads the storage pools of this node directly (beside a running daemon or without one).

Commands:
  pools       each pool: state (ready, missing, not writable, served by a daemon), filesystem, how sizes are
              enforced, capacity total/used/free, committed capacity and over-commit, volume count
  volumes     each volume: id, pool, mode, capacity, used, state, the PVC it was made for, publications (and
              whether each is mounted now), preallocation, disk image; and builds in progress (in tmp/, no record yet): building, with
              their size so far
  snapshots   each snapshot record: name, id, source volume, size, copy method, state, created; and
              snapshots being taken
  orphans     data without metadata and metadata without data: stray directories and block images, tmp/ and
              trash/ leftovers, loop devices and mounts no record explains, records whose data is missing,
              interrupted metadata writes; and what gc would do with each
  gc          remove the orphans: unmount stray mounts, detach stray loop devices, remove leftovers.
              Refuses while a daemon serves a pool, unless --force.

Pool flags (as for hpp-csi-driver, with the same environment variables):
  --pool NAME=PATH[:device=DEV][:overcommit=R][:overhead=F]   a pool (repeat)    env HPP_POOLS="a=/p1,b=/p2"
  --pools-file FILE       JSON list of pools                   env HPP_POOLS_FILE
  --pools-json JSON       the same list inline                 env HPP_POOLS_JSON
  --hostpath PATH         legacy single pool "${LEGACY_POOL_NAME}"           env HPP_HOSTPATH
  --use-naming-prefix     accepted for compatibility            env HPP_USE_NAMING_PREFIX

Options:
  --pool NAME             (no "=") only this configured pool; repeat for more
  --json                  machine-readable output (64-bit numbers as strings)
  --dry-run               gc: print what would be done, change nothing
  --force                 gc: run even while a daemon holds a pool's lock (it may be mid-operation)
  --include-records       gc: also remove records whose data is missing
  --include-directories   gc: also remove directories in a pool root that no record owns (in a shared or
                          legacy path these may be someone else's)
  --version               print the version and exit
  --help                  print this help

Exit status: 0 success, 1 failure (including gc refused or a gc step failed), 2 usage or configuration error.
`;

export const COMMANDS = ['pools', 'volumes', 'snapshots', 'orphans', 'gc'] as const;
export type Command = (typeof COMMANDS)[number];

export interface AdminCli {
  command?: Command;
  json: boolean;
  /** Pool names given with --pool NAME: report only these. */
  only: string[];
  dryRun: boolean;
  force: boolean;
  includeRecords: boolean;
  includeDirectories: boolean;
  showHelp: boolean;
  showVersion: boolean;
  pools: PoolConfig[];
}

/** Wrong flags or configuration: exit status 2. */
export class UsageError extends Error {}

export function parseAdminCli(argv: string[], env: NodeJS.ProcessEnv): AdminCli {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        pool: { type: 'string', multiple: true },
        'pools-file': { type: 'string' },
        'pools-json': { type: 'string' },
        hostpath: { type: 'string' },
        'use-naming-prefix': { type: 'boolean' },
        json: { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        force: { type: 'boolean' },
        'include-records': { type: 'boolean' },
        'include-directories': { type: 'boolean' },
        version: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const showHelp = values.help === true || positionals[0] === 'help';
  const showVersion = values.version === true;
  const defs = (values.pool ?? []).filter((p) => p.includes('='));
  const only = (values.pool ?? []).filter((p) => !p.includes('='));
  const out: AdminCli = {
    json: values.json === true,
    only,
    dryRun: values['dry-run'] === true,
    force: values.force === true,
    includeRecords: values['include-records'] === true,
    includeDirectories: values['include-directories'] === true,
    showHelp,
    showVersion,
    pools: [],
  };
  if (showHelp || showVersion) return out;
  if (positionals.length === 0) throw new UsageError(`a command is needed: ${COMMANDS.join(', ')}`);
  if (positionals.length > 1) throw new UsageError(`one command at a time, got: ${positionals.join(' ')}`);
  const command = positionals[0] as Command;
  if (!COMMANDS.includes(command)) throw new UsageError(`unknown command ${JSON.stringify(positionals[0])}; commands: ${COMMANDS.join(', ')}`);
  out.command = command;
  if (command !== 'gc') {
    for (const f of ['dry-run', 'force', 'include-records', 'include-directories'] as const) {
      if (values[f]) throw new UsageError(`--${f} applies to gc only`);
    }
  }

  // The pools, exactly as the daemon reads them from the same flags and environment.
  try {
    out.pools = parsePools({ ...values, pool: defs.length > 0 ? defs : undefined }, env);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    const e = err as NodeJS.ErrnoException;
    if (e.code && e.syscall) throw new UsageError(`cannot read the pools file: ${e.message}`);
    throw err;
  }
  const known = new Set(out.pools.map((p) => p.name));
  for (const n of only) {
    if (!known.has(n)) throw new UsageError(`--pool ${n}: no such pool configured (pools: ${[...known].join(', ')}); define one with --pool NAME=PATH`);
  }
  return out;
}
