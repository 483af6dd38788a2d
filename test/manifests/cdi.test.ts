/**
 * Offline checks of the optional CDI component, deploy/components/cdi/: the spec of CDI's StorageProfile
 * of each StorageClass deploy/ ships (claim properties, clone strategy, DataImportCron source format).
 *
 * - The Component parses as kubectl reads it, lists every file of its directory, holds StorageProfiles
 *   only, and is not part of deploy/ itself (it needs CDI's CRD).
 * - Each profile against a structural check written from CDI v1.66.0's StorageProfile CRD
 *   (./cdi-crds.ts), with negative controls; cluster-scoped, so no namespace; no label CDI writes itself.
 * - The profiles match deploy/storageclasses.yaml: one per StorageClass of this driver, each naming one,
 *   and a Block set exactly where the class's parameters (read by the driver's own parser) allow Block
 *   volumes: not for createDiskImage (hostpath-csi-vm).
 * - What CDI makes of them, modelled on its DataVolume rendering (pkg/controller/datavolume/util.go):
 *   the claim a DataVolume gets when its `storage:` leaves access modes or volume mode out.
 * - The default clone strategy is copy, the same on every profile (deploy/README.md says why).
 * - With kubectl: every overlay deploy/README.md shows with the component builds with `kubectl
 *   kustomize` (the plain one, the csi-clone variant, one with `namespace:`), and the profiles come out
 *   without a namespace and with the strategy the README says; an overlay with `namespace:` and without
 *   the README's transformer stamps one (negative control).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYamlText, stringify } from 'yaml';
import { parseParameters } from '../../src/volumes/parameters.js';
import { DEPLOY, DRIVER_NAME, ROOT, all, loadYaml, type Obj } from './manifests.js';
import { CDI_VERSION, storageProfileErrors } from './cdi-crds.js';

const DIR = path.join(DEPLOY, 'components', 'cdi');
const REL = path.relative(DEPLOY, DIR);

const component = loadYaml(path.join(DIR, 'kustomization.yaml'));
const kust: Obj = component.docs[0] ?? {};
const files: string[] = Array.isArray(kust.resources) ? kust.resources : [];
const loaded = files.map((f) => ({ file: f, ...loadYaml(path.join(DIR, f)) }));
const objects = loaded.flatMap((l) => l.docs.map((obj, i) => ({ obj, label: `${REL}/${l.file}#${i} ${obj.kind}/${obj.metadata?.name}` })));
const profiles = objects.map((o) => o.obj);

/** This driver's StorageClasses in deploy/ (storageclasses.yaml). */
const classes = all('StorageClass').filter((sc) => sc.provisioner === DRIVER_NAME);

function profile(name: string): Obj {
  const found = profiles.filter((p) => p.metadata?.name === name);
  if (found.length !== 1) throw new Error(`expected one StorageProfile ${name} in ${REL}, found ${found.length}`);
  return found[0]!;
}

const modes = (p: Obj): string[] => ((p.spec?.claimPropertySets ?? []) as Obj[]).map((s) => s.volumeMode);

/** Labels CDI's StorageProfile controller sets on every profile (util.SetRecommendedLabels: static and installer labels). */
const CDI_LABELS = ['app.kubernetes.io/managed-by', 'app.kubernetes.io/component', 'app.kubernetes.io/part-of', 'app.kubernetes.io/version'];

/**
 * The access modes and volume mode CDI gives a DataVolume's claim from the profile's claim property
 * sets (CDI copies spec.claimPropertySets to status when set), when the DataVolume's `storage:` leaves
 * them out; CDI v1.66.0, renderPvcSpecVolumeModeAndAccessModesAndStorageClass and its helpers:
 * - neither given: the first set (no set, or one without access modes: refused);
 * - only the volume mode: the access modes of the first set of that mode (none: refused);
 * - only access modes: the volume mode of the first set sharing one of them (none: Kubernetes' default).
 */
function cdiRenders(sets: Obj[], dv: { accessModes?: string[]; volumeMode?: string }): { accessModes: string[]; volumeMode?: string } | { refused: string } {
  if (!dv.volumeMode && !dv.accessModes?.length) {
    const first = sets[0];
    if (!first || !(first.accessModes as string[] | undefined)?.length) return { refused: 'no accessMode specified in StorageProfile' };
    return { accessModes: first.accessModes, volumeMode: first.volumeMode };
  }
  if (!dv.accessModes?.length) {
    const set = sets.find((s) => s.volumeMode === dv.volumeMode && (s.accessModes as string[] | undefined)?.length);
    if (!set) return { refused: 'no matching accessMode specified in StorageProfile' };
    return { accessModes: set.accessModes, volumeMode: dv.volumeMode };
  }
  if (!dv.volumeMode) {
    const set = sets.find((s) => (s.accessModes as string[]).some((m) => dv.accessModes!.includes(m)));
    return { accessModes: dv.accessModes, volumeMode: set?.volumeMode };
  }
  return { accessModes: dv.accessModes, volumeMode: dv.volumeMode };
}

