import { invalidInput, unsupported } from '../errors.js';

/**
 * Everything the driver offers, declared once. Every RPC that depends on a capability checks it here,
 * so what we advertise and what we serve cannot drift apart.
 */
export const PLUGIN_SERVICES = ['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS'] as const;
/** Volumes grow while published: the loop device is refreshed and disk.img grown in place. */
export const PLUGIN_VOLUME_EXPANSION = 'ONLINE';

export const CONTROLLER_CAPABILITIES = new Set<string>([
  'CREATE_DELETE_VOLUME',
  'LIST_VOLUMES',
  'GET_CAPACITY',
  'EXPAND_VOLUME',
  'CREATE_DELETE_SNAPSHOT',
  'LIST_SNAPSHOTS',
  'CLONE_VOLUME',
  'SINGLE_NODE_MULTI_WRITER',
]);

export const NODE_CAPABILITIES = new Set<string>([
  'GET_VOLUME_STATS',
  'VOLUME_CONDITION',
  'EXPAND_VOLUME',
  'SINGLE_NODE_MULTI_WRITER',
]);

/** Node-local storage: every mode that keeps the volume on one node. Multi-node modes are refused. */
export const ACCESS_MODES = new Set<string>([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
]);

/** Access types (VolumeCapability oneof) the driver serves today. */
export const ACCESS_TYPES = new Set<string>(['mount', 'block']);

/** The topology key volumes and nodes are labelled with (the HPP key, for drop-in StorageClasses). */
export const TOPOLOGY_KEY = 'topology.hostpath.csi/node';

export function requireControllerCapability(cap: string, rpc: string): void {
  if (!CONTROLLER_CAPABILITIES.has(cap)) throw unsupported(`${rpc} is not supported by this driver (no ${cap} capability)`);
}

export function requireNodeCapability(cap: string, rpc: string): void {
  if (!NODE_CAPABILITIES.has(cap)) throw unsupported(`${rpc} is not supported by this driver (no ${cap} capability)`);
}

export interface VolumeCapabilityMsg {
  access_mode?: { mode?: string } | null;
  access_type?: 'mount' | 'block';
  mount?: { fs_type?: string; mount_flags?: string[]; volume_mount_group?: string } | null;
  block?: object | null;
}

/** Why a capability cannot be served, or undefined when it can. */
export function unsupportedReason(cap: VolumeCapabilityMsg): string | undefined {
  const mode = cap.access_mode?.mode;
  if (!mode || mode === 'UNKNOWN') return 'access_mode is required';
  if (!ACCESS_MODES.has(mode)) return `access mode ${mode} is not supported: volumes are local to one node`;
  const type = cap.access_type;
  if (!type) return 'access_type (mount or block) is required';
  if (!ACCESS_TYPES.has(type)) return `access type ${type} is not supported`;
  return undefined;
}

/** Validates a non-empty list of capabilities that must all be served, and returns the access type. */
export function checkCapabilities(caps: VolumeCapabilityMsg[] | undefined | null, field = 'volume_capabilities'): 'mount' | 'block' {
  if (!caps || caps.length === 0) throw invalidInput(`${field} is required`);
  const types = new Set<string>();
  for (const c of caps) {
    const why = unsupportedReason(c);
    if (why) throw invalidInput(`${field}: ${why}`);
    types.add(c.access_type!);
  }
  if (types.size > 1) throw invalidInput(`${field} mixes block and mount access types`);
  return [...types][0] as 'mount' | 'block';
}
