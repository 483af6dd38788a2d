import { invalidInput } from '../errors.js';
import type { ControllerRpc, ControllerServiceCapability, NodeRpc, NodeServiceCapability, VolumeCapability__Output } from './types.js';

/**
 * Everything the driver offers, declared once. None of it depends on configuration: an RPC whose
 * capability is not offered has no handler and answers UNIMPLEMENTED (bindService), and
 * test/unit/csi-binding.test.ts checks that every offered capability's RPCs are served.
 */
export const PLUGIN_SERVICES = ['CONTROLLER_SERVICE', 'VOLUME_ACCESSIBILITY_CONSTRAINTS'] as const;
/** Volumes grow while published: the loop device is refreshed and disk.img grown in place. */
export const PLUGIN_VOLUME_EXPANSION = 'ONLINE';

const CONTROLLER_RPCS: readonly ControllerRpc[] = [
  'CREATE_DELETE_VOLUME',
  'LIST_VOLUMES',
  'GET_CAPACITY',
  'EXPAND_VOLUME',
  'CREATE_DELETE_SNAPSHOT',
  'LIST_SNAPSHOTS',
  'CLONE_VOLUME',
  'SINGLE_NODE_MULTI_WRITER',
  // The routing controller asks the daemons which one holds a volume of hostpath-provisioner's id form.
  'GET_VOLUME',
  // ControllerGetVolume and ListVolumes say whether a volume is abnormal (external-health-monitor).
  'VOLUME_CONDITION',
];

const NODE_RPCS: readonly NodeRpc[] = ['GET_VOLUME_STATS', 'VOLUME_CONDITION', 'EXPAND_VOLUME', 'SINGLE_NODE_MULTI_WRITER'];

export const CONTROLLER_CAPABILITIES: ReadonlySet<string> = new Set(CONTROLLER_RPCS);
export const NODE_CAPABILITIES: ReadonlySet<string> = new Set(NODE_RPCS);

/** ControllerGetCapabilities' answer. */
export function controllerCapabilities(): ControllerServiceCapability[] {
  return CONTROLLER_RPCS.map((type) => ({ rpc: { type } }));
}

/** NodeGetCapabilities' answer. */
export function nodeCapabilities(): NodeServiceCapability[] {
  return NODE_RPCS.map((type) => ({ rpc: { type } }));
}

/** Node-local storage: every mode that keeps the volume on one node. Multi-node modes are refused. */
export const ACCESS_MODES = new Set<string>([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
]);

/** The VolumeCapability oneof: how a volume is used. */
export type AccessType = NonNullable<VolumeCapability__Output['access_type']>;

/** Access types the driver serves today. */
export const ACCESS_TYPES = new Set<string>(['mount', 'block']);

/** The topology key volumes and nodes are labelled with (the HPP key, for drop-in StorageClasses). */
export const TOPOLOGY_KEY = 'topology.hostpath.csi/node';

/** Why a capability cannot be served, or undefined when it can. */
export function unsupportedReason(cap: VolumeCapability__Output): string | undefined {
  const mode = cap.access_mode?.mode;
  if (!mode || mode === 'UNKNOWN') return 'access_mode is required';
  if (!ACCESS_MODES.has(mode)) return `access mode ${mode} is not supported: volumes are local to one node`;
  const type = cap.access_type;
  if (!type) return 'access_type (mount or block) is required';
  if (!ACCESS_TYPES.has(type)) return `access type ${type} is not supported`;
  return undefined;
}

/** Validates a non-empty list of capabilities that must all be served, and returns the access type. */
export function checkCapabilities(caps: readonly VolumeCapability__Output[] | undefined | null, field = 'volume_capabilities'): AccessType {
  if (!caps || caps.length === 0) throw invalidInput(`${field} is required`);
  const types = new Set<AccessType>();
  for (const c of caps) {
    const type = c.access_type;
    const why = unsupportedReason(c) ?? (type ? undefined : 'access_type (mount or block) is required');
    if (why || !type) throw invalidInput(`${field}: ${why}`);
    types.add(type);
  }
  const [type, ...others] = types;
  if (!type || others.length > 0) throw invalidInput(`${field} mixes block and mount access types`);
  return type;
}
