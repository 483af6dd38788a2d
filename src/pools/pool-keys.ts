import { POOL_NAME_RE } from '../volumes/ids.js';
import { PVC_SPEC_KEYS, QUANTITY } from './pvc-template.js';

/** Where a pool's Block claim is published as a device node by its holder (hpp-pool-device). */
export const POOL_DEVICES_DIR = '/run/hpp/devices';

const stringMap = { type: 'object', additionalProperties: { type: 'string' } };
const quantities = { type: 'object', additionalProperties: { type: ['string', 'number'], pattern: QUANTITY.source } };
const dnsSubdomain = '^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$';
const objectRef = {
  type: 'object',
  properties: { apiGroup: { type: 'string' }, kind: { type: 'string', minLength: 1 }, name: { type: 'string', minLength: 1 } },
  required: ['kind', 'name'],
  additionalProperties: false,
};

/** The JSON Schema of a pvcTemplate: the PersistentVolumeClaimSpec keys, checked by pvc-template.ts. */
const PVC_TEMPLATE_SCHEMA = {
  type: 'object',
  properties: {
    accessModes: { type: 'array', minItems: 1, items: { enum: ['ReadWriteOnce', 'ReadWriteOncePod'] } },
    resources: {
      type: 'object',
      properties: { requests: { ...quantities, required: ['storage'] }, limits: quantities },
      required: ['requests'],
      additionalProperties: false,
    },
    storageClassName: { type: 'string', pattern: `${dnsSubdomain}|^$` },
    volumeMode: { enum: ['Block', 'Filesystem'] },
    selector: {
      type: 'object',
      properties: {
        matchLabels: stringMap,
        matchExpressions: {
          type: 'array',
          items: {
            type: 'object',
            properties: { key: { type: 'string', minLength: 1 }, operator: { enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] }, values: { type: 'array', items: { type: 'string' } } },
            required: ['key', 'operator'],
            additionalProperties: false,
          },
        },
      },
      additionalProperties: false,
    },
    dataSource: objectRef,
    dataSourceRef: { ...objectRef, properties: { ...objectRef.properties, namespace: { type: 'string', minLength: 1 } } },
    volumeAttributesClassName: { type: 'string', pattern: dnsSubdomain },
    volumeName: { type: 'string', pattern: dnsSubdomain },
  } satisfies Record<(typeof PVC_SPEC_KEYS)[number], unknown>,
  required: ['resources'],
  additionalProperties: false,
};

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
  pvcTemplate: {
    required: false,
    help: `HPP's per-node claim (a PersistentVolumeClaimSpec): Block is formatted XFS when blank and mounted at path (device ${POOL_DEVICES_DIR}/<name>), Filesystem is used as it is once mounted at path; not with device`,
    schema: PVC_TEMPLATE_SCHEMA,
    example: { volumeMode: 'Block', accessModes: ['ReadWriteOnce'], storageClassName: 'local-block', resources: { requests: { storage: '500Gi' } } },
  },
  snapshotProvider: {
    required: false,
    help: 'HPP\'s snapshot type; only "reflink": snapshots are reflinks where the filesystem can, copies otherwise',
    schema: { type: 'string', enum: ['reflink'] },
    example: 'reflink',
  },
  overlayClassName: {
    required: false,
    help: "accepted for HPP compatibility and ignored: HPP names with it the StorageClass of a shared (ReadWriteMany) pool, which pools here are not",
    schema: { type: 'string' },
    example: 'hpp-overlay',
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

/** The JSON Schema of a pools file: a list of pools, {"pools": [...]}, or HPP's {"storagePools": [...]}. */
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
    oneOf: [
      list,
      { type: 'object', properties: { pools: list }, required: ['pools'], additionalProperties: false },
      { type: 'object', properties: { storagePools: list }, required: ['storagePools'], additionalProperties: false },
    ],
    $defs: { pool },
  };
}
