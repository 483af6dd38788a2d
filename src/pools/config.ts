import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseOverhead } from '../volumes/disk-image.js';
import { POOL_NAME_RE } from '../volumes/ids.js';
import { META_DIR } from '../format/layout.js';
import { didYouMean } from '../util/did-you-mean.js';
import { POOL_DEVICES_DIR, POOL_FLAG_FORM, POOL_FLAG_OPTIONS, POOL_KEY_NAMES } from './pool-keys.js';
import { parsePvcTemplate, PvcTemplateError, templateMode, type PvcTemplate } from './pvc-template.js';

export interface PoolConfig {
  name: string;
  /** Absolute path of the pool directory on the node. */
  path: string;
  /** HPP legacy naming: volume directories named `<namespace>-<pvc>-<pv>` when the CO passes PVC metadata. */
  useNamingPrefix: boolean;
  /** A block device that backs the pool: formatted XFS when blank, mounted at `path`. */
  device?: string;
  /**
   * How many times the unused part of existing volumes may be promised again: 1.0 promises only space
   * that no volume can grow into; 2.0 counts that reserve at half.
   */
  overcommitRatio: number;
  /** Share of a Filesystem volume kept back from disk.img, as a decimal string ("0.055"); see disk-image.ts. */
  filesystemOverhead?: string;
  /**
   * Where KubeVirt hostpath-provisioner volumes are served in place (volumes/hpp-volumes.ts): 'auto'
   * (the default: `csi` when the pool has it), 'none', or a directory relative to the pool path.
   */
  hppVolumes?: string;
  /**
   * HPP's per-node claim, made by the pool controller. Block: `device` is where its holder publishes
   * the claim's device. Filesystem: `awaitMount`.
   */
  pvcTemplate?: PvcTemplate;
  /**
   * The pool is the claim's filesystem, mounted at `path` by its holder: not ready until `path` is a
   * mount point that is not the node's root filesystem, and never formatted.
   */
  awaitMount?: boolean;
}

/** The pool name HPP uses for its legacy single-path configuration (`pathConfig.path`). */
export const LEGACY_POOL_NAME = 'legacy';

export class ConfigError extends Error {}

type RawPool = { [k in (typeof POOL_KEY_NAMES)[number]]?: unknown };

const KNOWN_KEYS = new Set<string>(POOL_KEY_NAMES);

