/**
 * Structural check of CDI's StorageProfile (cdi.kubevirt.io/v1beta1), the custom resource
 * deploy/components/cdi sets, written from CDI v1.66.0: the CRD storageprofiles.cdi.kubevirt.io
 * (containerized-data-importer, tag v1.66.0, commit 938af7c54b24, pkg/operator/resources/crds_generated.go,
 * key "storageprofile"), generated from the Go types of the module
 * kubevirt.io/containerized-data-importer-api v1.66.0 (pkg/apis/core/v1beta1/types.go: StorageProfile,
 * StorageProfileSpec, ClaimPropertySet, and the constants CDICloneStrategy and DataImportCronSourceFormat).
 *
 * What the CRD says: scope Cluster; `spec` required, with claimPropertySets (at most 8; each with
 * accessModes, required, at most 4 of ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod, and
 * volumeMode, required, Block or Filesystem), cloneStrategy, dataImportCronSourceFormat and snapshotClass
 * (strings); `status` a subresource. Two things are stricter here than the CRD, from the types and
 * from CDI's controllers: cloneStrategy and dataImportCronSourceFormat must be one of the constants CDI
 * knows (the CRD takes any string, and CDI's clone planner fails on an unknown strategy), and a manifest
 * carries no status (the API server ignores it; CDI writes it). Any other field is reported: the API
 * server would prune it, silently. kubernetes-models has no schema for it (as for VolumeSnapshotClass
 * in ./manifests.ts).
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

export const CDI_VERSION = 'CDI v1.66.0 (containerized-data-importer-api v1.66.0)';
export const STORAGE_PROFILE_API_VERSION = 'cdi.kubevirt.io/v1beta1';
/** CDICloneStrategy: CloneStrategyHostAssisted, CloneStrategySnapshot, CloneStrategyCsiClone. */
export const CLONE_STRATEGIES = ['copy', 'snapshot', 'csi-clone'];
/** DataImportCronSourceFormat: DataImportCronSourceFormatSnapshot, DataImportCronSourceFormatPvc. */
export const SOURCE_FORMATS = ['snapshot', 'pvc'];
export const ACCESS_MODES = ['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', 'ReadWriteOncePod'];
export const VOLUME_MODES = ['Block', 'Filesystem'];

const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

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

/** metadata of a cluster-scoped object in a manifest: no namespace. */
function metadata(meta: unknown): string[] {
  if (!isObject(meta)) return ['metadata must be an object'];
  const errors = unknown(meta, ['name', 'labels', 'annotations'], 'metadata.');
  if (typeof meta.name !== 'string' || !DNS_SUBDOMAIN.test(meta.name)) errors.push(`metadata.name ${JSON.stringify(meta.name)} is not a DNS subdomain`);
  errors.push(...stringMap(meta.labels, 'metadata.labels'), ...stringMap(meta.annotations, 'metadata.annotations'));
  return errors;
}

function claimPropertySet(set: unknown, where: string): string[] {
  if (!isObject(set)) return [`${where} must be an object`];
  const errors = unknown(set, ['accessModes', 'volumeMode'], `${where}.`);
  if (!Array.isArray(set.accessModes)) errors.push(`${where}.accessModes is required (a list)`);
  else {
    if (set.accessModes.length > 4) errors.push(`${where}.accessModes has ${set.accessModes.length} items, at most 4`);
    // CDI's controller also refuses an empty list ("each ClaimPropertySet must provide both volume mode and access modes").
    if (set.accessModes.length === 0) errors.push(`${where}.accessModes is empty`);
    for (const m of set.accessModes) if (!ACCESS_MODES.includes(m)) errors.push(`${where}.accessModes: Illegal AccessMode ${JSON.stringify(m)}`);
  }
  if (set.volumeMode === undefined) errors.push(`${where}.volumeMode is required`);
  else if (!VOLUME_MODES.includes(set.volumeMode)) errors.push(`${where}.volumeMode ${JSON.stringify(set.volumeMode)}: want one of ${VOLUME_MODES.join(', ')}`);
  return errors;
}

function spec(s: unknown): string[] {
  if (!isObject(s)) return ['spec is required (an object)'];
  const errors = unknown(s, ['claimPropertySets', 'cloneStrategy', 'dataImportCronSourceFormat', 'snapshotClass'], 'spec.');
  if (s.claimPropertySets !== undefined) {
    if (!Array.isArray(s.claimPropertySets)) errors.push('spec.claimPropertySets must be a list');
    else {
      if (s.claimPropertySets.length > 8) errors.push(`spec.claimPropertySets has ${s.claimPropertySets.length} items, at most 8`);
      s.claimPropertySets.forEach((set: unknown, i: number) => errors.push(...claimPropertySet(set, `spec.claimPropertySets[${i}]`)));
    }
  }
  if (s.cloneStrategy !== undefined && !CLONE_STRATEGIES.includes(s.cloneStrategy)) {
    errors.push(`spec.cloneStrategy ${JSON.stringify(s.cloneStrategy)}: CDI knows ${CLONE_STRATEGIES.join(', ')}`);
  }
  if (s.dataImportCronSourceFormat !== undefined && !SOURCE_FORMATS.includes(s.dataImportCronSourceFormat)) {
    errors.push(`spec.dataImportCronSourceFormat ${JSON.stringify(s.dataImportCronSourceFormat)}: CDI knows ${SOURCE_FORMATS.join(', ')}`);
  }
  if (s.snapshotClass !== undefined && (typeof s.snapshotClass !== 'string' || !DNS_SUBDOMAIN.test(s.snapshotClass))) {
    errors.push(`spec.snapshotClass ${JSON.stringify(s.snapshotClass)} is not a VolumeSnapshotClass name`);
  }
  return errors;
}

export function storageProfileErrors(obj: Obj): string[] {
  const errors: string[] = [];
  if (obj.apiVersion !== STORAGE_PROFILE_API_VERSION) errors.push(`apiVersion ${obj.apiVersion}: want ${STORAGE_PROFILE_API_VERSION}`);
  if (obj.kind !== 'StorageProfile') errors.push(`kind ${obj.kind}: want StorageProfile`);
  for (const k of Object.keys(obj)) {
    if (k === 'status') errors.push('status is written by CDI (a subresource): a manifest does not set it');
    else if (!['apiVersion', 'kind', 'metadata', 'spec'].includes(k)) errors.push(`unknown field ${k}`);
  }
  errors.push(...metadata(obj.metadata), ...spec(obj.spec));
  return errors;
}
