import { TOPOLOGY_KEY, checkCapabilities, controllerCapabilities, unsupportedReason } from './capabilities.js';
import type { DriverContext } from './context.js';
import { conflict, invalidInput, noSpace, notFound, outOfRange, precondition } from '../errors.js';
import { aboutVolume } from './call-subject.js';
import { Answer, locked } from './locks.js';
import { pageRequest, takePage } from './paging.js';
import type { CapacityRange__Output, ControllerHandlers, Snapshot, Topology, Topology__Output, Volume, VolumeContentSource__Output } from './types.js';
import type { Pool } from '../pools/pool.js';
import { reportedCapacityBytes } from '../pools/capacity.js';
import { blockImagePath } from '../format/layout.js';
import { blockCapacity } from '../volumes/block.js';
import { capacityForDiskImage, parseOverhead, type Overhead } from '../volumes/disk-image.js';
import { checkName, isValidName, parseVolumeId } from '../volumes/ids.js';
import { parseParameters, volumeDirName, type VolumeParameters } from '../volumes/parameters.js';
import type { SnapshotRecord, VolumeMode, VolumeRecord } from '../format/records.js';
import type { ContentSource } from '../volumes/manager.js';

/** An int64 field (a decimal string with longs: String); unset ('' or no message) is 0. */
function int64(value: string | undefined, field: string): bigint {
  if (value === undefined || value === '') return 0n;
  let n: bigint;
  try {
    n = BigInt(value);
  } catch {
    throw invalidInput(`${field} is not an integer: ${JSON.stringify(value)}`);
  }
  if (n < 0n) throw invalidInput(`${field} must not be negative, got ${n}`);
  return n;
}

export interface CapacityRange {
  required: bigint;
  limit: bigint;
}

export function capacityRange(range: CapacityRange__Output | null | undefined): CapacityRange {
  const required = int64(range?.required_bytes, 'capacity_range.required_bytes');
  const limit = int64(range?.limit_bytes, 'capacity_range.limit_bytes');
  if (limit > 0n && required > limit) {
    throw invalidInput(`capacity_range: required_bytes ${required} is above limit_bytes ${limit}`);
  }
  return { required, limit };
}

/** The size a volume gets for a capacity range: a filesystem volume what is required, else the limit. */
function capacityFor(mode: VolumeMode, range: CapacityRange): bigint {
  return mode === 'block' ? blockCapacity(range) : range.required > 0n ? range.required : range.limit;
}

function fitsRange(capacity: bigint, r: CapacityRange): boolean {
  return (r.required === 0n || capacity >= r.required) && (r.limit === 0n || capacity <= r.limit);
}

interface SourceRef {
  kind: 'snapshot' | 'volume';
  id: string;
  /** The node the id names; undefined for an id of hostpath-provisioner's form (a PV or snapshot name), looked for here. */
  node?: string;
  name: string;
}

/** The id a VolumeContentSource names; INVALID_ARGUMENT when it is empty, NOT_FOUND when it cannot name anything. */
function contentSourceRef(src: VolumeContentSource__Output | null | undefined): SourceRef | undefined {
  if (!src) return undefined;
  const kind = src.type === 'snapshot' || src.snapshot ? 'snapshot' : src.type === 'volume' || src.volume ? 'volume' : undefined;
  if (!kind) throw invalidInput('volume_content_source names neither a snapshot nor a volume');
  const id = kind === 'snapshot' ? src.snapshot?.snapshot_id : src.volume?.volume_id;
  if (!id) throw invalidInput(`volume_content_source.${kind} needs an id`);
  const ref = parseVolumeId(id);
  if (ref) return { kind, id, node: ref.node, name: ref.name };
  if (!isValidName(id)) throw notFound(`${kind} ${id} does not exist`);
  return { kind, id, name: id };
}

function checkSourceFits(ref: SourceRef, sourceMode: VolumeMode, sourceSize: bigint, mode: VolumeMode, capacity: bigint): void {
  if (sourceMode !== mode) throw invalidInput(`${ref.kind} ${ref.id} holds a ${sourceMode} volume; it cannot fill a ${mode} volume`);
  if (capacity !== 0n && capacity < sourceSize) {
    throw outOfRange(`${ref.kind} ${ref.id} needs at least ${sourceSize} bytes; ${capacity} were asked for`);
  }
}

