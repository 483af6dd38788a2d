import { didYouMean } from '../util/did-you-mean.js';

/**
 * A pool's `pvcTemplate`: the core/v1 PersistentVolumeClaimSpec that HPP's StoragePool carries, of
 * which one claim per node is made (src/pool-controller/). Checked here for shape only; the API server
 * has the last word on the values when the claim is created.
 */
export interface PvcTemplate {
  accessModes?: AccessMode[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  storageClassName?: string;
  /** Absent means Filesystem, as in Kubernetes and HPP. */
  volumeMode?: 'Block' | 'Filesystem';
  selector?: LabelSelector;
  dataSource?: ObjectRef;
  dataSourceRef?: ObjectRef & { namespace?: string };
  volumeAttributesClassName?: string;
  volumeName?: string;
}

export type AccessMode = 'ReadWriteOnce' | 'ReadWriteOncePod';

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }>;
}

export interface ObjectRef {
  apiGroup?: string;
  kind: string;
  name: string;
}

/** The keys of a PersistentVolumeClaimSpec (core/v1, Kubernetes 1.34). */
export const PVC_SPEC_KEYS = [
  'accessModes',
  'resources',
  'storageClassName',
  'volumeMode',
  'selector',
  'dataSource',
  'dataSourceRef',
  'volumeAttributesClassName',
  'volumeName',
] as const;

const ACCESS_MODES = ['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', 'ReadWriteOncePod'];
const DNS_SUBDOMAIN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
// resource.Quantity: a decimal number with an optional binary or decimal suffix or exponent.
export const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;
const SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

export class PvcTemplateError extends Error {}

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(v: Obj, known: readonly string[], where: string): void {
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) throw new PvcTemplateError(`${where}: unknown key ${JSON.stringify(k)}${didYouMean(k, known)}; it has: ${known.join(', ')}`);
  }
}

function object(v: unknown, where: string, example: string): Obj {
  if (!isObject(v)) throw new PvcTemplateError(`${where} must be an object such as ${example}`);
  return v;
}

