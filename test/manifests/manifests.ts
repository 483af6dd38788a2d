/**
 * Shared by the tests of test/manifests/: deploy/ loaded the way `kubectl apply -k deploy/` reads it
 * (kustomization.yaml and the directories it includes, YAML 1.1), schema checks (kubernetes-models for
 * Kubernetes kinds, a structural check written from the upstream CRD for custom resources), and small
 * helpers for container args, label selectors and RBAC.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments, parse as parseYamlText } from 'yaml';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEPLOY = path.join(ROOT, 'deploy');
export const NAMESPACE = 'hostpath-provisioner';
export const DRIVER_NAME = 'kubevirt.io.hostpath-provisioner';
export const SCHEMA_VERSION = 'Kubernetes v1.33 (kubernetes-models 4.5.1)';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = Record<string, any>;

export interface Loaded {
  /** Path relative to deploy/. */
  file: string;
  index: number;
  label: string;
  obj: Obj;
}

// ---------------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------------

/** Parse a multi-document YAML file as kubectl does (YAML 1.1), reporting anything doubtful. */
export function loadYaml(file: string): { docs: Obj[]; problems: string[] } {
  const text = readFileSync(file, 'utf8');
  const rel = path.relative(ROOT, file);
  const problems: string[] = [];
  const docs: Obj[] = [];
  // kubectl (sigs.k8s.io/yaml on go-yaml) reads YAML 1.1: `yes`, `on`, `010` are not strings there.
  const v11 = parseAllDocuments(text, { version: '1.1', uniqueKeys: true, prettyErrors: true });
  const v12 = parseAllDocuments(text, { version: '1.2', uniqueKeys: true, prettyErrors: true });
  [...v11].forEach((doc, i) => {
    for (const e of [...doc.errors, ...doc.warnings]) problems.push(`${rel} document ${i}: ${e.message}`);
    const js = doc.toJS() as unknown;
    if (js === null || js === undefined) return; // empty document (e.g. a trailing ---)
    const js12 = [...v12][i]?.toJS() as unknown;
    if (JSON.stringify(js) !== JSON.stringify(js12)) {
      problems.push(`${rel} document ${i}: reads differently as YAML 1.1 and 1.2; quote the ambiguous scalar`);
    }
    if (typeof js !== 'object' || Array.isArray(js)) {
      problems.push(`${rel} document ${i}: not a mapping`);
      return;
    }
    docs.push(js as Obj);
  });
  return { docs, problems };
}

export interface KustomizationFile {
  /** Directory relative to deploy/ ('' for deploy/ itself). */
  dir: string;
  obj: Obj;
  problems: string[];
}

/** deploy/kustomization.yaml first, then the kustomizations of the directories it includes (depth first). */
export const kustomizations: KustomizationFile[] = [];
/** Every file resource, relative to deploy/, in kustomize's order. */
export const listedResources: string[] = [];
/** Directories included as resources, relative to deploy/. */
export const listedDirs: string[] = [];

function walk(dir: string): void {
  const file = loadYaml(path.join(DEPLOY, dir, 'kustomization.yaml'));
  const obj: Obj = file.docs[0] ?? {};
  kustomizations.push({ dir, obj, problems: file.problems });
  for (const r of Array.isArray(obj.resources) ? (obj.resources as string[]) : []) {
    const rel = path.posix.join(dir, r);
    const abs = path.join(DEPLOY, rel);
    if (existsSync(abs) && statSync(abs).isDirectory()) {
      listedDirs.push(rel);
      walk(rel);
    } else {
      listedResources.push(rel);
    }
  }
}
walk('');

export const kustomization: Obj = kustomizations[0]!.obj;

/** The YAML files in deploy/ and in each included directory (kustomization.yaml files aside). */
export const yamlFilesInListedDirs: string[] = ['', ...listedDirs]
  .flatMap((dir) =>
    readdirSync(path.join(DEPLOY, dir))
      .filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml' && statSync(path.join(DEPLOY, dir, f)).isFile())
      .map((f) => path.posix.join(dir, f)),
  )
  .sort();

