/**
 * Offline checks of the optional monitoring component, deploy/components/monitoring/: a Service over
 * the node plugin's metrics port, a ServiceMonitor and a PrometheusRule of prometheus-operator, and a
 * NetworkPolicy admitting the scrapes.
 *
 * - The Component parses as kubectl reads it, lists every file of its directory, and is not part of
 *   deploy/ itself (it needs prometheus-operator's CRDs).
 * - Service and NetworkPolicy against the kubernetes-models schemas and for unknown fields, as
 *   deploy.test.ts does; ServiceMonitor and PrometheusRule against a structural check written from the
 *   operator's CRDs (./monitoring-crds.ts), with negative controls.
 * - The wiring: the Service selects the DaemonSet's pods on the driver's metrics port, the ServiceMonitor
 *   selects the Service and its port, the NetworkPolicy admits that port.
 * - The rules name only metrics (and labels) the daemon exports: the names are read from the registry
 *   of an in-process DriverMetrics, so renaming a metric fails here. One name comes from another change
 *   (EXPECTED_ELSEWHERE) and is accepted while it is not exported yet.
 * - With promtool (Debian's `prometheus` package, installed by .ci/run): `promtool check rules`, and
 *   `promtool test rules` showing that each alert fires on the series it is about, and not otherwise.
 * - With kubectl: `kubectl kustomize` of an overlay of deploy/ with the component.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { parseListenAddress } from '../../src/observe/http.js';
import { silentLogger } from '../../src/observe/logger.js';
import type { VolumeSource } from '../../src/observe/health.js';
import { DriverMetrics } from '../../src/observe/metrics.js';
import { DEPLOY, NAMESPACE, ROOT, containerOf, flag, loadYaml, matchesLabelSelector, one, schemaError, strictFieldErrors, type Obj } from './manifests.js';
import { prometheusRuleErrors, selectorsOf, serviceMonitorErrors } from './monitoring-crds.js';

const DIR = path.join(DEPLOY, 'components', 'monitoring');
const REL = path.relative(DEPLOY, DIR);

/**
 * Metrics the rules use that another change adds to src/observe/metrics.ts: accepted while the daemon
 * does not export them yet (with the labels given), checked like the others once it does.
 */
const EXPECTED_ELSEWHERE: Record<string, string[]> = {
  // 1 when the pool's directory is on the node's root filesystem, else 0 (the image/DaemonSet change).
  hpp_pool_on_root_filesystem: ['pool'],
};

/** Labels every scraped series gets from the target (Prometheus and the ServiceMonitor's relabeling). */
const TARGET_LABELS = ['namespace', 'pod', 'node', 'service', 'endpoint', 'container', 'instance', 'job'];

const component = loadYaml(path.join(DIR, 'kustomization.yaml'));
const kust: Obj = component.docs[0] ?? {};
const files: string[] = Array.isArray(kust.resources) ? kust.resources : [];
const loaded = files.map((f) => ({ file: f, ...loadYaml(path.join(DIR, f)) }));
const objects = loaded.flatMap((l) => l.docs.map((obj, i) => ({ obj, label: `${REL}/${l.file}#${i} ${obj.kind}/${obj.metadata?.name}` })));
const CUSTOM: Record<string, (o: Obj) => string[]> = { ServiceMonitor: serviceMonitorErrors, PrometheusRule: prometheusRuleErrors };

