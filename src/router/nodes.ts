import * as grpc from '@grpc/grpc-js';
import { unavailable } from '../errors.js';
import { StatusError } from '../csi/status.js';
import { channelCredentials, tokenMetadata } from '../csi/peer-auth.js';
import { loadCsi } from '../csi/proto.js';
import type {
  ControllerClient,
  ControllerExpandVolumeRequest,
  ControllerExpandVolumeResponse__Output,
  ControllerGetVolumeResponse__Output,
  CreateSnapshotRequest,
  CreateSnapshotResponse__Output,
  DeleteSnapshotRequest,
  DeleteSnapshotResponse__Output,
  ListSnapshotsEntry,
  ListSnapshotsRequest,
  ListSnapshotsResponse__Output,
} from '../csi/types.js';
import type { PeerResolver } from './peers.js';

/** One node's snapshots from a ListSnapshots call: sorted by id; `more` when the daemon holds more than it gave. */
export interface NodeSnapshots {
  entries: ListSnapshotsEntry[];
  more: boolean;
}

/** One call of the typed client, given the metadata, options and callback of the call. */
type Send<Res> = (client: ControllerClient, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;

/**
 * Calls to the daemon of one node, each with its own deadline. Every failure comes back as a StatusError
 * that names the node: the daemon's own status as it is, UNAVAILABLE when the node cannot be reached
 * or does not answer in time.
 */
export class NodeClients {
  private readonly clients = new Map<string, ControllerClient>();
  private readonly csi = loadCsi();
  private readonly creds: grpc.ChannelCredentials;

  constructor(
    private readonly opts: { peers: PeerResolver; token: string; caFile?: string; tlsServerName?: string },
  ) {
    this.creds = channelCredentials(opts.caFile);
  }

  private client(address: string): ControllerClient {
    let c = this.clients.get(address);
    if (!c) {
      const name = this.opts.tlsServerName;
      c = new this.csi.Controller(address, this.creds, {
        ...(name ? { 'grpc.ssl_target_name_override': name, 'grpc.default_authority': name } : {}),
        // A daemon that comes back is tried again within seconds, not after grpc's default of up to 2 minutes.
        'grpc.max_reconnect_backoff_ms': 5_000,
      });
      this.clients.set(address, c);
    }
    return c;
  }

  private async address(node: string): Promise<string> {
    let address: string | undefined;
    try {
      address = await this.opts.peers.address(node);
    } catch (err) {
      throw unavailable(`cannot look up the daemon of node ${node}: ${(err as Error).message}`);
    }
    if (!address) throw unavailable(`no daemon known for node ${node}`);
    return address;
  }

  private async call<Res>(node: string, method: string, timeoutMs: number, send: Send<Res>): Promise<Res> {
    const address = await this.address(node);
    return new Promise((resolve, reject) => {
      send(this.client(address), tokenMetadata(this.opts.token), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (!err) {
          // grpc-js gives a response whenever it gives no error.
          if (res === undefined) return reject(new StatusError(grpc.status.INTERNAL, `node ${node} (${address}) answered ${method} with no message`));
          return resolve(res);
        }
        const where = `node ${node} (${address})`;
        // grpc-js ends a connection failure with an empty "Resolution note: ".
        if (err.code === grpc.status.DEADLINE_EXCEEDED) return reject(unavailable(`${where} did not answer ${method} within ${timeoutMs / 1000} s`));
        reject(new StatusError(err.code, `${where}: ${(err.details || err.message).replace(/\.? Resolution note: $/, '')}`));
      });
    });
  }

  createSnapshot(node: string, req: CreateSnapshotRequest, timeoutMs: number): Promise<CreateSnapshotResponse__Output> {
    return this.call(node, 'CreateSnapshot', timeoutMs, (c, md, o, cb) => c.CreateSnapshot(req, md, o, cb));
  }

  deleteSnapshot(node: string, req: DeleteSnapshotRequest, timeoutMs: number): Promise<DeleteSnapshotResponse__Output> {
    return this.call(node, 'DeleteSnapshot', timeoutMs, (c, md, o, cb) => c.DeleteSnapshot(req, md, o, cb));
  }

  listSnapshots(node: string, req: ListSnapshotsRequest, timeoutMs: number): Promise<ListSnapshotsResponse__Output> {
    return this.call(node, 'ListSnapshots', timeoutMs, (c, md, o, cb) => c.ListSnapshots(req, md, o, cb));
  }

  expandVolume(node: string, req: ControllerExpandVolumeRequest, timeoutMs: number): Promise<ControllerExpandVolumeResponse__Output> {
    return this.call(node, 'ControllerExpandVolume', timeoutMs, (c, md, o, cb) => c.ControllerExpandVolume(req, md, o, cb));
  }

  getVolume(node: string, volumeId: string, timeoutMs: number): Promise<ControllerGetVolumeResponse__Output> {
    return this.call(node, 'ControllerGetVolume', timeoutMs, (c, md, o, cb) => c.ControllerGetVolume({ volume_id: volumeId }, md, o, cb));
  }

  /** The node's snapshots after the id `after` (all when ''), at most `max` of them (0: all). */
  async snapshots(node: string, after: string, max: number, timeoutMs: number): Promise<NodeSnapshots> {
    const res = await this.listSnapshots(node, { starting_token: after, max_entries: max }, timeoutMs);
    return { entries: res.entries, more: !!res.next_token };
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }
}
