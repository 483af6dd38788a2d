/**
 * Offline checks of the Kubernetes side of the product: the manifests in deploy/ and the Dockerfile.
 *
 * - Every YAML file in deploy/ (and in the directories kustomization.yaml includes, such as
 *   snapshot-controller/) is listed and the other way round; each parses the way kubectl reads it
 *   (YAML 1.1, no duplicate keys).
 * - Every object is validated against the Kubernetes OpenAPI schema shipped by `kubernetes-models`
 *   (v4.5.1: Kubernetes v1.33.0), which checks types, enums and required fields. Those schemas allow
 *   unknown fields, as the API server's OpenAPI does, so a second pass type-checks each object as a
 *   TypeScript literal of the package's interface: excess-property errors catch misspelled fields
 *   (what `kubectl apply --validate=strict` would reject). Custom resources (VolumeSnapshotClass) have
 *   no schema there and get a structural check written from their CRD (./manifests.ts).
 * - Then the facts this driver depends on: CSIDriver settings, the node DaemonSet and its sidecars,
 *   pools, StorageClasses, RBAC for csi-provisioner, cross-checked with the daemon's own flag parser.
 * - A Dockerfile lint (hadolint-like rules) and its agreement with package.json, tsconfig.json,
 *   .dockerignore and the DaemonSet.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { CONTROLLER_CAPABILITIES, PLUGIN_SERVICES } from '../../src/csi/capabilities.js';
import { parseCli } from '../../src/config/options.js';
import { parseAdminCli } from '../../src/admin/cli.js';
import { main as hppctl } from '../../src/admin/main.js';
import { bindName, registrationSocketPath } from '../../src/config/socket-names.js';
import { MAX_SOCKET_PATH } from '../../src/system/unix-socket.js';
import { LEGACY_POOL_NAME, parsePoolsJson } from '../../src/pools/config.js';
import { ROUTER_CONTROLLER_CAPABILITIES } from '../../src/router/service.js';
import { parseParameters } from '../../src/volumes/parameters.js';
import {
  CUSTOM_RESOURCES,
  DEPLOY,
  DRIVER_NAME,
  NAMESPACE,
  ROOT,
  SCHEMA_VERSION,
  all,
  allows,
  containerEnv,
  expandArgs,
  fieldRef,
  flag,
  grants,
  isCustomResource,
  kustomization,
  kustomizations,
  listedResources,
  loadYaml,
  mountAt,
  readmeContainer,
  objects,
  one,
  parsedFiles,
  removesNamespace,
  saRules,
  schemaError,
  strictFieldErrors,
  yamlFilesInListedDirs,
  type Obj,
} from './manifests.js';
import { SIDECARS, effectiveGates, type Need } from './sidecars.js';

// ---------------------------------------------------------------------------------------------------
// Scopes (loading, schemas and helpers are in ./manifests.ts, shared with the other manifest tests)
// ---------------------------------------------------------------------------------------------------

const CLUSTER_SCOPED = new Set(['Namespace', 'CSIDriver', 'StorageClass', 'ClusterRole', 'ClusterRoleBinding', 'VolumeSnapshotClass']);
const NAMESPACED = new Set(['ServiceAccount', 'ConfigMap', 'DaemonSet', 'Deployment', 'Role', 'RoleBinding', 'Service', 'Secret', 'NetworkPolicy']);

// ---------------------------------------------------------------------------------------------------
// Helpers for pod specs
// ---------------------------------------------------------------------------------------------------

function podSpec(): Obj {
  return one('DaemonSet', 'hpp-csi-node').spec.template.spec;
}

function container(name: string): Obj {
  const c = (podSpec().containers as Obj[]).find((x) => x.name === name);
  if (!c) throw new Error(`DaemonSet hpp-csi-node has no container ${name}`);
  return c;
}

function volume(name: string): Obj {
  const v = (podSpec().volumes as Obj[]).find((x) => x.name === name);
  if (!v) throw new Error(`DaemonSet hpp-csi-node has no volume ${name}`);
  return v;
}

function tolerates(tolerations: Obj[], taint: { key: string; value?: string; effect: string }): boolean {
  return tolerations.some((t) => {
    if (t.effect && t.effect !== taint.effect) return false;
    if (t.operator === 'Exists') return !t.key || t.key === taint.key;
    return t.key === taint.key && (t.value ?? '') === (taint.value ?? '');
  });
}

function poolsFromConfigMap(): { name: string; path: string; useNamingPrefix: boolean }[] {
  return parsePoolsJson(one('ConfigMap', 'hpp-pools').data['pools.json'], 'ConfigMap hpp-pools pools.json');
}

/** The socket path the driver serves, from its --endpoint=unix:///... argument. */
function driverSocket(): string {
  const endpoint = flag(container('hpp-csi-driver').args, 'endpoint');
  if (!endpoint?.startsWith('unix://')) throw new Error(`driver --endpoint ${endpoint} is not unix://`);
  return endpoint.slice('unix://'.length);
}

// ---------------------------------------------------------------------------------------------------
// kustomization.yaml and files
// ---------------------------------------------------------------------------------------------------

