import { invalidInput, notFound, precondition } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import type { Pool } from '../pools/pool.js';
import type { CallContext } from '../observe/call-context.js';
import type { ToolContext } from '../system/exec.js';
import type { Host } from '../system/host.js';
import { detachOrphanLoops, detachUnused, publishBlock, reportDeferredDetaches } from './block.js';
import { diskImageSize, ensureDiskImage, parseOverhead } from './disk-image.js';
import { refText } from './kube-objects.js';
import { publishDirectory, unmountAndRemoveTarget } from './filesystem.js';
import type { VolumeManager } from './manager.js';
import { planPublish } from './publish-plan.js';
import type { Publication, VolumeMode, VolumeRecord } from '../format/records.js';
import { wantsPreallocation } from './record.js';
import { checkGivenPath, checkTargetFree, realLocationOrSelf, recordedTarget, resolveTarget, unbindStale, whatIsAt, type AtTarget, type Target, type VolumeData } from './target.js';
import { measureVolume, type VolumeStats } from './volume-stats.js';
import { isHppEphemeral } from './hpp-volumes.js';
import type { EphemeralSpec } from './ephemeral.js';

export interface PublishRequest {
  volumeId: string;
  target: Target;
  /** The access type asked for: a block device or a mounted directory. */
  as: VolumeMode;
  publication: Publication;
}

/**
 * The volumes of this node as its pods use them: published at targets (bind mounts of a directory or
 * of a loop device), measured, expanded on the node; and, after a restart, the recorded publications
 * brought back (reconcilePublications). The caller holds the locks of the lock table (src/csi/locks.ts).
 */
export class NodeVolumes {
  constructor(private readonly volumes: VolumeManager) {}

  private get host(): Host {
    return this.volumes.host;
  }

  /** The volume of that id; NOT_FOUND when this node has none. */
  async require(volumeId: string): Promise<VolumeRecord> {
    const rec = await this.volumes.find(volumeId);
    if (!rec) throw notFound(`volume ${volumeId} does not exist on node ${this.volumes.node}`);
    return rec;
  }

  /** A path naming where a volume is (stats, expansion), checked: see checkGivenPath. */
  checkVolumePath(p: unknown, field: string): string {
    return checkGivenPath(p, field);
  }

  /** A target path checked and resolved (see resolveTarget): never inside or around a pool. */
  resolveTarget(p: unknown, field: string): Target {
    return resolveTarget(p, field, this.volumes.poolList());
  }

  async publish(req: PublishRequest, cx: CallContext): Promise<void> {
    const { target, publication: wanted } = req;
    const rec = await this.require(req.volumeId);
    if (rec.mode !== req.as) {
      throw precondition(`volume ${rec.id} is a ${rec.mode} volume and cannot be published with access type ${req.as === 'block' ? 'block' : 'mount'}`);
    }
    if (req.as === 'block' && wanted.mountFlags.length > 0) throw invalidInput('mount flags do not apply to a block volume');
    const plan = planPublish(await whatIsAt(this.host, this.dataOf(rec), target.real), rec.publications[target.given], wanted, rec.id, target.given);
    switch (plan.step) {
      case 'refuse':
        throw plan.error;
      case 'in-place':
        return;
      case 'adopt':
        await this.volumes.updatePublications(withPublication(rec, target.given, wanted));
        return;
      case 'remake':
        cx.log.warn({ volume: rec.id, target: target.given, why: plan.why }, "publication target is bound to a loop device that is not this volume's; re-making it");
        await unbindStale(this.host, target.real, cx);
        return this.make(rec, target, wanted, cx);
      case 'make':
        return this.make(rec, target, wanted, cx);
    }
  }

  /**
   * A CSI ephemeral inline volume: made in its pool (under kubelet's id, as its name) the first time it
   * is published, then published; removed again when that fails, so that a refused publish leaves
   * nothing. A retry finds it made and only publishes.
   */
  async publishEphemeral(req: PublishRequest, spec: EphemeralSpec, cx: CallContext): Promise<void> {
    const found = await this.volumes.find(req.volumeId);
    if (found && !found.ephemeral) throw precondition(`${req.volumeId} is a persistent volume, not an ephemeral inline one`);
    if (found) return this.publish(req, cx);
    const pool = this.volumes.resolvePool(spec.params.storagePool);
    const rec = await this.volumes.create(
      {
        pool,
        name: req.volumeId,
        mode: 'filesystem',
        capacityBytes: spec.capacityBytes,
        parameters: spec.params.stored,
        data: req.volumeId,
        preallocate: spec.params.preallocation,
        ephemeral: true,
      },
      () => undefined,
      cx,
    );
    cx.log.info({ volume: rec.id, pool: pool.name, capacityBytes: rec.capacityBytes }, 'made ephemeral inline volume');
    try {
      await this.publish(req, cx);
    } catch (err) {
      const now = this.volumes.get(rec.id) ?? rec;
      await this.volumes.delete({ ...now, publications: {} }, cx).catch((e) => cx.log.error({ volume: rec.id, err: String(e) }, 'could not remove the ephemeral volume whose publish failed; the next start will'));
      throw err;
    }
  }

