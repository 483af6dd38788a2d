import { PLUGIN_VOLUME_EXPANSION } from '../csi/capabilities.js';
import { conflict, invalidInput, notFound, unavailable, unsupported } from '../errors.js';
import { pageRequest } from '../csi/paging.js';
import type { Handler, Msg } from '../csi/rpc.js';
import type { Logger } from '../observe/logger.js';
import { parseVolumeId } from '../volumes/ids.js';
import { pageAcrossNodes } from './listing.js';
import { NodeClients } from './nodes.js';
import type { PeerResolver } from './peers.js';

/** What the routing controller offers external-snapshotter and external-resizer. */
export const ROUTER_CONTROLLER_CAPABILITIES = ['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'EXPAND_VOLUME'] as const;

export interface RouterOptions {
  driverName: string;
  version: string;
  token: string;
  peers: PeerResolver;
  /** CA of the daemons' peer endpoints when they serve TLS. */
  caFile?: string;
  /** Check the daemons' certificates against this name rather than the address dialled. */
  tlsServerName?: string;
  /** How long a call that asks several nodes waits for each (unfiltered ListSnapshots, the name check). */
  fanOutTimeoutMs?: number;
  log: Logger;
}

/** A call about one volume or snapshot waits for its node as long as the sidecars wait (--timeout=120s). */
const OWNER_TIMEOUT_MS = 120_000;
export const DEFAULT_FAN_OUT_TIMEOUT_MS = 5_000;

/**
 * Forwards snapshot and expansion calls to the daemon on the node that owns the volume (the node is
 * part of every volume and snapshot id); that node alone decides, and only its absence fails them.
 * Unfiltered ListSnapshots asks every known daemon and pages over their sorted lists. See README.md.
 */
export function routerServices(opts: RouterOptions): { identity: Record<string, Handler>; controller: Record<string, Handler>; close(): void } {
  const nodes = new NodeClients(opts);
  const fanOutMs = opts.fanOutTimeoutMs ?? DEFAULT_FAN_OUT_TIMEOUT_MS;

  function nodeOf(id: string, what: string): string {
    const ref = parseVolumeId(id);
    if (!ref) throw invalidInput(`${what} ${JSON.stringify(id)} is not an id of this driver`);
    return ref.node;
  }

  async function knownNodes(): Promise<Map<string, string>> {
    try {
      return await opts.peers.all();
    } catch (err) {
      throw unavailable(`cannot list the daemons: ${(err as Error).message}`);
    }
  }

  /**
   * A snapshot of this name on a node other than `owner`, among the nodes that answer within the
   * fan-out deadline. Best effort: a node that is down or slow is skipped, never a failure.
   */
  async function takenElsewhere(name: string, owner: string): Promise<Msg | undefined> {
    let others: string[];
    try {
      others = [...(await opts.peers.all()).keys()].filter((n) => n !== owner);
    } catch (err) {
      opts.log.warn({ err: (err as Error).message }, 'CreateSnapshot: cannot list the daemons; snapshot name checked on the source node only');
      return undefined;
    }
    const lists = await Promise.all(
      others.map((node) =>
        nodes.snapshots(node, '', 0, fanOutMs).then(
          (s) => s.entries,
          (err: Error) => {
            opts.log.warn({ node, name, err: err.message }, 'CreateSnapshot: snapshot name not checked on a node that did not answer');
            return [] as Msg[];
          },
        ),
      ),
    );
    return lists.flat().find((e) => parseVolumeId(e.snapshot.snapshot_id)?.name === name);
  }

  const identity: Record<string, Handler> = {
    async GetPluginInfo() {
      return { name: opts.driverName, vendor_version: opts.version, manifest: { role: 'snapshot-router' } };
    },
    async GetPluginCapabilities() {
      return { capabilities: [{ service: { type: 'CONTROLLER_SERVICE' } }, { volume_expansion: { type: PLUGIN_VOLUME_EXPANSION } }] };
    },
    async Probe() {
      return { ready: { value: true } };
    },
  };

  const notHere = (rpc: string): Handler => async () => {
    throw unsupported(`${rpc} is served by the node daemons, not by the routing controller`);
  };

  const controller: Record<string, Handler> = {
    async ControllerGetCapabilities() {
      return { capabilities: ROUTER_CONTROLLER_CAPABILITIES.map((type) => ({ rpc: { type } })) };
    },

    async CreateSnapshot(req) {
      if (!req.name) throw invalidInput('name is required');
      if (!req.source_volume_id) throw invalidInput('source_volume_id is required');
      const owner = nodeOf(req.source_volume_id, 'source volume');
      const taken = await takenElsewhere(req.name, owner);
      if (taken) {
        // A retry of a snapshot the owner already has stays OK, whatever another node holds.
        const own = await nodes.call(owner, 'ListSnapshots', { source_volume_id: req.source_volume_id }, OWNER_TIMEOUT_MS);
        if (!(own.entries as Msg[]).some((e) => parseVolumeId(e.snapshot.snapshot_id)?.name === req.name)) {
          throw conflict(`snapshot ${req.name} already exists (${taken.snapshot.snapshot_id}) for volume ${taken.snapshot.source_volume_id}`);
        }
      }
      return nodes.call(owner, 'CreateSnapshot', req, OWNER_TIMEOUT_MS);
    },

    async DeleteSnapshot(req) {
      if (!req.snapshot_id) throw invalidInput('snapshot_id is required');
      // An id that is not ours names nothing: deleting it is a no-op, as on the daemon.
      const ref = parseVolumeId(req.snapshot_id);
      if (!ref) return {};
      return nodes.call(ref.node, 'DeleteSnapshot', req, OWNER_TIMEOUT_MS);
    },

    async ControllerExpandVolume(req) {
      if (!req.volume_id) throw invalidInput('volume_id is required');
      const ref = parseVolumeId(req.volume_id);
      if (!ref) throw notFound(`volume ${req.volume_id} does not exist`);
      return nodes.call(ref.node, 'ControllerExpandVolume', req, OWNER_TIMEOUT_MS);
    },

    async ListSnapshots(req) {
      const filters = [req.snapshot_id as string, req.source_volume_id as string].filter(Boolean);
      if (filters.length > 0) {
        // A filter names the node: ask only it. An id that is not ours, or two ids on different
        // nodes, match nothing.
        const refs = filters.map(parseVolumeId);
        if (refs.some((r) => !r || r.node !== refs[0]!.node)) return { entries: [], next_token: '' };
        return nodes.call(refs[0]!.node, 'ListSnapshots', req, OWNER_TIMEOUT_MS);
      }
      const paging = pageRequest(req);
      return pageAcrossNodes((await knownNodes()).keys(), (node, after) => nodes.snapshots(node, after, paging.max, fanOutMs), paging);
    },

    CreateVolume: notHere('CreateVolume'),
    DeleteVolume: notHere('DeleteVolume'),
    ControllerPublishVolume: notHere('ControllerPublishVolume'),
    ControllerUnpublishVolume: notHere('ControllerUnpublishVolume'),
    ValidateVolumeCapabilities: notHere('ValidateVolumeCapabilities'),
    ListVolumes: notHere('ListVolumes'),
    GetCapacity: notHere('GetCapacity'),
    GetSnapshot: notHere('GetSnapshot'),
    ControllerGetVolume: notHere('ControllerGetVolume'),
    ControllerModifyVolume: notHere('ControllerModifyVolume'),
  };

  return {
    identity,
    controller,
    close() {
      nodes.close();
    },
  };
}
