import { invalidInput } from '../errors.js';

/**
 * Names that may become a directory or file name inside a pool: no path separators, no NUL, no leading
 * dot (so never "." or ".."), at most 128 bytes (the CSI size limit for names).
 */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Pool names: DNS-label-like, so they fit in labels, metric values and volume ids. */
export const POOL_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** Kubernetes node names are DNS subdomains (lower case); we also accept upper case for other COs. */
const NODE_RE = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

export interface VolumeRef {
  node: string;
  pool: string;
  name: string;
}

export function isValidName(name: string): boolean {
  return NAME_RE.test(name);
}

export function isValidNodeName(node: string): boolean {
  return NODE_RE.test(node);
}

export function checkName(kind: string, name: string): string {
  if (!name) throw invalidInput(`${kind} name is required`);
  if (!NAME_RE.test(name)) {
    throw invalidInput(
      `${kind} name ${JSON.stringify(name.length > 160 ? `${name.slice(0, 160)}...` : name)} is not allowed: ` +
        'use 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit',
    );
  }
  return name;
}

/** A volume id says where the volume lives: `<node>:<pool>:<name>`. Every part is validated on parse. */
export function formatVolumeId(ref: VolumeRef): string {
  return `${ref.node}:${ref.pool}:${ref.name}`;
}

/** Parse an id; undefined when it is not one of ours (the caller decides if that is NOT_FOUND or OK). */
export function parseVolumeId(id: string): VolumeRef | undefined {
  const parts = id.split(':');
  if (parts.length !== 3) return undefined;
  const [node, pool, name] = parts as [string, string, string];
  if (!NODE_RE.test(node) || !POOL_NAME_RE.test(pool) || !NAME_RE.test(name)) return undefined;
  return { node, pool, name };
}
