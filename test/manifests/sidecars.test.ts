/**
 * The CSI sidecars of deploy/ against the upstream releases they are pinned to (./sidecars.ts): each
 * image is the pinned release, each flag is one that release takes, and the ServiceAccount of its pod
 * may do what that release does with those flags, against this driver's capabilities.
 */
import { describe, expect, it } from 'vitest';
import { CONTROLLER_CAPABILITIES, PLUGIN_SERVICES } from '../../src/csi/capabilities.js';
import { ROUTER_CONTROLLER_CAPABILITIES } from '../../src/router/service.js';
import { NAMESPACE, all, allows, expandArgs, one, readmeContainer, saRules, type Obj } from './manifests.js';
import { SIDECARS, effectiveGates, flagProblems, imageRef, type Need, type Sidecar, type SidecarContext } from './sidecars.js';

interface Found {
  label: string;
  workload: Obj;
  container: Obj;
  sidecar: Sidecar | undefined;
}

/** Every container of every workload in deploy/ that does not run the driver's own image. */
const DRIVER_IMAGE = 'hpp-csi-driver';
const found: Found[] = [...all('DaemonSet'), ...all('Deployment')].flatMap((w) =>
  ((w.spec.template.spec.containers ?? []) as Obj[])
    .filter((c) => imageRef(c.image).name !== DRIVER_IMAGE)
    .map((c) => ({ label: `${w.kind} ${w.metadata.name} container ${c.name}`, workload: w, container: c, sidecar: SIDECARS[imageRef(c.image).name] })),
);
// The driver registers itself with kubelet; README.md shows node-driver-registrar as the stand-in for
// that, and its snippet is held to the same checks as a deployed sidecar.
const standIn = readmeContainer('node-driver-registrar');
found.push({
  label: 'README.md node-driver-registrar (stand-in in DaemonSet hpp-csi-node)',
  workload: one('DaemonSet', 'hpp-csi-node'),
  container: standIn,
  sidecar: SIDECARS[imageRef(standIn.image).name],
});

/** The capabilities of the CSI endpoint a workload's sidecars talk to: the driver, or the router. */
function endpointOf(w: Obj): Pick<SidecarContext, 'controllerCapabilities' | 'pluginCapabilities'> {
  if (w.kind === 'DaemonSet') return { controllerCapabilities: CONTROLLER_CAPABILITIES, pluginCapabilities: new Set<string>(PLUGIN_SERVICES) };
  // The router (hpp-snapshot-controller) offers CONTROLLER_SERVICE and no topology.
  return { controllerCapabilities: new Set<string>(ROUTER_CONTROLLER_CAPABILITIES), pluginCapabilities: new Set(['CONTROLLER_SERVICE']) };
}

function contextOf(f: Found): SidecarContext {
  const ns = f.workload.metadata.namespace ?? NAMESPACE;
  return {
    args: expandArgs(f.container, { POD_NAMESPACE: ns, NAMESPACE: ns, NODE_NAME: 'node-1', POD_NAME: 'pod-1' }),
    workloadKind: f.workload.kind,
    ...endpointOf(f.workload),
  };
}

/** Needs this rule set does not cover, as "scope group/resource verb (why)". */
function missing(needs: Need[], rules: { cluster: Obj[]; namespaced: Obj[] }): string[] {
  const out: string[] = [];
  for (const n of needs) {
    const pool = n.scope === 'cluster' ? rules.cluster : rules.namespaced;
    for (const v of n.verbs) if (!allows(pool, n.group, n.resource, v)) out.push(`${n.scope} ${n.group || 'core'}/${n.resource} ${v} (${n.why})`);
  }
  return out;
}

function saOf(w: Obj): { name: string; namespace: string } {
  return { name: w.spec.template.spec.serviceAccountName ?? 'default', namespace: w.metadata.namespace ?? NAMESPACE };
}

