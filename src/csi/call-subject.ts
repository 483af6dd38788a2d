import { annotate, type CallContext } from '../observe/call-context.js';
import type { VolumeRecord } from '../format/records.js';
import { namedObjects, refText } from '../volumes/kube-objects.js';

/** Request fields that say which volume, snapshot or target a call is about. */
const SUBJECT_FIELDS = ['volume_id', 'target_path', 'source_volume_id', 'snapshot_id'] as const;

/**
 * What a request is about, for every line of its call (the request wrapper binds them to the call's
 * log): the volume, snapshot or target it names, the PVC of CreateVolume parameters, the pod of a
 * NodePublishVolume volume_context. The `name` of a create is logged as `volume_name` or
 * `snapshot_name`: pino's own `name` (the program's) is on every line.
 */
export function requestSubject(method: string, req: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!req || typeof req !== 'object') return out;
  const fields = req as Record<string, unknown>;
  for (const k of SUBJECT_FIELDS) {
    const v = fields[k];
    if (typeof v === 'string' && v) out[k] = v;
  }
  if (typeof fields.name === 'string' && fields.name) out[method.endsWith('CreateSnapshot') ? 'snapshot_name' : 'volume_name'] = fields.name;
  return { ...out, ...namedObjects(fields) };
}

/** The PVC a volume was made for, on every later line of a call about the volume. */
export function aboutVolume(cx: CallContext, rec: VolumeRecord): void {
  if (rec.pvc) annotate(cx, { pvc: refText(rec.pvc) });
}
