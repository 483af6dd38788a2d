// Promise-returning clients for the three CSI services on an endpoint. No vitest here: bench/ uses it too.
import * as grpc from '@grpc/grpc-js';
import { loadCsi } from '../../src/csi/proto.js';
/** A request or response as the tests write them: proto-loader's plain objects, loosely typed on purpose (tests send bad input). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Msg = Record<string, any>;

/** One call; `timeoutMs` overrides the clients' deadline for it. Rejects with the grpc.ServiceError, its message prefixed by the method. */
export type Rpc = (req: Msg, timeoutMs?: number) => Promise<Msg>;

type IdentityMethod = 'GetPluginInfo' | 'GetPluginCapabilities' | 'Probe';
type ControllerMethod =
  | 'CreateVolume'
  | 'DeleteVolume'
  | 'ControllerPublishVolume'
  | 'ControllerUnpublishVolume'
  | 'ValidateVolumeCapabilities'
  | 'ListVolumes'
  | 'GetCapacity'
  | 'ControllerGetCapabilities'
  | 'CreateSnapshot'
  | 'DeleteSnapshot'
  | 'ListSnapshots'
  | 'GetSnapshot'
  | 'ControllerExpandVolume'
  | 'ControllerGetVolume'
  | 'ControllerModifyVolume';
type NodeMethod =
  | 'NodeStageVolume'
  | 'NodeUnstageVolume'
  | 'NodePublishVolume'
  | 'NodeUnpublishVolume'
  | 'NodeGetVolumeStats'
  | 'NodeExpandVolume'
  | 'NodeGetCapabilities'
  | 'NodeGetInfo';
export type ServiceClient<M extends string = string> = Record<M, Rpc>;

export interface Clients {
  identity: ServiceClient<IdentityMethod>;
  controller: ServiceClient<ControllerMethod>;
  node: ServiceClient<NodeMethod>;
  close(): void;
}

export interface CallDefaults {
  /** Deadline of every call unless the call names its own; none by default. */
  deadlineMs?: number;
}

type Callback = (err: grpc.ServiceError | null, res?: Msg) => void;
type UnaryCall = (req: Msg, options: grpc.CallOptions, callback: Callback) => void;

function promisify<M extends string>(client: grpc.Client, service: { service: grpc.ServiceDefinition }, defaults: CallDefaults): ServiceClient<M> {
  const out = {} as ServiceClient<M>;
  const methods = client as unknown as Record<string, UnaryCall>;
  for (const name of Object.keys(service.service)) {
    const fn = methods[name]!.bind(client);
    out[name as M] = (req, timeoutMs = defaults.deadlineMs) =>
      new Promise((resolve, reject) =>
        fn(req, timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs }, (err, res) => {
          if (err) {
            err.message = `${name}: ${err.message}`;
            reject(err);
          } else resolve(res!);
        }),
      );
  }
  return out;
}

/**
 * Clients for the three CSI services; `channel` e.g. `{ 'grpc.use_local_subchannel_pool': 1 }` for a
 * connection of their own.
 */
export function connect(endpoint: string, channel?: grpc.ChannelOptions, defaults: CallDefaults = {}): Clients {
  const csi = loadCsi();
  const creds = grpc.credentials.createInsecure();
  const id = new csi.Identity(endpoint, creds, channel);
  const ctl = new csi.Controller(endpoint, creds, channel);
  const nd = new csi.Node(endpoint, creds, channel);
  return {
    identity: promisify(id, csi.Identity, defaults),
    controller: promisify(ctl, csi.Controller, defaults),
    node: promisify(nd, csi.Node, defaults),
    close() {
      id.close();
      ctl.close();
      nd.close();
    },
  };
}

/** Expect a call to fail with a gRPC status name, e.g. 'INVALID_ARGUMENT'. Returns the error. */
export async function expectCode(p: Promise<unknown>, code: keyof typeof grpc.status): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    if (e.code !== grpc.status[code]) {
      throw new Error(`expected ${code}, got ${grpc.status[e.code]}: ${e.details}`);
    }
    return e;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}