describe('deploy/components/cdi: the component', () => {
  it('is a kustomize Component listing every file of its directory, parsed as kubectl reads them', () => {
    expect(component.problems).toEqual([]);
    expect(kust.apiVersion).toBe('kustomize.config.k8s.io/v1alpha1');
    expect(kust.kind).toBe('Component');
    // No `namespace:`, `patches:` or transformers: the objects are cluster-scoped and carry what they need.
    expect(Object.keys(kust).filter((k) => !['apiVersion', 'kind', 'resources'].includes(k))).toEqual([]);
    const inDir = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml').sort();
    expect([...files].sort()).toEqual(inDir);
    expect(loaded.flatMap((l) => l.problems)).toEqual([]);
    for (const l of loaded) expect(l.docs.length, `${l.file} holds no object`).toBeGreaterThan(0);
    expect(new Set(profiles.map((p) => p.kind))).toEqual(new Set(['StorageProfile']));
  });

  it('is optional: deploy/ itself neither lists it nor needs the CDI CRDs', () => {
    const top = loadYaml(path.join(DEPLOY, 'kustomization.yaml')).docs[0]!;
    expect(top.components).toBeUndefined();
    expect((top.resources as string[]).some((r) => r.startsWith('components'))).toBe(false);
  });

  it('no object names a namespace (StorageProfile is cluster-scoped)', () => {
    for (const { obj, label } of objects) expect(obj.metadata?.namespace, label).toBeUndefined();
  });

  it('no object sets a label CDI writes on every StorageProfile itself (kubectl apply would fight the controller)', () => {
    for (const { obj, label } of objects) expect(Object.keys(obj.metadata?.labels ?? {}).filter((k) => CDI_LABELS.includes(k)), label).toEqual([]);
  });
});

describe(`deploy/components/cdi: against the StorageProfile CRD of ${CDI_VERSION}`, () => {
  for (const { obj, label } of objects) {
    it(`${label} is valid`, () => {
      expect(storageProfileErrors(obj)).toEqual([]);
    });
  }

  it('the check catches mistakes (negative controls)', () => {
    const good = profile('hostpath-csi');
    const broken = (f: (p: Obj) => void): string[] => {
      const p = structuredClone(good);
      f(p);
      return storageProfileErrors(p);
    };
    expect(broken((p) => (p.spec.claimPropertySets[1].volumeMode = 'block'))).toEqual([expect.stringMatching(/volumeMode "block"/)]);
    expect(broken((p) => delete p.spec.claimPropertySets[0].volumeMode)).toEqual([expect.stringMatching(/volumeMode is required/)]);
    expect(broken((p) => delete p.spec.claimPropertySets[0].accessModes)).toEqual([expect.stringMatching(/accessModes is required/)]);
    expect(broken((p) => (p.spec.claimPropertySets[0].accessModes = ['RWO']))).toEqual([expect.stringMatching(/Illegal AccessMode "RWO"/)]);
    expect(broken((p) => (p.spec.claimPropertySets = Array(9).fill(p.spec.claimPropertySets[0])))).toEqual([expect.stringMatching(/at most 8/)]);
    expect(broken((p) => (p.spec.cloneStrategy = 'host-assisted'))).toEqual([expect.stringMatching(/cloneStrategy "host-assisted"/)]);
    expect(broken((p) => (p.spec.dataImportCronSourceFormat = 'PVC'))).toEqual([expect.stringMatching(/dataImportCronSourceFormat "PVC"/)]);
    expect(broken((p) => (p.spec.clonestrategy = 'copy'))).toEqual(['unknown field spec.clonestrategy']);
    expect(broken((p) => (p.spec.claimPropertySets[0].accessMode = ['ReadWriteOnce']))).toEqual(['unknown field spec.claimPropertySets[0].accessMode']);
    expect(broken((p) => (p.metadata.namespace = 'hostpath-provisioner'))).toEqual(['unknown field metadata.namespace']);
    expect(broken((p) => (p.status = { cloneStrategy: 'copy' }))).toEqual([expect.stringMatching(/status is written by CDI/)]);
    expect(broken((p) => delete p.spec)).toEqual([expect.stringMatching(/spec is required/)]);
    expect(broken((p) => (p.apiVersion = 'cdi.kubevirt.io/v1alpha1'))).toEqual([expect.stringMatching(/apiVersion/)]);
  });
});

