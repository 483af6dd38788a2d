import { TOPOLOGY_KEY, nodeCapabilities, unsupportedReason } from './capabilities.js';
import type { DriverContext } from './context.js';
import { invalidInput } from '../errors.js';
import { aboutVolume } from './call-subject.js';
import { locked } from './locks.js';
import type { NodeHandlers, NodePublishVolumeRequest__Output, VolumeUsage } from './types.js';
import { NodeVolumes } from '../volumes/node-volumes.js';
import { ephemeralSpec } from '../volumes/ephemeral.js';
import { checkName } from '../volumes/ids.js';
import type { Publication, VolumeMode } from '../format/records.js';
import type { Usage, VolumeStats } from '../volumes/volume-stats.js';

/** Per-mount flags a bind mount of a volume directory may carry. */
const ALLOWED_MOUNT_FLAGS = new Set(['ro', 'rw', 'nosuid', 'suid', 'nodev', 'dev', 'noexec', 'exec', 'noatime', 'atime', 'relatime', 'nodiratime', 'strictatime']);

/** What the request asks for, validated: the access type and the publication to record. */
function wantedPublication(req: NodePublishVolumeRequest__Output): { as: VolumeMode; publication: Publication } {
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
    as: cap.access_type === 'block' ? 'block' : 'filesystem',
    publication: {
      readOnly: req.readonly === true || accessMode === 'SINGLE_NODE_READER_ONLY' || flags.includes('ro'),
      accessMode,
      mountFlags: flags.filter((f) => f !== 'ro' && f !== 'rw'),
    },
  };
}

function usage(unit: 'BYTES' | 'INODES', u: Usage): VolumeUsage {
  return { unit, total: u.total.toString(), available: u.available.toString(), used: u.used.toString() };
}

function statsMessage(s: VolumeStats): { usage: VolumeUsage[]; volume_condition: { abnormal: boolean; message: string } } {
  const out: VolumeUsage[] = [];
  if (s.bytes) out.push(usage('BYTES', s.bytes));
  if (s.inodes) out.push(usage('INODES', s.inodes));
  return { usage: out, volume_condition: s.condition };
}

/** The Node service: requests validated and mapped onto the node's volumes (src/volumes/node-volumes.ts). */
export function nodeService(ctx: DriverContext): NodeHandlers {
  const node = new NodeVolumes(ctx.volumes);
  const locks = () => ctx.volumes.locks;

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

    NodePublishVolume: locked('NodePublishVolume', locks, {
      async check(req, cx) {
        if (!req.volume_id) throw invalidInput('volume_id is required');
        const target = node.resolveTarget(req.target_path, 'target_path');
        const wanted = wantedPublication(req);
        const ephemeral = ephemeralSpec(req.volume_context);
        if (ephemeral) {
          // Made here, under kubelet's id for it (csi-<sha256>), which must be a name a volume can have.
          checkName('ephemeral volume', req.volume_id);
          if (wanted.as !== 'filesystem') throw invalidInput('an ephemeral inline volume is a Filesystem volume: publish it with access type mount');
          return { volume: req.volume_id, target: target.real, request: { volumeId: req.volume_id, target, ...wanted }, ephemeral };
        }
        const rec = await node.require(req.volume_id);
        aboutVolume(cx, rec);
        return { volume: rec.name, target: target.real, request: { volumeId: req.volume_id, target, ...wanted } };
      },
      async run({ request, ephemeral }, cx) {
        if (ephemeral) await node.publishEphemeral(request, ephemeral, cx);
        else await node.publish(request, cx);
        return {};
      },
    }),

    NodeUnpublishVolume: locked('NodeUnpublishVolume', locks, {
      async check(req, cx) {
        if (!req.volume_id) throw invalidInput('volume_id is required');
        const target = node.resolveTarget(req.target_path, 'target_path');
        const rec = await node.require(req.volume_id);
        aboutVolume(cx, rec);
        return { volume: rec.name, target: target.real, request: { volumeId: req.volume_id, target } };
      },
      async run({ request }, cx) {
        await node.unpublish(request.volumeId, request.target, cx);
        return {};
      },
    }),

    async NodeGetVolumeStats(req, cx) {
      if (!req.volume_id) throw invalidInput('volume_id is required');
      const volumePath = node.checkVolumePath(req.volume_path, 'volume_path');
      aboutVolume(cx, await node.require(req.volume_id));
      return statsMessage(await node.stats(req.volume_id, volumePath, cx));
    },

    NodeExpandVolume: locked('NodeExpandVolume', locks, {
      async check(req, cx) {
        if (!req.volume_id) throw invalidInput('volume_id is required');
        const volumePath = node.checkVolumePath(req.volume_path, 'volume_path');
        const rec = await node.require(req.volume_id);
        aboutVolume(cx, rec);
        return { volume: rec.name, volumeId: req.volume_id, volumePath, requiredBytes: req.capacity_range?.required_bytes || '0' };
      },
      async run({ volumeId, volumePath, requiredBytes }, cx) {
        const capacity = await node.expand(volumeId, volumePath, BigInt(requiredBytes), cx);
        return { capacity_bytes: capacity.toString() };
      },
    }),
  };
}
