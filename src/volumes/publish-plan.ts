import { conflict, type DriverError } from '../errors.js';
import type { Publication } from '../format/records.js';
import type { AtTarget } from './target.js';

/**
 * What a publication at a target needs, from what is there now and what is recorded (see
 * docs/node-volumes.md for the whole state machine):
 * - 'in-place': published with these options already;
 * - 'adopt': our mount, not recorded (made under another spelling of the target, or its line lost):
 *   record it;
 * - 'make': nothing mounted: record the intent, mount, record the loop device;
 * - 'remake': recorded, but bound to a loop device taken from it: unbind, then make;
 * - 'refuse': something else is mounted there, or ours with other options.
 */
export type PublishPlan =
  | { step: 'in-place' }
  | { step: 'adopt' }
  | { step: 'make' }
  | { step: 'remake'; why: string }
  | { step: 'refuse'; error: DriverError };

export function samePublication(a: Publication, b: Publication): boolean {
  return a.readOnly === b.readOnly && a.accessMode === b.accessMode && [...a.mountFlags].sort().join(',') === [...b.mountFlags].sort().join(',');
}

/**
 * `volumeId` and `target` (as given) name the publication in the errors; `recorded` is what the
 * volume's publications hold for the target, `wanted` what is asked for (the record itself on a restart).
 */
export function planPublish(at: AtTarget, recorded: Publication | undefined, wanted: Publication, volumeId: string, target: string): PublishPlan {
  switch (at.kind) {
    case 'nothing':
      return { step: 'make' };
    case 'stale':
      if (recorded) return { step: 'remake', why: at.why };
      return refuseForeign(at, target);
    case 'foreign':
      return refuseForeign(at, target);
    case 'ours':
      if (recorded && !samePublication(recorded, wanted)) {
        return { step: 'refuse', error: conflict(`volume ${volumeId} is already published at ${target} with other options (readOnly=${recorded.readOnly}, ${recorded.accessMode})`) };
      }
      if (recorded) return { step: 'in-place' };
      if (at.mount.options.includes('ro') !== wanted.readOnly) {
        return { step: 'refuse', error: conflict(`volume ${volumeId} is already mounted at ${target} with other options`) };
      }
      return { step: 'adopt' };
  }
}

function refuseForeign(at: Exclude<AtTarget, { kind: 'nothing' }>, target: string): PublishPlan {
  return { step: 'refuse', error: conflict(`target ${target} already has something else mounted (${at.mount.source} ${at.mount.root})`) };
}