export const parsedFiles = new Map<string, { docs: Obj[]; problems: string[] }>();
for (const f of new Set([...yamlFilesInListedDirs, ...listedResources.filter((r) => existsSync(path.join(DEPLOY, r)))])) {
  parsedFiles.set(f, loadYaml(path.join(DEPLOY, f)));
}

export const objects: Loaded[] = listedResources.flatMap((file) =>
  (parsedFiles.get(file)?.docs ?? []).map((obj, index) => ({
    file,
    index,
    obj,
    label: `${file}#${index} ${obj.kind}/${obj.metadata?.name}`,
  })),
);

export function all(kind: string): Obj[] {
  return objects.filter((o) => o.obj.kind === kind).map((o) => o.obj);
}

export function one(kind: string, name: string): Obj {
  const found = all(kind).filter((o) => o.metadata?.name === name);
  if (found.length !== 1) throw new Error(`expected exactly one ${kind}/${name} in deploy/, found ${found.length}`);
  return found[0]!;
}

// ---------------------------------------------------------------------------------------------------
// Custom resources: no kubernetes-models schema, so a structural check from the upstream CRD
// ---------------------------------------------------------------------------------------------------

const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const CSI_DRIVER_NAME = /^[a-zA-Z][A-Za-z0-9-._]{0,61}[a-zA-Z]$/;