function fromRaw(raw: RawPool, where: string): PoolConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${where}: each pool must be an object such as {"name": "local", "path": "/var/hpvolumes"}`);
  }
  // Refused rather than ignored: a misspelt "overcommitratio" would otherwise leave the pool at 1.0 unseen.
  for (const k of Object.keys(raw)) {
    if (!KNOWN_KEYS.has(k)) {
      const pool = typeof raw.name === 'string' ? ` (pool ${raw.name})` : '';
      throw new ConfigError(`${where}${pool}: unknown key ${JSON.stringify(k)}${didYouMean(k, KNOWN_KEYS)}; a pool has: ${POOL_KEY_NAMES.join(', ')}`);
    }
  }
  if (typeof raw.name !== 'string' || !POOL_NAME_RE.test(raw.name)) {
    throw new ConfigError(`${where}: pool name ${JSON.stringify(raw.name)} must be a DNS label (a-z, 0-9, -; 1-63 characters)`);
  }
  if (typeof raw.path !== 'string' || !path.isAbsolute(raw.path)) {
    throw new ConfigError(`${where}: pool ${raw.name} needs an absolute "path", got ${JSON.stringify(raw.path)}`);
  }
  if (path.resolve(raw.path) === '/') throw new ConfigError(`${where}: pool ${raw.name} cannot be the root directory`);
  if (raw.useNamingPrefix !== undefined && typeof raw.useNamingPrefix !== 'boolean') {
    throw new ConfigError(`${where}: pool ${raw.name}: useNamingPrefix must be true or false`);
  }
  if (raw.device !== undefined && (typeof raw.device !== 'string' || !path.isAbsolute(raw.device))) {
    throw new ConfigError(`${where}: pool ${raw.name}: device must be an absolute path to a block device`);
  }
  if (raw.hppVolumes !== undefined) checkHppVolumes(raw.hppVolumes, `${where}: pool ${raw.name}`);
  let template: PvcTemplate | undefined;
  if (raw.pvcTemplate !== undefined) {
    if (raw.device !== undefined) {
      throw new ConfigError(`${where}: pool ${raw.name}: give device or pvcTemplate, not both: a Block pvcTemplate's device is ${POOL_DEVICES_DIR}/${raw.name}, published by its holder`);
    }
    try {
      template = parsePvcTemplate(raw.pvcTemplate, `${where}: pool ${raw.name}: pvcTemplate`);
    } catch (err) {
      if (err instanceof PvcTemplateError) throw new ConfigError(err.message);
      throw err;
    }
  }
  if (raw.snapshotProvider !== undefined && raw.snapshotProvider !== 'reflink') {
    throw new ConfigError(
      `${where}: pool ${raw.name}: snapshotProvider ${JSON.stringify(raw.snapshotProvider)} is not supported: only "reflink" (this driver snapshots by reflink where the filesystem can, and by copy otherwise)`,
    );
  }
  // HPP names the StorageClass of a shared (ReadWriteMany) pool with it; pools here are node-local.
  if (raw.overlayClassName !== undefined && typeof raw.overlayClassName !== 'string') {
    throw new ConfigError(`${where}: pool ${raw.name}: overlayClassName must be a string (it is ignored here)`);
  }
  const ratio = raw.overcommitRatio ?? 1;
  if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 1) {
    throw new ConfigError(`${where}: pool ${raw.name}: overcommitRatio must be a number >= 1`);
  }
  return {
    name: raw.name,
    path: path.resolve(raw.path),
    useNamingPrefix: raw.useNamingPrefix === true,
    ...(raw.device ? { device: raw.device as string } : {}),
    ...(template && templateMode(template) === 'Block' ? { device: `${POOL_DEVICES_DIR}/${raw.name}` } : {}),
    ...(template ? { pvcTemplate: template } : {}),
    ...(template && templateMode(template) === 'Filesystem' ? { awaitMount: true } : {}),
    overcommitRatio: ratio,
    ...(raw.filesystemOverhead !== undefined ? { filesystemOverhead: checkOverhead(raw.filesystemOverhead, `${where}: pool ${raw.name}`) } : {}),
    ...(raw.hppVolumes !== undefined ? { hppVolumes: path.posix.normalize(raw.hppVolumes as string).replace(/\/+$/, '') || '.' } : {}),
  };
}

/** "auto", "none", or a directory inside the pool that is not the driver's own `.hpp`. */
function checkHppVolumes(v: unknown, where: string): void {
  const form = 'hppVolumes must be "auto", "none" or a directory relative to the pool path such as "csi" or "."';
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${where}: ${form}`);
  if (v === 'auto' || v === 'none') return;
  const parts = path.posix.normalize(v).split('/').filter((x) => x !== '' && x !== '.');
  if (v.includes('\0') || v.startsWith('/') || parts.includes('..')) throw new ConfigError(`${where}: hppVolumes ${JSON.stringify(v)} must stay inside the pool; ${form}`);
  if (parts[0] === META_DIR) throw new ConfigError(`${where}: hppVolumes ${JSON.stringify(v)} is inside the driver's own .hpp directory`);
}

function checkOverhead(v: unknown, where: string): string {
  const text = typeof v === 'number' ? String(v) : v;
  if (typeof text !== 'string') throw new ConfigError(`${where}: filesystemOverhead must be a decimal such as "0.055"`);
  try {
    parseOverhead(text, 'filesystemOverhead');
  } catch (err) {
    throw new ConfigError(`${where}: ${(err as Error).message}`);
  }
  return text;
}

