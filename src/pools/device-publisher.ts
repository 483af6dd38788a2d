import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Logger } from '../observe/logger.js';
import { fsyncDir } from '../system/atomic-file.js';
import { ToolError } from '../errors.js';
import { run } from '../system/exec.js';
import { devString } from '../system/loop.js';
import { ConfigError } from './config.js';

/*
 * The pool device publisher runs in a per-node "pool device pod" that consumes the node's Block PVC
 * (volumeDevices). kubelet maps the PVC into that pod only; the driver DaemonSet runs in another pod and
 * cannot see it. The publisher makes a block device node with the same major:minor in a host directory
 * that both pods mount (/run/hpp/devices), where the daemon finds it through the pool's "device"
 * setting, formats it XFS if blank and mounts it. The publisher never opens, formats or mounts the device.
 */

export const PUBLISHER_USAGE = `Usage: hpp-pool-device --device PATH --publish PATH

Publishes the block device of a pool PVC (mapped into this pod with volumeDevices) as a device node
with the same major:minor at PATH, in a host directory shared with the hpp-csi-driver daemon, then
stays running: the PVC stays mapped only while a pod uses it. SIGTERM/SIGINT exit 0 and leave the node.

  --device PATH     the PVC's device in this pod, e.g. /dev/hpp-pool      env POOL_DEVICE
  --publish PATH    where to create the node, e.g. /run/hpp/devices/<pool>   env POOL_PUBLISH_PATH
  --version         print the version and exit
  --help            print this help
`;

export interface PublisherCli {
  device: string;
  publishPath: string;
  showVersion: boolean;
  showHelp: boolean;
}

export function parsePublisherCli(argv: string[], env: NodeJS.ProcessEnv): PublisherCli {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        device: { type: 'string' },
        publish: { type: 'string' },
        version: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const device = values.device ?? env.POOL_DEVICE ?? '';
  const publishPath = values.publish ?? env.POOL_PUBLISH_PATH ?? '';
  const showVersion = values.version === true;
  const showHelp = values.help === true;
  if (showVersion || showHelp) return { device, publishPath, showVersion, showHelp };
  if (!device) throw new ConfigError('--device (or env POOL_DEVICE) is required');
  if (!publishPath) throw new ConfigError('--publish (or env POOL_PUBLISH_PATH) is required');
  if (!path.isAbsolute(device)) throw new ConfigError(`--device ${JSON.stringify(device)} must be an absolute path`);
  if (!path.isAbsolute(publishPath) || publishPath.endsWith('/')) {
    throw new ConfigError(`--publish ${JSON.stringify(publishPath)} must be an absolute path to a file`);
  }
  if (path.resolve(device) === path.resolve(publishPath)) throw new ConfigError('--device and --publish must differ');
  return { device, publishPath: path.resolve(publishPath), showVersion, showHelp };
}

/** A failure the operator must fix (wrong device, something else at the publish path). */
export class PublishError extends Error {}

export interface PublishResult {
  /** created: there was nothing; replaced: a node with other numbers was there; unchanged: already right. */
  action: 'created' | 'replaced' | 'unchanged';
  /** "major:minor" of the device. */
  devId: string;
  publishPath: string;
}

function kindOf(st: BigIntStats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFile()) return 'a regular file';
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a block device';
}

async function lstatOrUndefined(p: string): Promise<BigIntStats | undefined> {
  try {
    return await fsp.lstat(p, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function tempPrefix(publishPath: string): string {
  return `.${path.basename(publishPath)}.tmp-`;
}

/** Temp nodes a killed publisher left behind for this path: harmless, but not worth keeping. */
async function removeStaleTemps(publishPath: string, log: Logger): Promise<void> {
  const dir = path.dirname(publishPath);
  const prefix = tempPrefix(publishPath);
  for (const entry of await fsp.readdir(dir)) {
    if (!entry.startsWith(prefix)) continue;
    log.info({ file: path.join(dir, entry) }, 'removing temporary node left by an interrupted publish');
    await fsp.rm(path.join(dir, entry), { force: true });
  }
}

/**
 * Create a block device node at `publishPath` with the major:minor of `device`. Atomic: the node is made
 * under a temporary name in the same directory (mknod) and renamed over the final path, so the daemon
 * sees either the old entry or the new node, never a missing or half-made one. A node that already has
 * the right numbers is left as it is; one with other numbers (a previous mapping, a previous boot) is
 * replaced; anything that is not a block device (a file, a directory, a link) is refused, untouched.
 */
export async function publishDevice(device: string, publishPath: string, log: Logger): Promise<PublishResult> {
  let st: BigIntStats;
  try {
    st = await fsp.stat(device, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new PublishError(`device ${device} does not exist: is the pool PVC (volumeMode: Block) consumed with volumeDevices devicePath ${device}?`);
    }
    throw new PublishError(`cannot stat device ${device}: ${code ?? (err as Error).message}`);
  }
  if (!st.isBlockDevice()) {
    throw new PublishError(
      `${device} is ${kindOf(st)}, not a block device: the pool PVC must have volumeMode: Block and be consumed with volumeDevices, not volumeMounts`,
    );
  }
  const devId = devString(st.rdev);
  const [major, minor] = devId.split(':') as [string, string];
  const dir = path.dirname(publishPath);
  await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
  await removeStaleTemps(publishPath, log);

  const existing = await lstatOrUndefined(publishPath);
  let action: PublishResult['action'] = 'created';
  if (existing) {
    if (!existing.isBlockDevice()) {
      throw new PublishError(`${publishPath} is ${kindOf(existing)}, not a device node this publisher made; remove it if it is not needed, nothing was changed`);
    }
    const was = devString(existing.rdev);
    if (was === devId) {
      log.info({ device, publishPath, devId }, 'device already published: node left as it is');
      return { action: 'unchanged', devId, publishPath };
    }
    log.warn({ device, publishPath, devId, was }, 'a node with other numbers is at the publish path (an earlier mapping or boot): replacing it');
    action = 'replaced';
  }

  const tmp = path.join(dir, `${tempPrefix(publishPath)}${process.pid}-${randomBytes(4).toString('hex')}`);
  // Only root (the privileged daemon) opens the node: mode 0600.
  try {
    await run('mknod', ['-m', '0600', tmp, 'b', major, minor], { log: log.child({ component: 'exec' }) });
  } catch (err) {
    if (err instanceof ToolError && /Operation not permitted|Permission denied/.test(err.result.stderr)) {
      throw new PublishError(
        `cannot create a device node in ${dir}: ${err.result.stderr.trim()}; the container must run as uid 0 with CAP_MKNOD (securityContext.capabilities.add: ["MKNOD"]) and may write to ${dir}`,
      );
    }
    throw err;
  }
  try {
    await fsp.rename(tmp, publishPath);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);

  const check = await fsp.lstat(publishPath, { bigint: true });
  if (!check.isBlockDevice() || devString(check.rdev) !== devId) {
    throw new PublishError(`${publishPath} changed under the publisher: expected block device ${devId}`);
  }
  log.info({ device, publishPath, devId, action }, action === 'created' ? 'device published' : 'device published over a stale node');
  return { action, devId, publishPath };
}