describe('deploy/components/cdi: the profiles and the StorageClasses of deploy/', () => {
  it('deploy/ has StorageClasses of this driver (the ones the profiles are for)', () => {
    expect(classes.map((c) => c.metadata.name).sort()).toEqual(['hostpath-csi', 'hostpath-csi-legacy', 'hostpath-csi-vm']);
  });

  it('one profile per StorageClass of this driver, each named after an existing one', () => {
    const names = profiles.map((p) => p.metadata.name);
    expect(new Set(names).size, 'a profile is defined twice').toBe(names.length);
    expect([...names].sort()).toEqual(classes.map((c) => c.metadata.name).sort());
  });

  it('ReadWriteOnce only, each set naming one access mode (a volume lives on one node)', () => {
    for (const p of profiles) for (const s of p.spec.claimPropertySets as Obj[]) expect(s.accessModes, p.metadata.name).toEqual(['ReadWriteOnce']);
  });

  it('a Block set exactly where the class allows Block volumes (not with createDiskImage), always after Filesystem', () => {
    for (const sc of classes) {
      const blockAllowed = !parseParameters(sc.parameters ?? {}).createDiskImage;
      expect(modes(profile(sc.metadata.name)), sc.metadata.name).toEqual(blockAllowed ? ['Filesystem', 'Block'] : ['Filesystem']);
    }
    expect(modes(profile('hostpath-csi-vm'))).not.toContain('Block');
  });

  it('cloneStrategy copy on every profile (a clone then completes whichever node its consumer lands on)', () => {
    for (const p of profiles) expect(p.spec.cloneStrategy, p.metadata.name).toBe('copy');
  });

  it('dataImportCronSourceFormat pvc on every profile (golden images stay claims, cloned as cloneStrategy says)', () => {
    for (const p of profiles) expect(p.spec.dataImportCronSourceFormat, p.metadata.name).toBe('pvc');
  });

  it('no snapshotClass: nothing here uses snapshot clones', () => {
    for (const p of profiles) expect(p.spec.snapshotClass, p.metadata.name).toBeUndefined();
  });
});

describe("deploy/components/cdi: the claims CDI renders for a DataVolume's storage: from these profiles", () => {
  const sets = (name: string) => profile(name).spec.claimPropertySets as Obj[];
  // What CDI's built-in table gives kubevirt.io.hostpath-provisioner without the component.
  const builtIn = [{ accessModes: ['ReadWriteOnce'], volumeMode: 'Filesystem' }];

  it('without the component a DataVolume asking for Block is refused (the reason for the component)', () => {
    expect(cdiRenders(builtIn, { volumeMode: 'Block' })).toEqual({ refused: expect.stringMatching(/no matching accessMode/) });
  });

  it('a DataVolume that names nothing gets ReadWriteOnce Filesystem, as before, on every class', () => {
    for (const p of profiles) expect(cdiRenders(sets(p.metadata.name), {}), p.metadata.name).toEqual({ accessModes: ['ReadWriteOnce'], volumeMode: 'Filesystem' });
  });

  it('volumeMode Block alone gets a ReadWriteOnce Block claim of hostpath-csi and hostpath-csi-legacy, and is refused by CDI for hostpath-csi-vm', () => {
    for (const name of ['hostpath-csi', 'hostpath-csi-legacy']) expect(cdiRenders(sets(name), { volumeMode: 'Block' }), name).toEqual({ accessModes: ['ReadWriteOnce'], volumeMode: 'Block' });
    expect(cdiRenders(sets('hostpath-csi-vm'), { volumeMode: 'Block' })).toEqual({ refused: expect.stringMatching(/no matching accessMode/) });
  });

  it('accessModes ReadWriteOnce alone gets Filesystem (the first set)', () => {
    for (const p of profiles) expect(cdiRenders(sets(p.metadata.name), { accessModes: ['ReadWriteOnce'] }), p.metadata.name).toEqual({ accessModes: ['ReadWriteOnce'], volumeMode: 'Filesystem' });
  });
});

// ---------------------------------------------------------------------------------------------------
// The overlays of deploy/README.md, built with kubectl kustomize where installed
// ---------------------------------------------------------------------------------------------------

/** deploy/README.md's yaml blocks that use the component: overlays written as if they sat next to deploy/. */
function readmeOverlays(): Obj[] {
  const readme = readFileSync(path.join(DEPLOY, 'README.md'), 'utf8');
  return [...readme.matchAll(/^```yaml\n([^]*?)^```$/gm)]
    .map((m) => m[1]!)
    .filter((b) => b.includes('components/cdi'))
    .map((b) => parseYamlText(b, { version: '1.1' }) as Obj);
}

