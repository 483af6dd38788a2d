/**
 * Offline checks of snapshots, clones and expansion on the Kubernetes side: deploy/snapshot-controller/
 * (the hpp-snapshot-controller Deployment with csi-snapshotter and csi-resizer, its RBAC, the
 * VolumeSnapshotClass), deploy/networkpolicy.yaml and what the node DaemonSet must offer them.
 *
 * Schemas and unknown fields of these objects are checked with everything else in deploy.test.ts; this
 * file cross-checks the pieces that must agree for a routed call to arrive:
 * - the router's arguments parse with its own flags (read from cmd/hpp-snapshot-controller.ts, not
 *   imported), and its --selector picks exactly the DaemonSet's pods;
 * - one peer port everywhere: router --peer-port, the DaemonSet's containerPort "peer", its --peer-address
 *   (accepted by the daemon's own parser), and the NetworkPolicy;
 * - one Secret, key and mount for the shared token on both sides, readable by each process;
 * - the sidecars talk to the router's socket through a shared volume and elect a leader;
 * - RBAC covers what each sidecar and the router need, and no more.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { CONTROLLER_CAPABILITIES, PLUGIN_VOLUME_EXPANSION } from '../../src/csi/capabilities.js';
import { PEER_CONTROLLER_METHODS } from '../../src/csi/peer-server.js';
import { DEFAULT_DRIVER_NAME, parseCli } from '../../src/config/options.js';
import { ROUTER_CONTROLLER_CAPABILITIES } from '../../src/router/service.js';
import {
  DRIVER_NAME,
  NAMESPACE,
  ROOT,
  all,
  allows,
  containerOf,
  expandArgs,
  fieldRef,
  flag,
  grants,
  loadYaml,
  matchesLabelSelector,
  mountAt,
  objects,
  one,
  parseSelector,
  saRules,
  schemaError,
  selects,
  volumeOf,
  type Obj,
} from './manifests.js';
import { SIDECARS, effectiveGates, imageRef, type Need } from './sidecars.js';

const ROUTER = 'hpp-snapshot-controller';
const SECRET = 'hpp-peer-token';

const deployment = one('Deployment', 'hpp-snapshot-controller');
const daemonSet = one('DaemonSet', 'hpp-csi-node');
const ctlSpec: Obj = deployment.spec.template.spec;
const dsSpec: Obj = daemonSet.spec.template.spec;
const router = containerOf(ctlSpec, ROUTER);
const snapshotter = containerOf(ctlSpec, 'csi-snapshotter');
const resizer = containerOf(ctlSpec, 'csi-resizer');
const driver = containerOf(dsSpec, 'hpp-csi-driver');
const dsLabels: Record<string, string> = daemonSet.spec.template.metadata.labels;
const ctlLabels: Record<string, string> = deployment.spec.template.metadata.labels;
const routerArgs = expandArgs(router, { POD_NAMESPACE: NAMESPACE });

// ---------------------------------------------------------------------------------------------------
// The router's own flags, read from its source (cmd/ is not imported: it runs main() on import)
// ---------------------------------------------------------------------------------------------------

type OptionSpec = { type: 'string' | 'boolean'; multiple?: boolean };

function routerCli(): { options: Record<string, OptionSpec>; usage: string } {
  const file = path.join(ROOT, 'cmd/hpp-snapshot-controller.ts');
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  let options: Record<string, OptionSpec> | undefined;
  let usage: string | undefined;
  const nameOf = (n: ts.PropertyName) => (ts.isIdentifier(n) || ts.isStringLiteral(n) ? n.text : undefined);
  const visit = (node: ts.Node): void => {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.name.text === 'USAGE' && node.initializer) {
      usage = node.initializer.getText(sf);
    }
    if (ts.isCallExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'parseArgs') {
      const arg = node.arguments[0];
      const prop = arg && ts.isObjectLiteralExpression(arg) ? arg.properties.find((p) => p.name && nameOf(p.name) === 'options') : undefined;
      if (prop && ts.isPropertyAssignment(prop) && ts.isObjectLiteralExpression(prop.initializer)) {
        options = {};
        for (const p of prop.initializer.properties) {
          if (!ts.isPropertyAssignment(p) || !ts.isObjectLiteralExpression(p.initializer)) throw new Error(`cannot read option ${p.getText(sf)}`);
          const spec: Obj = {};
          for (const q of p.initializer.properties) {
            if (!ts.isPropertyAssignment(q)) continue;
            const v = q.initializer;
            spec[nameOf(q.name)!] = ts.isStringLiteral(v) ? v.text : v.kind === ts.SyntaxKind.TrueKeyword ? true : v.kind === ts.SyntaxKind.FalseKeyword ? false : v.getText(sf);
          }
          options[nameOf(p.name)!] = spec as OptionSpec;
        }
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  if (!options || !usage) throw new Error('cmd/hpp-snapshot-controller.ts: parseArgs options or USAGE not found');
  return { options, usage };
}

describe('the router container', () => {
  const cli = routerCli();

  it('runs the compiled hpp-snapshot-controller from the driver image', () => {
    expect(router.image).toBe(driver.image);
    expect(router.command).toEqual(['node', 'dist/cmd/hpp-snapshot-controller.js']);
    // tsconfig compiles cmd/**, and the image carries dist/ (deploy.test.ts checks the Dockerfile).
    const tsconfig = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), ts.sys.readFile).config as Obj;
    expect(tsconfig.include).toContain('cmd/**/*.ts');
    expect(() => readFileSync(path.join(ROOT, 'cmd/hpp-snapshot-controller.ts'))).not.toThrow();
  });

  it('its flags are the ones its parser knows, and each is documented in its --help', () => {
    expect(Object.keys(cli.options).length).toBeGreaterThan(5);
    for (const name of Object.keys(cli.options)) expect(cli.usage, `--${name} in USAGE`).toContain(`--${name}`);
    // Strict, as the router parses: an unknown or misspelled flag throws here as it would exit there.
    const { values } = parseArgs({ args: routerArgs, options: cli.options, strict: true, allowPositionals: false });
    expect(values).toMatchObject({
      endpoint: 'unix:///csi/csi.sock',
      'discover-kubernetes': true,
      namespace: NAMESPACE,
      'peer-port': '9700',
      'token-file': '/etc/hpp-peer/token',
    });
    expect(() => parseArgs({ args: [...routerArgs, '--peer-prot=9700'], options: cli.options, strict: true })).toThrow(/peer-prot/);
  });

  it('finds peers through the API server in its own namespace, with an explicit selector and port', () => {
    expect(flag(routerArgs, 'discover-kubernetes')).toBe('true');
    expect(fieldRef(router, 'POD_NAMESPACE')).toBe('metadata.namespace');
    expect(flag(router.args, 'namespace')).toBe('$(POD_NAMESPACE)');
    // The router's built-in default selector does not name these pods: it must be given.
    expect(flag(routerArgs, 'selector'), '--selector').toBeDefined();
    const port = Number(flag(routerArgs, 'peer-port'));
    expect(Number.isInteger(port) && port > 0 && port < 65536).toBe(true);
    expect(flag(routerArgs, 'peer'), 'no static peers beside discovery').toBeUndefined();
    expect(flag(routerArgs, 'peers-file')).toBeUndefined();
  });

  it('serves the driver name of the CSIDriver (the sidecars take it from GetPluginInfo)', () => {
    expect(flag(routerArgs, 'driver-name') ?? DEFAULT_DRIVER_NAME).toBe(one('CSIDriver', DRIVER_NAME).metadata.name);
  });

  it('offers the sidecars what they require, and the daemons serve each routed call', () => {
    const caps = ROUTER_CONTROLLER_CAPABILITIES as readonly string[];
    // csi-snapshotter requires CREATE_DELETE_SNAPSHOT; csi-resizer requires EXPAND_VOLUME.
    for (const cap of ['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'EXPAND_VOLUME']) {
      expect(caps, cap).toContain(cap);
      expect(CONTROLLER_CAPABILITIES.has(cap), `daemon ${cap}`).toBe(true);
    }
    for (const m of ['CreateSnapshot', 'DeleteSnapshot', 'ListSnapshots', 'ControllerExpandVolume']) expect(PEER_CONTROLLER_METHODS as readonly string[], m).toContain(m);
    // Online expansion is why csi-resizer may skip watching pods (--handle-volume-inuse-error=false).
    expect(PLUGIN_VOLUME_EXPANSION).toBe('ONLINE');
  });
});

