import { invalidInput } from '../errors.js';
import { didYouMean } from '../util/did-you-mean.js';
import { parseOverhead, type Overhead } from './disk-image.js';

/** StorageClass parameters the driver understands. */
export const PARAM_STORAGE_POOL = 'storagePool';
/** Passed by csi-provisioner with --extra-create-metadata. */
export const PARAM_PVC_NAME = 'csi.storage.k8s.io/pvc/name';
export const PARAM_PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
export const PARAM_PV_NAME = 'csi.storage.k8s.io/pv/name';

export const PARAM_PREALLOCATION = 'preallocation';
export const PARAM_FILESYSTEM_OVERHEAD = 'filesystemOverhead';
export const PARAM_CREATE_DISK_IMAGE = 'createDiskImage';

const KNOWN = new Set([PARAM_STORAGE_POOL, PARAM_PREALLOCATION, PARAM_FILESYSTEM_OVERHEAD, PARAM_CREATE_DISK_IMAGE]);
const CO_PREFIX = 'csi.storage.k8s.io/';

export interface VolumeParameters {
  storagePool?: string;
  pvcName?: string;
  pvcNamespace?: string;
  preallocation: boolean;
  createDiskImage: boolean;
  filesystemOverhead?: Overhead;
  /** The parameters worth keeping with the volume (no CO bookkeeping). */
  stored: Record<string, string>;
}

/**
 * Unknown keys are refused rather than ignored: a misspelt `storagepool` would otherwise land the
 * volume in the wrong pool without a word.
 */
export function parseParameters(params: Record<string, string> | null | undefined): VolumeParameters {
  const out: VolumeParameters = { stored: {}, preallocation: false, createDiskImage: false };
  for (const [k, v] of Object.entries(params ?? {})) {
    if (k.startsWith(CO_PREFIX)) continue;
    if (!KNOWN.has(k)) {
      throw invalidInput(`unknown parameter ${JSON.stringify(k)}${didYouMean(k, KNOWN)}; this driver understands: ${[...KNOWN].join(', ')}`);
    }
    out.stored[k] = v;
  }
  const p = params ?? {};
  if (p[PARAM_STORAGE_POOL] !== undefined) out.storagePool = p[PARAM_STORAGE_POOL];
  if (p[PARAM_PVC_NAME]) out.pvcName = p[PARAM_PVC_NAME];
  if (p[PARAM_PVC_NAMESPACE]) out.pvcNamespace = p[PARAM_PVC_NAMESPACE];
  out.preallocation = bool(p, PARAM_PREALLOCATION);
  out.createDiskImage = bool(p, PARAM_CREATE_DISK_IMAGE);
  if (p[PARAM_FILESYSTEM_OVERHEAD] !== undefined) {
    out.filesystemOverhead = parseOverhead(p[PARAM_FILESYSTEM_OVERHEAD], `parameter ${PARAM_FILESYSTEM_OVERHEAD}`);
  }
  return out;
}

function bool(params: Record<string, string>, key: string): boolean {
  const v = params[key];
  if (v === undefined || v === '') return false;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw invalidInput(`parameter ${key} must be "true" or "false", got ${JSON.stringify(v)}`);
}

/** HPP's legacy directory name `<namespace>-<pvc>-<pv>`, or the volume name. */
export function volumeDirName(name: string, params: VolumeParameters, useNamingPrefix: boolean): string {
  if (!useNamingPrefix || !params.pvcName || !params.pvcNamespace) return name;
  const dir = `${params.pvcNamespace}-${params.pvcName}-${name}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(dir)) {
    throw invalidInput(`directory name ${JSON.stringify(dir)} from PVC metadata is not allowed`);
  }
  return dir;
}