describe('CSI sidecars: pinned releases', () => {
  it('every container besides the driver is a sidecar this test knows, and each of the four is deployed (node-driver-registrar as the README\'s stand-in; no livenessprobe: liveness is the driver\'s /healthz)', () => {
    expect(found.filter((f) => !f.sidecar).map((f) => `${f.label}: ${f.container.image}`)).toEqual([]);
    expect(new Set(found.map((f) => f.sidecar?.image))).toEqual(new Set(Object.keys(SIDECARS)));
  });

  // The generations that exist as releases (csi-provisioner v5 and older are not to be had).
  const LINES: Record<string, string> = {
    'csi-provisioner': 'v6',
    'csi-snapshotter': 'v8',
    'csi-resizer': 'v2',
    'csi-node-driver-registrar': 'v2',
  };

  it('the table pins one existing release line per sidecar', () => {
    expect(Object.keys(LINES).sort()).toEqual(Object.keys(SIDECARS).sort());
    for (const s of Object.values(SIDECARS)) {
      expect(s.version, s.image).toMatch(/^v\d+\.\d+\.\d+$/);
      expect(s.version.startsWith(`${LINES[s.image]}.`), `${s.image} ${s.version} is ${LINES[s.image]}.x`).toBe(true);
    }
  });

  for (const f of found) {
    it(`${f.label}: the image is the pinned release`, () => {
      const ref = imageRef(f.container.image);
      expect(f.sidecar, f.container.image).toBeDefined();
      expect(ref.tag, `${f.container.image}: tag`).toBe(f.sidecar!.version);
      expect(ref.tag!.startsWith(`${LINES[ref.name]}.`), `${ref.name} ${ref.tag}`).toBe(true);
      expect(f.container.image).not.toContain('@');
    });
  }

  it('all sidecar images come from one repository prefix', () => {
    const prefixes = new Set(found.map((f) => imageRef(f.container.image).repository.replace(/\/[^/]+$/, '')));
    expect(prefixes.size).toBe(1);
  });
});

describe('CSI sidecars: flags and feature gates', () => {
  for (const f of found) {
    it(`${f.label}: every flag is one ${f.sidecar?.image} ${f.sidecar?.version} takes, none deprecated, gates known`, () => {
      expect(f.sidecar).toBeDefined();
      expect(imageRef(f.container.image).tag, 'the flags are checked against the pinned release only').toBe(f.sidecar!.version);
      expect(flagProblems(f.sidecar!, contextOf(f).args)).toEqual([]);
    });
  }

  it('the flag check refuses what would stop a sidecar or is deprecated (negative controls)', () => {
    const p = SIDECARS['csi-provisioner']!;
    expect(flagProblems(p, ['--csi-address=/csi/csi.sock', '--node-deployment', '--v=2'])).toEqual([]);
    expect(flagProblems(p, ['--enable-leader-election'])).toEqual([expect.stringMatching(/no such flag/)]);
    expect(flagProblems(p, ['--timeout'])).toEqual([expect.stringMatching(/takes a value/)]);
    expect(flagProblems(p, ['--node-deployment=yes'])).toEqual([expect.stringMatching(/boolean/)]);
    expect(flagProblems(p, ['--metrics-address=:8080'])).toEqual([expect.stringMatching(/deprecated/)]);
    expect(flagProblems(p, ['--feature-gates=Topology=true,HonorPVReclaimPolicy=true'])).toEqual([expect.stringMatching(/HonorPVReclaimPolicy: unknown/)]);
    expect(flagProblems(SIDECARS['csi-node-driver-registrar']!, ['--health-port=9809'])).toEqual([expect.stringMatching(/deprecated/)]);
  });

  it('csi-snapshotter takes no volume group snapshots (GA and on by default in v8.7; the router has no GroupController)', () => {
    for (const f of found.filter((x) => x.sidecar?.image === 'csi-snapshotter')) {
      expect(effectiveGates(f.sidecar!, contextOf(f).args).CSIVolumeGroupSnapshot, f.label).toBe(false);
    }
  });

  it('csi-provisioner keeps topology on (GA in v6, default on)', () => {
    for (const f of found.filter((x) => x.sidecar?.image === 'csi-provisioner')) {
      expect(effectiveGates(f.sidecar!, contextOf(f).args).Topology, f.label).toBe(true);
    }
  });
});

