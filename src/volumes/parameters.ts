import { invalidArgument } from '../csi/errors.js';

/** StorageClass parameters the driver understands. */
export const PARAM_STORAGE_POOL = 'storagePool';
/** Passed by csi-provisioner with --extra-create-metadata. */
export const PARAM_PVC_NAME = 'csi.storage.k8s.io/pvc/name';
export const PARAM_PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
export const PARAM_PV_NAME = 'csi.storage.k8s.io/pv/name';

const KNOWN = new Set([PARAM_STORAGE_POOL]);
const CO_PREFIX = 'csi.storage.k8s.io/';

export interface VolumeParameters {
  storagePool?: string;
  pvcName?: string;
  pvcNamespace?: string;
  /** The parameters worth keeping with the volume (no CO bookkeeping). */
  stored: Record<string, string>;
}

/**
 * Unknown keys are refused rather than ignored: a misspelt `storagepool` would otherwise land the
 * volume in the wrong pool without a word.
 */
export function parseParameters(params: Record<string, string> | null | undefined): VolumeParameters {
  const out: VolumeParameters = { stored: {} };
  for (const [k, v] of Object.entries(params ?? {})) {
    if (k.startsWith(CO_PREFIX)) continue;
    if (!KNOWN.has(k)) {
      throw invalidArgument(`unknown parameter ${JSON.stringify(k)}; this driver understands: ${[...KNOWN].join(', ')}`);
    }
    out.stored[k] = v;
  }
  const p = params ?? {};
  if (p[PARAM_STORAGE_POOL] !== undefined) out.storagePool = p[PARAM_STORAGE_POOL];
  if (p[PARAM_PVC_NAME]) out.pvcName = p[PARAM_PVC_NAME];
  if (p[PARAM_PVC_NAMESPACE]) out.pvcNamespace = p[PARAM_PVC_NAMESPACE];
  return out;
}

/** HPP's legacy directory name `<namespace>-<pvc>-<pv>`, or the volume name. */
export function volumeDirName(name: string, params: VolumeParameters, useNamingPrefix: boolean): string {
  if (!useNamingPrefix || !params.pvcName || !params.pvcNamespace) return name;
  const dir = `${params.pvcNamespace}-${params.pvcName}-${name}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(dir)) {
    throw invalidArgument(`directory name ${JSON.stringify(dir)} from PVC metadata is not allowed`);
  }
  return dir;
}
