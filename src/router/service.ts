import { PLUGIN_VOLUME_EXPANSION } from '../csi/capabilities.js';
import { conflict, invalidInput, notFound, precondition, unavailable } from '../errors.js';
import { StatusError } from '../csi/status.js';
import * as grpc from '@grpc/grpc-js';
import { pageRequest } from '../csi/paging.js';
import type { ControllerHandlers, IdentityHandlers, ListSnapshotsEntry } from '../csi/types.js';
import type { Logger } from '../observe/logger.js';
import { isValidName, parseVolumeId } from '../volumes/ids.js';
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

/** The UNIMPLEMENTED answer of a Controller RPC the router has no handler for. */
export const NOT_ROUTED = (rpc: string) => `${rpc} is served by the node daemons, not by the routing controller`;

/** Is this entry a snapshot of that name (on whichever node)? */
function hasName(e: ListSnapshotsEntry, name: string): boolean {
  return e.snapshot?.snapshot_id !== undefined && parseVolumeId(e.snapshot.snapshot_id)?.name === name;
}

/** A call about one volume or snapshot waits for its node as long as the sidecars wait (--timeout=120s). */
const OWNER_TIMEOUT_MS = 120_000;
export const DEFAULT_FAN_OUT_TIMEOUT_MS = 5_000;

/**
 * Forwards snapshot and expansion calls to the daemon on the node that owns the volume (the node is
 * part of every volume and snapshot id); that node alone decides, and only its absence fails them.
 * Unfiltered ListSnapshots asks every known daemon and pages over their sorted lists. See README.md.
 */