  /** A new publication: checked against the others and the target, recorded, then mounted. */
  private async make(rec: VolumeRecord, target: Target, wanted: Publication, cx: CallContext): Promise<void> {
    const others = Object.entries(rec.publications).filter(([t]) => t !== target.given);
    if (others.length > 0 && (wanted.accessMode === 'SINGLE_NODE_SINGLE_WRITER' || others.some(([, p]) => p.accessMode === 'SINGLE_NODE_SINGLE_WRITER'))) {
      throw precondition(`volume ${rec.id} is single-writer and already published at ${others.map(([t]) => t).join(', ')}`);
    }
    checkTargetFree(target.real, rec.mode);
    // The intent is recorded before the mount: a crash in between leaves a publication that the
    // next start re-makes (or forgets when the pod is gone), never a mount nobody knows about.
    await this.volumes.updatePublications(withPublication(rec, target.given, wanted));
    try {
      const made = await mountPublication(this.host, this.dataOf(rec), target.real, wanted, cx);
      if (made.device !== undefined) await this.volumes.updatePublications(withPublication(rec, target.given, made));
    } catch (err) {
      await this.volumes.updatePublications(rec).catch((e) => cx.log.error({ volume: rec.id, target: target.given, err: String(e) }, 'could not withdraw the publication record'));
      throw err;
    }
  }

  async unpublish(volumeId: string, target: Target, cx: CallContext): Promise<void> {
    const rec = await this.require(volumeId);
    const vol = this.dataOf(rec);
    const recorded = rec.publications[target.given] !== undefined;
    const isOurs = async () => (await whatIsAt(this.host, vol, target.real)).kind === 'ours';
    const outcome = await unmountAndRemoveTarget(this.host, target.real, { recorded, isOurs, log: cx.log }, cx);
    if (outcome === 'not-ours') throw precondition(`target ${target.given} holds a mount that is not volume ${rec.id}; leaving it alone`);
    const publications = { ...rec.publications };
    delete publications[target.given];
    if (rec.mode === 'block') reportDeferredDetaches(await detachUnused(this.host, vol.data, Object.values(publications), cx), cx.log, { volume: rec.id, target: target.given });
    if (recorded) await this.volumes.updatePublications({ ...rec, publications });
    if ((rec.ephemeral || isHppEphemeral(rec)) && Object.keys(publications).length === 0) {
      cx.log.info({ volume: rec.id, hpp: rec.origin === 'hpp' }, 'removing ephemeral inline volume with its pod');
      await this.volumes.delete({ ...rec, publications }, cx);
    }
  }

  async stats(volumeId: string, volumePath: string, cx: CallContext): Promise<VolumeStats> {
    const rec = await this.require(volumeId);
    const { here, at, published } = await this.lookAt(rec, volumePath);
    if (!here) throw notFound(`volume ${rec.id} is not available at ${volumePath}`);
    return measureVolume(this.host, rec, this.dataOf(rec).data, { volumePath, at, published }, this.volumes.quotaOf(rec.pool), cx);
  }

  /**
   * Makes a published volume's growth visible on the node: the loop devices refreshed (block), or
   * disk.img grown keeping the overhead (filesystem). The volume must have grown (ControllerExpandVolume)
   * to `requiredBytes` first. Returns its capacity.
   */
  async expand(volumeId: string, volumePath: string, requiredBytes: bigint, cx: CallContext): Promise<bigint> {
    const rec = await this.require(volumeId);
    if (!(await this.lookAt(rec, volumePath)).here) throw notFound(`volume ${rec.id} is not published at ${volumePath}`);
    const capacity = BigInt(rec.capacityBytes);
    if (requiredBytes > capacity) {
      throw precondition(`volume ${rec.id} has ${capacity} bytes; ControllerExpandVolume must grow it to ${requiredBytes} first`);
    }
    const { data } = this.dataOf(rec);
    if (rec.mode === 'block') {
      for (const d of await this.host.loops.devicesFor(data, cx)) if (!d.detaching) await this.host.loops.refreshCapacity(d.name, cx);
    } else if (rec.diskImage) {
      const size = diskImageSize(capacity, parseOverhead(rec.diskImage.overhead, 'recorded overhead'));
      await this.volumes.preallocating(rec.pool, rec.name, cx, (pcx) => ensureDiskImage(this.host, data, size, wantsPreallocation(rec), pcx));
    }
    return capacity;
  }

