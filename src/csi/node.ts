import { lstatSync, readdirSync, readlinkSync, realpathSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { TOPOLOGY_KEY, nodeCapabilities, unsupportedReason } from './capabilities.js';
import type { DriverContext } from './context.js';
import { conflict, precondition, invalidInput, notFound } from '../errors.js';
import type { NodeHandlers, NodePublishVolumeRequest__Output, VolumeCapability__Output, VolumeUsage } from './types.js';
import { mountedAt } from '../system/mount.js';
import { blockDeviceSize, loopDevicesFor, refreshLoopCapacity } from '../system/loop.js';
import { diskImageSize, ensureDiskImage, parseOverhead } from '../volumes/disk-image.js';
import { detachUnused, reportDeferredDetaches } from '../volumes/block.js';
import { unmountAndRemoveTarget } from '../volumes/filesystem.js';
import { publishVolume, targetState, unbindStale, type TargetState } from '../volumes/publish.js';
import type { Publication, VolumeRecord } from '../format/records.js';
import { wantsPreallocation } from '../volumes/record.js';

/** Per-mount flags a bind mount of a volume directory may carry. */
const ALLOWED_MOUNT_FLAGS = new Set(['ro', 'rw', 'nosuid', 'suid', 'nodev', 'dev', 'noexec', 'exec', 'noatime', 'atime', 'relatime', 'nodiratime', 'strictatime']);

/**
 * Validates a target path and finds where it really leads. mount(8) follows symlinks, so the checks
 * run on the real path: a target that is itself a symlink, or whose real location overlaps a pool, is
 * refused. Returns the path as given (the key kubelet uses) and the real one (what mountinfo shows).
 */
async function checkTargetPath(p: unknown, field: string, ctx: DriverContext): Promise<{ given: string; real: string }> {
  if (typeof p !== 'string' || p === '') throw invalidInput(`${field} is required`);
  if (p.length > 4095 || p.split('/').some((c) => Buffer.byteLength(c) > 255)) {
    throw invalidInput(`${field} is longer than a path may be (${p.length} characters)`);
  }
  const given = path.normalize(p).replace(/(.)\/+$/, '$1');
  if (p.includes('\0') || !path.isAbsolute(p) || given !== p.replace(/(.)\/+$/, '$1') || given === '/') {
    throw invalidInput(`${field} ${JSON.stringify(p)} must be a normalised absolute path`);
  }
  const real = realLocation(given);
  if (real === '/') throw invalidInput(`${field} ${given} resolves to /`);
  if (lstatSync(given, { throwIfNoEntry: false })?.isSymbolicLink()) {
    throw invalidInput(`${field} ${given} is a symbolic link`);
  }
  for (const pool of ctx.volumes.poolList()) {
    for (const root of new Set([pool.root, realLocation(pool.root)])) {
      for (const t of new Set([given, real])) {
        if (t === root || t.startsWith(`${root}/`) || root.startsWith(`${t}/`)) {
          throw invalidInput(`${field} ${given}${t !== given ? ` (really ${t})` : ''} overlaps storage pool ${pool.name}`);
        }
      }
    }
  }
  return { given, real };
}

/**
 * The real path of `p`: the symlinks of its nearest existing ancestor resolved, the rest appended.
 * A dangling symlink on the way is followed too (mkdir -p and mount would go where it points).
 */
function realLocation(p: string): string {
  const rest: string[] = [];
  let existing = p;
  for (let hops = 0; ; ) {
    try {
      return path.join(realpathSync.native(existing), ...rest.reverse());
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENAMETOOLONG' || code === 'ELOOP') throw invalidInput(`path ${p.slice(0, 200)} cannot be resolved: ${code}`);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      if (existing === '/') return p;
      if (lstatSync(existing, { throwIfNoEntry: false })?.isSymbolicLink()) {
        if (++hops > 40) throw invalidInput(`path ${p.slice(0, 200)} cannot be resolved: ELOOP`);
        existing = path.resolve(path.dirname(existing), readlinkSync(existing));
        continue;
      }
      rest.push(path.basename(existing));
      existing = path.dirname(existing);
    }
  }
}

/**
 * A target a publish may mount onto: missing, or what a publish would create itself (an empty
 * directory for a filesystem volume, an empty file for a block volume). Mounting over anything else
 * would hide it, and the unpublish could not tell it from ours.
 */
async function checkTargetFree(real: string, asBlock: boolean): Promise<void> {
  const st = lstatSync(real, { throwIfNoEntry: false });
  if (!st) return;
  if (asBlock) {
    if (!st.isFile() || st.size !== 0) throw precondition(`target ${real} exists and is not an empty file`);
    return;
  }
  if (!st.isDirectory()) throw precondition(`target ${real} exists and is not a directory`);
  if (readdirSync(real).length > 0) throw precondition(`target ${real} is a directory that is not empty`);
}

function samePublication(a: Publication, b: Publication): boolean {
  return a.readOnly === b.readOnly && a.accessMode === b.accessMode && [...a.mountFlags].sort().join(',') === [...b.mountFlags].sort().join(',');
}

/** What the request asks for, validated: the publication to record. */
function wantedPublication(req: NodePublishVolumeRequest__Output): { cap: VolumeCapability__Output; wanted: Publication } {
  const cap = req.volume_capability;
  if (!cap) throw invalidInput('volume_capability is required');
  const why = unsupportedReason(cap);
  if (why) throw invalidInput(`volume_capability: ${why}`);
  const flags = (cap.mount?.mount_flags ?? []).filter((f) => f !== '');
  for (const f of flags) {
    if (!ALLOWED_MOUNT_FLAGS.has(f)) throw invalidInput(`mount flag ${JSON.stringify(f)} is not allowed for a volume bind mount`);
  }
  // unsupportedReason refused a capability without an access mode.
  const accessMode = cap.access_mode!.mode;
  return {
    cap,
    wanted: {
      readOnly: req.readonly === true || accessMode === 'SINGLE_NODE_READER_ONLY' || flags.includes('ro'),
      accessMode,
      mountFlags: flags.filter((f) => f !== 'ro' && f !== 'rw'),
    },
  };
}

export function nodeService(ctx: DriverContext): NodeHandlers {
  const { volumes } = ctx;

  async function requireVolume(id: unknown): Promise<VolumeRecord> {
    if (typeof id !== 'string' || id === '') throw invalidInput('volume_id is required');
    const rec = await volumes.find(id);
    if (!rec) throw notFound(`volume ${id} does not exist on node ${ctx.node}`);
    return rec;
  }

  function dataOf(rec: VolumeRecord): string {
    return volumes.dataPath(volumes.getPool(rec.pool)!, rec);
  }

  /** What is mounted at `target`: this volume (its directory, or a usable loop device of its image)? */
  function stateOf(rec: VolumeRecord, target: string): Promise<TargetState> {
    return targetState(rec.mode, dataOf(rec), target);
  }

  async function targetHolds(rec: VolumeRecord, target: string): Promise<boolean> {
    return (await stateOf(rec, target)).kind === 'ours';
  }

  return {
    async NodeGetInfo() {
      return {
        node_id: ctx.node,
        max_volumes_per_node: '0',
        accessible_topology: { segments: { [TOPOLOGY_KEY]: ctx.node } },
      };
    },

    async NodeGetCapabilities() {
      return { capabilities: nodeCapabilities() };
    },

    async NodePublishVolume(req) {
      if (!req.volume_id) throw invalidInput('volume_id is required');
      const { given: target, real } = await checkTargetPath(req.target_path, 'target_path', ctx);
      const { cap, wanted } = wantedPublication(req);
      const first = await requireVolume(req.volume_id);
      return volumes.locks.withKeys([`name/${first.name}`, `target/${real}`], async () => {
        const rec = await requireVolume(req.volume_id);
        const asBlock = cap.access_type === 'block';
        if ((rec.mode === 'block') !== asBlock) {
          throw precondition(`volume ${rec.id} is a ${rec.mode} volume and cannot be published with access type ${cap.access_type}`);
        }
        if (asBlock && wanted.mountFlags.length > 0) throw invalidInput('mount flags do not apply to a block volume');
        let mounted = await mountedAt(real);
        const recorded = rec.publications[target];

        if (mounted) {
          const state = await stateOf(rec, real);
          if (state.kind === 'stale' && recorded) {
            // Our publication, whose loop device was taken from it: bound again below to one of this image.
            ctx.log.warn({ volume: rec.id, target, why: state.why }, 'publication target is bound to a loop device that is not this volume\'s; re-making it');
            await unbindStale(real);
            mounted = undefined;
          } else if (state.kind !== 'ours') {
            throw conflict(`target ${target} already has something else mounted (${mounted.source} ${mounted.root})`);
          }
        }
        if (mounted) {
          if (recorded && !samePublication(recorded, wanted)) {
            throw conflict(`volume ${rec.id} is already published at ${target} with other options (readOnly=${recorded.readOnly}, ${recorded.accessMode})`);
          }
          if (recorded) return {};
          // Mounted by us before a crash and never recorded: adopt it when its flags agree.
          if (mounted.options.includes('ro') !== wanted.readOnly) {
            throw conflict(`volume ${rec.id} is already mounted at ${target} with other options`);
          }
        } else {
          const others = Object.entries(rec.publications).filter(([t]) => t !== target);
          if (others.length > 0 && (wanted.accessMode === 'SINGLE_NODE_SINGLE_WRITER' || others.some(([, p]) => p.accessMode === 'SINGLE_NODE_SINGLE_WRITER'))) {
            throw precondition(`volume ${rec.id} is single-writer and already published at ${others.map(([t]) => t).join(', ')}`);
          }
          await checkTargetFree(real, asBlock);
          // The intent is recorded before the mount: a crash in between leaves a publication that the
          // next start re-makes (or forgets when the pod is gone), never a mount nobody knows about.
          await volumes.updatePublications({ ...rec, publications: { ...rec.publications, [target]: wanted } });
          try {
            const made = await publishVolume(rec.mode, dataOf(rec), real, wanted);
            if (made.device !== undefined) await volumes.updatePublications({ ...rec, publications: { ...rec.publications, [target]: made } });
          } catch (err) {
            await volumes.updatePublications(rec).catch((e) => ctx.log.error({ volume: rec.id, target, err: String(e) }, 'could not withdraw the publication record'));
            throw err;
          }
          return {};
        }
        await volumes.updatePublications({ ...rec, publications: { ...rec.publications, [target]: wanted } });
        return {};
      });
    },

    async NodeUnpublishVolume(req) {
      if (!req.volume_id) throw invalidInput('volume_id is required');
      const { given: target, real } = await checkTargetPath(req.target_path, 'target_path', ctx);
      const first = await requireVolume(req.volume_id);
      return volumes.locks.withKeys([`name/${first.name}`, `target/${real}`], async () => {
        const rec = await requireVolume(req.volume_id);
        const recorded = rec.publications[target] !== undefined;
        const outcome = await unmountAndRemoveTarget(real, { recorded, isOurs: () => targetHolds(rec, real), log: ctx.log });
        if (outcome === 'not-ours') throw precondition(`target ${target} holds a mount that is not volume ${rec.id}; leaving it alone`);
        const publications = { ...rec.publications };
        delete publications[target];
        if (rec.mode === 'block') reportDeferredDetaches(await detachUnused(dataOf(rec), Object.values(publications)), ctx.log, { volume: rec.id, target });
        if (recorded) await volumes.updatePublications({ ...rec, publications });
        return {};
      });
    },

    async NodeGetVolumeStats(req) {
      if (!req.volume_id) throw invalidInput('volume_id is required');
      if (!req.volume_path) throw invalidInput('volume_path is required');
      const rec = await requireVolume(req.volume_id);
      const volumePath = req.volume_path;
      const data = dataOf(rec);
      const dataThere = await fsp.stat(data).then(() => true, () => false);
      const published = rec.publications[volumePath] !== undefined;
      const isOurs = volumePath === data || published || (await targetHolds(rec, volumePath));
      if (!isOurs) throw notFound(`volume ${rec.id} is not available at ${volumePath}`);
      if (!dataThere) {
        return { usage: [], volume_condition: { abnormal: true, message: `volume data ${data} is missing` } };
      }
      if (rec.mode === 'block') {
        const devices = (await loopDevicesFor(data)).filter((d) => !d.detaching);
        const size = devices[0] ? await blockDeviceSize(devices[0].name) : BigInt(rec.capacityBytes);
        const state = volumePath !== data && (await stateOf(rec, volumePath));
        const condition =
          state && state.kind === 'stale'
            ? { abnormal: true, message: `target ${volumePath} is bound to a device that is not this volume's: ${state.why}` }
            : published && devices.length === 0
              ? { abnormal: true, message: `no loop device is attached to ${data}` }
              : { abnormal: false, message: devices.length > 0 ? `attached as ${devices.map((d) => d.name).join(', ')}` : 'image present' };
        return { usage: [{ unit: 'BYTES', total: size.toString(), available: '0', used: '0' }], volume_condition: condition };
      }
      const s = await fsp.statfs(data, { bigint: true });
      const quota = await volumes.quotaOf(rec.pool)?.usage(data, rec.projectId);
      let bytes: VolumeUsage;
      if (quota && quota.limitBytes > 0n) {
        // The volume's own numbers: its limit and what it holds, not the host filesystem's.
        const available = quota.limitBytes > quota.usedBytes ? quota.limitBytes - quota.usedBytes : 0n;
        bytes = { unit: 'BYTES', total: quota.limitBytes.toString(), available: available.toString(), used: quota.usedBytes.toString() };
      } else {
        const total = s.blocks * s.bsize;
        bytes = { unit: 'BYTES', total: total.toString(), available: (s.bavail * s.bsize).toString(), used: (total - s.bfree * s.bsize).toString() };
      }
      const inodesUsed = quota?.usedInodes ?? s.files - s.ffree;
      return {
        usage: [bytes, { unit: 'INODES', total: s.files.toString(), available: s.ffree.toString(), used: inodesUsed.toString() }],
        volume_condition: { abnormal: false, message: 'volume directory is present' },
      };
    },

    async NodeExpandVolume(req) {
      if (!req.volume_id) throw invalidInput('volume_id is required');
      if (!req.volume_path) throw invalidInput('volume_path is required');
      const first = await requireVolume(req.volume_id);
      return volumes.locks.withKey(`name/${first.name}`, async () => {
        const rec = await requireVolume(req.volume_id);
        const volumePath = req.volume_path;
        if (!(rec.publications[volumePath] || (await targetHolds(rec, volumePath)))) {
          throw notFound(`volume ${rec.id} is not published at ${volumePath}`);
        }
        const capacity = BigInt(rec.capacityBytes);
        const asked = BigInt(req.capacity_range?.required_bytes || '0');
        if (asked > capacity) {
          throw precondition(`volume ${rec.id} has ${capacity} bytes; ControllerExpandVolume must grow it to ${asked} first`);
        }
        const data = dataOf(rec);
        if (rec.mode === 'block') {
          for (const d of await loopDevicesFor(data)) if (!d.detaching) await refreshLoopCapacity(d.name);
        } else if (rec.diskImage) {
          const size = diskImageSize(capacity, parseOverhead(rec.diskImage.overhead, 'recorded overhead'));
          await ensureDiskImage(data, size, wantsPreallocation(rec), ctx.log);
        }
        return { capacity_bytes: capacity.toString() };
      });
    },
  };
}