/** `name=/path` or `name=/path:device=/dev/x:overcommit=2` as given to --pool (or in HPP_POOLS, `where`). */
export function parsePoolFlag(spec: string, where = '--pool'): PoolConfig {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new ConfigError(`${where} ${JSON.stringify(spec)}: expected ${POOL_FLAG_FORM}`);
  const [p, ...opts] = spec.slice(eq + 1).split(':');
  const raw: RawPool = { name: spec.slice(0, eq), path: p };
  const known = Object.keys(POOL_FLAG_OPTIONS);
  for (const o of opts) {
    const oeq = o.indexOf('=');
    const k = oeq < 0 ? o : o.slice(0, oeq);
    const v = oeq < 0 ? '' : o.slice(oeq + 1);
    if (!Object.hasOwn(POOL_FLAG_OPTIONS, k)) {
      throw new ConfigError(`${where} ${JSON.stringify(spec)}: unknown option ${JSON.stringify(k)}${didYouMean(k, known)}; options: ${known.map((x) => `:${x}=`).join(', ')}`);
    }
    if (v === '') throw new ConfigError(`${where} ${JSON.stringify(spec)}: option ${k} needs a value (:${k}=...)`);
    const key = POOL_FLAG_OPTIONS[k as keyof typeof POOL_FLAG_OPTIONS].key;
    raw[key] = key === 'overcommitRatio' ? Number(v) : v;
  }
  return fromRaw(raw, where);
}

const LIST_KEYS = ['pools', 'storagePools'];
const EXPECTED = 'expected a JSON list of pools, {"pools": [...]} or HPP\'s {"storagePools": [...]}';

/**
 * A JSON list of pools, `[{"name": "fast", "path": "/var/hpp/fast"}]`, inline or in a file; or that list
 * as `{"pools": [...]}`, or as the `storagePools` of a HostPathProvisioner CR's spec, pasted as it is.
 */
export function parsePoolsJson(text: string, where: string): PoolConfig[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${where}: not valid JSON: ${(err as Error).message}`);
  }
  let list: unknown = data;
  let at = where;
  if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
    const keys = Object.keys(data);
    for (const k of keys) {
      if (!LIST_KEYS.includes(k)) throw new ConfigError(`${where}: unknown key ${JSON.stringify(k)}${didYouMean(k, LIST_KEYS)}; ${EXPECTED}`);
    }
    if (keys.length !== 1) throw new ConfigError(`${where}: give "pools" or "storagePools", not both`);
    list = (data as Record<string, unknown>)[keys[0]!];
    at = keys[0] === 'storagePools' ? `${where} storagePools` : where;
  }
  if (!Array.isArray(list)) throw new ConfigError(`${where}: ${EXPECTED}`);
  return list.map((p, i) => fromRaw(p as RawPool, `${at}[${i}]`));
}

/** A pools file; `source` names where its name came from (--pools-file, HPP_POOLS_FILE) in the errors. */
export function loadPoolsFile(file: string, source = '--pools-file'): PoolConfig[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // "ENOENT: no such file or directory, open '/x'": the path is given already.
    const why = e.code ? e.message.split(',')[0] : e.message;
    throw new ConfigError(`${source} ${file}: cannot read the pools file: ${why}`);
  }
  return parsePoolsJson(text, file);
}

/** Names unique, paths neither equal nor nested (a volume must belong to exactly one pool). */
export function checkPools(pools: PoolConfig[]): PoolConfig[] {
  if (pools.length === 0) throw new ConfigError('no storage pool configured: give --pool NAME=PATH, --pools-file or --hostpath');
  const names = new Set<string>();
  for (const p of pools) {
    if (names.has(p.name)) throw new ConfigError(`pool ${p.name} is configured twice`);
    names.add(p.name);
  }
  for (const a of pools) {
    for (const b of pools) {
      if (a === b) continue;
      if (a.path === b.path || b.path.startsWith(a.path.endsWith('/') ? a.path : `${a.path}/`)) {
        throw new ConfigError(`pools ${a.name} (${a.path}) and ${b.name} (${b.path}) overlap`);
      }
    }
  }
  return pools;
}