/**
 * The overhead the new volume's disk.img is sized with, or undefined when it gets none: a volume asked
 * to have one, or a restore or clone carrying its source's on (grown for the new capacity).
 */
function diskImageOverheadFor(params: VolumeParameters, pool: Pool, source: ContentSource | undefined): Overhead | undefined {
  if (params.createDiskImage) return params.filesystemOverhead ?? pool.filesystemOverhead;
  if (!source?.diskImage) return undefined;
  return params.filesystemOverhead ?? parseOverhead(source.diskImage.overhead, `filesystem overhead recorded with ${source.kind} ${source.id}`);
}

/** Snapshot classes may carry parameters; this driver takes none (csi.storage.k8s.io/* are the CO's). */
function parseParametersForSnapshot(params: Record<string, string> | null | undefined): void {
  for (const k of Object.keys(params ?? {})) {
    if (!k.startsWith('csi.storage.k8s.io/')) throw invalidInput(`unknown snapshot parameter ${JSON.stringify(k)}; this driver takes none`);
  }
}

export function snapshotMessage(s: SnapshotRecord): Snapshot {
  const ms = Date.parse(s.createdAt);
  return {
    size_bytes: s.sizeBytes,
    snapshot_id: s.id,
    source_volume_id: s.sourceVolumeId,
    creation_time: { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
    ready_to_use: true,
    group_snapshot_id: '',
  };
}

function sortKeys(o: Record<string, string>): Array<[string, string]> {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function topology(node: string): Topology[] {
  return [{ segments: { [TOPOLOGY_KEY]: node } }];
}

/** True when the CO's topology list allows this node (an empty list allows any node). */
function allowsNode(topologies: readonly Topology__Output[] | null | undefined, node: string): boolean {
  if (!topologies || topologies.length === 0) return true;
  return topologies.some((t) => {
    const seg = t.segments;
    return seg[TOPOLOGY_KEY] === undefined ? Object.keys(seg).length === 0 : seg[TOPOLOGY_KEY] === node;
  });
}

export function volumeMessage(rec: VolumeRecord): Volume {
  const src = rec.contentSource;
  return {
    volume_id: rec.id,
    capacity_bytes: rec.capacityBytes,
    volume_context: { storagePool: rec.pool },
    content_source: src ? (src.kind === 'snapshot' ? { snapshot: { snapshot_id: src.id } } : { volume: { volume_id: src.id } }) : null,
    accessible_topology: topology(rec.node),
  };
}

/** The Controller service; the RPCs of capabilities it does not offer have no handler (UNIMPLEMENTED). */
export function controllerService(ctx: DriverContext): ControllerHandlers {
  const { volumes } = ctx;
  const locks = () => volumes.locks;

  /** The snapshot or volume a CreateVolume names as its content source, found and checked. */
  async function resolveContentSource(ref: SourceRef, mode: VolumeMode, capacity: bigint): Promise<ContentSource> {
    if (ref.node !== undefined && ref.node !== ctx.node) {
      throw precondition(`${ref.kind} ${ref.id} lives on node ${ref.node}; volumes from it are created there (this is ${ctx.node})`);
    }
    if (ref.kind === 'snapshot') {
      const snap = await volumes.findSnapshot(ref.id);
      if (!snap) throw notFound(`snapshot ${ref.id} does not exist on node ${ctx.node}`);
      checkSourceFits(ref, snap.mode, BigInt(snap.sizeBytes), mode, capacity);
      return { kind: 'snapshot', id: snap.id, dataPath: volumes.snapshotDataPath(snap), mode: snap.mode, diskImage: snap.diskImage, sizeBytes: BigInt(snap.sizeBytes) };
    }
    const vol = await volumes.find(ref.id);
    if (!vol) throw notFound(`source volume ${ref.id} does not exist on node ${ctx.node}`);
    checkSourceFits(ref, vol.mode, BigInt(vol.capacityBytes), mode, capacity);
    return { kind: 'volume', id: vol.id, dataPath: volumes.dataPath(volumes.getPool(vol.pool)!, vol), mode: vol.mode, diskImage: vol.diskImage, sizeBytes: BigInt(vol.capacityBytes) };
  }

  return {
    async ControllerGetCapabilities() {
      return { capabilities: controllerCapabilities() };
    },

    CreateVolume: locked('CreateVolume', locks, {
      async check(req) {
        const name = checkName('volume', req.name);
        const accessType = checkCapabilities(req.volume_capabilities);
        const range = capacityRange(req.capacity_range);
        const params = parseParameters(req.parameters);
        const pool = volumes.resolvePool(params.storagePool);
        const req_topo = req.accessibility_requirements;
        if (req_topo && !allowsNode(req_topo.requisite, ctx.node) && req_topo.requisite.length > 0) {
          throw noSpace(`node ${ctx.node} is not in the requisite topology of the request`);
        }
        // With a content source and no size asked for, the volume takes the source's size.
        const sized = range.required > 0n || range.limit > 0n;
        const mode: VolumeMode = accessType === 'block' ? 'block' : 'filesystem';
        const capacity = capacityFor(mode, range);
        const sourceRef = contentSourceRef(req.volume_content_source);
        if (params.createDiskImage && mode === 'block') throw invalidInput('createDiskImage applies to Filesystem volumes only');
        if (params.createDiskImage && capacity === 0n && !sourceRef) throw invalidInput('createDiskImage needs a capacity_range to size disk.img');
        const data = mode === 'block' ? blockImagePath(name) : volumeDirName(name, params, pool.useNamingPrefix);
        return { volume: name, pool: pool.name, data, ...(sourceRef ? { source: sourceRef.name } : {}), into: pool, mode, range, params, sized, capacity, sourceRef };
      },
      async run({ volume: name, into: pool, mode, range, params, sized, capacity, sourceRef, data }, cx) {
        const source = sourceRef ? await resolveContentSource(sourceRef, mode, sized ? capacity : 0n) : undefined;
        if (source && !sized) capacity = source.sizeBytes;
        const diskImageOverhead = diskImageOverheadFor(params, pool, source);
        let capacityNote: string | undefined;
        if (diskImageOverhead) {
          if (capacity === 0n) throw invalidInput(`createDiskImage needs a capacity_range to size disk.img: ${source?.kind} ${source?.id} has no size`);
          const asked = capacity;
          capacity = capacityForDiskImage(asked, range.limit, diskImageOverhead);
          if (capacity !== asked) capacityNote = `rounded up from ${asked} bytes so that disk.img holds 1 MiB at filesystem overhead ${diskImageOverhead.text}`;
        }
        const sameName = volumes.findByName(name);
        if (sameName && sameName.pool !== pool.name) {
          throw invalidInput(`volume ${name} already exists in pool ${sameName.pool}, not in ${pool.name}`);
        }
        const rec = await volumes.create(
          { pool, name, mode, capacityBytes: capacity, capacityNote, parameters: params.stored, data, preallocate: params.preallocation, diskImageOverhead, source, pvc: params.pvc },
          (existing) => {
            if (existing.mode !== mode) return `volume mode ${existing.mode}`;
            if ((existing.contentSource?.id ?? '') !== (source?.id ?? '')) return `content source ${existing.contentSource?.id ?? 'none'}`;
            if (!fitsRange(BigInt(existing.capacityBytes), range)) return `capacity ${existing.capacityBytes} bytes`;
            if (JSON.stringify(sortKeys(existing.parameters)) !== JSON.stringify(sortKeys(params.stored))) {
              return `other parameters ${JSON.stringify(existing.parameters)}`;
            }
            return undefined;
          },
          cx,
        );
        return { volume: volumeMessage(rec) };
      },
    }),

    DeleteVolume: locked('DeleteVolume', locks, {
      async check(req) {
        const id = req.volume_id;
        if (!id) throw invalidInput('volume_id is required');
        const ref = parseVolumeId(id);
        // An id of neither form names no volume: deleting it is a no-op, as the spec asks. One of
        // hostpath-provisioner's form (a PV name) may be a volume HPP made in one of the pools.
        if (!ref) return isValidName(id) ? { volume: id, id } : new Answer({});
        if (ref.node !== ctx.node) {
          throw precondition(`volume ${id} lives on node ${ref.node}; delete it there (this is ${ctx.node})`);
        }
        if (!volumes.getPool(ref.pool)) return new Answer({});
        return { volume: ref.name, id };
      },
      async run({ id }, cx) {
        const rec = await volumes.find(id);
        if (!rec) return {};
        aboutVolume(cx, rec);
        await volumes.delete(rec, cx);
        return {};
      },
    }),

    async ValidateVolumeCapabilities(req, cx) {
      const id = req.volume_id;
      if (!id) throw invalidInput('volume_id is required');
      const caps = req.volume_capabilities;
      if (caps.length === 0) throw invalidInput('volume_capabilities is required');
      const rec = await volumes.find(id);
      if (!rec) throw notFound(`volume ${id} does not exist on node ${ctx.node}`);
      aboutVolume(cx, rec);
      for (const cap of caps) {
        let why = unsupportedReason(cap);
        const wanted = cap.access_type === 'block' ? 'block' : 'filesystem';
        if (!why && wanted !== rec.mode) why = `volume ${id} is a ${rec.mode} volume, not ${wanted}`;
        if (why) return { confirmed: null, message: why };
      }
      return {
        confirmed: {
          volume_context: req.volume_context,
          volume_capabilities: caps,
          parameters: req.parameters,
          mutable_parameters: {},
        },
        message: '',
      };
    },

    async ControllerGetVolume(req, cx) {
      if (!req.volume_id) throw invalidInput('volume_id is required');
      const rec = await volumes.find(req.volume_id);
      if (!rec) throw notFound(`volume ${req.volume_id} does not exist on node ${ctx.node}`);
      aboutVolume(cx, rec);
      // No LIST_VOLUMES_PUBLISHED_NODES: no published node ids (there is no ControllerPublish).
      return { volume: volumeMessage(rec), status: { published_node_ids: [], volume_condition: await volumes.condition(rec) } };
    },

    async ListVolumes(req) {
      const { page, next_token } = takePage(volumes.list(), (v) => v.id, pageRequest(req));
      const conditions = await Promise.all(page.map((rec) => volumes.condition(rec)));
      return { entries: page.map((rec, i) => ({ volume: volumeMessage(rec), status: { published_node_ids: [], volume_condition: conditions[i]! } })), next_token };
    },

    async GetCapacity(req) {
      const zero = { available_capacity: '0', maximum_volume_size: null, minimum_volume_size: null };
      for (const cap of req.volume_capabilities) {
        if (unsupportedReason(cap)) return zero;
      }
      if (req.accessible_topology && !allowsNode([req.accessible_topology], ctx.node)) return zero;
      const params = parseParameters(req.parameters);
      // A pool that only some nodes have: no capacity here, so the scheduler picks another node.
      if (params.storagePool && !volumes.getPool(params.storagePool)) return zero;
      // No pool named and no default one: CreateVolume would refuse, so nothing can be promised.
      const pool = params.storagePool ? volumes.resolvePool(params.storagePool) : volumes.defaultPool();
      if (!pool) return zero;
      try {
        await volumes.ensureLoaded(pool.name);
      } catch {
        return zero;
      }
      if (!(await pool.health()).ready) return zero;
      const { availableBytes, totalBytes } = await volumes.capacityOf(pool.name);
      const reported = reportedCapacityBytes(availableBytes, totalBytes).toString();
      return {
        available_capacity: reported,
        maximum_volume_size: { value: reported },
        minimum_volume_size: null,
      };
    },

    CreateSnapshot: locked('CreateSnapshot', locks, {
      async check(req, cx) {
        const name = checkName('snapshot', req.name);
        const sourceId = req.source_volume_id;
        if (!sourceId) throw invalidInput('source_volume_id is required');
        parseParametersForSnapshot(req.parameters);
        const ref = parseVolumeId(sourceId);
        if (ref && ref.node !== ctx.node) {
          throw precondition(`volume ${sourceId} lives on node ${ref.node}; its snapshots are taken there (this is ${ctx.node})`);
        }
        const source = await volumes.find(sourceId);
        if (source) aboutVolume(cx, source);
        return { snapshot: name, ...(source ? { source: source.name } : {}), sourceId };
      },
      async run({ snapshot: name, sourceId }, cx) {
        const existing = volumes.snapshotByName(name);
        if (existing) {
          if (existing.sourceVolumeId !== sourceId) {
            throw conflict(`snapshot ${name} already exists for volume ${existing.sourceVolumeId}`);
          }
          return { snapshot: snapshotMessage(existing) };
        }
        const source = await volumes.find(sourceId);
        if (!source) throw notFound(`source volume ${sourceId} does not exist on node ${ctx.node}`);
        return { snapshot: snapshotMessage(await volumes.createSnapshot(source, name, cx)) };
      },
    }),

    DeleteSnapshot: locked('DeleteSnapshot', locks, {
      async check(req) {
        const id = req.snapshot_id;
        if (!id) throw invalidInput('snapshot_id is required');
        const ref = parseVolumeId(id);
        if (!ref) return isValidName(id) ? { snapshot: id, id } : new Answer({});
        if (ref.node !== ctx.node) throw precondition(`snapshot ${id} lives on node ${ref.node} (this is ${ctx.node})`);
        return { snapshot: ref.name, id };
      },
      async run({ id }) {
        const snap = await volumes.findSnapshot(id);
        if (snap) await volumes.deleteSnapshot(snap);
        return {};
      },
    }),

    async ListSnapshots(req) {
      const paging = pageRequest(req);
      const bySnap = req.snapshot_id;
      const bySource = req.source_volume_id;
      // A snapshot asked for by id is looked for, as every call on it does (an HPP one may be new on disk).
      if (bySnap) await volumes.findSnapshot(bySnap);
      const matching = volumes.listSnapshots().filter((s) => (!bySnap || s.id === bySnap) && (!bySource || s.sourceVolumeId === bySource));
      const { page, next_token } = takePage(matching, (s) => s.id, paging);
      return { entries: page.map((s) => ({ snapshot: snapshotMessage(s) })), next_token };
    },

    ControllerExpandVolume: locked('ControllerExpandVolume', locks, {
      async check(req, cx) {
        const id = req.volume_id;
        if (!id) throw invalidInput('volume_id is required');
        if (!req.capacity_range) throw invalidInput('capacity_range is required');
        const range = capacityRange(req.capacity_range);
        if (range.required === 0n && range.limit === 0n) throw invalidInput('capacity_range needs required_bytes or limit_bytes');
        const first = await volumes.find(id);
        if (!first) throw notFound(`volume ${id} does not exist on node ${ctx.node}`);
        aboutVolume(cx, first);
        return { volume: first.name, id, range, cap: req.volume_capability };
      },
      async run({ id, range, cap }, cx) {
        const rec = await volumes.find(id);
        if (!rec) throw notFound(`volume ${id} does not exist on node ${ctx.node}`);
        if (cap?.access_type && (cap.access_type === 'block') !== (rec.mode === 'block')) {
          throw invalidInput(`volume ${id} is a ${rec.mode} volume, not ${cap.access_type}`);
        }
        const wanted = capacityFor(rec.mode, range);
        const current = BigInt(rec.capacityBytes);
        if (wanted < current) {
          throw outOfRange(`volume ${id} has ${current} bytes; shrinking to ${wanted} is not supported`);
        }
        const grown = await volumes.expand(rec, wanted, cx);
        // The node refreshes the loop device (block) or grows disk.img (filesystem with a disk image).
        return { capacity_bytes: grown.capacityBytes, node_expansion_required: rec.mode === 'block' || rec.diskImage !== undefined };
      },
    }),
  };
}