  /**
   * Whether the volume is at a path a caller names: published there (recorded or mounted), or its data
   * itself. What is at the path is looked at unless the record answers, or for a block volume, whose
   * stats report a stale bind.
   */
  private async lookAt(rec: VolumeRecord, volumePath: string): Promise<{ here: boolean; at?: AtTarget; published: boolean }> {
    const vol = this.dataOf(rec);
    const published = rec.publications[volumePath] !== undefined;
    if (volumePath === vol.data || (published && rec.mode !== 'block')) return { here: true, published };
    const at = await whatIsAt(this.host, vol, realLocationOrSelf(volumePath));
    return { here: published || at.kind === 'ours', at, published };
  }

  private dataOf(rec: VolumeRecord): VolumeData {
    return { mode: rec.mode, data: this.volumes.dataPath(this.volumes.getPool(rec.pool)!, rec) };
  }
}

function withPublication(rec: VolumeRecord, target: string, pub: Publication): VolumeRecord {
  return { ...rec, publications: { ...rec.publications, [target]: pub } };
}

/**
 * Makes the publication at `real`: a bind mount of the volume's directory, or of a loop device of its
 * image. Returns the publication as it is to be recorded (a block one names its loop device).
 */
async function mountPublication(host: Host, vol: VolumeData, real: string, pub: Publication, tc?: ToolContext): Promise<Publication> {
  if (vol.mode === 'block') {
    const dev = await publishBlock(host, vol.data, real, { readOnly: pub.readOnly }, tc);
    return { ...pub, device: dev.name };
  }
  await publishDirectory(host, vol.data, real, { readOnly: pub.readOnly, flags: pub.mountFlags }, tc);
  return pub;
}

/**
 * Brings the kernel in line with the recorded publications after a restart or a reboot, with the
 * publish's own plan (the record is what is wanted): a publication whose mount is gone is made again
 * when its target's directory still exists (loop device re-attached, bind mount re-made) and
 * forgotten when it does not (the pod is gone); a target still bound to a loop device that no longer
 * backs the volume's image (or is detaching) is re-bound; a foreign mount is left alone. Loop devices
 * backed by images no volume owns are detached. Returns the records whose publications changed.
 */
export async function reconcilePublications(host: Host, pool: Pool, records: VolumeRecord[], poolLog: Logger): Promise<VolumeRecord[]> {
  const changed: VolumeRecord[] = [];
  for (const rec of records) {
    const entries = Object.entries(rec.publications);
    if (entries.length === 0) continue;
    const vol: VolumeData = { mode: rec.mode, data: pool.resolveInside(rec.data) };
    const publications = { ...rec.publications };
    const log = rec.pvc ? poolLog.child({ pvc: refText(rec.pvc) }) : poolLog;
    let dirty = false;
    for (const [target, pub] of entries) {
      const { real, dirThere } = await recordedTarget(target);
      const plan = planPublish(await whatIsAt(host, vol, real), pub, pub, rec.id, target);
      if (plan.step === 'in-place' || plan.step === 'adopt') continue;
      if (plan.step === 'refuse') {
        log.warn({ volume: rec.id, target }, 'publication target holds another mount; left alone');
        continue;
      }
      if (plan.step === 'remake') {
        log.warn({ volume: rec.id, target, why: plan.why }, "publication target is bound to a loop device that is not this volume's; re-making it");
        try {
          await unbindStale(host, real);
        } catch (err) {
          log.error({ volume: rec.id, target, err: String(err) }, 'could not take the stale loop device off the target; kubelet will retry NodePublish');
          continue;
        }
      }
      if (!dirThere) {
        log.info({ volume: rec.id, target }, 'publication target is gone; forgetting it');
        delete publications[target];
        dirty = true;
        continue;
      }
      try {
        publications[target] = await mountPublication(host, vol, real, pub);
        dirty = true;
        log.info({ volume: rec.id, target }, 'publication re-made after restart');
      } catch (err) {
        log.error({ volume: rec.id, target, err: String(err) }, 'could not re-make publication; kubelet will retry NodePublish');
      }
    }
    if (dirty) changed.push({ ...rec, publications });
  }
  const owned = new Set(records.filter((r) => r.mode === 'block').map((r) => pool.resolveInside(r.data)));
  const outcomes = await detachOrphanLoops(host, pool.blockDir, owned);
  const detached = outcomes.filter((o) => o.detached).map((o) => o.device);
  if (detached.length > 0) poolLog.warn({ pool: pool.name, detached }, 'detached loop devices whose image no volume owns');
  reportDeferredDetaches(outcomes, poolLog, { pool: pool.name });
  return changed;
}
