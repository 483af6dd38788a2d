import { invalidInput } from '../errors.js';
import { didYouMean } from '../util/did-you-mean.js';
import { parseOverhead, type Overhead } from './disk-image.js';
import { pvcOfParameters, type KubeObjectRef } from './kube-objects.js';

/** StorageClass parameters the driver understands. */
export const PARAM_STORAGE_POOL = 'storagePool';

export const PARAM_PREALLOCATION = 'preallocation';
export const PARAM_FILESYSTEM_OVERHEAD = 'filesystemOverhead';
export const PARAM_CREATE_DISK_IMAGE = 'createDiskImage';

const KNOWN = new Set([PARAM_STORAGE_POOL, PARAM_PREALLOCATION, PARAM_FILESYSTEM_OVERHEAD, PARAM_CREATE_DISK_IMAGE]);
const CO_PREFIX = 'csi.storage.k8s.io/';

export interface VolumeParameters {
  storagePool?: string;
  /** The PVC the volume is for, when csi-provisioner says (--extra-create-metadata). */
  pvc?: KubeObjectRef;
  preallocation: boolean;
  createDiskImage: boolean;
  filesystemOverhead?: Overhead;
  /** The parameters worth keeping with the volume (no CO bookkeeping). */
  stored: Record<string, string>;
}

/**
 * Unknown keys are refused rather than ignored: a misspelt `storagepool` would otherwise land the
 * volume in the wrong pool without a word. Keys under `csi.storage.k8s.io/` are the CO's (the PVC and
 * PV names of --extra-create-metadata): not StorageClass parameters, never refused as unknown, not
 * kept with the parameters (so they play no part in the comparison of a repeated CreateVolume); the
 * PVC they name is read from them.
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
  const pvc = pvcOfParameters(p);
  if (pvc) out.pvc = pvc;
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
  if (!useNamingPrefix || !params.pvc) return name;
  const dir = `${params.pvc.namespace}-${params.pvc.name}-${name}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(dir)) {
    throw invalidInput(`directory name ${JSON.stringify(dir)} from PVC metadata is not allowed`);
  }
  return dir;
}
