import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../observe/logger.js';
import type { Pool } from '../pools/pool.js';
import { mountAt, readMounts } from '../system/mount.js';
import { detachOrphanLoops, reportDeferredDetaches } from './block.js';
import { publishVolume, targetState, unbindStale } from './publish.js';
import type { VolumeRecord } from '../format/records.js';

/**
 * Brings the kernel in line with the recorded publications after a restart or a reboot: a publication
 * whose mount is gone is made again when its target's directory still exists (loop device re-attached,
 * bind mount re-made) and forgotten when it does not (the pod is gone). A target still bound to a loop
 * device that no longer backs the volume's image (or is detaching) is re-bound. Loop devices backed by images
 * no volume owns are detached. Returns the records whose publications changed.
 */
export async function reconcilePublications(pool: Pool, records: VolumeRecord[], log: Logger): Promise<VolumeRecord[]> {
  const changed: VolumeRecord[] = [];
  const mounts = await readMounts();
  for (const rec of records) {
    const entries = Object.entries(rec.publications);
    if (entries.length === 0) continue;
    const data = pool.resolveInside(rec.data);
    const publications = { ...rec.publications };
    let dirty = false;
    for (const [target, pub] of entries) {
      // mountinfo shows real paths: resolve the parent (kubelet's directory may sit behind a symlink).
      const realParent = await fsp.realpath(path.dirname(target)).catch(() => undefined);
      const real = realParent ? path.join(realParent, path.basename(target)) : target;
      if (mountAt(mounts, real)) {
        const state = await targetState(rec.mode, data, real);
        if (state.kind === 'ours') continue;
        if (state.kind === 'other') {
          log.warn({ volume: rec.id, target }, 'publication target holds another mount; left alone');
          continue;
        }
        // Ours, but its loop device was taken from it: re-bound below to a device of this image.
        log.warn({ volume: rec.id, target, why: state.why }, 'publication target is bound to a loop device that is not this volume\'s; re-making it');
        try {
          await unbindStale(real);
        } catch (err) {
          log.error({ volume: rec.id, target, err: String(err) }, 'could not take the stale loop device off the target; kubelet will retry NodePublish');
          continue;
        }
      }
      const parentThere = realParent !== undefined && (await fsp.stat(realParent).then((s) => s.isDirectory(), () => false));
      if (!parentThere) {
        log.info({ volume: rec.id, target }, 'publication target is gone; forgetting it');
        delete publications[target];
        dirty = true;
        continue;
      }
      try {
        publications[target] = await publishVolume(rec.mode, data, real, pub);
        dirty = true;
        log.info({ volume: rec.id, target }, 'publication re-made after restart');
      } catch (err) {
        log.error({ volume: rec.id, target, err: String(err) }, 'could not re-make publication; kubelet will retry NodePublish');
      }
    }
    if (dirty) changed.push({ ...rec, publications });
  }
  const owned = new Set(records.filter((r) => r.mode === 'block').map((r) => pool.resolveInside(r.data)));
  const outcomes = await detachOrphanLoops(pool.blockDir, owned);
  const detached = outcomes.filter((o) => o.detached).map((o) => o.device);
  if (detached.length > 0) log.warn({ pool: pool.name, detached }, 'detached loop devices whose image no volume owns');
  reportDeferredDetaches(outcomes, log, { pool: pool.name });
  return changed;
}