function only(kind: string): Obj {
  const found = objects.filter((o) => o.obj.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind} in ${REL}, found ${found.length}`);
  return found[0]!.obj;
}

const daemonSet = one('DaemonSet', 'hpp-csi-node');
const driver = containerOf(daemonSet.spec.template.spec, 'hpp-csi-driver');
const podLabels: Record<string, string> = daemonSet.spec.template.metadata.labels;

/** The metric names and label names the daemon exports, from an in-process registry (every optional metric on). */
function exported(): Map<string, string[]> {
  const source = {
    list: () => [],
    poolList: () => [],
    capacityOf: () => Promise.reject(new Error('no pools')),
    poolState: () => Promise.resolve({ phase: 'ready' }),
  } as unknown as VolumeSource;
  const m = new DriverMetrics(source, silentLogger(), { version: 'test', kubeletRegistered: () => true });
  const out = new Map<string, string[]>();
  for (const metric of m.registry.getMetricsAsArray()) {
    const labels = [...(((metric as unknown as { labelNames?: readonly string[] }).labelNames ?? []) as string[])];
    const name = metric.name;
    const type = String(metric.type);
    out.set(name, labels);
    if (type === 'histogram') {
      out.set(`${name}_bucket`, [...labels, 'le']);
      out.set(`${name}_sum`, labels);
      out.set(`${name}_count`, labels);
    }
    if (type === 'summary') for (const s of ['_sum', '_count']) out.set(`${name}${s}`, labels);
  }
  return out;
}

function rules(): Obj[] {
  return (only('PrometheusRule').spec.groups as Obj[]).flatMap((g) => g.rules as Obj[]);
}

function alert(name: string): Obj {
  const r = rules().find((x) => x.alert === name);
  if (!r) throw new Error(`no alert ${name}`);
  return r;
}

/** Where a rule names a metric the daemon does not export, or a label that metric has not. */
function unknownNames(exprs: string[], metrics: Map<string, string[]>): string[] {
  const problems: string[] = [];
  for (const expr of exprs) {
    for (const s of selectorsOf(expr)) {
      const labels = metrics.get(s.metric) ?? EXPECTED_ELSEWHERE[s.metric];
      if (!labels) {
        problems.push(`${s.metric} is not a metric the daemon exports`);
        continue;
      }
      for (const l of s.labels) if (!labels.includes(l) && !TARGET_LABELS.includes(l)) problems.push(`${s.metric} has no label ${l}`);
    }
  }
  return problems;
}

describe('deploy/components/monitoring: the component', () => {
  it('is a kustomize Component listing every file of its directory, parsed as kubectl reads them', () => {
    expect(component.problems).toEqual([]);
    expect(kust.apiVersion).toBe('kustomize.config.k8s.io/v1alpha1');
    expect(kust.kind).toBe('Component');
    expect(Object.keys(kust).filter((k) => !['apiVersion', 'kind', 'resources', 'patches', 'labels'].includes(k))).toEqual([]);
    const inDir = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml').sort();
    expect([...files].sort()).toEqual(inDir);
    expect(loaded.flatMap((l) => l.problems)).toEqual([]);
    for (const l of loaded) expect(l.docs.length, `${l.file} holds no object`).toBeGreaterThan(0);
    expect(objects.map((o) => o.obj.kind).sort()).toEqual(['NetworkPolicy', 'PrometheusRule', 'Service', 'ServiceMonitor']);
  });

  it('is optional: deploy/ itself neither lists it nor needs the operator CRDs', () => {
    const top = loadYaml(path.join(DEPLOY, 'kustomization.yaml')).docs[0]!;
    expect(top.components).toBeUndefined();
    expect((top.resources as string[]).some((r) => r.startsWith('components'))).toBe(false);
  });

  it('every object names its namespace (an overlay may set another namespace: or none)', () => {
    for (const { obj, label } of objects) expect(obj.metadata.namespace, label).toBe(NAMESPACE);
  });
});

describe('deploy/components/monitoring: schemas', () => {
  for (const { obj, label } of objects) {
    it(`${label} is valid`, async () => {
      const custom = CUSTOM[obj.kind];
      if (custom) expect(custom(obj)).toEqual([]);
      else expect(await schemaError(obj)).toBeUndefined();
    });
  }

  it('no Kubernetes object has a field its API type does not define', () => {
    expect(strictFieldErrors(objects.filter((o) => !CUSTOM[o.obj.kind]))).toEqual([]);
  });

  it('the structural checks reject what the CRDs reject, and unknown fields (negative controls)', () => {
    const sm = only('ServiceMonitor');
    const bad = (patch: (o: Obj) => void): string[] => {
      const o = structuredClone(sm);
      patch(o);
      return serviceMonitorErrors(o);
    };
    expect(bad((o) => delete o.spec.selector).join()).toMatch(/spec.selector is required/);
    expect(bad((o) => (o.spec.endpoints[0].interval = '30 seconds')).join()).toMatch(/interval/);
    expect(bad((o) => (o.spec.endpoints[0].prot = 'metrics')).join()).toMatch(/unknown field spec.endpoints\[0\].prot/);
    expect(bad((o) => (o.spec.endpoints[0].relabelings[0].action = 'rename')).join()).toMatch(/action/);
    expect(bad((o) => (o.spec.endpoints = [])).join()).toMatch(/endpoints/);
    expect(bad((o) => (o.apiVersion = 'monitoring.coreos.com/v1alpha1')).join()).toMatch(/apiVersion/);

    const pr = only('PrometheusRule');
    const badRule = (patch: (o: Obj) => void): string[] => {
      const o = structuredClone(pr);
      patch(o);
      return prometheusRuleErrors(o);
    };
    expect(badRule((o) => delete o.spec.groups[0].rules[0].expr).join()).toMatch(/expr is required/);
    expect(badRule((o) => (o.spec.groups[0].rules[0].for = '10 minutes')).join()).toMatch(/for/);
    expect(badRule((o) => (o.spec.groups[0].rules[0].record = 'x')).join()).toMatch(/exactly one of alert and record/);
    expect(badRule((o) => (o.spec.groups[1].name = o.spec.groups[0].name)).join()).toMatch(/not unique/);
    expect(badRule((o) => (o.spec.groups[0].rules[0].severity = 'warning')).join()).toMatch(/unknown field/);
    expect(badRule((o) => (o.spec.groups[0].rules[0].labels.severity = 2)).join()).toMatch(/must be a string/);
  });
});

describe('deploy/components/monitoring: wiring', () => {
  it('the Service selects the DaemonSet pods, on the port the driver serves /metrics on', () => {
    const svc = only('Service');
    expect(matchesLabelSelector({ matchLabels: svc.spec.selector }, podLabels)).toBe(true);
    expect(svc.spec.clusterIP).toBe('None');
    const port = (svc.spec.ports as Obj[]).find((p) => p.name === 'metrics')!;
    const containerPort = (driver.ports as Obj[]).find((p) => p.name === port.targetPort);
    expect(containerPort, `the driver container has a port named ${port.targetPort}`).toBeDefined();
    // What the daemon really listens on, by its own flag parser.
    const listen = parseListenAddress(flag(driver.args, 'metrics-address') ?? '');
    expect(listen?.port).toBe(containerPort!.containerPort);
    expect(port.port).toBe(containerPort!.containerPort);
  });

  it('the ServiceMonitor selects the Service, in its namespace, at /metrics on its port, naming the node', () => {
    const svc = only('Service');
    const sm = only('ServiceMonitor');
    expect(matchesLabelSelector(sm.spec.selector, svc.metadata.labels)).toBe(true);
    expect(sm.spec.namespaceSelector.matchNames).toContain(svc.metadata.namespace);
    const ep = sm.spec.endpoints[0];
    expect((svc.spec.ports as Obj[]).map((p) => p.name)).toContain(ep.port);
    expect(ep.path).toBe('/metrics');
    expect(ep.relabelings).toContainEqual({ sourceLabels: ['__meta_kubernetes_pod_node_name'], targetLabel: 'node', action: 'replace' });
    // A scrape may wait 3 s for a pool being prepared (DriverMetrics poolTimeoutMs).
    expect(Number.parseInt(ep.scrapeTimeout, 10)).toBeGreaterThan(3);
  });

  it('the NetworkPolicy admits the metrics port of the DaemonSet pods (deploy/networkpolicy.yaml isolates them)', () => {
    const np = only('NetworkPolicy');
    expect(matchesLabelSelector(np.spec.podSelector, podLabels)).toBe(true);
    const metricsPort = (driver.ports as Obj[]).find((p) => p.name === 'metrics')!.containerPort;
    expect(np.spec.ingress.flatMap((i: Obj) => i.ports.map((p: Obj) => p.port))).toEqual([metricsPort]);
  });
});

describe('deploy/components/monitoring: the rules use what the daemon exports', () => {
  it('every metric and label matcher in every rule is exported by the daemon (or by the change named in EXPECTED_ELSEWHERE)', async () => {
    const metrics = exported();
    expect(metrics.has('hpp_pool_ready')).toBe(true);
    expect(unknownNames(rules().map((r) => r.expr), metrics)).toEqual([]);
    // Every name in EXPECTED_ELSEWHERE is used, so the list cannot keep stale entries; say which are exported by now.
    const used = new Set(rules().flatMap((r) => selectorsOf(r.expr).map((s) => s.metric)));
    for (const name of Object.keys(EXPECTED_ELSEWHERE)) expect(used.has(name), name).toBe(true);
  });

  it('the check fails for a metric or label the daemon does not export (negative control)', async () => {
    const metrics = exported();
    expect(unknownNames(['hpp_pool_readyy == 0'], metrics)).toEqual(['hpp_pool_readyy is not a metric the daemon exports']);
    expect(unknownNames(['sum by (pool) (rate(hpp_csi_rpc_requests_total{status="INTERNAL"}[5m]))'], metrics)).toEqual(['hpp_csi_rpc_requests_total has no label status']);
    expect(unknownNames(['hpp_pool_used_bytes / hpp_pool_size_bytes > 0.9'], metrics)).toEqual(['hpp_pool_size_bytes is not a metric the daemon exports']);
    expect(unknownNames(['histogram_quantile(0.99, sum by (le, method) (rate(hpp_csi_rpc_duration_seconds_bucket[5m])))'], metrics)).toEqual([]);
  });

  it('selectorsOf reads metric names past functions, groupings, strings and durations', () => {
    expect(selectorsOf('sum by (namespace, pod) (rate(a_total{code=~"X|Y", method!="by"}[15m])) / sum without (le) (b) > 0.05 and on (pod) c offset 5m')).toEqual([
      { metric: 'a_total', labels: ['code', 'method'] },
      { metric: 'b', labels: [] },
      { metric: 'c', labels: [] },
    ]);
  });

  it('an alert for each of: pool not ready, pool almost full, pool on the OS filesystem, RPC errors rising', () => {
    const uses = (name: string) => selectorsOf(alert(name).expr).map((s) => s.metric);
    expect(uses('HppPoolNotReady')).toEqual(['hpp_pool_ready']);
    expect(uses('HppPoolAlmostFull')).toEqual(['hpp_pool_used_bytes', 'hpp_pool_capacity_bytes']);
    expect(uses('HppPoolFull')).toEqual(['hpp_pool_used_bytes', 'hpp_pool_capacity_bytes']);
    expect(uses('HppPoolOnRootFilesystem')).toEqual(['hpp_pool_on_root_filesystem']);
    expect(uses('HppCsiRpcErrorsRising').every((m) => m === 'hpp_csi_rpc_requests_total')).toBe(true);
    for (const r of rules()) {
      expect(['warning', 'critical'], r.alert).toContain(r.labels?.severity);
      expect(typeof r.annotations?.summary, r.alert).toBe('string');
      expect(typeof r.annotations?.description, r.alert).toBe('string');
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// promtool (Debian's prometheus package) and kubectl kustomize, where installed
// ---------------------------------------------------------------------------------------------------

const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' }).status === 0;
const promtool = has('promtool', ['--version']);
const kubectl = has('kubectl', ['version', '--client']);
const scratch = mkdtempSync(path.join(os.tmpdir(), 'hpp-monitoring-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function runTool(cmd: string, args: string[], cwd = scratch): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

/** The rule groups as a Prometheus rule file; without annotations, for `promtool test rules` (which compares them). */
function ruleFile(name: string, withAnnotations = true): string {
  const groups = structuredClone(only('PrometheusRule').spec.groups) as Obj[];
  if (!withAnnotations) for (const g of groups) for (const r of g.rules) delete r.annotations;
  const file = path.join(scratch, name);
  writeFileSync(file, stringify({ groups }));
  return file;
}

const T = 'namespace="hostpath-provisioner",pod="hpp-csi-node-x",node="n1"';
const TL = { namespace: 'hostpath-provisioner', pod: 'hpp-csi-node-x', node: 'n1' };
const GiB = 1024 ** 3;

describe.skipIf(!promtool)('deploy/components/monitoring: promtool', () => {
  it('promtool check rules accepts the rules (PromQL and annotation templates)', () => {
    const r = runTool('promtool', ['check', 'rules', ruleFile('rules.yaml')]);
    expect(r.out).toMatch(/SUCCESS: 5 rules found/);
    expect(r.code, r.out).toBe(0);
  });

  it('promtool check rules rejects a broken expression (negative control)', () => {
    const file = path.join(scratch, 'broken.yaml');
    writeFileSync(file, stringify({ groups: [{ name: 'g', rules: [{ alert: 'A', expr: 'sum by (pool (hpp_pool_ready)' }] }] }));
    expect(runTool('promtool', ['check', 'rules', file]).code).not.toBe(0);
  });

  it('promtool test rules: each alert fires on what it is about, and only then', () => {
    ruleFile('rules-under-test.yaml', false);
    const tests = {
      rule_files: ['rules-under-test.yaml'],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: [
            { series: `hpp_pool_ready{pool="gone",${T}}`, values: '0x30' },
            { series: `hpp_pool_ready{pool="ok",${T}}`, values: '1x30' },
            { series: `hpp_pool_capacity_bytes{pool="gone",${T}}`, values: `${100 * GiB}x30` },
            { series: `hpp_pool_used_bytes{pool="gone",${T}}`, values: `${50 * GiB}x30` },
            { series: `hpp_pool_capacity_bytes{pool="ok",${T}}`, values: `${100 * GiB}x30` },
            { series: `hpp_pool_used_bytes{pool="ok",${T}}`, values: `${92 * GiB}x10 ${98 * GiB}x20` },
            { series: `hpp_pool_on_root_filesystem{pool="ok",${T}}`, values: '1x30' },
            { series: `hpp_pool_on_root_filesystem{pool="gone",${T}}`, values: '0x30' },
            // NodePublishVolume: 10 calls a minute, 2 of them INTERNAL from minute 10; CreateVolume: OK only, and a RESOURCE_EXHAUSTED (an answer, not a failure).
            { series: `hpp_csi_rpc_requests_total{method="NodePublishVolume",code="OK",${T}}`, values: '0+10x30' },
            { series: `hpp_csi_rpc_requests_total{method="NodePublishVolume",code="INTERNAL",${T}}`, values: '0x10 0+2x20' },
            { series: `hpp_csi_rpc_requests_total{method="CreateVolume",code="OK",${T}}`, values: '0+10x30' },
            { series: `hpp_csi_rpc_requests_total{method="CreateVolume",code="RESOURCE_EXHAUSTED",${T}}`, values: '0+5x30' },
          ],
          alert_rule_test: [
            { eval_time: '5m', alertname: 'HppPoolNotReady', exp_alerts: [] },
            { eval_time: '11m', alertname: 'HppPoolNotReady', exp_alerts: [{ exp_labels: { ...TL, pool: 'gone', severity: 'warning' } }] },
            { eval_time: '10m', alertname: 'HppPoolAlmostFull', exp_alerts: [] },
            { eval_time: '16m', alertname: 'HppPoolAlmostFull', exp_alerts: [{ exp_labels: { ...TL, pool: 'ok', severity: 'warning' } }] },
            { eval_time: '12m', alertname: 'HppPoolFull', exp_alerts: [] },
            { eval_time: '16m', alertname: 'HppPoolFull', exp_alerts: [{ exp_labels: { ...TL, pool: 'ok', severity: 'critical' } }] },
            { eval_time: '11m', alertname: 'HppPoolOnRootFilesystem', exp_alerts: [{ exp_labels: { ...TL, pool: 'ok', severity: 'warning' } }] },
            { eval_time: '9m', alertname: 'HppCsiRpcErrorsRising', exp_alerts: [] },
            { eval_time: '25m', alertname: 'HppCsiRpcErrorsRising', exp_alerts: [{ exp_labels: { ...TL, method: 'NodePublishVolume', severity: 'warning' } }] },
          ],
        },
      ],
    };
    writeFileSync(path.join(scratch, 'tests.yaml'), stringify(tests));
    const r = runTool('promtool', ['test', 'rules', 'tests.yaml']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS/);
  });
});

describe.skipIf(!kubectl)('deploy/components/monitoring: kubectl kustomize', () => {
  it('an overlay of deploy/ with the component builds, with the four objects in hostpath-provisioner', () => {
    const overlay = path.join(scratch, 'overlay');
    rmSync(overlay, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', overlay]);
    writeFileSync(
      path.join(overlay, 'kustomization.yaml'),
      stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: [path.relative(overlay, DEPLOY)], components: [path.relative(overlay, DIR)] }),
    );
    const r = runTool('kubectl', ['kustomize', overlay], ROOT);
    expect(r.code, r.out).toBe(0);
    const built = parseAllDocuments(r.out).map((d) => d.toJS() as Obj);
    for (const kind of ['Service', 'ServiceMonitor', 'PrometheusRule', 'NetworkPolicy']) {
      const o = built.filter((x) => x.kind === kind && x.metadata.name === only(kind).metadata.name);
      expect(o, kind).toHaveLength(1);
      expect(o[0]!.metadata.namespace, kind).toBe(NAMESPACE);
    }
    expect(built.some((x) => x.kind === 'DaemonSet' && x.metadata.name === 'hpp-csi-node')).toBe(true);
  });
});
