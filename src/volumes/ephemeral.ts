import { invalidInput } from '../errors.js';
import { parseParameters, type VolumeParameters } from './parameters.js';
import { parseSize } from './sizes.js';

/** kubelet marks the NodePublishVolume of a CSI ephemeral inline volume with this volume context key. */
export const EPHEMERAL_CONTEXT_KEY = 'csi.storage.k8s.io/ephemeral';
/** The volume attribute an inline volume's size is given with (`size: 1Gi`). */
export const PARAM_SIZE = 'size';

/** What an inline volume asks for, from the pod's `volumeAttributes`. */
export interface EphemeralSpec {
  /** 0: no size asked for, no limit (as hostpath-provisioner's ephemeral volumes had none). */
  capacityBytes: bigint;
  params: VolumeParameters;
}

/** The spec of an ephemeral volume's NodePublishVolume, or undefined for a persistent volume's. */
export function ephemeralSpec(context: Record<string, string> | null | undefined): EphemeralSpec | undefined {
  if (context?.[EPHEMERAL_CONTEXT_KEY] !== 'true') return undefined;
  const { [PARAM_SIZE]: size, ...rest } = context;
  const params = parseParameters(rest);
  if (params.createDiskImage) throw invalidInput('createDiskImage is for persistent volumes, not ephemeral inline ones');
  return { capacityBytes: size === undefined ? 0n : parseSize(size, `volume attribute ${PARAM_SIZE}`), params };
}
