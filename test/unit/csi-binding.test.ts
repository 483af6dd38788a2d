/**
 * The typed service binding (src/csi/rpc.ts bindService): every method of every service in
 * proto/csi.proto is either served by a handler or answers UNIMPLEMENTED, on the daemon's socket, on
 * its peer endpoint and on the routing controller. The servers run in this process with a volume
 * manager that fails every use: only which handler answers matters here, not what it does.
 */
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROLLER_CAPABILITIES, NODE_CAPABILITIES } from '../../src/csi/capabilities.js';
import type { DriverContext } from '../../src/csi/context.js';
import { controllerService } from '../../src/csi/controller.js';
import { identityService } from '../../src/csi/identity.js';
import { nodeService } from '../../src/csi/node.js';
import { tokenMetadata } from '../../src/csi/peer-auth.js';
import { PEER_CONTROLLER_METHODS, PeerServer } from '../../src/csi/peer-server.js';
import { loadCsi } from '../../src/csi/proto.js';
import { bindService } from '../../src/csi/rpc.js';
import { CsiServer } from '../../src/csi/server.js';
import { silentLogger } from '../../src/observe/logger.js';
import { RouterApp } from '../../src/router/app.js';
import { StaticPeers } from '../../src/router/peers.js';
import type { VolumeManager } from '../../src/volumes/manager.js';

type AnyMethod = grpc.MethodDefinition<object, object>;

/** Every service of proto/csi.proto, with its methods, as loadCsi() has them (no list kept by hand). */
function protoServices(): Map<string, Map<string, AnyMethod>> {
  const out = new Map<string, Map<string, AnyMethod>>();
  for (const [name, value] of Object.entries(loadCsi())) {
    if (typeof value !== 'function' || !('service' in value)) continue;
    out.set(name, new Map(Object.entries(value.service as grpc.ServiceDefinition)));
  }
  return out;
}

/** The RPCs each capability that ControllerGetCapabilities / NodeGetCapabilities may offer stands for. */
const CONTROLLER_CAPABILITY_RPCS: Record<string, string[]> = {
  CREATE_DELETE_VOLUME: ['CreateVolume', 'DeleteVolume'],
  PUBLISH_UNPUBLISH_VOLUME: ['ControllerPublishVolume', 'ControllerUnpublishVolume'],
  LIST_VOLUMES: ['ListVolumes'],
  GET_CAPACITY: ['GetCapacity'],
  CREATE_DELETE_SNAPSHOT: ['CreateSnapshot', 'DeleteSnapshot'],
  LIST_SNAPSHOTS: ['ListSnapshots'],
  EXPAND_VOLUME: ['ControllerExpandVolume'],
  GET_VOLUME: ['ControllerGetVolume'],
  MODIFY_VOLUME: ['ControllerModifyVolume'],
  GET_SNAPSHOT: ['GetSnapshot'],
  // CreateVolume with a content source, access modes, volume conditions: no RPC of their own.
  CLONE_VOLUME: ['CreateVolume'],
  // Conditions come in the answers of these two.
  VOLUME_CONDITION: ['ControllerGetVolume', 'ListVolumes'],
  SINGLE_NODE_MULTI_WRITER: [],
};
const NODE_CAPABILITY_RPCS: Record<string, string[]> = {
  STAGE_UNSTAGE_VOLUME: ['NodeStageVolume', 'NodeUnstageVolume'],
  GET_VOLUME_STATS: ['NodeGetVolumeStats'],
  EXPAND_VOLUME: ['NodeExpandVolume'],
  VOLUME_CONDITION: ['NodeGetVolumeStats'],
  SINGLE_NODE_MULTI_WRITER: [],
};

/** A daemon context whose volume manager throws on every use: a handler that reaches it answers INTERNAL. */
function stubContext(): DriverContext {
  const volumes = new Proxy({} as VolumeManager, {
    get(_, prop) {
      throw new Error(`no volume manager in this test (${String(prop)})`);
    },
  });
  return { driverName: 'kubevirt.io.hostpath-provisioner', version: 'test', node: 'n1', volumes, log: silentLogger() };
}

interface Answer {
  code: grpc.status;
  details: string;
}

