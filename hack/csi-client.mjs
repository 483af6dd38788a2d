#!/usr/bin/env node
// A tiny CSI client for trying the driver by hand (after `npm run build`). SIZE is bytes (1073741824),
// binary Ki Mi Gi Ti (10Gi) or decimal K M G T (10G).
//   node hack/csi-client.mjs ENDPOINT info|probe|list|capacity [pool]
//   node hack/csi-client.mjs ENDPOINT create NAME SIZE [mount|block] [key=value ...]
//   node hack/csi-client.mjs ENDPOINT restore NAME SNAPSHOT_ID SIZE [mount|block] [key=value ...]
//   node hack/csi-client.mjs ENDPOINT clone NAME SOURCE_VOLUME_ID SIZE [mount|block] [key=value ...]
//   node hack/csi-client.mjs ENDPOINT publish VOLUME_ID TARGET [mount|block] [ro]
//   node hack/csi-client.mjs ENDPOINT unpublish VOLUME_ID TARGET
//   node hack/csi-client.mjs ENDPOINT expand VOLUME_ID SIZE [TARGET [mount|block]]   controller, then node at TARGET
//   node hack/csi-client.mjs ENDPOINT node-expand VOLUME_ID SIZE TARGET [mount|block]
//   node hack/csi-client.mjs ENDPOINT stats VOLUME_ID PATH
//   node hack/csi-client.mjs ENDPOINT delete VOLUME_ID
//   node hack/csi-client.mjs ENDPOINT create-snapshot NAME SOURCE_VOLUME_ID
//   node hack/csi-client.mjs ENDPOINT delete-snapshot SNAPSHOT_ID
//   node hack/csi-client.mjs ENDPOINT list-snapshots [--source VOLUME_ID | --id SNAPSHOT_ID]
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const UNITS = { '': 1n, K: 1000n, M: 1000n ** 2n, G: 1000n ** 3n, T: 1000n ** 4n, Ki: 1024n, Mi: 1024n ** 2n, Gi: 1024n ** 3n, Ti: 1024n ** 4n };

export class UsageError extends Error {}

/** "10Gi" → "10737418240": bytes as a decimal string (CSI's int64); a UsageError for anything else. */
export function parseSize(text) {
  const m = /^(\d+)(Ki|Mi|Gi|Ti|K|M|G|T)?$/.exec(String(text ?? ''));
  if (!m) {
    throw new UsageError(`invalid size ${JSON.stringify(text ?? '')}: give bytes (1073741824), binary Ki Mi Gi Ti (10Gi) or decimal K M G T (10G)`);
  }
  const bytes = BigInt(m[1]) * UNITS[m[2] ?? ''];
  if (bytes >= 2n ** 63n) throw new UsageError(`size ${text} is more than an int64 holds`);
  return bytes.toString();
}

const cap = (type = 'mount') => {
  if (type !== 'mount' && type !== 'block') throw new UsageError(`access type ${JSON.stringify(type)}: mount or block`);
  return { access_mode: { mode: 'SINGLE_NODE_WRITER' }, ...(type === 'block' ? { block: {} } : { mount: {} }) };
};

function parameters(kv) {
  return Object.fromEntries(
    kv.map((p) => {
      const i = p.indexOf('=');
      if (i <= 0) throw new UsageError(`parameter ${JSON.stringify(p)}: want key=value`);
      return [p.slice(0, i), p.slice(i + 1)];
    }),
  );
}

/** The first optional argument is the access type when it is one; the rest are parameters. */
function typeAndParameters(rest) {
  const [first, ...more] = rest;
  return first === 'mount' || first === 'block' ? { type: first, kv: more } : { type: 'mount', kv: rest };
}

function createRequest(name, size, rest, source) {
  const { type, kv } = typeAndParameters(rest);
  return {
    name,
    capacity_range: { required_bytes: parseSize(size) },
    volume_capabilities: [cap(type)],
    parameters: parameters(kv),
    ...(source ? { volume_content_source: source } : {}),
  };
}

/**
 * Each command: its arguments (for the usage line and the arity check) and what it calls, given
 * `call(service, method, request)`. Arguments are checked before anything is called.
 */
