import * as grpc from '@grpc/grpc-js';
import { PLUGIN_VOLUME_EXPANSION } from '../csi/capabilities.js';
import { CsiError, alreadyExists, invalidArgument, notFound, unavailable, unimplemented } from '../csi/errors.js';
import { pageRequest, takePage } from '../csi/paging.js';
import { channelCredentials, tokenMetadata } from '../csi/peer-auth.js';
import { loadCsi } from '../csi/proto.js';
import type { Handler, Msg } from '../csi/rpc.js';
import type { Logger } from '../observe/logger.js';
import { parseVolumeId } from '../volumes/ids.js';
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
  log: Logger;
}

/**
 * Forwards snapshot and expansion calls to the daemon on the node that owns the volume (the node is
 * part of every volume and snapshot id). Unfiltered ListSnapshots asks every known daemon and pages
 * over the merged, sorted list.
 */
export function routerServices(opts: RouterOptions): { identity: Record<string, Handler>; controller: Record<string, Handler>; close(): void } {
  const csi = loadCsi();
  const clients = new Map<string, grpc.Client>();
  const creds = channelCredentials(opts.caFile);

  function client(address: string): grpc.Client {
    let c = clients.get(address);
    if (!c) {
      c = new csi.Controller(address, creds, opts.tlsServerName ? { 'grpc.ssl_target_name_override': opts.tlsServerName, 'grpc.default_authority': opts.tlsServerName } : {});
      clients.set(address, c);
    }
    return c;
  }

  function forward(address: string, method: string, req: Msg): Promise<Msg> {
    return new Promise((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      (client(address) as any)[method](req, tokenMetadata(opts.token), { deadline: Date.now() + 120_000 }, (err: grpc.ServiceError | null, res: Msg) => {
        if (!err) return resolve(res);
        // The daemon's own status and message go back to the caller as they are.
        reject(new CsiError(err.code, `${address}: ${err.details || err.message}`));
      });
    });
  }

  async function nodeAddress(id: string, what: string): Promise<string> {
    const ref = parseVolumeId(id);
    if (!ref) throw invalidArgument(`${what} ${JSON.stringify(id)} is not an id of this driver`);
    const address = await opts.peers.address(ref.node);
    if (!address) throw unavailable(`no daemon known for node ${ref.node} (${what} ${id})`);
    return address;
  }

  /** Every snapshot of every known node; UNAVAILABLE when a node does not answer (a partial list would mislead). */
  async function everySnapshot(): Promise<Msg[]> {
    const peers = await opts.peers.all();
    const lists = await Promise.all(
      [...peers].map(async ([node, address]) => {
        const all: Msg[] = [];
        let next = '';
        do {
          const page = await forward(address, 'ListSnapshots', { starting_token: next, max_entries: 0 }).catch((err: Error) => {
            opts.log.warn({ node, address, err: err.message }, 'ListSnapshots: a node did not answer');
            throw unavailable(`node ${node} did not answer ListSnapshots: ${err.message}`);
          });
          all.push(...(page.entries as Msg[]));
          next = page.next_token as string;
        } while (next);
        return all;
      }),
    );
    const merged = lists.flat();
    merged.sort((a, b) => (a.snapshot.snapshot_id < b.snapshot.snapshot_id ? -1 : 1));
    return merged;
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
    throw unimplemented(`${rpc} is served by the node daemons, not by the routing controller`);
  };

  const controller: Record<string, Handler> = {
    async ControllerGetCapabilities() {
      return { capabilities: ROUTER_CONTROLLER_CAPABILITIES.map((type) => ({ rpc: { type } })) };
    },

    async CreateSnapshot(req) {
      if (!req.name) throw invalidArgument('name is required');
      if (!req.source_volume_id) throw invalidArgument('source_volume_id is required');
      const address = await nodeAddress(req.source_volume_id, 'source volume');
      // Names are unique across the driver, but each daemon knows only its own snapshots: a name taken
      // on another node by another volume's snapshot is ALREADY_EXISTS, as the CSI spec asks.
      const taken = (await everySnapshot()).find((e) => parseVolumeId(e.snapshot.snapshot_id)?.name === req.name);
      if (taken && taken.snapshot.source_volume_id !== req.source_volume_id) {
        throw alreadyExists(`snapshot ${req.name} already exists (${taken.snapshot.snapshot_id}) for volume ${taken.snapshot.source_volume_id}`);
      }
      return forward(address, 'CreateSnapshot', req);
    },

    async DeleteSnapshot(req) {
      if (!req.snapshot_id) throw invalidArgument('snapshot_id is required');
      // An id that is not ours names nothing: deleting it is a no-op, as on the daemon.
      if (!parseVolumeId(req.snapshot_id)) return {};
      return forward(await nodeAddress(req.snapshot_id, 'snapshot'), 'DeleteSnapshot', req);
    },

    async ControllerExpandVolume(req) {
      if (!req.volume_id) throw invalidArgument('volume_id is required');
      if (!parseVolumeId(req.volume_id)) throw notFound(`volume ${req.volume_id} does not exist`);
      return forward(await nodeAddress(req.volume_id, 'volume'), 'ControllerExpandVolume', req);
    },

    async ListSnapshots(req) {
      const byId = (req.snapshot_id as string) || '';
      const bySource = (req.source_volume_id as string) || '';
      const one = byId || bySource;
      if (one) {
        // A filter names the node: ask only it (an id that is not ours matches nothing).
        const ref = parseVolumeId(one);
        if (!ref) return { entries: [], next_token: '' };
        const address = await opts.peers.address(ref.node);
        if (!address) return { entries: [], next_token: '' };
        return forward(address, 'ListSnapshots', req);
      }
      const paging = pageRequest(req);
      const { page, next_token } = takePage(await everySnapshot(), (e) => e.snapshot.snapshot_id as string, paging);
      return { entries: page, next_token };
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
      for (const c of clients.values()) c.close();
    },
  };
}