/** Calls one method with an empty request (streams too) and gives the final status. */
function call(client: grpc.Client, def: AnyMethod, metadata = new grpc.Metadata()): Promise<Answer> {
  const options = { deadline: Date.now() + 10_000 };
  return new Promise((resolve, reject) => {
    if (def.requestStream) return reject(new Error(`${def.path}: client streams are not in the CSI spec`));
    if (def.responseStream) {
      const stream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {}, metadata, options);
      stream.on('data', () => {});
      stream.on('error', () => {}); // the status below tells
      stream.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details }));
      return;
    }
    client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, {}, metadata, options, (err) =>
      resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' }),
    );
  });
}

/** Every method of every proto service on `address`, answered. */
async function callAll(address: string, metadata?: grpc.Metadata): Promise<Map<string, Answer>> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    const out = new Map<string, Answer>();
    for (const [service, methods] of protoServices()) {
      for (const [name, def] of methods) out.set(`${service}.${name}`, await call(client, def, metadata));
    }
    return out;
  } finally {
    client.close();
  }
}

const unimplemented = (answers: Map<string, Answer>) =>
  [...answers].filter(([, a]) => a.code === grpc.status.UNIMPLEMENTED).map(([m]) => m).sort();

describe('the CSI service binding', () => {
  const log = silentLogger();
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-binding-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the proto has the three services the driver serves, and two it does not', () => {
    expect([...protoServices().keys()].sort()).toEqual(['Controller', 'GroupController', 'Identity', 'Node', 'SnapshotMetadata']);
  });

  it('serves each method of a service with its handler and answers UNIMPLEMENTED for the others', async () => {
    const csi = loadCsi();
    const impl = bindService(csi.Node.service, { NodeGetInfo: async () => ({ node_id: 'n1' }) }, log);
    // Every method of the definition has an implementation (none left to grpc-js's default).
    expect(Object.keys(impl).sort()).toEqual(Object.keys(csi.Node.service).sort());
    const answer = (method: string) =>
      new Promise<{ err: grpc.ServerErrorResponse | Partial<grpc.StatusObject> | null; res: unknown }>((resolve) => {
        const fake = { request: {}, metadata: new grpc.Metadata(), getPeer: () => 'test' } as unknown as grpc.ServerUnaryCall<unknown, unknown>;
        impl[method]!(fake, (err, res) => resolve({ err, res }));
      });
    expect(await answer('NodeGetInfo')).toEqual({ err: null, res: { node_id: 'n1' } });
    const stage = await answer('NodeStageVolume');
    expect(stage.err).toMatchObject({ code: grpc.status.UNIMPLEMENTED, details: 'NodeStageVolume is not supported by this driver' });
  });

  it('refuses a handler for a method the service does not have', () => {
    const csi = loadCsi();
    const bogus = { NodeGetInfo: async () => ({}), NodeFrobnicate: async () => ({}) };
    expect(() => bindService(csi.Node.service, bogus, log)).toThrow(/NodeFrobnicate is not a method/);
  });

  describe('on the daemon socket (CsiServer)', () => {
    let server: CsiServer;
    let answers: Map<string, Answer>;
    const ctx = stubContext();
    const handled = {
      Identity: Object.keys(identityService(ctx)),
      Controller: Object.keys(controllerService(ctx)),
      Node: Object.keys(nodeService(ctx)),
    };

    beforeAll(async () => {
      server = new CsiServer(ctx, log);
      const endpoint = `unix://${dir}/csi.sock`;
      await server.claim(endpoint);
      await server.listen();
      answers = await callAll(endpoint);
    });
    afterAll(() => server?.close(1_000));

    it('every method of the proto is either handled or UNIMPLEMENTED', () => {
      for (const [service, methods] of protoServices()) {
        const ours: string[] = handled[service as keyof typeof handled] ?? [];
        for (const method of methods.keys()) {
          const a = answers.get(`${service}.${method}`)!;
          if (ours.includes(method)) expect(a.code, `${service}.${method} has a handler: ${a.details}`).not.toBe(grpc.status.UNIMPLEMENTED);
          else expect(a.code, `${service}.${method} has none`).toBe(grpc.status.UNIMPLEMENTED);
        }
      }
    });

    it('UNIMPLEMENTED are exactly the RPCs of capabilities it does not offer and the services it does not serve', () => {
      const groupAndMetadata = [...protoServices()]
        .filter(([s]) => s === 'GroupController' || s === 'SnapshotMetadata')
        .flatMap(([s, methods]) => [...methods.keys()].map((m) => `${s}.${m}`));
      expect(unimplemented(answers)).toEqual(
        [
          'Controller.ControllerModifyVolume',
          'Controller.ControllerPublishVolume',
          'Controller.ControllerUnpublishVolume',
          'Controller.GetSnapshot',
          'Node.NodeStageVolume',
          'Node.NodeUnstageVolume',
          ...groupAndMetadata,
        ].sort(),
      );
      // The daemon's own answer for its services, grpc-js's for the services it does not serve.
      expect(answers.get('Controller.GetSnapshot')!.details).toBe('GetSnapshot is not supported by this driver');
      expect(answers.get('Node.NodeStageVolume')!.details).toBe('NodeStageVolume is not supported by this driver');
    });

    it('every capability it offers has its RPCs served', () => {
      for (const cap of CONTROLLER_CAPABILITIES) {
        expect(CONTROLLER_CAPABILITY_RPCS[cap], `controller capability ${cap} is in the map`).toBeDefined();
        for (const rpc of CONTROLLER_CAPABILITY_RPCS[cap]!) expect(handled.Controller, `${cap} needs ${rpc}`).toContain(rpc);
      }
      for (const cap of NODE_CAPABILITIES) {
        expect(NODE_CAPABILITY_RPCS[cap], `node capability ${cap} is in the map`).toBeDefined();
        for (const rpc of NODE_CAPABILITY_RPCS[cap]!) expect(handled.Node, `${cap} needs ${rpc}`).toContain(rpc);
      }
    });
  });

  describe('on the peer endpoint (PeerServer)', () => {
    const token = 'binding-test-token-0123456789';
    let peer: PeerServer;
    let answers: Map<string, Answer>;
    let anonymous: Map<string, Answer>;

    beforeAll(async () => {
      peer = new PeerServer(stubContext(), log, token);
      const port = await peer.listen('127.0.0.1:0');
      answers = await callAll(`127.0.0.1:${port}`, tokenMetadata(token));
      anonymous = await callAll(`127.0.0.1:${port}`);
    });
    afterAll(() => peer?.close(1_000));

    it('serves only Identity and the routed Controller methods; the rest is UNIMPLEMENTED', () => {
      const served = new Set([...Object.keys(identityService(stubContext())).map((m) => `Identity.${m}`), ...PEER_CONTROLLER_METHODS.map((m) => `Controller.${m}`)]);
      const all = [...answers.keys()];
      expect(unimplemented(answers)).toEqual(all.filter((m) => !served.has(m)).sort());
      expect(answers.get('Controller.CreateVolume')!.details).toBe('CreateVolume is not served on the peer endpoint');
    });

    it('refuses the served methods without the token', () => {
      for (const m of PEER_CONTROLLER_METHODS) expect(anonymous.get(`Controller.${m}`)!.code, m).toBe(grpc.status.UNAUTHENTICATED);
      expect(anonymous.get('Identity.Probe')!.code).toBe(grpc.status.UNAUTHENTICATED);
    });
  });

  describe('on the routing controller (RouterApp)', () => {
    let router: RouterApp;
    let answers: Map<string, Answer>;

    beforeAll(async () => {
      const endpoint = `unix://${dir}/router.sock`;
      router = new RouterApp({ endpoint, driverName: 'kubevirt.io.hostpath-provisioner', version: 'test', token: 'x'.repeat(20), peers: new StaticPeers(new Map()), log }, log);
      await router.start();
      answers = await callAll(endpoint);
    });
    afterAll(() => router?.stop());

    it('answers UNIMPLEMENTED for every Controller RPC it does not route, and for Node', () => {
      const served = new Set(['Identity.GetPluginInfo', 'Identity.GetPluginCapabilities', 'Identity.Probe', 'Controller.ControllerGetCapabilities', 'Controller.CreateSnapshot', 'Controller.DeleteSnapshot', 'Controller.ListSnapshots', 'Controller.ControllerExpandVolume']);
      expect(unimplemented(answers)).toEqual([...answers.keys()].filter((m) => !served.has(m)).sort());
      expect(answers.get('Controller.CreateVolume')!.details).toBe('CreateVolume is served by the node daemons, not by the routing controller');
      // Unfiltered ListSnapshots over no known node: an empty list.
      expect(answers.get('Controller.ListSnapshots')!.code).toBe(grpc.status.OK);
    });
  });
});