function stringMapErrors(value: unknown, where: string): string[] {
  if (value === undefined) return [];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${where} must be a map`];
  return Object.entries(value).filter(([, v]) => typeof v !== 'string').map(([k, v]) => `${where}.${k} must be a string, not ${JSON.stringify(v)}`);
}

/** The fields a manifest may set in metadata of a cluster-scoped custom resource. */
function metadataErrors(meta: unknown): string[] {
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return ['metadata must be an object'];
  const m = meta as Obj;
  const errors: string[] = [];
  for (const k of Object.keys(m)) if (!['name', 'labels', 'annotations'].includes(k)) errors.push(`metadata.${k} is not expected in a manifest of a cluster-scoped object`);
  if (typeof m.name !== 'string' || !DNS_SUBDOMAIN.test(m.name)) errors.push(`metadata.name ${JSON.stringify(m.name)} is not a DNS subdomain`);
  errors.push(...stringMapErrors(m.labels, 'metadata.labels'), ...stringMapErrors(m.annotations, 'metadata.annotations'));
  return errors;
}

/**
 * VolumeSnapshotClass, snapshot.storage.k8s.io/v1, as external-snapshotter v8.7.0's CRD
 * (client/config/crd/snapshot.storage.k8s.io_volumesnapshotclasses.yaml) defines it: cluster-scoped;
 * properties apiVersion, kind, metadata, driver (string, required), deletionPolicy (Delete | Retain,
 * required), parameters (map of strings). Unknown fields are reported (the API server prunes them).
 */
function volumeSnapshotClassErrors(obj: Obj): string[] {
  const errors: string[] = [];
  if (obj.apiVersion !== 'snapshot.storage.k8s.io/v1') errors.push(`apiVersion ${obj.apiVersion}: want snapshot.storage.k8s.io/v1`);
  for (const k of Object.keys(obj)) {
    if (!['apiVersion', 'kind', 'metadata', 'driver', 'deletionPolicy', 'parameters'].includes(k)) errors.push(`unknown field ${k}`);
  }
  errors.push(...metadataErrors(obj.metadata));
  if (typeof obj.driver !== 'string') errors.push('driver is required (string)');
  else if (!CSI_DRIVER_NAME.test(obj.driver)) errors.push(`driver ${JSON.stringify(obj.driver)} is not a CSI driver name`);
  if (!['Delete', 'Retain'].includes(obj.deletionPolicy)) errors.push(`deletionPolicy ${JSON.stringify(obj.deletionPolicy)}: want Delete or Retain (required)`);
  errors.push(...stringMapErrors(obj.parameters, 'parameters'));
  return errors;
}

export const CUSTOM_RESOURCES: Record<string, { group: string; scope: 'Cluster' | 'Namespaced'; errors(obj: Obj): string[] }> = {
  VolumeSnapshotClass: { group: 'snapshot.storage.k8s.io', scope: 'Cluster', errors: volumeSnapshotClassErrors },
};

export function isCustomResource(obj: Obj): boolean {
  const cr = CUSTOM_RESOURCES[obj.kind];
  return cr !== undefined && String(obj.apiVersion).startsWith(`${cr.group}/`);
}

// ---------------------------------------------------------------------------------------------------
// Schema validation (kubernetes-models) and strict field check (TypeScript)
// ---------------------------------------------------------------------------------------------------

export function modelOf(obj: Obj): { module: string; type: string } {
  const apiVersion = String(obj.apiVersion);
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const module = group ? `kubernetes-models/${group}/${version}/${obj.kind}` : `kubernetes-models/${version}/${obj.kind}`;
  return { module, type: `I${obj.kind}` };
}

/**
 * The schema check: undefined when valid, else the validator's message. Kubernetes kinds against the
 * OpenAPI schema of kubernetes-models; the custom resources above against their structural check.
 */
export async function schemaError(obj: Obj): Promise<string | undefined> {
  if (isCustomResource(obj)) {
    const errors = CUSTOM_RESOURCES[obj.kind]!.errors(obj);
    return errors.length > 0 ? errors.join('; ') : undefined;
  }
  const { module } = modelOf(obj);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(/* @vite-ignore */ module)) as Record<string, unknown>;
  } catch {
    return `no Kubernetes schema for ${obj.apiVersion} ${obj.kind} (${module})`;
  }
  const Model = mod[obj.kind] as (new (data: Obj) => { validate(): void }) | undefined;
  if (!Model) return `${module} has no model ${obj.kind}`;
  try {
    new Model(structuredClone(obj)).validate();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Type-check each object as a literal of its kubernetes-models interface. TypeScript's excess-property
 * check on object literals rejects any field the API type does not have, at any depth. (Custom
 * resources have no interface there; their structural check rejects unknown fields itself.)
 */
export function strictFieldErrors(items: { label: string; obj: Obj }[]): string[] {
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
  };
  const virtual = new Map<string, { text: string; label: string }>();
  items.forEach(({ label, obj }, i) => {
    const { module, type } = modelOf(obj);
    const fileName = path.join(ROOT, 'test', 'manifests', `__strict_fields_${i}.ts`);
    const text = `import type { ${type} as T } from ${JSON.stringify(module)};\nexport const obj: T = ${JSON.stringify(obj, null, 2)};\n`;
    virtual.set(fileName, { text, label });
  });
  const host = ts.createCompilerHost(options, true);
  const { getSourceFile, fileExists, readFile } = host;
  host.fileExists = (f) => virtual.has(f) || fileExists.call(host, f);
  host.readFile = (f) => virtual.get(f)?.text ?? readFile.call(host, f);
  host.getSourceFile = (f, lang, onError, create) => {
    const v = virtual.get(f);
    return v ? ts.createSourceFile(f, v.text, lang, true) : getSourceFile.call(host, f, lang, onError, create);
  };
  const program = ts.createProgram([...virtual.keys()], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    const v = d.file ? virtual.get(d.file.fileName) : undefined;
    if (!d.file || !v || d.start === undefined) return msg;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    return `${v.label}: \`${v.text.split('\n')[line]?.trim()}\`: ${msg}`;
  });
}

// ---------------------------------------------------------------------------------------------------
// Kustomize transformers
// ---------------------------------------------------------------------------------------------------

/** The inline (or file) transformer configurations of a kustomization, parsed. */
export function transformersOf(k: KustomizationFile): Obj[] {
  return ((k.obj.transformers ?? []) as string[]).flatMap((t) => {
    const text = t.includes('\n') ? t : readFileSync(path.join(DEPLOY, k.dir, t), 'utf8');
    return parseAllDocuments(text).map((d) => d.toJS() as Obj);
  });
}

