/**
 * Offline checks of device-backed pools on the Kubernetes side: deploy/pool-template/ and
 * hack/render-pool-pods.sh.
 *
 * - The script renders a Block PVC + pool device pod pair per node (nodes given as arguments, so no
 *   cluster is needed; a fake kubectl covers the default "every node" path).
 * - Every rendered object, the DaemonSet with the example patch applied and the example StorageClass are
 *   validated against the kubernetes-models schemas and type-checked for unknown fields, as
 *   test/manifests/deploy.test.ts does for deploy/.
 * - Then the pairing: the pod consumes its node's PVC as a block device, is pinned to that node, and
 *   publishes at the path the daemon's pool config names, in the host directory both pods mount; the
 *   publisher and the daemon accept their arguments and configuration.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseCli } from '../../src/config/options.js';
import { flag, schemaError, strictFieldErrors } from './manifests.js';
import { parsePoolsJson } from '../../src/pools/config.js';
import { parsePublisherCli } from '../../src/pools/device-publisher.js';
import { parseParameters } from '../../src/volumes/parameters.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TEMPLATES = path.join(ROOT, 'deploy/pool-template');
const SCRIPT = path.join(ROOT, 'hack/render-pool-pods.sh');
const NAMESPACE = 'hostpath-provisioner';
const DEVICES_DIR = '/run/hpp/devices';
const POOL = 'fast';
const NODES = ['worker-1', 'worker-2.example.com'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

// ---------------------------------------------------------------------------------------------------
// Helpers: YAML as kubectl reads it, schemas, strict fields (the same checks as deploy.test.ts)
// ---------------------------------------------------------------------------------------------------

function parseYaml(text: string, what: string): Obj[] {
  const problems: string[] = [];
  const v11 = [...parseAllDocuments(text, { version: '1.1', uniqueKeys: true })];
  const v12 = [...parseAllDocuments(text, { version: '1.2', uniqueKeys: true })];
  const docs: Obj[] = [];
  v11.forEach((doc, i) => {
    for (const e of [...doc.errors, ...doc.warnings]) problems.push(`${what} document ${i}: ${e.message}`);
    const js = doc.toJS() as unknown;
    if (js === null || js === undefined) return;
    if (JSON.stringify(js) !== JSON.stringify(v12[i]?.toJS())) problems.push(`${what} document ${i}: reads differently as YAML 1.1 and 1.2`);
    docs.push(js as Obj);
  });
  if (problems.length > 0) throw new Error(problems.join('\n'));
  return docs;
}

/** TypeScript's excess-property check on literals of the kubernetes-models interfaces: unknown fields. */
// ---------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------

