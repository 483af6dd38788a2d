import * as grpc from '@grpc/grpc-js';
import { unavailable } from '../errors.js';
import { StatusError } from '../csi/status.js';
import { channelCredentials, tokenMetadata } from '../csi/peer-auth.js';
import { loadCsi } from '../csi/proto.js';
import type { Msg } from '../csi/rpc.js';
import type { PeerResolver } from './peers.js';

/** One node's snapshots from a ListSnapshots call: sorted by id; `more` when the daemon holds more than it gave. */
export interface NodeSnapshots {
  entries: Msg[];
  more: boolean;
}

/**
 * Calls to the daemon of one node, each with its own deadline. Every failure comes back as a StatusError
 * that names the node: the daemon's own status as it is, UNAVAILABLE when the node cannot be reached
 * or does not answer in time.
 */
export class NodeClients {
  private readonly clients = new Map<string, grpc.Client>();
  private readonly csi = loadCsi();
  private readonly creds: grpc.ChannelCredentials;

  constructor(
    private readonly opts: { peers: PeerResolver; token: string; caFile?: string; tlsServerName?: string },
  ) {
    this.creds = channelCredentials(opts.caFile);
  }

  private client(address: string): grpc.Client {
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

  async call(node: string, method: string, req: Msg, timeoutMs: number): Promise<Msg> {
    const address = await this.address(node);
    return new Promise((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      (this.client(address) as any)[method](req, tokenMetadata(this.opts.token), { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: Msg) => {
        if (!err) return resolve(res);
        const where = `node ${node} (${address})`;
        // grpc-js ends a connection failure with an empty "Resolution note: ".
        if (err.code === grpc.status.DEADLINE_EXCEEDED) return reject(unavailable(`${where} did not answer ${method} within ${timeoutMs / 1000} s`));
        reject(new StatusError(err.code, `${where}: ${(err.details || err.message).replace(/\.? Resolution note: $/, '')}`));
      });
    });
  }

  /** The node's snapshots after the id `after` (all when ''), at most `max` of them (0: all). */
  async snapshots(node: string, after: string, max: number, timeoutMs: number): Promise<NodeSnapshots> {
    const res = await this.call(node, 'ListSnapshots', { starting_token: after, max_entries: max }, timeoutMs);
    return { entries: res.entries as Msg[], more: !!res.next_token };
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }
}
