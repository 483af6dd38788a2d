#!/usr/bin/env node
// A tiny CSI client for trying the driver by hand (after `npm run build`).
//   node hack/csi-client.mjs ENDPOINT info|probe|list|capacity [pool]
//   node hack/csi-client.mjs ENDPOINT create NAME BYTES [mount|block] [key=value ...]
//   node hack/csi-client.mjs ENDPOINT publish VOLUME_ID TARGET [mount|block] [ro]
//   node hack/csi-client.mjs ENDPOINT unpublish VOLUME_ID TARGET
//   node hack/csi-client.mjs ENDPOINT expand VOLUME_ID BYTES
//   node hack/csi-client.mjs ENDPOINT stats VOLUME_ID PATH
//   node hack/csi-client.mjs ENDPOINT delete VOLUME_ID
import * as grpc from '@grpc/grpc-js';
import { loadCsi } from '../dist/src/csi/proto.js';

const [endpoint, cmd, ...args] = process.argv.slice(2);
if (!endpoint || !cmd) {
  console.error('usage: csi-client.mjs unix:///path/csi.sock COMMAND [ARGS]  (see the top of this file)');
  process.exit(2);
}
const csi = loadCsi();
const creds = grpc.credentials.createInsecure();
const clients = { Identity: new csi.Identity(endpoint, creds), Controller: new csi.Controller(endpoint, creds), Node: new csi.Node(endpoint, creds) };
const call = (svc, method, req) =>
  new Promise((resolve, reject) => clients[svc][method](req, (err, res) => (err ? reject(err) : resolve(res))));
const cap = (type = 'mount') => ({ access_mode: { mode: 'SINGLE_NODE_WRITER' }, ...(type === 'block' ? { block: {} } : { mount: {} }) });

const commands = {
  info: async () => ({ plugin: await call('Identity', 'GetPluginInfo', {}), node: await call('Node', 'NodeGetInfo', {}) }),
  probe: () => call('Identity', 'Probe', {}),
  list: () => call('Controller', 'ListVolumes', {}),
  capacity: (pool) => call('Controller', 'GetCapacity', { parameters: pool ? { storagePool: pool } : {} }),
  create: (name, bytes, type, ...kv) =>
    call('Controller', 'CreateVolume', {
      name,
      capacity_range: { required_bytes: bytes },
      volume_capabilities: [cap(type)],
      parameters: Object.fromEntries(kv.map((p) => p.split('='))),
    }),
  publish: (id, target, type, ro) => call('Node', 'NodePublishVolume', { volume_id: id, target_path: target, volume_capability: cap(type), readonly: ro === 'ro' }),
  unpublish: (id, target) => call('Node', 'NodeUnpublishVolume', { volume_id: id, target_path: target }),
  expand: async (id, bytes) => ({
    controller: await call('Controller', 'ControllerExpandVolume', { volume_id: id, capacity_range: { required_bytes: bytes } }),
  }),
  stats: (id, p) => call('Node', 'NodeGetVolumeStats', { volume_id: id, volume_path: p }),
  delete: (id) => call('Controller', 'DeleteVolume', { volume_id: id }),
};
const fn = commands[cmd];
if (!fn) {
  console.error(`unknown command ${cmd}; one of: ${Object.keys(commands).join(', ')}`);
  process.exit(2);
}
try {
  console.log(JSON.stringify(await fn(...args), null, 2));
  process.exit(0);
} catch (err) {
  console.error(`${grpc.status[err.code] ?? err.code}: ${err.details ?? err.message}`);
  process.exit(1);
}
