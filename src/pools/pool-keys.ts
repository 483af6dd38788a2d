import { POOL_NAME_RE } from '../volumes/ids.js';

/**
 * The keys of a pool in a pools file (--pools-file, --pools-json, the hpp-pools ConfigMap), each with
 * its JSON Schema: the one list the validator (config.ts), --help and docs/pools-file.schema.json are
 * made from. A key not listed here is refused.
 */
export const POOL_KEYS = {
  name: {
    required: true,
    help: 'the pool name, a DNS label; StorageClasses select it with storagePool',
    schema: { type: 'string', pattern: POOL_NAME_RE.source, maxLength: 63 },
    example: 'fast',
  },
  path: {
    required: true,
    help: 'the pool directory, an absolute path (never /)',
    schema: { type: 'string', pattern: '^/.' },
    example: '/var/hpp-fast',
  },
  device: {
    required: false,
    help: 'a block device backing the pool: formatted XFS when blank, mounted at path',
    schema: { type: 'string', pattern: '^/' },
    example: '/dev/disk/by-id/nvme-1',
  },
  overcommitRatio: {
    required: false,
    help: 'how many times the unused part of existing volumes may be promised again (>= 1, default 1)',
    schema: { type: 'number', minimum: 1 },
    example: 1.5,
  },
  filesystemOverhead: {
    required: false,
    help: 'share of a Filesystem volume kept from disk.img, a decimal below 1 (default: --filesystem-overhead)',
    schema: { type: ['string', 'number'], pattern: '^\\s*(0|0?\\.\\d{1,9})\\s*$', minimum: 0, exclusiveMaximum: 1 },
    example: '0.08',
  },
  hppVolumes: {
    required: false,
    help:
      'where KubeVirt hostpath-provisioner volumes are served in place: "auto" (default: <path>/csi when it is there), ' +
      '"none", or a directory relative to path ("csi", "." for volumes directly in path)',
    schema: { type: 'string', minLength: 1, pattern: '^[^/]' },
    example: 'auto',
  },
  useNamingPrefix: {
    required: false,
    help: 'HPP legacy naming: volume directories named <namespace>-<pvc>-<pv>',
    schema: { type: 'boolean' },
    example: false,
  },
} as const;

export type PoolKey = keyof typeof POOL_KEYS;
export const POOL_KEY_NAMES = Object.keys(POOL_KEYS) as PoolKey[];

/** The options of --pool NAME=PATH[:KEY=VALUE]... and the pools-file key each one sets. */
export const POOL_FLAG_OPTIONS = {
  device: { key: 'device', metavar: 'DEV' },
  overcommit: { key: 'overcommitRatio', metavar: 'R' },
  overhead: { key: 'filesystemOverhead', metavar: 'F' },
} as const satisfies Record<string, { key: PoolKey; metavar: string }>;

/** `NAME=PATH[:device=DEV][:overcommit=R][:overhead=F]`, as --help and the errors show it. */
export const POOL_FLAG_FORM = `NAME=PATH${Object.entries(POOL_FLAG_OPTIONS)
  .map(([o, { metavar }]) => `[:${o}=${metavar}]`)
  .join('')}`;

/** The JSON Schema of a pools file: a list of pools, or {"pools": [...]}. */
export function poolsFileSchema(): Record<string, unknown> {
  const pool = {
    type: 'object',
    description: 'a storage pool',
    properties: Object.fromEntries(POOL_KEY_NAMES.map((k) => [k, { description: POOL_KEYS[k].help, ...POOL_KEYS[k].schema }])),
    required: POOL_KEY_NAMES.filter((k) => POOL_KEYS[k].required),
    additionalProperties: false,
  };
  const list = { type: 'array', items: { $ref: '#/$defs/pool' } };
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://kubevirt.io/hostpath-provisioner/pools-file.schema.json',
    title: 'hpp-csi-driver pools file',
    description: 'The storage pools of a node, as read by hpp-csi-driver --pools-file (generated from src/pools/pool-keys.ts: npm run gen:pools-schema)',
    oneOf: [list, { type: 'object', properties: { pools: list }, required: ['pools'], additionalProperties: false }],
    $defs: { pool },
  };
}