const scratch = mkdtempSync(path.join(os.tmpdir(), 'hpp-pool-template-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A kubectl that fails loudly, first on PATH: the script must not call it when nodes are given. */
const noKubectlBin = path.join(scratch, 'no-kubectl');
execFileSync('mkdir', ['-p', noKubectlBin]);
writeFileSync(path.join(noKubectlBin, 'kubectl'), '#!/bin/sh\necho "kubectl must not be called" >&2\nexit 99\n');
chmodSync(path.join(noKubectlBin, 'kubectl'), 0o755);

function render(args: string[], opts: { bin?: string; env?: NodeJS.ProcessEnv } = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', [SCRIPT, ...args], {
    encoding: 'utf8',
    env: { ...process.env, IMAGE: '', ...opts.env, PATH: `${opts.bin ?? noKubectlBin}:${process.env.PATH}` },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function renderOk(args: string[], opts: { bin?: string; env?: NodeJS.ProcessEnv } = {}): Obj[] {
  const r = render(args, opts);
  if (r.code !== 0) throw new Error(`render-pool-pods.sh ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return parseYaml(r.stdout, `render-pool-pods.sh ${args.join(' ')}`);
}

function template(file: string, pool = POOL): string {
  return readFileSync(path.join(TEMPLATES, file), 'utf8').replaceAll('__POOL__', pool);
}

const rendered = renderOk([POOL, 'local-block', '100Gi', ...NODES]);
const daemonSet = parseYaml(readFileSync(path.join(ROOT, 'deploy/daemonset.yaml'), 'utf8'), 'deploy/daemonset.yaml')[0]!;
const basePools = parseYaml(readFileSync(path.join(ROOT, 'deploy/pools-configmap.yaml'), 'utf8'), 'deploy/pools-configmap.yaml')[0]!;

function pairFor(node: string): { pvc: Obj; pod: Obj } {
  const pvc = rendered.find((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === `hpp-pool-${POOL}-${node}`);
  const pod = rendered.find((o) => o.kind === 'Pod' && o.metadata.name === `hpp-pool-${POOL}-${node}`);
  if (!pvc || !pod) throw new Error(`no PVC/pod pair for node ${node}`);
  return { pvc, pod };
}

/** kubectl's strategic merge for the fields the example patch uses: lists merged on their keys. */
function strategicMerge(base: Obj, patch: Obj): Obj {
  const KEYS: Record<string, string> = { containers: 'name', volumes: 'name', volumeMounts: 'mountPath', volumeDevices: 'devicePath', env: 'name' };
  const merge = (b: unknown, p: unknown, key?: string): unknown => {
    if (Array.isArray(p) && Array.isArray(b) && key && KEYS[key]) {
      const k = KEYS[key]!;
      const out = b.map((x) => structuredClone(x) as Obj);
      for (const item of p as Obj[]) {
        const at = out.findIndex((x) => x[k] === item[k]);
        if (at >= 0) out[at] = merge(out[at], item) as Obj;
        else out.push(structuredClone(item));
      }
      return out;
    }
    if (p && typeof p === 'object' && !Array.isArray(p) && b && typeof b === 'object' && !Array.isArray(b)) {
      const out: Obj = structuredClone(b as Obj);
      for (const [k, v] of Object.entries(p as Obj)) out[k] = k in out ? merge(out[k], v, k) : structuredClone(v);
      return out;
    }
    return structuredClone(p);
  };
  return merge(base, patch) as Obj;
}

const patch = parseYaml(template('daemonset-patch.yaml'), 'daemonset-patch.yaml')[0]!;
const patchedDaemonSet = strategicMerge(daemonSet, patch);
const poolEntry = JSON.parse(template('pools-entry.json')) as Obj;
const poolsJson = JSON.stringify([...(JSON.parse(basePools.data['pools.json']) as Obj[]), poolEntry]);
const storageClass = parseYaml(template('storageclass.yaml'), 'storageclass.yaml')[0]!;

function driverContainer(ds: Obj): Obj {
  return (ds.spec.template.spec.containers as Obj[]).find((c) => c.name === 'hpp-csi-driver')!;
}

function hostPathOf(spec: Obj, volumeName: string): Obj | undefined {
  return (spec.volumes as Obj[]).find((v) => v.name === volumeName)?.hostPath;
}

/** The container mount that holds `p`, with the host path behind it (longest mount path wins). */
function mountHolding(spec: Obj, c: Obj, p: string): { mount: Obj; hostPath?: Obj } | undefined {
  const mounts = ((c.volumeMounts ?? []) as Obj[]).filter((m) => p === m.mountPath || p.startsWith(`${m.mountPath}/`));
  const mount = mounts.sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  return mount ? { mount, hostPath: hostPathOf(spec, mount.name) } : undefined;
}

// ---------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------

describe('hack/render-pool-pods.sh', () => {
  it('renders a PVC and a pod for each node given, in order, without calling kubectl', () => {
    expect(rendered.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual(
      NODES.flatMap((n) => [`PersistentVolumeClaim/hpp-pool-${POOL}-${n}`, `Pod/hpp-pool-${POOL}-${n}`]),
    );
  });

  it('asks kubectl for every node when none is given', () => {
    const bin = path.join(scratch, 'fake-kubectl');
    execFileSync('mkdir', ['-p', bin]);
    writeFileSync(
      path.join(bin, 'kubectl'),
      '#!/bin/sh\n[ "$*" = "get nodes -o name" ] || { echo "unexpected: $*" >&2; exit 1; }\nprintf "node/alpha\\nnode/beta\\n"\n',
    );
    chmodSync(path.join(bin, 'kubectl'), 0o755);
    const objs = renderOk([POOL, 'local-block', '10Gi'], { bin });
    expect(objs.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      `PersistentVolumeClaim/hpp-pool-${POOL}-alpha`,
      `Pod/hpp-pool-${POOL}-alpha`,
      `PersistentVolumeClaim/hpp-pool-${POOL}-beta`,
      `Pod/hpp-pool-${POOL}-beta`,
    ]);
  });

  it('refuses bad input with exit 2 and a message, printing nothing', () => {
    const cases: [string[], RegExp][] = [
      [[], /Usage|render the block pvc/i],
      [['Fast', 'sc', '1Gi', 'n1'], /pool name 'Fast' must be a DNS label/],
      [['a_b', 'sc', '1Gi', 'n1'], /pool name/],
      [['fast', 'Bad_SC', '1Gi', 'n1'], /StorageClass name/],
      [['fast', 'sc', '10 GB', 'n1'], /size '10 GB'/],
      [['fast', 'sc', '0Gi', 'n1'], /positive quantity/],
      [['fast', 'sc', '1Gi', 'UPPER'], /node name 'UPPER'/],
      [['fast', 'sc', '1Gi', 'n1', 'n1'], /given twice/],
      [['fast', 'sc', '1Gi', `n${'x'.repeat(250)}`], /not a valid node name|longer than 253/],
    ];
    for (const [args, message] of cases) {
      const r = render(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout, args.join(' ')).toBe('');
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
    expect(render(['fast', 'sc', '1Gi', 'n1'], { env: { IMAGE: 'evil image\nkind: Secret' } }).code).toBe(2);
  });

  it('leaves no placeholder, and names that YAML 1.1 would read as bool or number stay strings', () => {
    const r = render(['on', '123', '1Gi', '456', 'yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/__[A-Z_]+__/);
    const objs = parseYaml(r.stdout, 'render on/123');
    const pod = objs.find((o) => o.kind === 'Pod' && o.metadata.name === 'hpp-pool-on-456')!;
    const pvc = objs.find((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === 'hpp-pool-on-456')!;
    expect(pod.metadata.labels.pool).toBe('on');
    expect(pvc.spec.storageClassName).toBe('123');
    expect(pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values).toEqual(['456']);
  });

  it('uses IMAGE when set, the DaemonSet driver image otherwise', () => {
    expect(pairFor(NODES[0]!).pod.spec.containers[0].image).toBe(driverContainer(daemonSet).image);
    const objs = renderOk([POOL, 'sc', '1Gi', 'n1'], { env: { IMAGE: 'registry.example.com/hpp/hpp-csi-driver:v1.2.3' } });
    expect(objs.find((o) => o.kind === 'Pod')!.spec.containers[0].image).toBe('registry.example.com/hpp/hpp-csi-driver:v1.2.3');
  });
});

describe('rendered objects and examples against the Kubernetes v1.33 schemas (kubernetes-models 4.5.1)', () => {
  const items = () => [
    ...rendered.map((obj, i) => ({ label: `rendered#${i} ${obj.kind}/${obj.metadata.name}`, obj })),
    { label: 'deploy/daemonset.yaml + daemonset-patch.yaml', obj: patchedDaemonSet },
    { label: 'storageclass.yaml', obj: storageClass },
  ];

  it('every object is valid', async () => {
    const errors: string[] = [];
    for (const { label, obj } of items()) {
      const e = await schemaError(obj);
      if (e) errors.push(`${label}: ${e}`);
    }
    expect(errors).toEqual([]);
  });

  it('no object has a field its API type does not define', () => {
    expect(strictFieldErrors(items())).toEqual([]);
  });

  it('the checks catch mistakes (negative controls)', async () => {
    const pod = structuredClone(pairFor(NODES[0]!).pod);
    pod.spec.containers[0].volumeDevices[0].devicePth = '/dev/x';
    expect(strictFieldErrors([{ label: 'typo', obj: pod }]).some((e) => e.includes('devicePth'))).toBe(true);
    const pvc = structuredClone(pairFor(NODES[0]!).pvc);
    pvc.spec.volumeMode = 'Blok';
    expect(await schemaError(pvc)).toMatch(/volumeMode/);
  });

  it('rendered objects are namespaced in hostpath-provisioner, labelled, and named uniquely', () => {
    const names = new Set<string>();
    for (const o of rendered) {
      expect(o.metadata.namespace).toBe(NAMESPACE);
      expect(o.metadata.labels).toMatchObject({ 'app.kubernetes.io/name': 'hpp-pool-device', pool: POOL });
      const key = `${o.kind}/${o.metadata.name}`;
      expect(names.has(key), key).toBe(false);
      names.add(key);
    }
  });
});

describe('PVC + pool device pod pairs', () => {
  for (const node of NODES) {
    describe(`node ${node}`, () => {
      it('the PVC is a Block claim of the given StorageClass and size', () => {
        const { pvc } = pairFor(node);
        expect(pvc.spec).toEqual({
          volumeMode: 'Block',
          accessModes: ['ReadWriteOnce'],
          storageClassName: 'local-block',
          resources: { requests: { storage: '100Gi' } },
        });
      });

      it('the pod consumes exactly that PVC, as a block device (volumeDevices), in the same namespace', () => {
        const { pvc, pod } = pairFor(node);
        expect(pod.metadata.namespace).toBe(pvc.metadata.namespace);
        const claims = (pod.spec.volumes as Obj[]).filter((v) => v.persistentVolumeClaim);
        expect(claims).toHaveLength(1);
        expect(claims[0]!.persistentVolumeClaim).toEqual({ claimName: pvc.metadata.name });
        const [c] = pod.spec.containers as Obj[];
        expect(pod.spec.containers).toHaveLength(1);
        expect(c!.volumeDevices).toEqual([{ name: claims[0]!.name, devicePath: '/dev/hpp-pool' }]);
        expect(((c!.volumeMounts ?? []) as Obj[]).some((m) => m.name === claims[0]!.name), 'a Block PVC cannot be mounted').toBe(false);
      });

      it('the pod is pinned to the node through the scheduler (required node affinity on its name)', () => {
        const { pod } = pairFor(node);
        expect(pod.spec.nodeName, 'nodeName would bypass the scheduler: a WaitForFirstConsumer claim stays Pending').toBeUndefined();
        expect(pod.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution).toEqual({
          nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: [node] }] }],
        });
      });

      it('the publisher gets the device path of the PVC and publishes under the shared host directory, named after the pool', () => {
        const { pod } = pairFor(node);
        const c = (pod.spec.containers as Obj[])[0]!;
        expect(c.command).toEqual(['node', 'dist/cmd/hpp-pool-device.js']);
        expect(existsSync(path.join(ROOT, 'cmd/hpp-pool-device.ts'))).toBe(true);
        const cli = parsePublisherCli(c.args as string[], {});
        expect(cli.device).toBe(c.volumeDevices[0].devicePath);
        expect(cli.publishPath).toBe(`${DEVICES_DIR}/${POOL}`);
        const holder = mountHolding(pod.spec, c, cli.publishPath);
        expect(holder?.mount.mountPath).toBe(DEVICES_DIR);
        expect(holder?.mount.readOnly ?? false).toBe(false);
        expect(holder?.hostPath).toEqual({ path: DEVICES_DIR, type: 'DirectoryOrCreate' });
      });

      it('runs with the least privilege that works: root with CAP_MKNOD only, not privileged', () => {
        const { pod } = pairFor(node);
        const sc = (pod.spec.containers as Obj[])[0]!.securityContext;
        expect(sc.privileged).toBe(false);
        expect(sc.runAsUser).toBe(0);
        expect(sc.allowPrivilegeEscalation).toBe(false);
        expect(sc.capabilities).toEqual({ drop: ['ALL'], add: ['MKNOD'] });
        expect(pod.spec.hostNetwork ?? false).toBe(false);
        expect(pod.spec.hostPID ?? false).toBe(false);
        expect(pod.spec.automountServiceAccountToken).toBe(false);
      });

      it('tolerates what the driver DaemonSet tolerates and keeps running (restartPolicy Always)', () => {
        const { pod } = pairFor(node);
        expect(pod.spec.tolerations).toEqual(daemonSet.spec.template.spec.tolerations);
        expect(pod.spec.restartPolicy).toBe('Always');
        expect(pod.spec.priorityClassName).toBe(daemonSet.spec.template.spec.priorityClassName);
      });
    });
  }
});

