/**
 * The CSI sidecars deploy/ runs, each pinned to an upstream release, and what that release accepts on
 * its command line and asks of the API server. The one place the manifest tests take these facts from.
 *
 * Every entry was read from the sidecar's source at its tag: the flags and feature gates from
 * cmd/<name>/main.go (plus csi-lib-utils' standardflags and component-base's logging flags, at the
 * versions its go.mod names), the API access from its deploy/kubernetes/rbac*.yaml and from the client
 * calls and informers in its pkg/, for the flags and driver capabilities given. Bumping a sidecar means
 * reading those again and updating its entry: the tests refuse an image tag that has none.
 */
import { flag } from './manifests.js';

/** One rule a sidecar needs: verbs on a resource, cluster-wide or in the pod's own namespace. */
export interface Need {
  group: string;
  resource: string;
  verbs: string[];
  scope: 'cluster' | 'namespace';
  why: string;
}

/** What the API access of a sidecar depends on besides its flags. */
export interface SidecarContext {
  args: string[];
  /** Controller capabilities of the CSI endpoint the sidecar talks to (its --csi-address). */
  controllerCapabilities: ReadonlySet<string>;
  /** Plugin capabilities (service types) of that endpoint. */
  pluginCapabilities: ReadonlySet<string>;
  /** Kind of the workload that runs the pod (owner of the pod). */
  workloadKind: 'DaemonSet' | 'Deployment';
}

/** 'bool' flags may stand alone (`--name`); 'value' flags need `--name=value`. */
type FlagKind = 'bool' | 'value';

export interface Sidecar {
  /** Last segment of the image repository. */
  image: string;
  upstream: string;
  /** The release the image tag must be: an existing upstream tag. */
  version: string;
  flags: Readonly<Record<string, FlagKind>>;
  /** Flags that version still takes but calls deprecated. */
  deprecated: readonly string[];
  /** The feature gates of --feature-gates that version knows, with their defaults. */
  featureGates: Readonly<Record<string, boolean>>;
  needs(ctx: SidecarContext): Need[];
}

// component-base v0.36/v0.37 logs/api/v1 addFlags (the JSON-only ones are left out: a flag missing here
// fails the test, which errs on the safe side).
const LOGGING: Record<string, FlagKind> = {
  'logging-format': 'value',
  'log-flush-frequency': 'value',
  v: 'value',
  vmodule: 'value',
  'log-text-split-stream': 'bool',
  'log-text-info-buffer-size': 'value',
};

// csi-lib-utils v0.24/v0.25 standardflags: AddAutomaxprocs, and RegisterCommonFlags.
const AUTOMAXPROCS: Record<string, FlagKind> = { automaxprocs: 'bool' };
const COMMON: Record<string, FlagKind> = {
  version: 'bool',
  kubeconfig: 'value',
  'csi-address': 'value',
  'leader-election': 'bool',
  'leader-election-namespace': 'value',
  'leader-election-lease-duration': 'value',
  'leader-election-renew-deadline': 'value',
  'leader-election-retry-period': 'value',
  'leader-election-labels': 'value',
  'kube-api-qps': 'value',
  'kube-api-burst': 'value',
  'http-endpoint': 'value',
  'metrics-address': 'value',
  'metrics-path': 'value',
};

const ALL = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];
const READ = ['get', 'list', 'watch'];
// Upstream's rule for the events every sidecar records (client-go's recorder creates and patches).
const EVENTS: Need = { group: '', resource: 'events', verbs: ['list', 'watch', 'create', 'update', 'patch'], scope: 'cluster', why: 'events on the objects it works on' };

function boolFlag(args: string[], name: string, dflt: boolean): boolean {
  const v = flag(args, name);
  return v === undefined ? dflt : v === 'true';
}