describe('deploy/kustomization.yaml', () => {
  const KNOWN_KEYS = ['apiVersion', 'kind', 'namespace', 'resources', 'images', 'labels', 'commonAnnotations', 'patches', 'transformers', 'configMapGenerator', 'generatorOptions'];

  it('is a Kustomization for namespace hostpath-provisioner', () => {
    expect(kustomizations[0]!.problems).toEqual([]);
    expect(kustomization.apiVersion).toBe('kustomize.config.k8s.io/v1beta1');
    expect(kustomization.kind).toBe('Kustomization');
    expect(kustomization.namespace).toBe(NAMESPACE);
    expect(Object.keys(kustomization).filter((k) => !KNOWN_KEYS.includes(k))).toEqual([]);
  });

  it('the directories it includes are Kustomizations too, that leave the namespace to the objects', () => {
    for (const k of kustomizations.slice(1)) {
      expect(k.problems, k.dir).toEqual([]);
      expect(k.obj.apiVersion, k.dir).toBe('kustomize.config.k8s.io/v1beta1');
      expect(k.obj.kind, k.dir).toBe('Kustomization');
      expect(Object.keys(k.obj).filter((key) => !KNOWN_KEYS.includes(key)), k.dir).toEqual([]);
      // Applied on its own (kubectl apply -k deploy/<dir>) it must land in the same namespace, and a
      // `namespace:` here would also stamp the cluster-scoped custom resources.
      expect(k.obj.namespace, `${k.dir}/kustomization.yaml sets no namespace`).toBeUndefined();
      for (const o of objects.filter((x) => x.file.startsWith(`${k.dir}/`) && NAMESPACED.has(x.obj.kind))) {
        expect(o.obj.metadata.namespace, `${o.label} names its namespace`).toBe(NAMESPACE);
      }
    }
  });

  it('lists every manifest in deploy/ and in the directories it includes, each once, and nothing that is not there', () => {
    expect(listedResources.length).toBeGreaterThan(0);
    expect(new Set(listedResources).size).toBe(listedResources.length);
    expect(listedResources.filter((r) => !existsSync(path.join(DEPLOY, r)))).toEqual([]);
    expect([...listedResources].sort()).toEqual(yamlFilesInListedDirs);
  });

  // The optional components are not included by deploy/, so the listing above does not see them: each
  // is a kustomize Component with a test of its own (test/manifests/<name>.test.ts), named in the table
  // of deploy/README.md.
  it('deploy/components/ holds only optional kustomize Components, each with its own test and a row in deploy/README.md', () => {
    const dir = path.join(DEPLOY, 'components');
    const entries = readdirSync(dir, { withFileTypes: true });
    expect(entries.filter((e) => !e.isDirectory()).map((e) => e.name), 'files directly in deploy/components/').toEqual([]);
    const names = entries.map((e) => e.name).sort();
    expect(names).toEqual(['cdi', 'monitoring']);
    const deployReadme = readFileSync(path.join(DEPLOY, 'README.md'), 'utf8');
    for (const name of names) {
      const k = loadYaml(path.join(dir, name, 'kustomization.yaml'));
      expect(k.problems, name).toEqual([]);
      expect(k.docs[0]?.apiVersion, name).toBe('kustomize.config.k8s.io/v1alpha1');
      expect(k.docs[0]?.kind, name).toBe('Component');
      expect(existsSync(path.join(ROOT, 'test', 'manifests', `${name}.test.ts`)), `test/manifests/${name}.test.ts`).toBe(true);
      expect(deployReadme, `deploy/README.md lists components/${name}/`).toContain(`| \`components/${name}/\` |`);
    }
    expect(kustomization.components).toBeUndefined();
  });

  it('every manifest parses as kubectl reads it (YAML 1.1, no duplicate keys) and holds objects', () => {
    const problems = [...parsedFiles.values()].flatMap((p) => p.problems);
    expect(problems).toEqual([]);
    for (const [file, parsed] of parsedFiles) expect(parsed.docs.length, `${file} holds no object`).toBeGreaterThan(0);
  });

  // kustomize knows the scope of Kubernetes kinds only: `namespace:` stamps custom resources too.
  it('takes the namespace off cluster-scoped custom resources again (kustomize does not know their scope)', () => {
    const custom = objects.filter((o) => isCustomResource(o.obj) && CUSTOM_RESOURCES[o.obj.kind]!.scope === 'Cluster');
    expect(custom.length).toBeGreaterThan(0);
    for (const o of custom) expect(removesNamespace(kustomizations[0]!, CUSTOM_RESOURCES[o.obj.kind]!.group, o.obj.kind), o.label).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------------

describe(`manifests against the ${SCHEMA_VERSION} schemas`, () => {
  for (const { label, obj } of objects) {
    it(`${label} is valid`, async () => {
      expect(await schemaError(obj)).toBeUndefined();
    });
  }

  it('no object has a field its API type does not define', () => {
    // Custom resources have no TypeScript interface; their structural check (above) rejects unknown fields.
    expect(strictFieldErrors(objects.filter((o) => !isCustomResource(o.obj)))).toEqual([]);
  });

  it('every object is named, unique, and in the right namespace', () => {
    const seen = new Set<string>();
    for (const { label, obj } of objects) {
      expect(typeof obj.metadata?.name, label).toBe('string');
      const scoped = CLUSTER_SCOPED.has(obj.kind) ? 'cluster' : NAMESPACED.has(obj.kind) ? 'namespace' : undefined;
      expect(scoped, `${label}: scope of ${obj.kind} unknown to this test; add it to CLUSTER_SCOPED or NAMESPACED`).toBeDefined();
      if (scoped === 'cluster') expect(obj.metadata.namespace, `${label} is cluster-scoped`).toBeUndefined();
      else expect(obj.metadata.namespace ?? kustomization.namespace, label).toBe(NAMESPACE);
      const key = `${obj.apiVersion}/${obj.kind}/${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
      expect(seen.has(key), `${label} is defined twice`).toBe(false);
      seen.add(key);
    }
  });

  it('the namespace exists and admits privileged pods', () => {
    const ns = one('Namespace', NAMESPACE);
    expect(ns.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('privileged');
  });
});

describe('the validators catch mistakes (negative controls)', () => {
  it('the schema check rejects a bad enum, a wrong type and a missing required field', async () => {
    const ds = structuredClone(one('DaemonSet', 'hpp-csi-node'));
    ds.spec.template.spec.containers[0].volumeMounts[0].mountPropagation = 'Bidirectionall';
    expect(await schemaError(ds)).toMatch(/mountPropagation/);

    const driver = structuredClone(one('CSIDriver', DRIVER_NAME));
    driver.spec.attachRequired = 'false';
    expect(await schemaError(driver)).toMatch(/attachRequired/);

    const ds2 = structuredClone(one('DaemonSet', 'hpp-csi-node'));
    delete ds2.spec.selector;
    expect(await schemaError(ds2)).toMatch(/selector/);

    expect(await schemaError({ apiVersion: 'example.com/v1', kind: 'Nothing', metadata: { name: 'x' } })).toMatch(/no Kubernetes schema/);
  });

  it('the structural check of VolumeSnapshotClass rejects what its CRD rejects, and unknown fields', async () => {
    const good = { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshotClass', metadata: { name: 'x' }, driver: DRIVER_NAME, deletionPolicy: 'Delete' };
    expect(await schemaError(good)).toBeUndefined();
    expect(await schemaError({ ...good, deletionPolicy: 'Remove' })).toMatch(/deletionPolicy/);
    const { driver: _d, ...noDriver } = good;
    expect(await schemaError(noDriver)).toMatch(/driver is required/);
    const { deletionPolicy: _p, ...noPolicy } = good;
    expect(await schemaError(noPolicy)).toMatch(/deletionPolicy/);
    expect(await schemaError({ ...good, spec: { driver: DRIVER_NAME } })).toMatch(/unknown field spec/);
    expect(await schemaError({ ...good, parameters: { a: 1 } })).toMatch(/parameters\.a must be a string/);
    expect(await schemaError({ ...good, metadata: { name: 'X_y' } })).toMatch(/metadata\.name/);
    expect(await schemaError({ ...good, metadata: { name: 'x', namespace: 'ns' } })).toMatch(/metadata\.namespace/);
    expect(await schemaError({ ...good, apiVersion: 'snapshot.storage.k8s.io/v1beta1' })).toMatch(/apiVersion/);
  });

  it('the strict field check rejects misspelled fields at any depth, and passes correct ones', () => {
    const pod = (mount: Obj) => ({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'x' },
      spec: {
        selector: { matchLabels: { a: 'b' } },
        template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i:1', volumeMounts: [mount] }], volumes: [{ name: 'v', emptyDir: {} }] } },
      },
    });
    const sc = { apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', metadata: { name: 'x' }, provisioner: 'p', volumeBindingModes: 'Immediate' };
    const errors = strictFieldErrors([
      { label: 'good', obj: pod({ name: 'v', mountPath: '/v', mountPropagation: 'Bidirectional' }) },
      { label: 'ds', obj: pod({ name: 'v', mountPath: '/v', mountPropogation: 'Bidirectional' }) },
      { label: 'sc', obj: sc },
    ]);
    expect(errors.filter((e) => e.startsWith('good:'))).toEqual([]);
    expect(errors.some((e) => e.startsWith('ds:') && e.includes('mountPropogation'))).toBe(true);
    expect(errors.some((e) => e.startsWith('sc:') && e.includes('volumeBindingModes'))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------
// CSIDriver
// ---------------------------------------------------------------------------------------------------

describe('CSIDriver', () => {
  it("has the HPP name, node-local settings and HPP's lifecycle modes", () => {
    expect(all('CSIDriver')).toHaveLength(1);
    expect(one('CSIDriver', DRIVER_NAME).spec).toEqual({
      attachRequired: false,
      podInfoOnMount: true,
      storageCapacity: true,
      fsGroupPolicy: 'File',
      volumeLifecycleModes: ['Persistent', 'Ephemeral'],
      requiresRepublish: false,
    });
  });
});

// ---------------------------------------------------------------------------------------------------
// DaemonSet
// ---------------------------------------------------------------------------------------------------

describe('DaemonSet hpp-csi-node', () => {
  it('selects its own pods, rolls out node by node and runs as a critical node daemon', () => {
    const ds = one('DaemonSet', 'hpp-csi-node');
    const selector = ds.spec.selector.matchLabels as Record<string, string>;
    expect(Object.keys(selector).length).toBeGreaterThan(0);
    for (const [k, v] of Object.entries(selector)) expect(ds.spec.template.metadata.labels[k], k).toBe(v);
    expect(ds.spec.updateStrategy.type).toBe('RollingUpdate');
    expect(podSpec().priorityClassName).toBe('system-node-critical');
  });

  it('tolerates control-plane and eviction taints (volumes must stay reachable and unmountable)', () => {
    const tolerations = (podSpec().tolerations ?? []) as Obj[];
    expect(tolerates(tolerations, { key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' })).toBe(true);
    expect(tolerates(tolerations, { key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' })).toBe(true);
    expect(tolerates(tolerations, { key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' })).toBe(true);
  });

  it('runs as the ServiceAccount the RBAC binds', () => {
    const sa = one('ServiceAccount', podSpec().serviceAccountName);
    expect(sa.metadata.namespace ?? NAMESPACE).toBe(one('DaemonSet', 'hpp-csi-node').metadata.namespace ?? NAMESPACE);
  });

  it('every container is named once, requests resources, and mounts only defined volumes; every volume is used', () => {
    const containers = podSpec().containers as Obj[];
    const volumes = podSpec().volumes as Obj[];
    expect(new Set(containers.map((c) => c.name)).size).toBe(containers.length);
    expect(new Set(volumes.map((v) => v.name)).size).toBe(volumes.length);
    const used = new Set<string>();
    for (const c of containers) {
      expect(c.resources?.requests?.cpu, `${c.name} cpu request`).toBeDefined();
      expect(c.resources?.requests?.memory, `${c.name} memory request`).toBeDefined();
      for (const m of (c.volumeMounts ?? []) as Obj[]) {
        expect(volumes.some((v) => v.name === m.name), `${c.name} mounts undefined volume ${m.name}`).toBe(true);
        used.add(m.name);
      }
    }
    expect(volumes.map((v) => v.name).filter((n) => !used.has(n))).toEqual([]);
    for (const v of volumes) if (v.hostPath) expect(v.hostPath.type, `hostPath volume ${v.name} type`).toBeDefined();
  });

  it('uses pinned sidecar images and the locally built driver image', () => {
    expect(container('hpp-csi-driver').image).toBe('hpp-csi-driver:latest');
    expect(container('csi-provisioner').image).toBe('registry.k8s.io/sig-storage/csi-provisioner:v6.4.0');
    for (const c of podSpec().containers as Obj[]) {
      if (c.name === 'hpp-csi-driver') continue;
      expect(c.image, c.name).toMatch(/^[^:@]+(:v\d+\.\d+\.\d+|@sha256:[0-9a-f]{64})$/);
    }
  });

  it('every $(VAR) in container args is defined in that container env', () => {
    for (const c of podSpec().containers as Obj[]) expect(() => expandArgs(c, {}), c.name).not.toThrow();
  });

  describe('driver container', () => {
    it('runs the compiled daemon with endpoint and node name, and the pools file in its environment', () => {
      const c = container('hpp-csi-driver');
      expect(c.command).toEqual(['node', 'dist/cmd/hpp-csi-driver.js']);
      expect(c.args).toEqual(expect.arrayContaining(['--endpoint=unix:///csi/csi.sock', '--node-name=$(NODE_NAME)']));
      // By environment, not by flag: hppctl, run with kubectl exec in this container, reads it too.
      expect(containerEnv(c, { NODE_NAME: 'n', POD_IP: 'i' }).HPP_POOLS_FILE).toBe('/etc/hpp/pools.json');
      expect(flag(c.args, 'pools-file'), 'a flag hppctl would not see').toBeUndefined();
      expect(fieldRef(c, 'NODE_NAME')).toBe('spec.nodeName');
      expect(c.securityContext?.privileged).toBe(true);
    });

    it('its arguments are accepted by the daemon (src/config/options.ts) and name this CSIDriver and these pools', () => {
      const c = container('hpp-csi-driver');
      const args = expandArgs(c, { NODE_NAME: 'worker-1', POD_IP: '10.244.1.5' });
      const env = containerEnv(c, { NODE_NAME: 'worker-1', POD_IP: '10.244.1.5' });
      // Serve the pools file from the ConfigMap the pod mounts, as kubelet would.
      const poolsFile = env.HPP_POOLS_FILE!;
      const cmMount = mountAt(c, path.posix.dirname(poolsFile));
      expect(cmMount, `a volume mounted at ${path.posix.dirname(poolsFile)}`).toBeDefined();
      const cm = one('ConfigMap', volume(cmMount!.name).configMap?.name);
      const content = cm.data?.[path.posix.basename(poolsFile)];
      expect(content, `ConfigMap ${cm.metadata.name} key ${path.posix.basename(poolsFile)}`).toBeTypeOf('string');
      const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-deploy-test-'));
      try {
        const local = path.join(dir, 'pools.json');
        writeFileSync(local, content);
        // The peer token comes from a Secret created at install time (test/manifests/snapshot-controller.test.ts
        // checks the mount); here any token of the right form.
        const token = path.join(dir, 'token');
        writeFileSync(token, `${'a'.repeat(64)}\n`);
        const opts = parseCli(
          args.map((a) => (a.startsWith('--peer-token-file=') ? `--peer-token-file=${token}` : a)),
          { ...env, HPP_POOLS_FILE: local },
        );
        expect(opts.driverName).toBe(one('CSIDriver', DRIVER_NAME).metadata.name);
        expect(opts.nodeName).toBe('worker-1');
        expect(opts.endpoint).toBe(`unix://${driverSocket()}`);
        expect(opts.pools).toEqual(poolsFromConfigMap());
        expect(opts.peer?.address).toBe('10.244.1.5:9700');
        expect(opts.peer?.token).toBe('a'.repeat(64));
        expect(opts.peer?.tls, 'TLS is optional and off by default').toBeUndefined();
        expect(opts.registration).toEqual({ dir: '/registration', kubeletEndpoint: `/var/lib/kubelet/plugins/${DRIVER_NAME}/csi.sock` });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    // `kubectl exec ... -- node dist/cmd/hppctl.js pools` runs hppctl with the container's environment
    // (and no flags): it must find the daemon's pools there.
    it("hppctl, run in the driver container with its environment, lists the daemon's pools", async () => {
      const c = container('hpp-csi-driver');
      const env = containerEnv(c, { NODE_NAME: 'worker-1', POD_IP: '10.244.1.5' });
      const poolsFile = env.HPP_POOLS_FILE!;
      const cm = one('ConfigMap', volume(mountAt(c, path.posix.dirname(poolsFile))!.name).configMap?.name);
      const content = cm.data[path.posix.basename(poolsFile)] as string;
      expect(() => parseAdminCli(['pools'], {}), 'without that environment hppctl has no pools').toThrow(/no storage pool configured/);
      const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-deploy-hppctl-'));
      try {
        // The file where the container has it (the ConfigMap's key), the pools' paths as written there.
        const local = path.join(dir, 'pools.json');
        writeFileSync(local, content);
        const cli = parseAdminCli(['pools'], { ...env, HPP_POOLS_FILE: local });
        expect(cli.pools).toEqual(poolsFromConfigMap());
        // And run: each pool listed (here at a scratch path instead of the host's, so that it can be read).
        const scratch = JSON.parse(content).map((p: Obj) => ({ ...p, path: path.join(dir, 'pool-' + String(p.name)) }));
        writeFileSync(local, JSON.stringify(scratch));
        let out = '';
        const code = await hppctl(['pools', '--json'], { ...env, HPP_POOLS_FILE: local }, { out: (t) => void (out += t), err: (t) => void (out += t) });
        expect(code, out).toBe(0);
        const listed = JSON.parse(out) as Obj[] | { pools: Obj[] };
        const names = (Array.isArray(listed) ? listed : listed.pools).map((p) => p.name ?? p.pool);
        expect(names).toEqual(poolsFromConfigMap().map((p) => p.name));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    // What kubelet v1.34's plugin watcher takes (pkg/kubelet/pluginmanager/pluginwatcher): a unix socket in
    // <root-dir>/plugins_registry whose name does not start with a dot; its CSI handler then dials
    // GetInfo's endpoint as a plain path on the host.
    it('registers itself with kubelet: its socket in kubelet\'s plugins_registry, naming the host path of the CSI socket', () => {
      const c = container('hpp-csi-driver');
      const args = expandArgs(c, { NODE_NAME: 'worker-1', POD_IP: '10.244.1.5' });
      const dir = flag(args, 'registration-dir')!;
      expect(dir).toBe('/registration');
      const reg = mountAt(c, dir);
      expect(reg, `registration dir mounted at ${dir}`).toBeDefined();
      expect(reg!.readOnly ?? false, 'the driver makes its socket there').toBe(false);
      const regVolume = volume(reg!.name);
      expect(regVolume.hostPath).toEqual({ path: '/var/lib/kubelet/plugins_registry', type: 'Directory' });

      const socketVolume = volume(mountAt(c, path.posix.dirname(driverSocket()))!.name);
      const hostPath = flag(args, 'kubelet-registration-path');
      expect(hostPath).toBe(`/var/lib/kubelet/plugins/${DRIVER_NAME}/csi.sock`);
      expect(hostPath).toBe(path.posix.join(socketVolume.hostPath.path, path.posix.basename(driverSocket())));

      const inPod = registrationSocketPath(dir, DRIVER_NAME);
      const onHost = path.posix.join(regVolume.hostPath.path, path.posix.relative(dir, inPod));
      expect(onHost).toBe(`/var/lib/kubelet/plugins_registry/${DRIVER_NAME}-reg.sock`);
      expect(path.posix.basename(onHost).startsWith('.')).toBe(false);
      for (const p of [inPod, bindName(inPod), onHost, hostPath!]) expect(Buffer.byteLength(p), p).toBeLessThanOrEqual(MAX_SOCKET_PATH);
    });

    it('mounts the socket dir, kubelet dirs (Bidirectional), /dev and the pools config', () => {
      const c = container('hpp-csi-driver');
      const socketMount = mountAt(c, path.posix.dirname(driverSocket()))!;
      expect(socketMount).toBeDefined();
      expect(volume(socketMount.name).hostPath).toEqual({ path: `/var/lib/kubelet/plugins/${DRIVER_NAME}`, type: 'DirectoryOrCreate' });

      const pods = mountAt(c, '/var/lib/kubelet/pods')!;
      expect(pods?.mountPropagation).toBe('Bidirectional');
      expect(volume(pods.name).hostPath?.path).toBe('/var/lib/kubelet/pods');

      const plugins = mountAt(c, '/var/lib/kubelet/plugins');
      if (plugins) {
        expect(plugins.mountPropagation).toBe('Bidirectional');
        expect(volume(plugins.name).hostPath?.path).toBe('/var/lib/kubelet/plugins');
      }

      const dev = mountAt(c, '/dev')!;
      expect(volume(dev.name).hostPath?.path).toBe('/dev');

      const cfg = mountAt(c, '/etc/hpp')!;
      expect(volume(cfg.name).configMap?.name).toBe('hpp-pools');
    });

    // Liveness must not depend on pools: CSI Probe is not-ready while a pool is missing, and restarting
    // the driver would not bring a disk back but would disturb every other pool on the node. So kubelet
    // asks the driver's own /healthz (process and socket alive); pool state goes to /readyz. No
    // livenessprobe sidecar: it would serve CSI Probe to no probe at all (or, probed, restart the driver
    // for a missing disk).
    it('is kept alive by its own /healthz on the metrics port, ready by /readyz; there is no livenessprobe sidecar', () => {
      const c = container('hpp-csi-driver');
      const portOf = (probe: Obj | undefined) =>
        typeof probe?.port === 'string' ? (c.ports as Obj[] | undefined)?.find((p) => p.name === probe.port)?.containerPort : probe?.port;
      const live = c.livenessProbe?.httpGet;
      expect(live?.path).toBe('/healthz');
      expect(portOf(live)).toBe(8080);
      const ready = c.readinessProbe?.httpGet;
      expect(ready?.path).toBe('/readyz');
      expect(portOf(ready)).toBe(8080);
      expect(flag(c.args, 'metrics-address')).toBe(':8080');
      const containers = podSpec().containers as Obj[];
      expect(containers.filter((x) => /livenessprobe/.test(String(x.image))).map((x) => x.name)).toEqual([]);
      // The driver's probes are the only ones, and nothing declares a port no one serves (livenessprobe's 9808).
      for (const x of containers) if (x !== c) expect([x.livenessProbe, x.readinessProbe, x.startupProbe].filter(Boolean), x.name).toEqual([]);
      expect((c.ports as Obj[]).map((p) => p.containerPort)).not.toContain(9808);
    });

    it('the README and deploy/README.md tell the same liveness story as the DaemonSet', () => {
      const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
      const deployReadme = readFileSync(path.join(DEPLOY, 'README.md'), 'utf8');
      for (const [name, text] of [['README.md', readme], ['deploy/README.md', deployReadme]] as const) {
        expect(text, name).toMatch(/livenessProbe`? is (the driver's own )?`\/healthz`/);
        expect(text, name).toMatch(/no livenessprobe sidecar/i);
        expect(text, name).not.toMatch(/liveness stays\s+with the livenessprobe sidecar|livenessprobe sidecar turns/);
      }
    });
  });

  describe('sidecars', () => {
    it('all talk to the driver socket through the shared socket dir', () => {
      const socket = driverSocket();
      const socketVolume = mountAt(container('hpp-csi-driver'), path.posix.dirname(socket))!.name;
      for (const name of ['csi-provisioner']) {
        const c = container(name);
        expect(flag(c.args, 'csi-address'), name).toBe(socket);
        expect(mountAt(c, path.posix.dirname(socket))?.name, name).toBe(socketVolume);
      }
    });

    it('none of them is node-driver-registrar: the driver registers itself, and two registrations of one driver fight in kubelet', () => {
      const names = (podSpec().containers as Obj[]).map((c) => c.name);
      expect(names).not.toContain('node-driver-registrar');
      const registering = (podSpec().containers as Obj[]).filter((c) => flag((c.args ?? []) as string[], 'kubelet-registration-path') !== undefined);
      expect(registering.map((c) => c.name)).toEqual(['hpp-csi-driver']);
      for (const c of podSpec().containers as Obj[]) expect(String(c.image), c.name).not.toMatch(/node-driver-registrar/);
    });

    it("README.md's node-driver-registrar stand-in takes over the driver's registration as is: same sockets, same volumes, a free port", () => {
      const c = readmeContainer('node-driver-registrar');
      const driver = container('hpp-csi-driver');
      expect(flag(c.args, 'csi-address')).toBe(driverSocket());
      expect(flag(c.args, 'kubelet-registration-path')).toBe(flag(driver.args, 'kubelet-registration-path'));
      // Its --plugin-registration-path default, where the driver mounts kubelet's plugins_registry now.
      expect(flag(c.args, 'plugin-registration-path') ?? '/registration').toBe(flag(driver.args, 'registration-dir'));
      for (const dir of [path.posix.dirname(driverSocket()), '/registration']) {
        expect(mountAt(c, dir)?.name, dir).toBe(mountAt(driver, dir)?.name);
      }
      const port = Number(flag(c.args, 'http-endpoint')!.split(':').pop());
      expect((c.ports as Obj[]).map((p) => p.containerPort)).toEqual([port]);
      const taken = (podSpec().containers as Obj[]).flatMap((x) => ((x.ports ?? []) as Obj[]).map((p) => p.containerPort as number));
      expect(taken).not.toContain(port);
    });

    it('csi-provisioner provisions node-locally with capacity owned by the DaemonSet', () => {
      const c = container('csi-provisioner');
      const args = c.args as string[];
      for (const f of ['node-deployment', 'enable-capacity', 'extra-create-metadata', 'strict-topology']) {
        expect(flag(args, f), `--${f}`).toBe('true');
      }
      expect(flag(args, 'immediate-topology')).toBe('false');
      expect(effectiveGates(SIDECARS['csi-provisioner']!, args).Topology, 'topology on (GA in v6, on by default)').toBe(true);
      // 0 = the pod, 1 = its controller: the DaemonSet (pods come and go with the nodes).
      expect(flag(args, 'capacity-ownerref-level')).toBe('1');
      expect(flag(args, 'leader-election') ?? 'false').toBe('false');
      expect(fieldRef(c, 'NODE_NAME')).toBe('spec.nodeName');
      expect(fieldRef(c, 'POD_NAME')).toBe('metadata.name');
      expect(fieldRef(c, 'NAMESPACE')).toBe('metadata.namespace');
    });

    it('no two containers listen on the same port', () => {
      const ports: number[] = [];
      for (const c of podSpec().containers as Obj[]) {
        const listen = new Set<number>(((c.ports ?? []) as Obj[]).map((p) => p.containerPort as number));
        for (const f of ['health-port', 'http-endpoint', 'metrics-address']) {
          const v = flag((c.args ?? []) as string[], f);
          if (v) listen.add(Number(v.split(':').pop()));
        }
        ports.push(...listen);
      }
      const counts = ports.reduce((m, p) => m.set(p, (m.get(p) ?? 0) + 1), new Map<number, number>());
      expect([...counts].filter(([, n]) => n > 1)).toEqual([]);
    });
  });
});

// ---------------------------------------------------------------------------------------------------
// Pools and StorageClasses
// ---------------------------------------------------------------------------------------------------

describe('pools', () => {
  it('ConfigMap hpp-pools holds a pools.json the driver accepts', () => {
    expect(JSON.parse(one('ConfigMap', 'hpp-pools').data['pools.json'])).toEqual([{ name: 'local', path: '/var/hpvolumes' }]);
    expect(poolsFromConfigMap().map((p) => p.name)).toEqual(['local']);
  });

  it('every pool path is mounted into the driver container from the same host path, Bidirectional', () => {
    const c = container('hpp-csi-driver');
    for (const pool of poolsFromConfigMap()) {
      const m = mountAt(c, pool.path);
      expect(m, `pool ${pool.name} (${pool.path}) mounted`).toBeDefined();
      expect(m!.mountPropagation, `pool ${pool.name}`).toBe('Bidirectional');
      expect(m!.readOnly ?? false).toBe(false);
      expect(volume(m!.name).hostPath?.path, `pool ${pool.name} host path`).toBe(pool.path);
    }
  });

  // A pool path is where the pool's disk is mounted: kubelet must never create it (DirectoryOrCreate
  // would put a pool whose disk is missing on the node's root filesystem), as README.md says.
  it('every pool path is a hostPath of type Directory: kubelet never creates it', () => {
    const c = container('hpp-csi-driver');
    for (const pool of poolsFromConfigMap()) {
      expect(volume(mountAt(c, pool.path)!.name).hostPath?.type, `pool ${pool.name}`).toBe('Directory');
    }
    expect(readFileSync(path.join(ROOT, 'README.md'), 'utf8')).toMatch(/never created by the driver/);
    expect(readFileSync(path.join(DEPLOY, 'README.md'), 'utf8')).toMatch(/Pool paths are `type: Directory`, never `DirectoryOrCreate`/);
  });
});

/**
 * Is ControllerExpandVolume reachable in the cluster? external-resizer must run beside a CSI endpoint that
 * offers EXPAND_VOLUME for every volume: the router (hpp-snapshot-controller), which forwards it to the
 * daemon of the volume's node. A resizer in the DaemonSet would only reach its own node's daemon.
 */
function expansionRouted(): boolean {
  return all('Deployment').some((d) => {
    const containers = d.spec.template.spec.containers as Obj[];
    const router = containers.find((c) => (c.command ?? []).join(' ') === 'node dist/cmd/hpp-snapshot-controller.js');
    const resizer = containers.find((c) => c.name === 'csi-resizer');
    const endpoint = router && flag(router.args ?? [], 'endpoint');
    return !!resizer && !!endpoint && `unix://${flag(resizer.args ?? [], 'csi-address')}` === endpoint;
  });
}

describe('StorageClasses', () => {
  it('are served by this CSIDriver, delete with the claim and bind where the pod lands', () => {
    const driver = one('CSIDriver', DRIVER_NAME);
    const classes = all('StorageClass');
    expect(classes.map((s) => s.metadata.name).sort()).toEqual(['hostpath-csi', 'hostpath-csi-legacy', 'hostpath-csi-vm']);
    for (const sc of classes) {
      expect(sc.provisioner, sc.metadata.name).toBe(driver.metadata.name);
      expect(sc.reclaimPolicy, sc.metadata.name).toBe('Delete');
      expect(sc.volumeBindingMode, sc.metadata.name).toBe('WaitForFirstConsumer');
      if (!CONTROLLER_CAPABILITIES.has('EXPAND_VOLUME')) expect(sc.allowVolumeExpansion ?? false, sc.metadata.name).toBe(false);
    }
  });

  // Claims may grow exactly when every step of it is there: the daemon expands (EXPAND_VOLUME), the
  // router offers and forwards it, and external-resizer calls the router.
  it('allow volume expansion exactly when the daemon, the router and a routed csi-resizer support it', () => {
    const routed = CONTROLLER_CAPABILITIES.has('EXPAND_VOLUME') && (ROUTER_CONTROLLER_CAPABILITIES as readonly string[]).includes('EXPAND_VOLUME') && expansionRouted();
    expect(routed, 'expansion is routed in this deployment').toBe(true);
    for (const sc of all('StorageClass')) expect(sc.allowVolumeExpansion ?? false, sc.metadata.name).toBe(routed);
  });

  it('parameters are ones the driver accepts (it refuses unknown keys)', () => {
    for (const sc of all('StorageClass')) expect(() => parseParameters(sc.parameters ?? {}), sc.metadata.name).not.toThrow();
  });

  it('hostpath-csi names a configured pool', () => {
    const sc = one('StorageClass', 'hostpath-csi');
    expect(sc.parameters).toEqual({ storagePool: 'local' });
    expect(poolsFromConfigMap().map((p) => p.name)).toContain(sc.parameters.storagePool);
  });

  it('hostpath-csi-vm creates a sparse disk.img with CDI\'s default overhead in a configured pool', () => {
    const sc = one('StorageClass', 'hostpath-csi-vm');
    expect(sc.parameters).toEqual({ storagePool: 'local', createDiskImage: 'true', preallocation: 'false', filesystemOverhead: '0.055' });
    expect(poolsFromConfigMap().map((p) => p.name)).toContain(sc.parameters.storagePool);
    const params = parseParameters(sc.parameters);
    expect(params.createDiskImage).toBe(true);
    expect(params.preallocation).toBe(false);
    expect(params.filesystemOverhead?.text).toBe('0.055');
  });

  it('hostpath-csi-legacy has no storagePool, and the driver can resolve one for it', () => {
    const sc = one('StorageClass', 'hostpath-csi-legacy');
    expect(sc.parameters?.storagePool).toBeUndefined();
    // VolumeManager.resolvePool: the only pool, else the pool named "legacy".
    const pools = poolsFromConfigMap();
    expect(pools.length === 1 || pools.some((p) => p.name === LEGACY_POOL_NAME)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------------------------------

describe('RBAC', () => {
  const sa = { name: 'hpp-csi-node', namespace: NAMESPACE };

  it('every binding refers to a role and a ServiceAccount defined here', () => {
    for (const b of [...all('ClusterRoleBinding'), ...all('RoleBinding')]) {
      const ns = b.metadata.namespace ?? NAMESPACE;
      expect(b.roleRef.apiGroup, b.metadata.name).toBe('rbac.authorization.k8s.io');
      const role = b.roleRef.kind === 'ClusterRole' ? all('ClusterRole').find((r) => r.metadata.name === b.roleRef.name) : all('Role').find((r) => r.metadata.name === b.roleRef.name && (r.metadata.namespace ?? NAMESPACE) === ns);
      expect(role, `${b.kind} ${b.metadata.name} -> ${b.roleRef.kind} ${b.roleRef.name}`).toBeDefined();
      for (const s of b.subjects as Obj[]) {
        expect(s.kind).toBe('ServiceAccount');
        expect(all('ServiceAccount').some((x) => x.metadata.name === s.name && (x.metadata.namespace ?? NAMESPACE) === (s.namespace ?? ns)), `subject ${s.name}`).toBe(true);
      }
    }
  });

  // What the sidecars of the DaemonSet need with their flags, from the one table of them
  // (./sidecars.ts: csi-provisioner v6.4.0; node-driver-registrar and livenessprobe need nothing).
  const provisioner = container('csi-provisioner');
  const provisionerNeeds: Need[] = SIDECARS['csi-provisioner']!.needs({
    args: expandArgs(provisioner, { NODE_NAME: 'node-1', POD_NAME: 'pod-1', NAMESPACE }),
    controllerCapabilities: CONTROLLER_CAPABILITIES,
    pluginCapabilities: new Set<string>(PLUGIN_SERVICES),
    workloadKind: 'DaemonSet',
  });
  // Granted beyond what --node-deployment needs, read only, as upstream's role does (rbac.yaml).
  const KEPT: Need[] = [
    { group: 'storage.k8s.io', resource: 'csinodes', verbs: ['get', 'list', 'watch'], scope: 'cluster', why: 'kept' },
    { group: '', resource: 'nodes', verbs: ['get', 'list', 'watch'], scope: 'cluster', why: 'kept' },
  ];
  const key = (n: Need, v: string) => `${n.group || 'core'}/${n.resource} ${v}`;

  it('the node ServiceAccount can do what csi-provisioner needs, cluster-wide and in its namespace', () => {
    const { cluster, namespaced } = saRules(sa);
    const missing: string[] = [];
    for (const n of [...provisionerNeeds, ...KEPT]) {
      for (const v of n.verbs) if (!allows(n.scope === 'cluster' ? cluster : namespaced, n.group, n.resource, v)) missing.push(`${n.scope} ${key(n, v)}`);
    }
    expect(missing).toEqual([]);
    // The ones the issue was about: restores and the snapshot finalizer sweep of v6.
    for (const v of ['get', 'list', 'watch', 'update']) expect(allows(cluster, 'snapshot.storage.k8s.io', 'volumesnapshots', v), v).toBe(true);
  });

  it('and nothing more: no writes it does not make, no leases, nothing of the owner chain but the pod', () => {
    const { cluster, namespaced } = saRules(sa);
    const expand = (needs: Need[]) => new Set(needs.flatMap((n) => n.verbs.map((v) => key(n, v))));
    const clusterWanted = expand([...provisionerNeeds, ...KEPT].filter((n) => n.scope === 'cluster'));
    expect([...grants(cluster)].filter((g) => !clusterWanted.has(g)).sort()).toEqual([]);
    const nsWanted = new Set([...clusterWanted, ...expand(provisionerNeeds.filter((n) => n.scope === 'namespace'))]);
    expect([...grants(namespaced)].filter((g) => !nsWanted.has(g)).sort()).toEqual([]);
  });

  it('grants no wildcards and no access to secrets', () => {
    const rules = [...all('ClusterRole'), ...all('Role')].flatMap((r) => (r.rules ?? []) as Obj[]);
    for (const r of rules) {
      for (const field of ['apiGroups', 'resources', 'verbs']) expect(r[field] ?? [], JSON.stringify(r)).not.toContain('*');
      expect(r.resources ?? [], JSON.stringify(r)).not.toContain('secrets');
    }
    expect(allows(saRules(sa).cluster, '', 'pods', 'get'), 'pods are read only in the driver namespace').toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------
// Dockerfile lint
// ---------------------------------------------------------------------------------------------------

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  image: string;
  name?: string;
  instructions: Instruction[];
}

function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let cur: Instruction | null = null;
  text.split('\n').forEach((raw, i) => {
    const trimmed = raw.replace(/\r$/, '').trim();
    let rest: string;
    if (cur === null) {
      if (trimmed === '' || trimmed.startsWith('#')) return;
      const m = /^([A-Za-z]+)\s*(.*)$/.exec(trimmed);
      if (!m) throw new Error(`Dockerfile line ${i + 1}: cannot parse ${JSON.stringify(trimmed)}`);
      cur = { keyword: m[1]!.toUpperCase(), args: '', line: i + 1 };
      rest = m[2]!;
    } else {
      if (trimmed.startsWith('#') || trimmed === '') return; // comments and blank lines inside a continuation
      rest = trimmed;
    }
    if (rest.endsWith('\\')) {
      cur.args += `${rest.slice(0, -1)} `;
    } else {
      cur.args = `${cur.args}${rest}`.replace(/\s+/g, ' ').trim();
      out.push(cur);
      cur = null;
    }
  });
  if (cur) throw new Error('Dockerfile ends inside a line continuation');
  return out;
}

function stagesOf(instructions: Instruction[]): Stage[] {
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const words = ins.args.split(' ').filter((w) => !w.startsWith('--'));
      stages.push({ image: words[0]!, name: words[1]?.toLowerCase() === 'as' ? words[2] : undefined, instructions: [] });
    } else if (stages.length > 0) {
      stages[stages.length - 1]!.instructions.push(ins);
    } else if (ins.keyword !== 'ARG') {
      throw new Error(`Dockerfile line ${ins.line}: ${ins.keyword} before the first FROM`);
    }
  }
  return stages;
}

/** Shell commands of a RUN, split on && ; || and |. */
function commandsOf(run: string): string[] {
  return run.split(/&&|\|\||;|\|/).map((s) => s.trim()).filter(Boolean);
}

function aptInstalls(stage: Stage): { ins: Instruction; packages: string[] }[] {
  return stage.instructions
    .filter((i) => i.keyword === 'RUN' && /\bapt-get\b[^&;|]*\binstall\b/.test(i.args))
    .map((ins) => ({
      ins,
      packages: commandsOf(ins.args)
        .filter((c) => /^apt-get\b.*\binstall\b/.test(c))
        .flatMap((c) => c.replace(/^.*?\binstall\b/, '').split(' ').filter((w) => w && !w.startsWith('-'))),
    }));
}

function copies(stage: Stage): { from?: string; sources: string[]; dest: string; ins: Instruction }[] {
  return stage.instructions
    .filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD')
    .map((ins) => {
      const words = ins.args.split(' ');
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((w) => !w.startsWith('--'));
      return { from, sources: paths.slice(0, -1), dest: paths[paths.length - 1]!, ins };
    });
}

function workdirOf(stage: Stage): string {
  return stage.instructions.filter((i) => i.keyword === 'WORKDIR').pop()?.args ?? '/';
}

/** Matcher for .dockerignore (Docker semantics: last matching rule wins, a match covers the subtree). */
function dockerignore(text: string): (rel: string) => boolean {
  const toRe = (glob: string) =>
    new RegExp(
      `^${glob
        .split(/(\*\*\/|\*\*|\*|\?)/)
        .map((t) => (t === '**/' ? '(?:.*/)?' : t === '**' ? '.*' : t === '*' ? '[^/]*' : t === '?' ? '[^/]' : t.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
        .join('')}$`,
    );
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const neg = l.startsWith('!');
      return { neg, re: toRe(path.posix.normalize((neg ? l.slice(1) : l).replace(/^\/+/, '')).replace(/\/+$/, '')) };
    });
  return (rel) => {
    const parts = rel.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let ignored = false;
    for (const r of rules) if (prefixes.some((p) => r.re.test(p))) ignored = !r.neg;
    return ignored;
  };
}

/** Our mount(2) addon as node-gyp builds it (see src/system/native-mount.ts). */
const ADDON = 'src/native/build/Release/hpp_mount.node';

describe('Dockerfile', () => {
  const text = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const instructions = parseDockerfile(text);
  const stages = stagesOf(instructions);
  const build = stages[0]!;
  const runtime = stages[stages.length - 1]!;
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Obj;
  const ignored = dockerignore(readFileSync(path.join(ROOT, '.dockerignore'), 'utf8'));

  // Node 26 is the Active LTS line (26.13.0 "Lithium", 2026-10-28; Node 20 reached end of life in April
  // 2026). Both stages use one exact version, so the addons are built for the Node that runs them.
  it('is multi-stage on the current Node LTS (26), the same exact version in both stages, on Debian 12', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const names = new Set(stages.map((s) => s.name).filter(Boolean));
    for (const s of stages) {
      if (names.has(s.image)) continue; // FROM an earlier stage
      expect(s.image, 'no :latest, no untagged base image').toMatch(/^[^@]+:(?!latest$)[\w][\w.-]*(@sha256:[0-9a-f]{64})?$|^[^:@]+@sha256:[0-9a-f]{64}$/);
    }
    const version = (image: string) => /^node:(\d+\.\d+\.\d+)-/.exec(image)?.[1];
    expect(build.image).toMatch(/^node:26\.\d+\.\d+-bookworm(@sha256:[0-9a-f]{64})?$/);
    expect(runtime.image).toMatch(/^node:26\.\d+\.\d+-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
    expect(version(runtime.image)).toBe(version(build.image));
    // The code keeps running on the Node the e2e image and CI use (this machine's): no higher floor.
    expect(pkg.engines.node).toBe('>=20');
    expect(build.name, 'the build stage is named').toBeTruthy();
  });

  it('keeps to the usual rules: COPY not ADD, absolute WORKDIR, no MAINTAINER, apt-get not apt', () => {
    expect(instructions.filter((i) => i.keyword === 'ADD').map((i) => i.line)).toEqual([]);
    expect(instructions.filter((i) => i.keyword === 'MAINTAINER').map((i) => i.line)).toEqual([]);
    for (const w of instructions.filter((i) => i.keyword === 'WORKDIR')) expect(w.args, `line ${w.line}`).toMatch(/^\//);
    for (const r of instructions.filter((i) => i.keyword === 'RUN')) {
      expect(commandsOf(r.args).filter((c) => /^(sudo\s+)?apt\s/.test(c)), `line ${r.line}`).toEqual([]);
      expect(commandsOf(r.args).filter((c) => /^apt-get\s+(dist-)?upgrade\b/.test(c)), `line ${r.line}`).toEqual([]);
    }
  });

  it('installs apt packages with -y --no-install-recommends, updating and cleaning the lists in the same RUN', () => {
    const installs = stages.flatMap(aptInstalls);
    expect(installs.length).toBeGreaterThan(0);
    for (const { ins } of installs) {
      const cmds = commandsOf(ins.args);
      const at = cmds.findIndex((c) => /^apt-get\b.*\binstall\b/.test(c));
      const install = cmds[at]!;
      expect(install, `line ${ins.line}`).toMatch(/\s--no-install-recommends\b/);
      expect(install, `line ${ins.line}`).toMatch(/\s(-y|--yes|-[a-z]*y[a-z]*|--assume-yes)\b/);
      expect(cmds.slice(0, at).some((c) => /^apt-get\b.*\bupdate\b/.test(c)), `line ${ins.line}: apt-get update first`).toBe(true);
      expect(cmds.slice(at + 1).some((c) => /^rm\s+-[a-z]*r[a-z]*f?[a-z]*\s+.*\/var\/lib\/apt\/lists\/\*/.test(c) || /^rm\s+-rf\s+\/var\/lib\/apt\/lists/.test(c)), `line ${ins.line}: rm -rf /var/lib/apt/lists/* afterwards`).toBe(true);
    }
  });

  it('build stage: native toolchain, npm ci with the node image headers, build, then prune dev dependencies', () => {
    const packages = aptInstalls(build).flatMap((a) => a.packages);
    expect(packages).toEqual(expect.arrayContaining(['python3', 'make', 'g++']));
    const env = build.instructions.filter((i) => i.keyword === 'ENV').map((i) => i.args);
    expect(env.some((e) => /\bnpm_config_nodedir[= ]\/usr\/local\b/.test(e)), "npm_config_nodedir=/usr/local: the node image's headers").toBe(true);
    expect(env.some((e) => /\bHPP_NATIVE[= ]required\b/.test(e)), 'HPP_NATIVE=required: the image is never built without its addons').toBe(true);
    expect(existsSync(path.join(ROOT, '.npmrc')), 'no project .npmrc (nodedir=/usr broke npm ci wherever Node is not under /usr)').toBe(false);
    const runs = build.instructions.filter((i) => i.keyword === 'RUN').flatMap((i) => commandsOf(i.args));
    const ci = runs.findIndex((c) => /^npm ci\b/.test(c));
    const compile = runs.findIndex((c) => /^npm run build\b/.test(c));
    const prune = runs.findIndex((c) => /^npm prune\b.*--omit=dev\b/.test(c));
    expect(ci).toBeGreaterThanOrEqual(0);
    expect(runs[ci]).not.toMatch(/--omit=dev|--production/); // dev deps are needed to compile
    expect(compile).toBeGreaterThan(ci);
    expect(prune).toBeGreaterThan(compile);
  });

  it('build stage copies what the build needs, from files that exist and are not .dockerignored', () => {
    const sources = copies(build).filter((c) => !c.from).flatMap((c) => c.sources);
    for (const s of sources) {
      expect(existsSync(path.join(ROOT, s)), `${s} exists`).toBe(true);
      expect(ignored(s.replace(/^\.\//, '')), `${s} is excluded by .dockerignore`).toBe(false);
    }
    const names = sources.map((s) => s.replace(/^\.\//, '').replace(/\/$/, ''));
    expect(names).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'src/native', 'tsconfig.json', 'proto']));
    // Every top-level directory tsconfig.json compiles must be in the build context.
    const tsconfig = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), ts.sys.readFile).config as Obj;
    for (const inc of tsconfig.include as string[]) expect(names, `tsconfig include ${inc}`).toContain(inc.split('/')[0]);
  });

  it('runtime stage: the OS tools the driver runs, and only production artifacts from the build stage', () => {
    const packages = aptInstalls(runtime).flatMap((a) => a.packages);
    // Exactly the tools the code runs: ./image-tools.test.ts.
    expect(packages).toEqual(expect.arrayContaining(['util-linux', 'mount', 'xfsprogs', 'btrfs-progs']));
    expect(packages).not.toContain('e2fsprogs');
    const runs = runtime.instructions.filter((i) => i.keyword === 'RUN').flatMap((i) => commandsOf(i.args));
    expect(runs.filter((c) => /^(npm|yarn|pnpm)\s+(ci|install|i|add)\b/.test(c))).toEqual([]);

    const cps = copies(runtime);
    expect(cps.filter((c) => !c.from).map((c) => c.ins.line), 'nothing copied from the build context').toEqual([]);
    const copied = cps.flatMap((c) => c.sources.map((s) => path.posix.relative(workdirOf(build), path.posix.resolve(workdirOf(build), s))));
    expect(copied.sort()).toEqual(['dist', 'node_modules', 'package.json', 'proto', ADDON]);
    for (const c of cps) {
      expect(c.from, `line ${c.ins.line}`).toBe(build.name);
      if (c.sources[0]!.endsWith(ADDON)) {
        // The addon keeps its place relative to package.json, where native-mount.ts looks for it.
        expect(path.posix.resolve(workdirOf(runtime), c.dest), `line ${c.ins.line}`).toBe(path.posix.join(workdirOf(runtime), ADDON));
        continue;
      }
      // Each lands under the runtime WORKDIR with its own name (package.json beside proto/, see packageRoot()).
      const src = path.posix.basename(c.sources[0]!);
      const dest = path.posix.resolve(workdirOf(runtime), c.dest);
      expect([dest, path.posix.join(dest, src)], `line ${c.ins.line}`).toContain(path.posix.join(workdirOf(runtime), src));
    }
  });

  it('ENTRYPOINT is exec form, runs the package bin, and matches the DaemonSet command', () => {
    const entrypoints = runtime.instructions.filter((i) => i.keyword === 'ENTRYPOINT');
    expect(entrypoints).toHaveLength(1);
    const argv = JSON.parse(entrypoints[0]!.args) as unknown;
    expect(Array.isArray(argv) && argv.every((a) => typeof a === 'string')).toBe(true);
    expect(argv).toEqual(['node', pkg.bin['hpp-csi-driver']]);
    // tsconfig rootDir "." + outDir "dist": dist/cmd/x.js comes from cmd/x.ts.
    const script = (argv as string[])[1]!;
    expect(existsSync(path.join(ROOT, script.replace(/^dist\//, '').replace(/\.js$/, '.ts'))), `${script} has a source`).toBe(true);
    expect(container('hpp-csi-driver').command).toEqual(argv);
    for (const cmd of runtime.instructions.filter((i) => i.keyword === 'CMD')) expect(cmd.args.startsWith('['), `CMD line ${cmd.line}`).toBe(true);
  });

  it('.dockerignore keeps dependencies, outputs, VCS, tests and bench results out of the context', () => {
    for (const p of ['node_modules', 'node_modules/x/index.js', 'dist/cmd/hpp-csi-driver.js', 'dist-bench/bench/run.js', '.git', '.git/HEAD', 'test', 'test/unit/a.test.ts', 'bench/results/run.json', ADDON]) {
      expect(ignored(p), p).toBe(true);
    }
    for (const p of ['src/app.ts', 'src/native/hpp_mount.c', 'src/native/binding.gyp', 'cmd/hpp-csi-driver.ts', 'proto/csi.proto', 'package.json']) expect(ignored(p), p).toBe(false);
  });
});