describe('the daemon side: pools.json entry, DaemonSet patch, StorageClass', () => {
  it('the pools.json entry names the path the pool device pods publish, and the daemon accepts it', () => {
    expect(poolEntry).toEqual({ name: POOL, path: `/var/hpp-${POOL}`, device: `${DEVICES_DIR}/${POOL}` });
    const pools = parsePoolsJson(poolsJson, 'pools.json');
    const pool = pools.find((p) => p.name === POOL)!;
    const publish = parsePublisherCli((pairFor(NODES[0]!).pod.spec.containers[0].args as string[]), {}).publishPath;
    expect(pool.device).toBe(publish);
  });

  it('the patched DaemonSet, with the extended pools.json, is accepted by the daemon', () => {
    const c = driverContainer(patchedDaemonSet);
    const dir = mkdtempSync(path.join(scratch, 'pools-'));
    const file = path.join(dir, 'pools.json');
    writeFileSync(file, poolsJson);
    // The peer token is a Secret made at install time: any token of the right form here.
    const token = path.join(dir, 'token');
    writeFileSync(token, 'b'.repeat(64));
    const args = (c.args as string[]).map((a) =>
      a.startsWith('--peer-token-file=') ? `--peer-token-file=${token}` : a.replace('$(NODE_NAME)', 'worker-1').replace('$(POD_IP)', '10.244.1.5'),
    );
    // The pools file is the container's HPP_POOLS_FILE (the ConfigMap's pools.json), here the extended copy.
    expect(((c.env ?? []) as Obj[]).find((e) => e.name === 'HPP_POOLS_FILE')?.value).toBe('/etc/hpp/pools.json');
    const opts = parseCli(args, { HPP_POOLS_FILE: file });
    expect(opts.pools.map((p) => p.name)).toEqual(['local', POOL]);
  });

  it('the driver container sees the published node at the same path, from the same host directory, without propagation', () => {
    const spec = patchedDaemonSet.spec.template.spec;
    const c = driverContainer(patchedDaemonSet);
    const holder = mountHolding(spec, c, poolEntry.device as string);
    expect(holder?.mount.mountPath).toBe(DEVICES_DIR);
    expect(holder?.mount.mountPropagation ?? 'None').toBe('None');
    const podSide = pairFor(NODES[0]!).pod.spec.volumes.find((v: Obj) => v.hostPath).hostPath;
    expect(holder?.hostPath).toEqual(podSide);
  });

  it('every pool path, the device-backed one included, is mounted Bidirectional from the same host path', () => {
    const spec = patchedDaemonSet.spec.template.spec;
    const c = driverContainer(patchedDaemonSet);
    for (const pool of parsePoolsJson(poolsJson, 'pools.json')) {
      const m = ((c.volumeMounts ?? []) as Obj[]).find((x) => x.mountPath === pool.path);
      expect(m, `pool ${pool.name} mounted at ${pool.path}`).toBeDefined();
      expect(m!.mountPropagation, pool.name).toBe('Bidirectional');
      expect(hostPathOf(spec, m!.name)?.path, pool.name).toBe(pool.path);
    }
    // The pool path exists before the device does: the daemon mounts onto it.
    expect(hostPathOf(spec, `pool-${POOL}`)?.type).toBe('DirectoryOrCreate');
  });

  it('the patch only adds: every original mount and volume is still there, unchanged', () => {
    const before = driverContainer(daemonSet);
    const after = driverContainer(patchedDaemonSet);
    expect(after.volumeMounts.slice(0, before.volumeMounts.length)).toEqual(before.volumeMounts);
    expect(patchedDaemonSet.spec.template.spec.volumes.slice(0, daemonSet.spec.template.spec.volumes.length)).toEqual(daemonSet.spec.template.spec.volumes);
    expect(patchedDaemonSet.metadata.name).toBe(daemonSet.metadata.name);
    expect(patchedDaemonSet.metadata.namespace ?? NAMESPACE).toBe(daemonSet.metadata.namespace ?? NAMESPACE);
  });

  it('the StorageClass example selects the pool with parameters the driver accepts', () => {
    const driver = parseYaml(readFileSync(path.join(ROOT, 'deploy/csi-driver.yaml'), 'utf8'), 'csi-driver.yaml')[0]!;
    expect(storageClass.provisioner).toBe(driver.metadata.name);
    expect(storageClass.volumeBindingMode).toBe('WaitForFirstConsumer');
    expect(parseParameters(storageClass.parameters)).toMatchObject({ storagePool: POOL });
  });

  it('raw templates cannot be applied by mistake: their names are not valid object names', () => {
    for (const f of ['pvc.yaml', 'pod.yaml', 'storageclass.yaml']) {
      const raw = parseYaml(readFileSync(path.join(TEMPLATES, f), 'utf8'), f)[0]!;
      expect(raw.metadata.name, f).toMatch(/__POOL__/);
    }
    const rawPatch = parseYaml(readFileSync(path.join(TEMPLATES, 'daemonset-patch.yaml'), 'utf8'), 'daemonset-patch.yaml')[0]!;
    expect(rawPatch.spec.template.spec.volumes.some((v: Obj) => v.name.includes('__POOL__'))).toBe(true);
  });

  it('deploy/README.md documents the setup', () => {
    const readme = readFileSync(path.join(ROOT, 'deploy/README.md'), 'utf8');
    expect(readme).toContain('## Device-backed pools (PVC templates)');
    expect(readme).toContain('hack/render-pool-pods.sh');
  });
});