function text(v: unknown, where: string): string {
  if (typeof v !== 'string' || v === '') throw new PvcTemplateError(`${where} must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

function stringMap(v: unknown, where: string): Record<string, string> {
  const m = object(v, where, '{"app": "x"}');
  for (const [k, x] of Object.entries(m)) if (typeof x !== 'string') throw new PvcTemplateError(`${where}.${k} must be a string, got ${JSON.stringify(x)}`);
  return m as Record<string, string>;
}

function quantities(v: unknown, where: string): Record<string, string> {
  const m = object(v, where, '{"storage": "100Gi"}');
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(m)) {
    const q = typeof x === 'number' && Number.isFinite(x) ? String(x) : x;
    if (typeof q !== 'string' || !QUANTITY.test(q)) throw new PvcTemplateError(`${where}.${k} must be a quantity such as "100Gi", got ${JSON.stringify(x)}`);
    out[k] = q;
  }
  return out;
}

function objectRef(v: unknown, where: string, namespaced: boolean): ObjectRef & { namespace?: string } {
  const o = object(v, where, '{"kind": "PersistentVolumeClaim", "name": "golden"}');
  onlyKeys(o, namespaced ? ['apiGroup', 'kind', 'name', 'namespace'] : ['apiGroup', 'kind', 'name'], where);
  if (o.apiGroup !== undefined && typeof o.apiGroup !== 'string') throw new PvcTemplateError(`${where}.apiGroup must be a string`);
  return {
    ...(o.apiGroup !== undefined ? { apiGroup: o.apiGroup as string } : {}),
    kind: text(o.kind, `${where}.kind`),
    name: text(o.name, `${where}.name`),
    ...(o.namespace !== undefined ? { namespace: text(o.namespace, `${where}.namespace`) } : {}),
  };
}

function selector(v: unknown, where: string): LabelSelector {
  const o = object(v, where, '{"matchLabels": {"pool": "fast"}}');
  onlyKeys(o, ['matchLabels', 'matchExpressions'], where);
  const out: LabelSelector = {};
  if (o.matchLabels !== undefined) out.matchLabels = stringMap(o.matchLabels, `${where}.matchLabels`);
  if (o.matchExpressions !== undefined) {
    if (!Array.isArray(o.matchExpressions)) throw new PvcTemplateError(`${where}.matchExpressions must be a list`);
    out.matchExpressions = o.matchExpressions.map((e, i) => {
      const w = `${where}.matchExpressions[${i}]`;
      const x = object(e, w, '{"key": "pool", "operator": "In", "values": ["fast"]}');
      onlyKeys(x, ['key', 'operator', 'values'], w);
      const operator = x.operator as string;
      if (!SELECTOR_OPERATORS.includes(operator)) throw new PvcTemplateError(`${w}.operator must be one of ${SELECTOR_OPERATORS.join(', ')}, got ${JSON.stringify(x.operator)}`);
      if (x.values !== undefined && !(Array.isArray(x.values) && x.values.every((s) => typeof s === 'string'))) throw new PvcTemplateError(`${w}.values must be a list of strings`);
      return { key: text(x.key, `${w}.key`), operator: operator as 'In', ...(x.values !== undefined ? { values: x.values as string[] } : {}) };
    });
  }
  return out;
}

/** Checks a pvcTemplate (`where` names it in errors, e.g. "pools.json[1] (pool fast): pvcTemplate"). */
export function parsePvcTemplate(raw: unknown, where: string): PvcTemplate {
  const o = object(raw, where, '{"volumeMode": "Block", "resources": {"requests": {"storage": "100Gi"}}}');
  onlyKeys(o, PVC_SPEC_KEYS, where);
  const t: PvcTemplate = {};
  if (o.accessModes !== undefined) {
    if (!Array.isArray(o.accessModes) || o.accessModes.length === 0) throw new PvcTemplateError(`${where}.accessModes must be a non-empty list such as ["ReadWriteOnce"]`);
    for (const m of o.accessModes) {
      if (!ACCESS_MODES.includes(m as string)) throw new PvcTemplateError(`${where}.accessModes: ${JSON.stringify(m)} is not an access mode (${ACCESS_MODES.join(', ')})`);
      // HPP makes one shared claim for such a template and mounts it on every node; this driver's pools
      // are node-local (one claim per node), so it is refused rather than quietly made per node.
      if (m === 'ReadWriteMany' || m === 'ReadOnlyMany') {
        throw new PvcTemplateError(`${where}.accessModes: ${m} is not supported: a pool here is node-local, one ReadWriteOnce claim per node (HPP's shared pools are not)`);
      }
    }
    t.accessModes = o.accessModes as AccessMode[];
  }
  if (o.resources === undefined) throw new PvcTemplateError(`${where}.resources.requests.storage is required: the size of each node's claim, e.g. "100Gi"`);
  const res = object(o.resources, `${where}.resources`, '{"requests": {"storage": "100Gi"}}');
  onlyKeys(res, ['requests', 'limits'], `${where}.resources`);
  const requests = res.requests === undefined ? {} : quantities(res.requests, `${where}.resources.requests`);
  if (requests.storage === undefined) throw new PvcTemplateError(`${where}.resources.requests.storage is required: the size of each node's claim, e.g. "100Gi"`);
  t.resources = { requests, ...(res.limits !== undefined ? { limits: quantities(res.limits, `${where}.resources.limits`) } : {}) };
  if (o.storageClassName !== undefined) {
    // "" is a claim that binds only to a PersistentVolume without a class.
    if (typeof o.storageClassName !== 'string' || (o.storageClassName !== '' && !DNS_SUBDOMAIN.test(o.storageClassName))) {
      throw new PvcTemplateError(`${where}.storageClassName must be a StorageClass name (a DNS subdomain), got ${JSON.stringify(o.storageClassName)}`);
    }
    t.storageClassName = o.storageClassName;
  }
  if (o.volumeMode !== undefined) {
    if (o.volumeMode !== 'Block' && o.volumeMode !== 'Filesystem') throw new PvcTemplateError(`${where}.volumeMode must be "Block" or "Filesystem", got ${JSON.stringify(o.volumeMode)}`);
    t.volumeMode = o.volumeMode;
  }
  if (o.selector !== undefined) t.selector = selector(o.selector, `${where}.selector`);
  if (o.dataSource !== undefined) t.dataSource = objectRef(o.dataSource, `${where}.dataSource`, false);
  if (o.dataSourceRef !== undefined) t.dataSourceRef = objectRef(o.dataSourceRef, `${where}.dataSourceRef`, true);
  for (const k of ['volumeAttributesClassName', 'volumeName'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'string' || !DNS_SUBDOMAIN.test(o[k] as string)) throw new PvcTemplateError(`${where}.${k} must be an object name (a DNS subdomain), got ${JSON.stringify(o[k])}`);
    t[k] = o[k] as string;
  }
  return t;
}

/** The claim's volume mode: Filesystem unless the template says Block. */
export function templateMode(t: PvcTemplate): 'Block' | 'Filesystem' {
  return t.volumeMode ?? 'Filesystem';
}
