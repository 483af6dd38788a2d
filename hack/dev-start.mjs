// `npm start`: run the built driver on a local socket with a pool named "default" under .data/.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_METRICS_ADDRESS, parseListenAddress } from '../dist/src/observe/http.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const data = process.env.HPP_DATA_DIR ?? path.join(root, '.data');
const pool = path.join(data, 'pools', 'default');
mkdirSync(pool, { recursive: true });
const endpoint = process.env.CSI_ENDPOINT ?? `unix://${path.join(data, 'csi.sock')}`;
const args = process.argv.slice(2);
// A developer's machine: metrics and health on loopback only, unless --metrics-address or
// METRICS_ADDRESS says otherwise. The DaemonSet passes its own address (deploy/daemonset.yaml).
const metricsGiven = args.some((a) => a === '--metrics-address' || a.startsWith('--metrics-address=')) || process.env.METRICS_ADDRESS !== undefined;
const metrics = metricsGiven ? [] : ['--metrics-address', `127.0.0.1:${parseListenAddress(DEFAULT_METRICS_ADDRESS).port}`];
console.error(`hpp-csi-driver: serving ${endpoint}, pool "default" at ${pool}${metricsGiven ? '' : `, metrics at http://${metrics[1]}/metrics`}`);
const child = spawn(
  process.execPath,
  [path.join(root, 'dist/cmd/hpp-csi-driver.js'), '--endpoint', endpoint, '--pool', `default=${pool}`, '--node-name', os.hostname(), ...metrics, ...args],
  { stdio: 'inherit' },
);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