/** Does this kustomization remove metadata.namespace from objects of this group and kind after `namespace:`? */
export function removesNamespace(k: KustomizationFile, group: string, kind: string): boolean {
  return transformersOf(k).some((t) => {
    if (t.apiVersion !== 'builtin' || t.kind !== 'PatchTransformer') return false;
    if (t.target?.group !== group || t.target?.kind !== kind) return false;
    const ops = (typeof t.patch === 'string' ? parseYamlText(t.patch) : t.patch) as Obj[] | undefined;
    return Array.isArray(ops) && ops.some((op) => op.op === 'remove' && op.path === '/metadata/namespace');
  });
}

// ---------------------------------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------------------------------

export function containerOf(spec: Obj, name: string): Obj {
  const c = (spec.containers as Obj[]).find((x) => x.name === name);
  if (!c) throw new Error(`no container ${name}`);
  return c;
}

/**
 * A container the top-level README shows as a YAML snippet (a ```yaml block holding `- name: <name>`),
 * for containers deploy/ documents instead of deploying (node-driver-registrar).
 */
export function readmeContainer(name: string): Obj {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^```yaml\n([^]*?)^```$/gm)].map((m) => m[1]!).filter((b) => new RegExp(`^\\s*- name: ${name}$`, 'm').test(b));
  if (blocks.length !== 1) throw new Error(`README.md: expected one yaml block with container ${name}, found ${blocks.length}`);
  const parsed = parseYamlText(blocks[0]!, { version: '1.1' }) as unknown;
  if (!Array.isArray(parsed) || parsed.length !== 1) throw new Error(`README.md: the ${name} block is not a list of one container`);
  return parsed[0] as Obj;
}

export function volumeOf(spec: Obj, name: string): Obj {
  const v = (spec.volumes as Obj[]).find((x) => x.name === name);
  if (!v) throw new Error(`no volume ${name}`);
  return v;
}

export function mountAt(c: Obj, mountPath: string): Obj | undefined {
  return (c.volumeMounts as Obj[] | undefined)?.find((m) => m.mountPath === mountPath);
}

/** Value of `--name=value` (or a bare `--name`, as 'true'); undefined when absent. */
export function flag(args: string[], name: string): string | undefined {
  for (const a of args) {
    if (a === `--${name}`) return 'true';
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return undefined;
}

export function fieldRef(c: Obj, envName: string): string | undefined {
  return (c.env as Obj[] | undefined)?.find((e) => e.name === envName)?.valueFrom?.fieldRef?.fieldPath;
}

/** kubelet's $(VAR) expansion in args, from the container's literal env and fieldRefs (given values). */
/**
 * A container's environment as the container gets it: `value`s as written, `valueFrom` entries from
 * `values` (by variable name; what kubelet would fill in), `$(VAR)` in values expanded as kubelet does.
 */
export function containerEnv(c: Obj, values: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of (c.env ?? []) as Obj[]) {
    if (e.value !== undefined) env[e.name] = String(e.value).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string) => env[v] ?? m);
    else if (e.valueFrom) {
      if (values[e.name] === undefined) throw new Error(`container ${c.name}: env ${e.name} comes from ${JSON.stringify(e.valueFrom)}: give it a value`);
      env[e.name] = values[e.name]!;
    }
  }
  return env;
}

export function expandArgs(c: Obj, values: Record<string, string>): string[] {
  return (c.args as string[]).map((a) =>
    a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, v: string) => {
      const env = (c.env as Obj[] | undefined)?.find((e) => e.name === v);
      if (!env) throw new Error(`container ${c.name}: $(${v}) in args but no env ${v}`);
      return env.value ?? values[v] ?? `<${v}>`;
    }),
  );
}

// ---------------------------------------------------------------------------------------------------
// Label selectors (the string form the API server takes in ?labelSelector=)
// ---------------------------------------------------------------------------------------------------

type Requirement = { key: string; op: 'in' | 'notin' | 'exists' | '!exists'; values: string[] };