export const COMMANDS = {
  info: { args: '', run: async (call) => ({ plugin: await call('Identity', 'GetPluginInfo', {}), node: await call('Node', 'NodeGetInfo', {}) }) },
  probe: { args: '', run: (call) => call('Identity', 'Probe', {}) },
  list: { args: '', run: (call) => call('Controller', 'ListVolumes', {}) },
  capacity: { args: '[pool]', max: 1, run: (call, pool) => call('Controller', 'GetCapacity', { parameters: pool ? { storagePool: pool } : {} }) },
  create: { args: 'NAME SIZE [mount|block] [key=value ...]', min: 2, max: Infinity, build: (name, size, ...rest) => createRequest(name, size, rest), run: (call, req) => call('Controller', 'CreateVolume', req) },
  restore: {
    args: 'NAME SNAPSHOT_ID SIZE [mount|block] [key=value ...]',
    min: 3,
    max: Infinity,
    build: (name, snap, size, ...rest) => createRequest(name, size, rest, { snapshot: { snapshot_id: snap } }),
    run: (call, req) => call('Controller', 'CreateVolume', req),
  },
  clone: {
    args: 'NAME SOURCE_VOLUME_ID SIZE [mount|block] [key=value ...]',
    min: 3,
    max: Infinity,
    build: (name, src, size, ...rest) => createRequest(name, size, rest, { volume: { volume_id: src } }),
    run: (call, req) => call('Controller', 'CreateVolume', req),
  },
  publish: {
    args: 'VOLUME_ID TARGET [mount|block] [ro]',
    min: 2,
    max: 4,
    build: (id, target, type, ro) => {
      if (ro !== undefined && ro !== 'ro') throw new UsageError(`${JSON.stringify(ro)}: only "ro" may follow the access type`);
      return { volume_id: id, target_path: target, volume_capability: cap(type), readonly: ro === 'ro' };
    },
    run: (call, req) => call('Node', 'NodePublishVolume', req),
  },
  unpublish: { args: 'VOLUME_ID TARGET', min: 2, build: (id, target) => ({ volume_id: id, target_path: target }), run: (call, req) => call('Node', 'NodeUnpublishVolume', req) },
  expand: {
    args: 'VOLUME_ID SIZE [TARGET [mount|block]]',
    min: 2,
    max: 4,
    build: (id, size, target, type) => ({ id, bytes: parseSize(size), target, capability: cap(type) }),
    run: async (call, { id, bytes, target, capability }) => {
      const controller = await call('Controller', 'ControllerExpandVolume', { volume_id: id, capacity_range: { required_bytes: bytes }, volume_capability: capability });
      if (!target) {
        return controller.node_expansion_required ? { controller, note: 'node expansion required: run expand again with the TARGET the volume is published at' } : { controller };
      }
      const node = await call('Node', 'NodeExpandVolume', { volume_id: id, volume_path: target, capacity_range: { required_bytes: bytes }, volume_capability: capability });
      return { controller, node };
    },
  },
  'node-expand': {
    args: 'VOLUME_ID SIZE TARGET [mount|block]',
    min: 3,
    max: 4,
    build: (id, size, target, type) => ({ volume_id: id, volume_path: target, capacity_range: { required_bytes: parseSize(size) }, volume_capability: cap(type) }),
    run: (call, req) => call('Node', 'NodeExpandVolume', req),
  },
  stats: { args: 'VOLUME_ID PATH', min: 2, build: (id, p) => ({ volume_id: id, volume_path: p }), run: (call, req) => call('Node', 'NodeGetVolumeStats', req) },
  delete: { args: 'VOLUME_ID', min: 1, build: (id) => ({ volume_id: id }), run: (call, req) => call('Controller', 'DeleteVolume', req) },
  'create-snapshot': {
    args: 'NAME SOURCE_VOLUME_ID',
    min: 2,
    build: (name, src) => ({ name, source_volume_id: src }),
    run: (call, req) => call('Controller', 'CreateSnapshot', req),
  },
  'delete-snapshot': { args: 'SNAPSHOT_ID', min: 1, build: (id) => ({ snapshot_id: id }), run: (call, req) => call('Controller', 'DeleteSnapshot', req) },
  'list-snapshots': {
    args: '[--source VOLUME_ID | --id SNAPSHOT_ID]',
    max: 2,
    build: (flag, value) => {
      if (flag === undefined) return {};
      if (value === undefined || (flag !== '--source' && flag !== '--id')) throw new UsageError('list-snapshots takes --source VOLUME_ID or --id SNAPSHOT_ID');
      return flag === '--source' ? { source_volume_id: value } : { snapshot_id: value };
    },
    run: (call, req) => call('Controller', 'ListSnapshots', req),
  },
};

/** The command and its request from the command line (after ENDPOINT); throws UsageError. */
export function parseCommand(cmd, args) {
  const c = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!c) throw new UsageError(`unknown command ${JSON.stringify(cmd)}; one of: ${Object.keys(COMMANDS).join(', ')}`);
  const min = c.min ?? 0;
  const max = c.max ?? min;
  if (args.length < min || args.length > max) throw new UsageError(`usage: csi-client.mjs ENDPOINT ${cmd} ${c.args}`.trimEnd());
  return { command: c, request: c.build ? c.build(...args) : args[0] };
}

async function main(argv) {
  const [endpoint, cmd, ...args] = argv;
  if (!endpoint || !cmd) {
    console.error('usage: csi-client.mjs unix:///path/csi.sock COMMAND [ARGS]  (see the top of this file)');
    return 2;
  }
  let parsed;
  try {
    parsed = parseCommand(cmd, args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`csi-client: ${err.message}`);
    return 2;
  }
  const grpc = await import('@grpc/grpc-js');
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const { loadCsi } = await import(pathToFileURL(path.join(root, 'dist/src/csi/proto.js')).href);
  const csi = loadCsi();
  const creds = grpc.credentials.createInsecure();
  const clients = { Identity: new csi.Identity(endpoint, creds), Controller: new csi.Controller(endpoint, creds), Node: new csi.Node(endpoint, creds) };
  const call = (svc, method, req) => new Promise((resolve, reject) => clients[svc][method](req, (err, res) => (err ? reject(err) : resolve(res))));
  try {
    console.log(JSON.stringify(await parsed.command.run(call, parsed.request), null, 2));
    return 0;
  } catch (err) {
    console.error(`${grpc.status[err.code] ?? err.code}: ${err.details ?? err.message}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exit(await main(process.argv.slice(2)));
}