export function routerServices(opts: RouterOptions): { identity: IdentityHandlers; controller: ControllerHandlers; close(): void } {
  const nodes = new NodeClients(opts);
  const fanOutMs = opts.fanOutTimeoutMs ?? DEFAULT_FAN_OUT_TIMEOUT_MS;

  /**
   * The nodes whose daemon says it has `what` (`has` answers true, false, or throws for a node that
   * could not say), asked all at once within the fan-out deadline; and the nodes that could not say.
   * For ids of hostpath-provisioner's form (a PV or snapshot name), which name no node.
   */
  async function holders(has: (node: string) => Promise<boolean>): Promise<{ owners: string[]; silent: string[] }> {
    const all = [...(await knownNodes()).keys()];
    const answers = await Promise.all(all.map((node) => has(node).then((yes) => ({ node, yes }), (err: Error) => ({ node, err }))));
    return {
      owners: answers.filter((a) => 'yes' in a && a.yes).map((a) => a.node),
      silent: answers.filter((a): a is { node: string; err: Error } => 'err' in a).map((a) => `${a.node} (${a.err.message})`),
    };
  }

  /** The one node of `owners`; NOT_FOUND (or UNAVAILABLE while some node could not say) when none, FAILED_PRECONDITION when several. */
  function onlyOwner(what: string, { owners, silent }: { owners: string[]; silent: string[] }): string {
    if (owners.length === 1) return owners[0]!;
    if (owners.length > 1) throw precondition(`${what} is on several nodes (${owners.join(', ')}): its id names no node, so it cannot be told which is meant`);
    if (silent.length > 0) throw unavailable(`${what} is on none of the nodes that answered; not asked: ${silent.join('; ')}`);
    throw notFound(`${what} does not exist on any node`);
  }

  /** The node of a volume: named in its id, or, for a hostpath-provisioner volume (its PV name), the node whose daemon has it. */
  async function volumeNode(id: string, what: string): Promise<string> {
    const ref = parseVolumeId(id);
    if (ref) return ref.node;
    if (!isValidName(id)) throw invalidInput(`${what} ${JSON.stringify(id)} is not an id of this driver or of hostpath-provisioner`);
    const found = await holders((node) =>
      nodes.getVolume(node, id, fanOutMs).then(
        () => true,
        (err: unknown) => {
          if (err instanceof StatusError && err.code === grpc.status.NOT_FOUND) return false;
          throw err;
        },
      ),
    );
    return onlyOwner(`${what} ${id}`, found);
  }

  /** The nodes holding a hostpath-provisioner snapshot of that id. */
  function snapshotHolders(id: string) {
    return holders((node) => nodes.listSnapshots(node, { snapshot_id: id }, fanOutMs).then((r) => r.entries.length > 0));
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
  async function takenElsewhere(name: string, owner: string): Promise<ListSnapshotsEntry | undefined> {
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
            return [];
          },
        ),
      ),
    );
    return lists.flat().find((e) => hasName(e, name));
  }

  const identity: IdentityHandlers = {
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

  /** Only the routed calls: every other Controller RPC answers UNIMPLEMENTED (see NOT_ROUTED). */
  const controller: ControllerHandlers = {
    async ControllerGetCapabilities() {
      return { capabilities: ROUTER_CONTROLLER_CAPABILITIES.map((type) => ({ rpc: { type } })) };
    },

    async CreateSnapshot(req) {
      if (!req.name) throw invalidInput('name is required');
      if (!req.source_volume_id) throw invalidInput('source_volume_id is required');
      const owner = await volumeNode(req.source_volume_id, 'source volume');
      const taken = await takenElsewhere(req.name, owner);
      if (taken) {
        // A retry of a snapshot the owner already has stays OK, whatever another node holds.
        const own = await nodes.listSnapshots(owner, { source_volume_id: req.source_volume_id }, OWNER_TIMEOUT_MS);
        if (!own.entries.some((e) => hasName(e, req.name))) {
          throw conflict(`snapshot ${req.name} already exists (${taken.snapshot?.snapshot_id}) for volume ${taken.snapshot?.source_volume_id}`);
        }
      }
      return nodes.createSnapshot(owner, req, OWNER_TIMEOUT_MS);
    },

    async DeleteSnapshot(req) {
      if (!req.snapshot_id) throw invalidInput('snapshot_id is required');
      const ref = parseVolumeId(req.snapshot_id);
      if (ref) return nodes.deleteSnapshot(ref.node, req, OWNER_TIMEOUT_MS);
      // An id of neither form names nothing: deleting it is a no-op, as on the daemon. One of
      // hostpath-provisioner's form is deleted wherever it is; OK only once every node has said it has none.
      if (!isValidName(req.snapshot_id)) return {};
      const found = await snapshotHolders(req.snapshot_id);
      if (found.owners.length === 0 && found.silent.length > 0) {
        throw unavailable(`snapshot ${req.snapshot_id}: not found on the nodes that answered; not asked: ${found.silent.join('; ')}`);
      }
      for (const node of found.owners) await nodes.deleteSnapshot(node, req, OWNER_TIMEOUT_MS);
      return {};
    },

    async ControllerExpandVolume(req) {
      if (!req.volume_id) throw invalidInput('volume_id is required');
      if (!parseVolumeId(req.volume_id) && !isValidName(req.volume_id)) throw notFound(`volume ${req.volume_id} does not exist`);
      return nodes.expandVolume(await volumeNode(req.volume_id, 'volume'), req, OWNER_TIMEOUT_MS);
    },

    async ListSnapshots(req) {
      const filters = [req.snapshot_id, req.source_volume_id].filter(Boolean);
      if (filters.length > 0) {
        // A filter names the node: ask only it. An id that is not ours, or two ids on different
        // nodes, match nothing.
        const refs = filters.map(parseVolumeId);
        if (refs.every((r) => r !== undefined)) {
          if (refs.some((r) => r!.node !== refs[0]!.node)) return { entries: [], next_token: '' };
          return nodes.listSnapshots(refs[0]!.node, req, OWNER_TIMEOUT_MS);
        }
        // A filter of hostpath-provisioner's form names no node: every node is asked (the answers are short).
        if (filters.some((f) => !parseVolumeId(f!) && !isValidName(f!))) return { entries: [], next_token: '' };
        const lists = await Promise.all([...(await knownNodes()).keys()].map((node) => nodes.listSnapshots(node, { ...req, starting_token: '', max_entries: 0 }, fanOutMs)));
        const entries = lists.flatMap((l) => l.entries).sort((a, b) => (a.snapshot!.snapshot_id < b.snapshot!.snapshot_id ? -1 : 1));
        return { entries, next_token: '' };
      }
      const paging = pageRequest(req);
      return pageAcrossNodes((await knownNodes()).keys(), (node, after) => nodes.snapshots(node, after, paging.max, fanOutMs), paging);
    },
  };

  return {
    identity,
    controller,
    close() {
      nodes.close();
    },
  };
}