const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' }).status === 0;
const kubectl = has('kubectl', ['version', '--client']);
const scratch = mkdtempSync(path.join(os.tmpdir(), 'hpp-cdi-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Build an overlay (paths as seen from a directory beside deploy/) with kubectl kustomize. */
function build(name: string, overlay: Obj): { code: number | null; out: string; built: Obj[] } {
  const dir = path.join(scratch, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const relocate = (p: string) => path.relative(dir, path.resolve(ROOT, 'overlay', p));
  const o = structuredClone(overlay);
  for (const key of ['resources', 'components']) if (Array.isArray(o[key])) o[key] = (o[key] as string[]).map(relocate);
  writeFileSync(path.join(dir, 'kustomization.yaml'), stringify(o));
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', cwd: ROOT });
  const out = `${r.stdout}${r.stderr}`;
  return { code: r.status, out, built: r.status === 0 ? parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj) : [] };
}

const builtProfiles = (built: Obj[]) => built.filter((o) => o.kind === 'StorageProfile');

describe('deploy/README.md shows the overlays', () => {
  const overlays = readmeOverlays();

  it('three: the plain one, the csi-clone variant (a patch) and one with namespace: and its transformers', () => {
    expect(overlays).toHaveLength(3);
    for (const o of overlays) {
      expect(o.kind).toBe('Kustomization');
      expect(o.resources).toEqual(['../deploy']);
      expect(o.components).toEqual(['../deploy/components/cdi']);
    }
    expect(overlays.filter((o) => o.patches === undefined && o.namespace === undefined)).toHaveLength(1);
    expect(overlays.filter((o) => o.patches !== undefined)).toHaveLength(1);
    expect(overlays.filter((o) => o.namespace !== undefined && o.transformers !== undefined)).toHaveLength(1);
  });
});

describe.skipIf(!kubectl)('deploy/components/cdi: kubectl kustomize of the README overlays', () => {
  const overlays = readmeOverlays();
  const plain = overlays.find((o) => o.patches === undefined && o.namespace === undefined)!;
  const variant = overlays.find((o) => o.patches !== undefined)!;
  const namespaced = overlays.find((o) => o.namespace !== undefined)!;

  it('the plain overlay builds: deploy/ and the three profiles as written, without a namespace', () => {
    const r = build('plain', plain);
    expect(r.code, r.out).toBe(0);
    expect(builtProfiles(r.built).map((p) => p.metadata.name).sort()).toEqual(profiles.map((p) => p.metadata.name).sort());
    for (const p of builtProfiles(r.built)) expect(p, p.metadata.name).toEqual(profile(p.metadata.name));
    expect(r.built.some((x) => x.kind === 'DaemonSet' && x.metadata.name === 'hpp-csi-node')).toBe(true);
  });

  it('the csi-clone variant builds with cloneStrategy csi-clone on every profile, the rest unchanged', () => {
    const r = build('csi-clone', variant);
    expect(r.code, r.out).toBe(0);
    expect(builtProfiles(r.built)).toHaveLength(profiles.length);
    for (const p of builtProfiles(r.built)) {
      expect(p.spec.cloneStrategy, p.metadata.name).toBe('csi-clone');
      expect(storageProfileErrors(p), p.metadata.name).toEqual([]);
      expect({ ...p, spec: { ...p.spec, cloneStrategy: 'copy' } }).toEqual(profile(p.metadata.name));
    }
  });

  it('the overlay with namespace: and the transformers leaves no namespace on the profiles nor on the VolumeSnapshotClass', () => {
    const r = build('namespaced', namespaced);
    expect(r.code, r.out).toBe(0);
    expect(builtProfiles(r.built)).toHaveLength(profiles.length);
    for (const p of builtProfiles(r.built)) expect(p.metadata.namespace, p.metadata.name).toBeUndefined();
    const vsc = r.built.filter((x) => x.kind === 'VolumeSnapshotClass');
    expect(vsc).toHaveLength(1);
    expect(vsc[0]!.metadata.namespace).toBeUndefined();
    expect(r.built.find((x) => x.kind === 'DaemonSet')?.metadata.namespace).toBe(namespaced.namespace);
  });

  it('without those transformers an overlay namespace: is stamped on the profiles (negative control)', () => {
    const r = build('namespaced-bare', { ...namespaced, transformers: undefined });
    expect(r.code, r.out).toBe(0);
    for (const p of builtProfiles(r.built)) expect(p.metadata.namespace, p.metadata.name).toBe(namespaced.namespace);
  });
});