// ---------------------------------------------------------------------------------------------------
// Deployment
// ---------------------------------------------------------------------------------------------------

describe('Deployment hpp-snapshot-controller', () => {
  it('runs one replica of its own pods as its ServiceAccount', () => {
    expect(deployment.spec.replicas).toBe(1);
    expect(matchesLabelSelector(deployment.spec.selector, ctlLabels)).toBe(true);
    expect(matchesLabelSelector(daemonSet.spec.selector, ctlLabels), 'the DaemonSet does not adopt these pods').toBe(false);
    expect(matchesLabelSelector(deployment.spec.selector, dsLabels), 'nor the other way round').toBe(false);
    expect(one('ServiceAccount', ctlSpec.serviceAccountName).metadata.namespace).toBe(NAMESPACE);
    expect(ctlSpec.serviceAccountName).not.toBe(dsSpec.serviceAccountName);
  });

  it('holds the router, csi-snapshotter and csi-resizer, pinned, each with requests, mounting only defined volumes', () => {
    const containers = ctlSpec.containers as Obj[];
    expect(containers.map((c) => c.name)).toEqual([ROUTER, 'csi-snapshotter', 'csi-resizer']);
    expect(snapshotter.image).toBe('registry.k8s.io/sig-storage/csi-snapshotter:v8.7.0');
    expect(resizer.image).toBe('registry.k8s.io/sig-storage/csi-resizer:v2.3.0');
    const volumes = (ctlSpec.volumes as Obj[]).map((v) => v.name);
    const used = new Set<string>();
    for (const c of containers) {
      expect(c.resources?.requests?.cpu, c.name).toBeDefined();
      expect(c.resources?.requests?.memory, c.name).toBeDefined();
      expect(() => expandArgs(c, {}), `${c.name}: $(VAR)s defined`).not.toThrow();
      for (const m of (c.volumeMounts ?? []) as Obj[]) {
        expect(volumes, `${c.name} mounts ${m.name}`).toContain(m.name);
        used.add(m.name);
      }
    }
    expect(volumes.filter((v) => !used.has(v))).toEqual([]);
  });

  it('the sidecars and the router share the socket dir, and --csi-address is the router\'s --endpoint', () => {
    const endpoint = flag(routerArgs, 'endpoint')!;
    expect(endpoint).toMatch(/^unix:\/\/\//);
    const socket = endpoint.slice('unix://'.length);
    const dir = path.posix.dirname(socket);
    const volume = mountAt(router, dir)?.name;
    expect(volume, `router mounts ${dir}`).toBeDefined();
    expect(volumeOf(ctlSpec, volume!).emptyDir, 'a pod-local emptyDir, not a host path').toBeDefined();
    for (const c of [snapshotter, resizer]) {
      expect(flag(c.args, 'csi-address'), c.name).toBe(socket);
      expect(mountAt(c, dir)?.name, c.name).toBe(volume);
    }
  });

  it('the sidecars elect a leader in the pod\'s namespace', () => {
    for (const c of [snapshotter, resizer]) {
      expect(flag(c.args, 'leader-election'), c.name).toBe('true');
      expect(flag(c.args, 'leader-election-namespace'), c.name).toBe('$(POD_NAMESPACE)');
      expect(fieldRef(c, 'POD_NAMESPACE'), c.name).toBe('metadata.namespace');
    }
  });

  it('csi-resizer: no in-use handling (online expansion), and time for slow calls', () => {
    expect(flag(resizer.args, 'handle-volume-inuse-error')).toBe('false');
    expect(flag(resizer.args, 'timeout')).toBe('120s');
  });

  it('csi-snapshotter: a central controller, without volume group snapshots', () => {
    // --node-deployment is the sidecar's own answer to node-local volumes; here the router does it.
    expect(flag(snapshotter.args, 'node-deployment') ?? 'false').toBe('false');
    expect(flag(snapshotter.args, 'feature-gates') ?? '').not.toMatch(/CSIVolumeGroupSnapshot=true/);
    // On by default since v8.7: it must be turned off, not merely left alone.
    expect(effectiveGates(SIDECARS['csi-snapshotter']!, snapshotter.args).CSIVolumeGroupSnapshot).toBe(false);
    expect(flag(snapshotter.args, 'timeout')).toBe('120s');
  });

  it('runs unprivileged, as one non-root user (so the sidecars may connect to the router\'s socket)', () => {
    const pod = ctlSpec.securityContext ?? {};
    expect(pod.runAsNonRoot).toBe(true);
    expect(pod.runAsUser).toBeGreaterThan(0);
    expect(pod.seccompProfile?.type).toBe('RuntimeDefault');
    for (const c of ctlSpec.containers as Obj[]) {
      const sc = c.securityContext ?? {};
      expect(sc.privileged ?? false, c.name).toBe(false);
      expect(sc.allowPrivilegeEscalation, c.name).toBe(false);
      expect(sc.capabilities?.drop, c.name).toContain('ALL');
      expect(sc.capabilities?.add ?? [], c.name).toEqual([]);
      expect(sc.runAsUser ?? pod.runAsUser, `${c.name} runs as the pod's user`).toBe(pod.runAsUser);
    }
    expect(ctlSpec.hostNetwork ?? false).toBe(false);
    expect((ctlSpec.volumes as Obj[]).filter((v) => v.hostPath)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------
// Router <-> DaemonSet
// ---------------------------------------------------------------------------------------------------

describe('the router reaches the daemons', () => {
  const selector = flag(routerArgs, 'selector')!;

  it('its --selector selects the DaemonSet\'s pods, and not its own pods or the pool device pods', () => {
    expect(selects(selector, dsLabels)).toBe(true);
    expect(selects(selector, ctlLabels)).toBe(false);
    const poolPod = loadYaml(path.join(ROOT, 'deploy/pool-template/pod.yaml')).docs[0]!;
    expect(selects(selector, poolPod.metadata.labels)).toBe(false);
    // Every label it asks for is one the DaemonSet's own selector keeps on its pods.
    const dsSelector = daemonSet.spec.selector.matchLabels as Record<string, string>;
    for (const r of parseSelector(selector)) expect(Object.keys(dsSelector), `label ${r.key}`).toContain(r.key);
  });

  it('the selector check itself tells matching from non-matching labels (negative controls)', () => {
    expect(selects('a=b,c==d', { a: 'b', c: 'd', e: 'f' })).toBe(true);
    expect(selects('a=b,c=d', { a: 'b' })).toBe(false);
    expect(selects('a!=b', { a: 'c' })).toBe(true);
    expect(selects('a in (x, y),!z', { a: 'y' })).toBe(true);
    expect(selects('a notin (x),z', { a: 'x', z: '' })).toBe(false);
  });

  it('one peer port: --peer-port, the DaemonSet\'s containerPort "peer" and its --peer-address, which the daemon accepts', () => {
    const port = Number(flag(routerArgs, 'peer-port'));
    const peer = ((driver.ports ?? []) as Obj[]).find((p) => p.name === 'peer');
    expect(peer?.containerPort).toBe(port);
    expect(peer?.protocol ?? 'TCP').toBe('TCP');
    expect(fieldRef(driver, 'POD_IP')).toBe('status.podIP');
    expect(flag(driver.args, 'peer-address')).toBe(`$(POD_IP):${port}`);

    const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-peer-test-'));
    try {
      const token = path.join(dir, 'token');
      writeFileSync(token, `${'f'.repeat(64)}\n`);
      const pools = path.join(dir, 'pools.json');
      writeFileSync(pools, one('ConfigMap', 'hpp-pools').data['pools.json']);
      const args = expandArgs(driver, { NODE_NAME: 'worker-1', POD_IP: '10.244.1.5' }).map((a) =>
        a.startsWith('--peer-token-file=') ? `--peer-token-file=${token}` : a,
      );
      // The pools come from the container's environment (HPP_POOLS_FILE), here the ConfigMap's copy.
      const env = { HPP_POOLS_FILE: pools };
      const opts = parseCli(args, env);
      // Where the router will call: podIP:--peer-port (KubernetesPeers), where the daemon listens.
      expect(opts.peer?.address).toBe(`10.244.1.5:${port}`);
      expect(opts.peer?.token).toBe('f'.repeat(64));
      // The IPv6 form the DaemonSet's comment gives for single-stack IPv6 clusters.
      const v6 = args.map((a) => (a.startsWith('--peer-address=') ? `--peer-address=[fd00:10:244::5]:${port}` : a));
      expect(parseCli(v6, env).peer?.address).toBe(`[fd00:10:244::5]:${port}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('both sides read the token from the same Secret and key, mounted read-only where their flags point', () => {
    const sides: [Obj, Obj, string][] = [
      [dsSpec, driver, flag(driver.args, 'peer-token-file')!],
      [ctlSpec, router, flag(routerArgs, 'token-file')!],
    ];
    for (const [spec, c, file] of sides) {
      expect(file, c.name).toBeDefined();
      const m = mountAt(c, path.posix.dirname(file));
      expect(m, `${c.name} mounts ${path.posix.dirname(file)}`).toBeDefined();
      expect(m!.readOnly, c.name).toBe(true);
      const secret = volumeOf(spec, m!.name).secret;
      expect(secret?.secretName, c.name).toBe(SECRET);
      expect(secret?.optional ?? false, `${c.name}: a missing Secret keeps the pod from starting`).toBe(false);
      expect(secret?.items, c.name).toEqual([{ key: 'token', path: path.posix.basename(file) }]);
    }
  });

  it('the token file is readable by each process: root in the DaemonSet, the fsGroup in the Deployment', () => {
    const dsMode = volumeOf(dsSpec, mountAt(driver, '/etc/hpp-peer')!.name).secret.defaultMode ?? 0o644;
    expect(driver.securityContext?.privileged).toBe(true);
    expect(dsMode & 0o400).toBe(0o400);
    const ctlMode = volumeOf(ctlSpec, mountAt(router, '/etc/hpp-peer')!.name).secret.defaultMode ?? 0o644;
    // With fsGroup, kubelet gives the Secret's files that group and adds it to every container's groups.
    const pod = ctlSpec.securityContext;
    const groupReadable = (ctlMode & 0o040) !== 0 && pod.fsGroup !== undefined;
    expect(groupReadable || (ctlMode & 0o004) !== 0).toBe(true);
    expect(ctlMode & 0o002, 'not world-writable').toBe(0);
    expect(dsMode & 0o077, 'not readable by others in the DaemonSet').toBe(0);
  });

  it('no token is committed: the Secret is created at install time', () => {
    expect(all('Secret').filter((s) => s.metadata.name === SECRET)).toEqual([]);
    const readme = readFileSync(path.join(ROOT, 'deploy/README.md'), 'utf8');
    expect(readme).toContain(`kubectl -n ${NAMESPACE} create secret generic ${SECRET} --from-literal=token=`);
  });
});

// ---------------------------------------------------------------------------------------------------
// NetworkPolicy
// ---------------------------------------------------------------------------------------------------

describe('NetworkPolicy', () => {
  const policies = all('NetworkPolicy');
  const port = Number(flag(routerArgs, 'peer-port'));

  /** Does this ingress port entry cover the peer port of the DaemonSet pods? */
  function coversPeerPort(p: Obj): boolean {
    if ((p.protocol ?? 'TCP') !== 'TCP') return false;
    if (p.port === undefined) return true;
    if (typeof p.port === 'string') return ((driver.ports ?? []) as Obj[]).some((x) => x.name === p.port && x.containerPort === port);
    return p.endPort !== undefined ? p.port <= port && port <= p.endPort : p.port === port;
  }

  it('one policy selects the DaemonSet pods and admits exactly the controller pods, on exactly the peer port', () => {
    const selecting = policies.filter((p) => matchesLabelSelector(p.spec.podSelector, dsLabels));
    expect(selecting).toHaveLength(1);
    const np = selecting[0]!;
    expect(np.metadata.namespace).toBe(NAMESPACE);
    expect(np.spec.podSelector.matchExpressions ?? []).toEqual([]);
    expect(matchesLabelSelector(np.spec.podSelector, ctlLabels), 'not the controller pods').toBe(false);
    expect(np.spec.policyTypes).toEqual(['Ingress']);
    expect(np.spec.ingress).toHaveLength(1);
    const rule = np.spec.ingress[0] as Obj;
    expect(rule.ports).toEqual([{ protocol: 'TCP', port }]);
    expect(rule.from).toHaveLength(1);
    const from = rule.from[0] as Obj;
    expect(Object.keys(from), 'a podSelector of this namespace only: no namespaceSelector, no ipBlock').toEqual(['podSelector']);
    expect(matchesLabelSelector(from.podSelector, ctlLabels), 'admits the controller pods').toBe(true);
    expect(matchesLabelSelector(from.podSelector, dsLabels), 'not the node plugin pods themselves').toBe(false);
    expect(Object.keys(from.podSelector.matchLabels ?? {}).length, 'not an empty selector (all pods)').toBeGreaterThan(0);
  });

  it('nothing else is admitted to the peer port of the DaemonSet pods', () => {
    for (const np of policies.filter((p) => matchesLabelSelector(p.spec.podSelector, dsLabels))) {
      for (const rule of (np.spec.ingress ?? []) as Obj[]) {
        const toPeerPort = rule.ports === undefined || (rule.ports as Obj[]).some(coversPeerPort);
        if (!toPeerPort) continue;
        for (const from of (rule.from ?? [{}]) as Obj[]) {
          expect(from.ipBlock, np.metadata.name).toBeUndefined();
          expect(from.namespaceSelector, np.metadata.name).toBeUndefined();
          expect(from.podSelector, `${np.metadata.name}: a rule without from admits everyone`).toBeDefined();
          expect(matchesLabelSelector(from.podSelector, ctlLabels), np.metadata.name).toBe(true);
        }
      }
    }
  });

  it('the port check itself recognises the peer port (negative controls)', () => {
    expect(coversPeerPort({ port })).toBe(true);
    expect(coversPeerPort({ port: 'peer' })).toBe(true);
    expect(coversPeerPort({ port: 9000, endPort: 9999 })).toBe(true);
    expect(coversPeerPort({ port: 8080 })).toBe(false);
    expect(coversPeerPort({ protocol: 'UDP', port })).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------------------------------

describe('RBAC of hpp-snapshot-controller', () => {
  const sa = { name: ctlSpec.serviceAccountName as string, namespace: NAMESPACE };
  // csi-snapshotter and csi-resizer with their flags, against the router's capabilities, from the one
  // table of the sidecars (./sidecars.ts: external-snapshotter v8.7.0, external-resizer v2.3.0).
  const sidecarNeeds = ([snapshotter, resizer] as Obj[]).flatMap((c) =>
    SIDECARS[imageRef(c.image).name]!.needs({
      args: expandArgs(c, { POD_NAMESPACE: NAMESPACE }),
      controllerCapabilities: new Set<string>(ROUTER_CONTROLLER_CAPABILITIES),
      pluginCapabilities: new Set(['CONTROLLER_SERVICE']),
      workloadKind: 'Deployment',
    }),
  );
  // In the controller's namespace: the router's pod list (the sidecars' leases come from the table).
  const ROUTER_NEEDS: Need[] = [{ group: '', resource: 'pods', verbs: ['list'], scope: 'namespace', why: 'the router finds the daemons' }];
  const namespaceNeeds = [...sidecarNeeds.filter((n) => n.scope === 'namespace'), ...ROUTER_NEEDS];
  const clusterNeeds = sidecarNeeds.filter((n) => n.scope === 'cluster');

  const key = (n: Need, v: string) => `${n.group || 'core'}/${n.resource} ${v}`;
  const expand = (needs: Need[]) => new Set(needs.flatMap((n) => n.verbs.map((v) => key(n, v))));
  const inUse = (flag(resizer.args, 'handle-volume-inuse-error') ?? 'true') !== 'false';

  it('covers what csi-snapshotter and csi-resizer need cluster-wide, and the namespace needs in its namespace', () => {
    const { cluster, namespaced } = saRules(sa);
    const missing: string[] = [];
    for (const n of clusterNeeds) for (const v of n.verbs) if (!allows(cluster, n.group, n.resource, v)) missing.push(`cluster ${key(n, v)}`);
    for (const n of namespaceNeeds) for (const v of n.verbs) if (!allows(namespaced, n.group, n.resource, v)) missing.push(`${NAMESPACE} ${key(n, v)}`);
    expect(missing).toEqual([]);
    // Both sidecars elect a leader: their Lease in this namespace.
    expect(namespaceNeeds.some((n) => n.resource === 'leases')).toBe(true);
  });

  it('grants nothing more: no pods or leases cluster-wide, no secrets, no group snapshots', () => {
    const { cluster, namespaced } = saRules(sa);
    const clusterGranted = grants(cluster);
    const clusterWanted = expand(clusterNeeds);
    expect([...clusterGranted].filter((g) => !clusterWanted.has(g)).sort()).toEqual([]);
    const nsWanted = new Set([...clusterWanted, ...expand(namespaceNeeds)]);
    expect([...grants(namespaced)].filter((g) => !nsWanted.has(g)).sort()).toEqual([]);
    expect(allows(cluster, '', 'pods', 'list'), 'pods are listed in the controller namespace only').toBe(inUse);
  });

  it('its bindings are its own: the node plugin ServiceAccount gets none of it', () => {
    const node = saRules({ name: dsSpec.serviceAccountName, namespace: NAMESPACE });
    expect(allows(node.cluster, 'snapshot.storage.k8s.io', 'volumesnapshotcontents', 'update')).toBe(false);
    expect(allows(node.namespaced, 'coordination.k8s.io', 'leases', 'create')).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------
// VolumeSnapshotClass
// ---------------------------------------------------------------------------------------------------

describe('VolumeSnapshotClass', () => {
  it('hostpath-csi-snapshots is valid for its CRD and names this driver, deleting with the snapshot', async () => {
    const vsc = one('VolumeSnapshotClass', 'hostpath-csi-snapshots');
    expect(await schemaError(vsc)).toBeUndefined();
    expect(vsc.apiVersion).toBe('snapshot.storage.k8s.io/v1');
    expect(vsc.driver).toBe(one('CSIDriver', DRIVER_NAME).metadata.name);
    expect(vsc.deletionPolicy).toBe('Delete');
    expect(vsc.metadata.namespace).toBeUndefined();
  });

  it('passes no parameters the driver would refuse (it takes none but csi.storage.k8s.io/*)', () => {
    for (const vsc of all('VolumeSnapshotClass')) {
      expect(Object.keys(vsc.parameters ?? {}).filter((k) => !k.startsWith('csi.storage.k8s.io/')), vsc.metadata.name).toEqual([]);
    }
  });

  it('is the one default class of this driver', () => {
    const ann = 'snapshot.storage.kubernetes.io/is-default-class';
    const ours = all('VolumeSnapshotClass').filter((v) => v.driver === DRIVER_NAME);
    for (const v of ours) expect(['true', 'false', undefined], v.metadata.name).toContain(v.metadata.annotations?.[ann]);
    expect(ours.filter((v) => v.metadata.annotations?.[ann] === 'true').map((v) => v.metadata.name)).toEqual(['hostpath-csi-snapshots']);
  });

  it('the CRDs and the common snapshot-controller are prerequisites, not shipped', () => {
    expect(objects.filter((o) => o.obj.kind === 'CustomResourceDefinition').map((o) => o.label)).toEqual([]);
    const images = [...all('Deployment'), ...all('DaemonSet')].flatMap((w) => (w.spec.template.spec.containers as Obj[]).map((c) => c.image as string));
    expect(images.filter((i) => /\/snapshot-controller:/.test(i))).toEqual([]);
  });
});
