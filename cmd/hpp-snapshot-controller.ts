#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { readToken } from '../src/config/peer-token.js';
import { DEFAULT_DRIVER_NAME, DEFAULT_ENDPOINT } from '../src/config/options.js';
import { EndpointTakenError } from '../src/csi/socket-claim.js';
import { createLogger } from '../src/observe/logger.js';
import { RouterApp } from '../src/router/app.js';
import { KubernetesPeers, StaticPeers, type PeerResolver } from '../src/router/peers.js';
import { DEFAULT_FAN_OUT_TIMEOUT_MS } from '../src/router/service.js';
import { VERSION } from '../src/version.js';

const USAGE = `Usage: hpp-snapshot-controller [flags]

Routes CreateSnapshot, DeleteSnapshot, ListSnapshots and ControllerExpandVolume to the daemon on the
node that owns the volume, for external-snapshotter and external-resizer running as a Deployment.

  --endpoint URL        CSI endpoint, unix:///abs/path            env CSI_ENDPOINT (default ${DEFAULT_ENDPOINT})
  --driver-name NAME    CSI driver name                            env DRIVER_NAME  (default ${DEFAULT_DRIVER_NAME})
  --token-file FILE     shared bearer token for the daemons' peer endpoints (required)   env PEER_TOKEN_FILE
  --peer NODE=HOST:PORT a daemon's peer endpoint (repeat)
  --peers-file FILE     JSON {"node": "host:port"}, re-read when it changes
  --discover-kubernetes find daemon pods through the Kubernetes API (in-cluster service account)
  --namespace NS        namespace of the daemon pods               env POD_NAMESPACE
  --selector SEL        label selector of the daemon pods          (default app.kubernetes.io/name=hostpath-provisioner-csi,app.kubernetes.io/component=node-plugin)
  --peer-port PORT      daemons' peer port                         (default 9700)
  --peer-ca FILE        CA of the daemons' peer TLS certificates (plain TCP when absent)
  --peer-tls-server-name NAME  name to check the daemons' certificates against, instead of the
                        address dialled (one certificate for all daemons, e.g. hpp-peer.<namespace>)
  --fan-out-timeout DURATION  how long a call that asks every node (unfiltered ListSnapshots, the
                        snapshot name check) waits for each one, e.g. 5s or 500ms (default ${DEFAULT_FAN_OUT_TIMEOUT_MS / 1000}s)
  --log-level LEVEL     pino level                                 env LOG_LEVEL (default info)
  --version, --help
`;

function fail(msg: string): never {
  process.stderr.write(`hpp-snapshot-controller: ${msg}\n\n${USAGE}`);
  process.exit(2);
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: {
        endpoint: { type: 'string' },
        'driver-name': { type: 'string' },
        'token-file': { type: 'string' },
        peer: { type: 'string', multiple: true },
        'peers-file': { type: 'string' },
        'discover-kubernetes': { type: 'boolean' },
        namespace: { type: 'string' },
        selector: { type: 'string' },
        'peer-port': { type: 'string' },
        'peer-ca': { type: 'string' },
        'peer-tls-server-name': { type: 'string' },
        'fan-out-timeout': { type: 'string' },
        'log-level': { type: 'string' },
        version: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.version) return void process.stdout.write(`hpp-snapshot-controller ${VERSION}\n`);
  if (values.help) return void process.stdout.write(USAGE);
  const tokenFile = values['token-file'] ?? process.env.PEER_TOKEN_FILE;
  if (!tokenFile) fail('--token-file is required: the daemons refuse calls without the shared token');
  let token: string;
  try {
    token = readToken(tokenFile);
  } catch (err) {
    fail((err as Error).message);
  }
  let peers: PeerResolver;
  if (values['discover-kubernetes']) {
    const namespace = values.namespace ?? process.env.POD_NAMESPACE;
    if (!namespace) fail('--discover-kubernetes needs --namespace (or POD_NAMESPACE)');
    peers = new KubernetesPeers({ namespace, selector: values.selector ?? 'app.kubernetes.io/name=hostpath-provisioner-csi,app.kubernetes.io/component=node-plugin', port: Number(values['peer-port'] ?? 9700) });
  } else {
    const fixed = new Map<string, string>();
    for (const p of values.peer ?? []) {
      const eq = p.indexOf('=');
      if (eq <= 0) fail(`--peer ${JSON.stringify(p)}: expected NODE=HOST:PORT`);
      fixed.set(p.slice(0, eq), p.slice(eq + 1));
    }
    if (fixed.size === 0 && !values['peers-file']) fail('give --peer, --peers-file or --discover-kubernetes');
    peers = new StaticPeers(fixed, values['peers-file']);
  }
  let fanOutTimeoutMs = DEFAULT_FAN_OUT_TIMEOUT_MS;
  if (values['fan-out-timeout'] !== undefined) {
    const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(values['fan-out-timeout']);
    fanOutTimeoutMs = m ? Number(m[1]) * (m[2] === 's' ? 1000 : 1) : NaN;
    if (!(fanOutTimeoutMs >= 1)) fail(`--fan-out-timeout ${JSON.stringify(values['fan-out-timeout'])}: expected a duration such as 5s or 500ms`);
  }
  const log = createLogger({ name: 'hpp-snapshot-controller', level: values['log-level'] ?? process.env.LOG_LEVEL ?? 'info' });
  const app = new RouterApp(
    {
      endpoint: values.endpoint ?? process.env.CSI_ENDPOINT ?? DEFAULT_ENDPOINT,
      driverName: values['driver-name'] ?? process.env.DRIVER_NAME ?? DEFAULT_DRIVER_NAME,
      version: VERSION,
      token,
      peers,
      caFile: values['peer-ca'],
      tlsServerName: values['peer-tls-server-name'],
      fanOutTimeoutMs,
      log,
    },
    log,
  );
  let stopping = false;
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, 'shutting down');
      app.stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
  await app.start();
}

main().catch((err) => {
  // An endpoint taken is an expected refusal: its message says it all.
  const text = err instanceof EndpointTakenError ? err.message : err instanceof Error ? err.stack : String(err);
  process.stderr.write(`hpp-snapshot-controller: ${text}\n`);
  process.exit(1);
});