/** Parse a label selector string: k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b); comma-separated (AND). */
export function parseSelector(selector: string): Requirement[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts.map((raw) => {
    const p = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(p))) {
      return { key: m[1]!, op: m[2] as 'in' | 'notin', values: m[3]!.split(',').map((v) => v.trim()) };
    }
    if ((m = /^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/.exec(p))) return { key: m[1]!, op: m[2] === '!=' ? 'notin' : 'in', values: [m[3]!] };
    if ((m = /^!([\w./-]+)$/.exec(p))) return { key: m[1]!, op: '!exists', values: [] };
    if ((m = /^([\w./-]+)$/.exec(p))) return { key: m[1]!, op: 'exists', values: [] };
    throw new Error(`cannot parse label selector requirement ${JSON.stringify(p)} in ${JSON.stringify(selector)}`);
  });
}

export function selects(selector: string, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return parseSelector(selector).every((r) => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    switch (r.op) {
      case 'exists':
        return has;
      case '!exists':
        return !has;
      case 'in':
        return has && r.values.includes(l[r.key]!);
      case 'notin':
        return !has || !r.values.includes(l[r.key]!);
    }
  });
}

/** A LabelSelector object ({matchLabels, matchExpressions}) against labels. */
export function matchesLabelSelector(sel: Obj | undefined, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  const ml = Object.entries((sel?.matchLabels ?? {}) as Record<string, string>).every(([k, v]) => l[k] === v);
  const me = ((sel?.matchExpressions ?? []) as Obj[]).every((e) => {
    const has = Object.prototype.hasOwnProperty.call(l, e.key);
    if (e.operator === 'In') return has && (e.values as string[]).includes(l[e.key]!);
    if (e.operator === 'NotIn') return !has || !(e.values as string[]).includes(l[e.key]!);
    if (e.operator === 'Exists') return has;
    if (e.operator === 'DoesNotExist') return !has;
    throw new Error(`unknown operator ${e.operator}`);
  });
  return ml && me;
}

// ---------------------------------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------------------------------

export function allows(rules: Obj[], group: string, resource: string, verb: string): boolean {
  return rules.some(
    (r) =>
      (r.apiGroups ?? []).some((g: string) => g === group || g === '*') &&
      (r.resources ?? []).some((x: string) => x === resource || x === '*') &&
      (r.verbs ?? []).some((v: string) => v === verb || v === '*'),
  );
}

export function boundTo(binding: Obj, sa: { name: string; namespace: string }): boolean {
  return ((binding.subjects ?? []) as Obj[]).some((s) => s.kind === 'ServiceAccount' && s.name === sa.name && (s.namespace ?? binding.metadata.namespace) === sa.namespace);
}

export function roleRules(ref: Obj, namespace?: string): Obj[] {
  const role = ref.kind === 'ClusterRole' ? all('ClusterRole').find((r) => r.metadata.name === ref.name) : all('Role').find((r) => r.metadata.name === ref.name && (r.metadata.namespace ?? NAMESPACE) === namespace);
  return (role?.rules ?? []) as Obj[];
}

/** Rules the ServiceAccount has cluster-wide, and in its own namespace. */
export function saRules(sa: { name: string; namespace: string }): { cluster: Obj[]; namespaced: Obj[] } {
  const cluster = all('ClusterRoleBinding').filter((b) => boundTo(b, sa)).flatMap((b) => roleRules(b.roleRef));
  const local = all('RoleBinding')
    .filter((b) => (b.metadata.namespace ?? NAMESPACE) === sa.namespace && boundTo(b, sa))
    .flatMap((b) => roleRules(b.roleRef, sa.namespace));
  return { cluster, namespaced: [...cluster, ...local] };
}

/** Every (group, resource, verb) a rule list grants, as "group/resource verb" strings ("core" for ""). */
export function grants(rules: Obj[]): Set<string> {
  const out = new Set<string>();
  for (const r of rules) {
    for (const g of (r.apiGroups ?? []) as string[]) for (const res of (r.resources ?? []) as string[]) for (const v of (r.verbs ?? []) as string[]) out.add(`${g || 'core'}/${res} ${v}`);
  }
  return out;
}
