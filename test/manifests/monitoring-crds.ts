/**
 * Structural checks of the prometheus-operator custom resources deploy/components/monitoring uses
 * (monitoring.coreos.com/v1 ServiceMonitor and PrometheusRule), written from the operator's CRDs
 * (example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml and
 * _prometheusrules.yaml): the fields a manifest of ours may set, their types, enums and patterns, and
 * the required ones. Any other field is reported: the API server would prune it, silently.
 * kubernetes-models has no schema for them (as for VolumeSnapshotClass in ./manifests.ts).
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** The CRDs' Duration pattern (Prometheus durations: 30s, 1m30s, 1h). */
export const DURATION = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const RELABEL_ACTIONS = ['replace', 'keep', 'drop', 'hashmod', 'labelmap', 'labeldrop', 'labelkeep', 'lowercase', 'uppercase', 'keepequal', 'dropequal'];

const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function unknown(obj: Obj, allowed: string[], where: string): string[] {
  return Object.keys(obj)
    .filter((k) => !allowed.includes(k))
    .map((k) => `unknown field ${where}${k}`);
}

function stringMap(v: unknown, where: string): string[] {
  if (v === undefined) return [];
  if (!isObject(v)) return [`${where} must be a map`];
  return Object.entries(v)
    .filter(([, x]) => typeof x !== 'string')
    .map(([k, x]) => `${where}.${k} must be a string, not ${JSON.stringify(x)}`);
}

function duration(v: unknown, where: string): string[] {
  if (v === undefined) return [];
  return typeof v === 'string' && DURATION.test(v) ? [] : [`${where} ${JSON.stringify(v)} is not a duration (e.g. 30s, 5m)`];
}

/** metadata of a namespaced object in a manifest. */
function metadata(meta: unknown): string[] {
  if (!isObject(meta)) return ['metadata must be an object'];
  const errors = unknown(meta, ['name', 'namespace', 'labels', 'annotations'], 'metadata.');
  if (typeof meta.name !== 'string' || !DNS_SUBDOMAIN.test(meta.name)) errors.push(`metadata.name ${JSON.stringify(meta.name)} is not a DNS subdomain`);
  if (meta.namespace !== undefined && typeof meta.namespace !== 'string') errors.push('metadata.namespace must be a string');
  errors.push(...stringMap(meta.labels, 'metadata.labels'), ...stringMap(meta.annotations, 'metadata.annotations'));
  return errors;
}

function labelSelector(sel: unknown, where: string): string[] {
  if (!isObject(sel)) return [`${where} must be an object`];
  const errors = unknown(sel, ['matchLabels', 'matchExpressions'], `${where}.`);
  errors.push(...stringMap(sel.matchLabels, `${where}.matchLabels`));
  if (sel.matchExpressions !== undefined) {
    if (!Array.isArray(sel.matchExpressions)) errors.push(`${where}.matchExpressions must be a list`);
    else
      sel.matchExpressions.forEach((e: unknown, i: number) => {
        const w = `${where}.matchExpressions[${i}]`;
        if (!isObject(e)) return errors.push(`${w} must be an object`);
        errors.push(...unknown(e, ['key', 'operator', 'values'], `${w}.`));
        if (typeof e.key !== 'string') errors.push(`${w}.key is required`);
        if (!['In', 'NotIn', 'Exists', 'DoesNotExist'].includes(e.operator)) errors.push(`${w}.operator ${JSON.stringify(e.operator)}`);
      });
  }
  if (sel.matchLabels === undefined && sel.matchExpressions === undefined) errors.push(`${where} selects everything (no matchLabels, no matchExpressions)`);
  return errors;
}

function relabeling(r: unknown, where: string): string[] {
  if (!isObject(r)) return [`${where} must be an object`];
  const errors = unknown(r, ['sourceLabels', 'separator', 'targetLabel', 'regex', 'modulus', 'replacement', 'action'], `${where}.`);
  if (r.sourceLabels !== undefined) {
    if (!Array.isArray(r.sourceLabels)) errors.push(`${where}.sourceLabels must be a list`);
    else for (const l of r.sourceLabels) if (typeof l !== 'string' || !LABEL_NAME.test(l)) errors.push(`${where}.sourceLabels: ${JSON.stringify(l)} is not a label name`);
  }
  for (const f of ['separator', 'targetLabel', 'regex', 'replacement']) if (r[f] !== undefined && typeof r[f] !== 'string') errors.push(`${where}.${f} must be a string`);
  if (r.action !== undefined && !RELABEL_ACTIONS.includes(String(r.action).toLowerCase())) errors.push(`${where}.action ${JSON.stringify(r.action)} is not one of ${RELABEL_ACTIONS.join(', ')}`);
  const action = String(r.action ?? 'replace').toLowerCase();
  if (['replace', 'hashmod', 'lowercase', 'uppercase', 'keepequal', 'dropequal'].includes(action) && typeof r.targetLabel !== 'string') errors.push(`${where}: action ${action} needs targetLabel`);
  return errors;
}