describe('CSI sidecars: RBAC of their pods', () => {
  for (const f of found) {
    it(`${f.label}: its ServiceAccount may do what ${f.sidecar?.image} ${f.sidecar?.version} does with these flags`, () => {
      expect(f.sidecar).toBeDefined();
      expect(imageRef(f.container.image).tag, 'the needs are those of the pinned release only').toBe(f.sidecar!.version);
      const needs = f.sidecar!.needs(contextOf(f));
      expect(missing(needs, saRules(saOf(f.workload)))).toEqual([]);
    });
  }

  it('csi-provisioner watches and updates VolumeSnapshots, since this driver takes snapshots', () => {
    const f = found.find((x) => x.sidecar?.image === 'csi-provisioner')!;
    const snaps = f.sidecar!.needs(contextOf(f)).find((n) => n.resource === 'volumesnapshots');
    expect([...(snaps?.verbs ?? [])].sort()).toEqual(['get', 'list', 'update', 'watch']);
  });

  it('the RBAC check finds what the issue found: get and list only on volumesnapshots (negative control)', () => {
    const f = found.find((x) => x.sidecar?.image === 'csi-provisioner')!;
    const needs = f.sidecar!.needs(contextOf(f)).filter((n) => n.resource === 'volumesnapshots');
    const rules = [{ apiGroups: ['snapshot.storage.k8s.io'], resources: ['volumesnapshots'], verbs: ['get', 'list'] }];
    expect(missing(needs, { cluster: rules, namespaced: rules }).map((m) => m.replace(/ \(.*/, ''))).toEqual([
      'cluster snapshot.storage.k8s.io/volumesnapshots watch',
      'cluster snapshot.storage.k8s.io/volumesnapshots update',
    ]);
  });

  it('needs follow the flags: leader election, capacity owner levels, in-use handling, group snapshots', () => {
    const base: Omit<SidecarContext, 'args'> = { controllerCapabilities: new Set(['CREATE_DELETE_VOLUME']), pluginCapabilities: new Set(), workloadKind: 'Deployment' };
    const has = (s: string, args: string[], resource: string, ctx = base) => SIDECARS[s]!.needs({ ...ctx, args }).some((n) => n.resource === resource);
    expect(has('csi-provisioner', ['--leader-election'], 'leases')).toBe(true);
    expect(has('csi-provisioner', [], 'leases')).toBe(false);
    expect(has('csi-provisioner', ['--enable-capacity', '--capacity-ownerref-level=2'], 'replicasets')).toBe(true);
    expect(has('csi-provisioner', ['--enable-capacity'], 'replicasets')).toBe(false);
    expect(() => SIDECARS['csi-provisioner']!.needs({ ...base, workloadKind: 'DaemonSet', args: ['--enable-capacity', '--capacity-ownerref-level=2'] })).toThrow(/no such owner/);
    expect(has('csi-provisioner', [], 'nodes')).toBe(true);
    expect(has('csi-provisioner', ['--node-deployment'], 'nodes', { ...base, pluginCapabilities: new Set(['VOLUME_ACCESSIBILITY_CONSTRAINTS']) })).toBe(false);
    expect(has('csi-provisioner', [], 'volumesnapshots')).toBe(false);
    expect(has('csi-provisioner', [], 'volumeattachments', { ...base, controllerCapabilities: new Set(['PUBLISH_UNPUBLISH_VOLUME']) })).toBe(true);
    expect(has('csi-provisioner', [], 'volumeattributesclasses', { ...base, controllerCapabilities: new Set(['MODIFY_VOLUME']) })).toBe(true);
    expect(has('csi-resizer', [], 'pods')).toBe(true);
    expect(has('csi-resizer', ['--handle-volume-inuse-error=false'], 'pods')).toBe(false);
    expect(has('csi-snapshotter', [], 'volumegroupsnapshotcontents')).toBe(true);
    expect(has('csi-snapshotter', ['--feature-gates=CSIVolumeGroupSnapshot=false'], 'volumegroupsnapshotcontents')).toBe(false);
  });
});
