import type { VolumeRecord } from '../format/records.js';
import { PARAM_PREALLOCATION } from './parameters.js';

/** Whether growth of the volume is allocated up front: it was preallocated, or its parameters ask for it. */
export function wantsPreallocation(rec: Pick<VolumeRecord, 'preallocation' | 'parameters'>): boolean {
  return (rec.preallocation !== undefined && rec.preallocation !== 'none') || rec.parameters[PARAM_PREALLOCATION] === 'true';
}