const ENDPOINT_FIELDS = ['port', 'targetPort', 'path', 'scheme', 'params', 'interval', 'scrapeTimeout', 'honorLabels', 'honorTimestamps', 'relabelings', 'metricRelabelings', 'followRedirects', 'enableHttp2', 'filterRunning'];

/** ServiceMonitor: spec.selector (required), namespaceSelector, endpoints (port by name, path, intervals, relabelings). */
export function serviceMonitorErrors(obj: Obj): string[] {
  const errors: string[] = [];
  if (obj.apiVersion !== 'monitoring.coreos.com/v1') errors.push(`apiVersion ${obj.apiVersion}: want monitoring.coreos.com/v1`);
  errors.push(...unknown(obj, ['apiVersion', 'kind', 'metadata', 'spec'], ''), ...metadata(obj.metadata));
  const spec = obj.spec;
  if (!isObject(spec)) return [...errors, 'spec is required'];
  errors.push(...unknown(spec, ['selector', 'namespaceSelector', 'endpoints', 'jobLabel', 'targetLabels', 'podTargetLabels', 'sampleLimit'], 'spec.'));
  if (spec.selector === undefined) errors.push('spec.selector is required');
  else errors.push(...labelSelector(spec.selector, 'spec.selector'));
  const ns = spec.namespaceSelector;
  if (ns !== undefined) {
    if (!isObject(ns)) errors.push('spec.namespaceSelector must be an object');
    else {
      errors.push(...unknown(ns, ['any', 'matchNames'], 'spec.namespaceSelector.'));
      if (ns.any !== undefined && typeof ns.any !== 'boolean') errors.push('spec.namespaceSelector.any must be a boolean');
      if (ns.matchNames !== undefined && !(Array.isArray(ns.matchNames) && ns.matchNames.every((n: unknown) => typeof n === 'string'))) errors.push('spec.namespaceSelector.matchNames must be a list of strings');
    }
  }
  if (!Array.isArray(spec.endpoints) || spec.endpoints.length === 0) errors.push('spec.endpoints: a list of at least one endpoint (else nothing is scraped)');
  else
    spec.endpoints.forEach((e: unknown, i: number) => {
      const w = `spec.endpoints[${i}]`;
      if (!isObject(e)) return errors.push(`${w} must be an object`);
      errors.push(...unknown(e, ENDPOINT_FIELDS, `${w}.`));
      if (e.port !== undefined && typeof e.port !== 'string') errors.push(`${w}.port must be a port name (string)`);
      if (e.port === undefined && e.targetPort === undefined) errors.push(`${w}: port or targetPort is required`);
      if (e.path !== undefined && (typeof e.path !== 'string' || !e.path.startsWith('/'))) errors.push(`${w}.path must be an absolute path`);
      if (e.scheme !== undefined && !['http', 'https'].includes(e.scheme)) errors.push(`${w}.scheme ${JSON.stringify(e.scheme)}: http or https`);
      errors.push(...duration(e.interval, `${w}.interval`), ...duration(e.scrapeTimeout, `${w}.scrapeTimeout`));
      for (const f of ['relabelings', 'metricRelabelings']) {
        if (e[f] === undefined) continue;
        if (!Array.isArray(e[f])) errors.push(`${w}.${f} must be a list`);
        else e[f].forEach((r: unknown, j: number) => errors.push(...relabeling(r, `${w}.${f}[${j}]`)));
      }
    });
  return errors;
}