/** The feature gates in effect: the version's defaults, overridden by --feature-gates. */
export function effectiveGates(sidecar: Sidecar, args: string[]): Record<string, boolean> {
  const gates = { ...sidecar.featureGates };
  for (const [k, v] of Object.entries(featureGateArgs(args))) gates[k] = v === 'true';
  return gates;
}

/** --feature-gates=A=true,B=false as given (values unparsed), from every occurrence. */
export function featureGateArgs(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    if (!a.startsWith('--feature-gates=')) continue;
    for (const kv of a.slice('--feature-gates='.length).split(',')) {
      const [k, v] = kv.split('=');
      out[k!.trim()] = (v ?? '').trim();
    }
  }
  return out;
}

/** Leases of leader election (csi-lib-utils leaderelection), in --leader-election-namespace or the pod's. */
function leaderElection(args: string[]): Need[] {
  if (!boolFlag(args, 'leader-election', false)) return [];
  return [{ group: 'coordination.k8s.io', resource: 'leases', verbs: ['get', 'watch', 'list', 'delete', 'update', 'create'], scope: 'namespace', why: '--leader-election' }];
}

export const SIDECARS: Record<string, Sidecar> = {
  // external-provisioner v6.4.0: cmd/csi-provisioner/csi-provisioner.go, deploy/kubernetes/rbac.yaml,
  // pkg/controller, pkg/capacity, pkg/owner, and sig-storage-lib-external-provisioner v13.1.0.
  'csi-provisioner': {
    image: 'csi-provisioner',
    upstream: 'kubernetes-csi/external-provisioner',
    version: 'v6.4.0',
    flags: {
      ...LOGGING,
      ...AUTOMAXPROCS,
      ...COMMON,
      master: 'value',
      'volume-name-prefix': 'value',
      'volume-name-uuid-length': 'value',
      'retry-interval-start': 'value',
      'retry-interval-max': 'value',
      'worker-threads': 'value',
      'cloning-protection-threads': 'value',
      'snapshot-orphan-sweep-interval': 'value',
      'capacity-threads': 'value',
      timeout: 'value',
      'strict-topology': 'bool',
      'immediate-topology': 'bool',
      'extra-create-metadata': 'bool',
      'enable-pprof': 'bool',
      'default-fstype': 'value',
      'kube-api-capacity-qps': 'value',
      'kube-api-capacity-burst': 'value',
      'enable-capacity': 'bool',
      'capacity-for-immediate-binding': 'bool',
      'capacity-poll-interval': 'value',
      'capacity-ownerref-level': 'value',
      'node-deployment': 'bool',
      'node-deployment-immediate-binding': 'bool',
      'node-deployment-base-delay': 'value',
      'node-deployment-max-delay': 'value',
      'controller-publish-readonly': 'bool',
      'prevent-volume-mode-conversion': 'bool',
      'feature-gates': 'value',
    },
    deprecated: ['metrics-address'],
    featureGates: { Topology: true, CrossNamespaceVolumeDataSource: false, VolumeAttributesClass: true, ReleaseLeaderElectionOnExit: false },
    needs({ args, controllerCapabilities: caps, pluginCapabilities, workloadKind }) {
      const gates = effectiveGates(this, args);
      const nodeDeployment = boolFlag(args, 'node-deployment', false);
      const needs: Need[] = [
        // The library creates and deletes PVs, and patches their finalizer (AddFinalizer(true)).
        { group: '', resource: 'persistentvolumes', verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'], scope: 'cluster', why: 'provisioning and deletion' },
        // Update: the selected-node annotation (taken with --node-deployment, dropped to reschedule)
        // and the finalizer on a clone's source claim.
        { group: '', resource: 'persistentvolumeclaims', verbs: ['get', 'list', 'watch', 'update'], scope: 'cluster', why: 'claims, selected node, clone source finalizer' },
        { group: 'storage.k8s.io', resource: 'storageclasses', verbs: READ, scope: 'cluster', why: 'parameters of each claim\'s class' },
        EVENTS,
      ];
      if (caps.has('CREATE_DELETE_SNAPSHOT')) {
        // Restores read the snapshot and its bound content. Since v6.2 the provisioner also puts a
        // source-protection finalizer on the VolumeSnapshot (update), and since v6.3 a sweep watches all
        // VolumeSnapshots for orphaned finalizers (list, watch; off with --snapshot-orphan-sweep-interval=0).
        // Without watch it starts the sweep's informer anyway and is refused every few seconds.
        const sweep = flag(args, 'snapshot-orphan-sweep-interval') ?? '5m';
        const verbs = /^0+(\.0*)?[a-z]*$/.test(sweep) ? ['get', 'update'] : ['get', 'list', 'watch', 'update'];
        needs.push({ group: 'snapshot.storage.k8s.io', resource: 'volumesnapshots', verbs, scope: 'cluster', why: 'restores, snapshot source protection' });
        needs.push({ group: 'snapshot.storage.k8s.io', resource: 'volumesnapshotcontents', verbs: ['get', 'list'], scope: 'cluster', why: 'the snapshot handle of a restore' });
      }
      // With --node-deployment and topology, v6.4.0 makes this node's Node and CSINode up from
      // NodeGetInfo and reads neither from the API server.
      if (!(nodeDeployment && pluginCapabilities.has('VOLUME_ACCESSIBILITY_CONSTRAINTS') && gates.Topology)) {
        needs.push({ group: 'storage.k8s.io', resource: 'csinodes', verbs: READ, scope: 'cluster', why: 'topology' });
        needs.push({ group: '', resource: 'nodes', verbs: READ, scope: 'cluster', why: 'topology' });
      }
      if (caps.has('PUBLISH_UNPUBLISH_VOLUME')) {
        needs.push({ group: 'storage.k8s.io', resource: 'volumeattachments', verbs: READ, scope: 'cluster', why: 'PUBLISH_UNPUBLISH_VOLUME' });
      }
      // A claim with a VolumeAttributesClass is refused before the class is read unless the driver
      // has MODIFY_VOLUME.
      if (gates.VolumeAttributesClass && caps.has('MODIFY_VOLUME')) {
        needs.push({ group: 'storage.k8s.io', resource: 'volumeattributesclasses', verbs: ['get'], scope: 'cluster', why: 'VolumeAttributesClass' });
      }
      if (gates.CrossNamespaceVolumeDataSource) {
        needs.push({ group: 'gateway.networking.k8s.io', resource: 'referencegrants', verbs: READ, scope: 'cluster', why: 'CrossNamespaceVolumeDataSource' });
      }
      if (boolFlag(args, 'enable-capacity', false)) {
        needs.push({ group: 'storage.k8s.io', resource: 'csistoragecapacities', verbs: ALL, scope: 'namespace', why: '--enable-capacity' });
        // pkg/owner gets each object of the chain but the last: level 0 and 1 read the pod only
        // (level 1 takes the controller from the pod's ownerReferences), level 2 also the ReplicaSet
        // of a Deployment's pod. A DaemonSet has no owner, so level 2 does not exist for it.
        const level = Number(flag(args, 'capacity-ownerref-level') ?? '1');
        if (level >= 0) needs.push({ group: '', resource: 'pods', verbs: ['get'], scope: 'namespace', why: '--capacity-ownerref-level (the pod)' });
        if (level === 2 && workloadKind === 'Deployment') needs.push({ group: 'apps', resource: 'replicasets', verbs: ['get'], scope: 'namespace', why: '--capacity-ownerref-level=2' });
        else if (level >= 2) throw new Error(`--capacity-ownerref-level=${level} for a ${workloadKind} pod: no such owner`);
      }
      return [...needs, ...leaderElection(args)];
    },
  },

  // external-snapshotter v8.7.0, the sidecar: cmd/csi-snapshotter/main.go,
  // deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml, pkg/sidecar-controller.
  'csi-snapshotter': {
    image: 'csi-snapshotter',
    upstream: 'kubernetes-csi/external-snapshotter',
    version: 'v8.7.0',
    flags: {
      ...LOGGING,
      ...AUTOMAXPROCS,
      ...COMMON,
      'resync-period': 'value',
      'snapshot-name-prefix': 'value',
      'snapshot-name-uuid-length': 'value',
      'worker-threads': 'value',
      timeout: 'value',
      'extra-create-metadata': 'bool',
      'retry-interval-start': 'value',
      'retry-interval-max': 'value',
      'node-deployment': 'bool',
      'groupsnapshot-name-prefix': 'value',
      'groupsnapshot-name-uuid-length': 'value',
      'feature-gates': 'value',
    },
    deprecated: ['metrics-address'],
    // GA and on by default since v8.7.0: the sidecar then lists the group snapshot CRDs at start and,
    // if it may, watches their contents.
    featureGates: { CSIVolumeGroupSnapshot: true, ReleaseLeaderElectionOnExit: false },
    needs({ args }) {
      const needs: Need[] = [
        EVENTS,
        { group: 'snapshot.storage.k8s.io', resource: 'volumesnapshotclasses', verbs: READ, scope: 'cluster', why: 'snapshot parameters' },
        { group: 'snapshot.storage.k8s.io', resource: 'volumesnapshotcontents', verbs: ['get', 'list', 'watch', 'update', 'patch'], scope: 'cluster', why: 'takes and deletes snapshots for contents' },
        { group: 'snapshot.storage.k8s.io', resource: 'volumesnapshotcontents/status', verbs: ['update', 'patch'], scope: 'cluster', why: 'snapshot handle, readiness' },
      ];
      if (effectiveGates(this, args).CSIVolumeGroupSnapshot) {
        needs.push(
          { group: 'groupsnapshot.storage.k8s.io', resource: 'volumegroupsnapshotclasses', verbs: READ, scope: 'cluster', why: 'CSIVolumeGroupSnapshot' },
          { group: 'groupsnapshot.storage.k8s.io', resource: 'volumegroupsnapshotcontents', verbs: ['get', 'list', 'watch', 'update', 'patch'], scope: 'cluster', why: 'CSIVolumeGroupSnapshot' },
          { group: 'groupsnapshot.storage.k8s.io', resource: 'volumegroupsnapshotcontents/status', verbs: ['update', 'patch'], scope: 'cluster', why: 'CSIVolumeGroupSnapshot' },
        );
      }
      return [...needs, ...leaderElection(args)];
    },
  },

  // external-resizer v2.3.0: cmd/csi-resizer/main.go, deploy/kubernetes/rbac.yaml, pkg/controller,
  // pkg/modifier.
  'csi-resizer': {
    image: 'csi-resizer',
    upstream: 'kubernetes-csi/external-resizer',
    version: 'v2.3.0',
    flags: {
      ...LOGGING,
      ...AUTOMAXPROCS,
      ...COMMON,
      master: 'value',
      'resync-period': 'value',
      workers: 'value',
      'extra-modify-metadata': 'bool',
      timeout: 'value',
      'resize-timeout': 'value',
      'modify-timeout': 'value',
      'retry-interval-start': 'value',
      'retry-interval-max': 'value',
      'handle-volume-inuse-error': 'bool',
      'feature-gates': 'value',
    },
    deprecated: ['metrics-address'],
    featureGates: { AnnotateFsResize: true, VolumeAttributesClass: true, ReleaseLeaderElectionOnExit: false },
    needs({ args, controllerCapabilities: caps }) {
      const needs: Need[] = [
        { group: '', resource: 'persistentvolumes', verbs: ['get', 'list', 'watch', 'patch'], scope: 'cluster', why: 'the new size on the PV' },
        { group: '', resource: 'persistentvolumeclaims', verbs: READ, scope: 'cluster', why: 'resize requests' },
        { group: '', resource: 'persistentvolumeclaims/status', verbs: ['patch'], scope: 'cluster', why: 'resize status and conditions' },
        EVENTS,
      ];
      if (boolFlag(args, 'handle-volume-inuse-error', true)) {
        needs.push({ group: '', resource: 'pods', verbs: READ, scope: 'cluster', why: '--handle-volume-inuse-error' });
      }
      // The modify controller runs only for a driver with MODIFY_VOLUME.
      if (effectiveGates(this, args).VolumeAttributesClass && caps.has('MODIFY_VOLUME')) {
        needs.push({ group: 'storage.k8s.io', resource: 'volumeattributesclasses', verbs: READ, scope: 'cluster', why: 'VolumeAttributesClass' });
      }
      return [...needs, ...leaderElection(args)];
    },
  },

  // node-driver-registrar v2.17.0: cmd/csi-node-driver-registrar/main.go. Talks to kubelet only.
  'csi-node-driver-registrar': {
    image: 'csi-node-driver-registrar',
    upstream: 'kubernetes-csi/node-driver-registrar',
    version: 'v2.17.0',
    flags: {
      ...LOGGING,
      ...AUTOMAXPROCS,
      'connection-timeout': 'value',
      timeout: 'value',
      'csi-address': 'value',
      'plugin-registration-path': 'value',
      'kubelet-registration-path': 'value',
      'health-port': 'value',
      'http-endpoint': 'value',
      version: 'bool',
      mode: 'value',
      'enable-pprof': 'bool',
    },
    deprecated: ['connection-timeout', 'health-port', 'mode'],
    featureGates: {},
    needs: () => [],
  },
};

/** Repository, last segment of it, and tag of an image reference (`repo/name:tag`; digests have no tag). */
export function imageRef(image: string): { repository: string; name: string; tag: string | undefined } {
  const at = image.indexOf('@');
  const noDigest = at >= 0 ? image.slice(0, at) : image;
  const colon = noDigest.lastIndexOf(':');
  const hasTag = colon > noDigest.lastIndexOf('/');
  const repository = hasTag ? noDigest.slice(0, colon) : noDigest;
  return { repository, name: repository.slice(repository.lastIndexOf('/') + 1), tag: hasTag ? noDigest.slice(colon + 1) : undefined };
}

/** Why each argument is not one this sidecar version takes as given (empty when all are fine). */
export function flagProblems(sidecar: Sidecar, args: string[]): string[] {
  const problems: string[] = [];
  for (const a of args) {
    const m = /^--?([a-z0-9][a-z0-9-]*)(=(.*))?$/.exec(a);
    if (!m) {
      problems.push(`${JSON.stringify(a)} is not a --flag[=value]`);
      continue;
    }
    const [, name, eq, value] = m;
    const kind = sidecar.flags[name!];
    if (kind === undefined) problems.push(`--${name}: ${sidecar.image} ${sidecar.version} has no such flag (it would exit at start)`);
    else if (kind === 'value' && eq === undefined) problems.push(`--${name} takes a value: write --${name}=VALUE`);
    else if (kind === 'bool' && eq !== undefined && !['true', 'false'].includes(value!)) problems.push(`--${name}=${value}: a boolean flag`);
    else if (sidecar.deprecated.includes(name!)) problems.push(`--${name} is deprecated in ${sidecar.image} ${sidecar.version}`);
  }
  for (const [gate, value] of Object.entries(featureGateArgs(args))) {
    if (!(gate in sidecar.featureGates)) problems.push(`feature gate ${gate}: unknown to ${sidecar.image} ${sidecar.version} (it would exit at start)`);
    else if (!['true', 'false'].includes(value)) problems.push(`feature gate ${gate}=${value}: want true or false`);
  }
  return problems;
}