/** PrometheusRule: spec.groups, each named (unique), of rules each an alert or a record with an expr. */
export function prometheusRuleErrors(obj: Obj): string[] {
  const errors: string[] = [];
  if (obj.apiVersion !== 'monitoring.coreos.com/v1') errors.push(`apiVersion ${obj.apiVersion}: want monitoring.coreos.com/v1`);
  errors.push(...unknown(obj, ['apiVersion', 'kind', 'metadata', 'spec'], ''), ...metadata(obj.metadata));
  const spec = obj.spec;
  if (!isObject(spec)) return [...errors, 'spec is required'];
  errors.push(...unknown(spec, ['groups'], 'spec.'));
  if (!Array.isArray(spec.groups)) return [...errors, 'spec.groups must be a list'];
  const names = new Set<string>();
  spec.groups.forEach((g: unknown, i: number) => {
    const w = `spec.groups[${i}]`;
    if (!isObject(g)) return errors.push(`${w} must be an object`);
    errors.push(...unknown(g, ['name', 'interval', 'limit', 'labels', 'rules'], `${w}.`));
    if (typeof g.name !== 'string' || g.name.length === 0) errors.push(`${w}.name is required`);
    else if (names.has(g.name)) errors.push(`${w}.name ${g.name} is not unique`);
    else names.add(g.name);
    errors.push(...duration(g.interval, `${w}.interval`), ...stringMap(g.labels, `${w}.labels`));
    if (!Array.isArray(g.rules)) return errors.push(`${w}.rules must be a list`);
    g.rules.forEach((r: unknown, j: number) => {
      const rw = `${w}.rules[${j}]`;
      if (!isObject(r)) return errors.push(`${rw} must be an object`);
      errors.push(...unknown(r, ['alert', 'record', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations'], `${rw}.`));
      if ((r.alert === undefined) === (r.record === undefined)) errors.push(`${rw}: exactly one of alert and record`);
      if (r.alert !== undefined && (typeof r.alert !== 'string' || !LABEL_NAME.test(r.alert))) errors.push(`${rw}.alert ${JSON.stringify(r.alert)} is not a valid alert name`);
      if (r.record !== undefined && (typeof r.record !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(r.record))) errors.push(`${rw}.record ${JSON.stringify(r.record)} is not a metric name`);
      if (typeof r.expr !== 'string' || r.expr.trim() === '') errors.push(`${rw}.expr is required (a PromQL expression)`);
      errors.push(...duration(r.for, `${rw}.for`), ...duration(r.keep_firing_for, `${rw}.keep_firing_for`));
      errors.push(...stringMap(r.labels, `${rw}.labels`), ...stringMap(r.annotations, `${rw}.annotations`));
      if (r.record !== undefined && (r.for !== undefined || r.annotations !== undefined)) errors.push(`${rw}: a recording rule has no for or annotations`);
    });
  });
  return errors;
}

// ---------------------------------------------------------------------------------------------------
// PromQL: the metric names and label matchers an expression uses (enough for the rules we write)
// ---------------------------------------------------------------------------------------------------

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);
/** Aggregation operators: `sum by (x) (...)` puts the grouping between the name and its parenthesis. */
const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio']);

export interface Selector {
  metric: string;
  labels: string[];
}

/**
 * The vector selectors of a PromQL expression: each metric name with the label names its `{...}`
 * matchers use. Strings, durations (`[15m]`), grouping clauses (`by (...)`) and function names are not
 * metric names; template variables do not occur in expressions.
 */
export function selectorsOf(expr: string): Selector[] {
  const out: Selector[] = [];
  // Strings first (they may hold anything), then range/offset durations.
  const text = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""').replace(/\[[^\]]*\]/g, ' ');
  const re = /([a-zA-Z_:][a-zA-Z0-9_:]*)|\{([^}]*)\}|(\d+(?:\.\d+)?(?:e[+-]?\d+)?)/gy;
  let i = 0;
  let last: Selector | undefined;
  let skipParens = false;
  while (i < text.length) {
    const ch = text[i]!;
    if (/\s|[()+\-*/%^<>=!,]/.test(ch)) {
      if (ch === '(' && skipParens) {
        const close = text.indexOf(')', i);
        i = close < 0 ? text.length : close + 1;
        skipParens = false;
        continue;
      }
      i++;
      continue;
    }
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) throw new Error(`cannot read PromQL at ${JSON.stringify(text.slice(i, i + 20))} in ${JSON.stringify(expr)}`);
    i = re.lastIndex;
    if (m[1] !== undefined) {
      const word = m[1];
      const rest = text.slice(i);
      if (word === 'offset') {
        // Its duration (5m, 1h30m) is no metric.
        const d = /^\s*-?[0-9][0-9a-z]*/.exec(rest);
        if (d) i += d[0].length;
        last = undefined;
      } else if (['by', 'without', 'on', 'ignoring', 'group_left', 'group_right'].includes(word)) {
        skipParens = true;
        last = undefined;
      } else if (KEYWORDS.has(word.toLowerCase()) || AGGREGATIONS.has(word)) {
        last = undefined;
      } else if (/^\s*\(/.test(rest)) {
        last = undefined; // a function or aggregation
      } else {
        last = { metric: word, labels: [] };
        out.push(last);
      }
    } else if (m[2] !== undefined) {
      const labels = [...m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]!);
      if (last) last.labels.push(...labels);
      else if (labels.includes('__name__')) throw new Error(`a selector by __name__ in ${JSON.stringify(expr)}: name the metric instead`);
      last = undefined;
    } else {
      last = undefined;
    }
  }
  return out;
}
