import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { DriverOptions } from '../app.js';
import { socketPath } from './endpoint.js';
import { readToken } from './peer-token.js';
import { DEFAULT_METRICS_ADDRESS, parseListenAddress } from '../observe/http.js';
import { ConfigError, LEGACY_POOL_NAME, checkPools, loadPoolsFile, parsePoolFlag, parsePoolsJson, type PoolConfig } from '../pools/config.js';
import { bindName, registrationSocketPath } from './socket-names.js';
import { MAX_SOCKET_PATH } from '../system/unix-socket.js';
import { DEFAULT_RETRY_INITIAL_MS, DEFAULT_RETRY_MAX_MS } from '../pools/supervisor.js';
import { DEFAULT_FILESYSTEM_OVERHEAD, parseOverhead } from '../volumes/disk-image.js';
import { isValidNodeName } from '../volumes/ids.js';
import { POOL_FLAG_FORM, POOL_FLAG_OPTIONS, POOL_KEYS, POOL_KEY_NAMES } from '../pools/pool-keys.js';
import { didYouMean } from '../util/did-you-mean.js';

export const DEFAULT_DRIVER_NAME = 'kubevirt.io.hostpath-provisioner';
export const DEFAULT_ENDPOINT = 'unix:///csi/csi.sock';
const DRIVER_NAME_RE = /^[a-zA-Z][A-Za-z0-9-._]{0,61}[a-zA-Z]$/;
/** pino's levels; anything else makes pino throw. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const MOUNT_BACKENDS = ['auto', 'tools'];

const poolFlagOptionsHelp = Object.entries(POOL_FLAG_OPTIONS)
  .map(([o, { key }]) => `:${o}= sets ${key}`)
  .join(', ');
const poolKeysHelp = POOL_KEY_NAMES.map((k) => `                            ${k}${POOL_KEYS[k].required ? ' (required)' : ''}: ${POOL_KEYS[k].help}`).join('\n');

export const USAGE = `Usage: hpp-csi-driver [flags]

  --endpoint URL          CSI endpoint, unix:///abs/path       env CSI_ENDPOINT   (default ${DEFAULT_ENDPOINT})
  --node-name NAME        this node's name                      env NODE_NAME      (default: hostname)
  --driver-name NAME      CSI driver name                       env DRIVER_NAME    (default ${DEFAULT_DRIVER_NAME})
  --pool ${POOL_FLAG_FORM}
                          a storage pool (repeat)                              env HPP_POOLS="a=/p1,b=/p2"
                          ${poolFlagOptionsHelp}
  --pools-file FILE       JSON list of pools [{"name": ..., "path": ...}] or {"pools": [...]}   env HPP_POOLS_FILE
                          each pool has (any other key is refused; docs/pools-file.schema.json):
${poolKeysHelp}
  --pools-json JSON       the same list inline                  env HPP_POOLS_JSON
  --hostpath PATH         legacy single pool "${LEGACY_POOL_NAME}" (HPP pathConfig.path)   env HPP_HOSTPATH
  --use-naming-prefix     legacy: name directories <ns>-<pvc>-<pv>                     env HPP_USE_NAMING_PREFIX=true
  --filesystem-overhead F share of a Filesystem volume kept from disk.img   env HPP_FILESYSTEM_OVERHEAD (default ${DEFAULT_FILESYSTEM_OVERHEAD})
                          (per pool: "filesystemOverhead"; per StorageClass: parameter filesystemOverhead)
  --metrics-address ADDR  HTTP [HOST]:PORT for /metrics, /healthz, /readyz; "" or off: none
                                                        env METRICS_ADDRESS (default ${DEFAULT_METRICS_ADDRESS})
  --peer-address ADDR     HOST:PORT of the endpoint the snapshot router calls          env PEER_ADDRESS
  --peer-token-file FILE  shared token every peer call must carry (required with it)  env PEER_TOKEN_FILE
  --peer-tls-cert FILE    serve the peer endpoint over TLS with this cert ...        env PEER_TLS_CERT
  --peer-tls-key FILE     ... and key                                                 env PEER_TLS_KEY
  --registration-dir DIR  register with kubelet (node-driver-registrar's job): serve DIR/<driver-name>-reg.sock,
                          DIR being kubelet's plugins_registry as mounted here   env REGISTRATION_DIR (default: off)
  --kubelet-registration-path PATH
                          the CSI socket's path as kubelet sees it on the host   env KUBELET_REGISTRATION_PATH
                                                        (default: the --endpoint path)
  --pool-retry-initial S  first retry of a pool that failed to prepare, in seconds; doubled after each failure
                                                        env HPP_POOL_RETRY_INITIAL (default ${DEFAULT_RETRY_INITIAL_MS / 1000})
  --pool-retry-max S      the longest wait between two retries, in seconds   env HPP_POOL_RETRY_MAX (default ${DEFAULT_RETRY_MAX_MS / 1000})
  --log-level LEVEL       ${LOG_LEVELS.join(', ')}   env LOG_LEVEL (default info)
  --version               print the version and exit
  --help                  print this help

  env HPP_MOUNT_BACKEND   ${MOUNT_BACKENDS.join(' or ')}: "tools" makes bind mounts with mount(8)/umount(8) instead of mount(2) (default auto)

Exit status: 0 stopped, 1 failure, 2 configuration error (one line on stderr naming the flag, variable or file).
`;

export interface CliOptions extends DriverOptions {
  logLevel: string;
  showVersion: boolean;
  showHelp: boolean;
}

export function parseCli(argv: string[], env: NodeJS.ProcessEnv): CliOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        endpoint: { type: 'string' },
        'node-name': { type: 'string' },
        'driver-name': { type: 'string' },
        pool: { type: 'string', multiple: true },
        'pools-file': { type: 'string' },
        'pools-json': { type: 'string' },
        hostpath: { type: 'string' },
        'use-naming-prefix': { type: 'boolean' },
        'log-level': { type: 'string' },
        'filesystem-overhead': { type: 'string' },
        'metrics-address': { type: 'string' },
        'peer-address': { type: 'string' },
        'peer-token-file': { type: 'string' },
        'peer-tls-cert': { type: 'string' },
        'peer-tls-key': { type: 'string' },
        'registration-dir': { type: 'string' },
        'kubelet-registration-path': { type: 'string' },
        'pool-retry-initial': { type: 'string' },
        'pool-retry-max': { type: 'string' },
        version: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const from = (flag: string, envName: string) => source(values as Record<string, unknown>, env, flag, envName);
  const showVersion = values.version === true;
  const showHelp = values.help === true;
  const driverName = values['driver-name'] ?? env.DRIVER_NAME ?? DEFAULT_DRIVER_NAME;
  const nodeName = values['node-name'] ?? env.NODE_NAME ?? os.hostname();
  const endpoint = values.endpoint ?? env.CSI_ENDPOINT ?? DEFAULT_ENDPOINT;
  const logLevel = values['log-level'] ?? (env.LOG_LEVEL || 'info');
  const defaultFilesystemOverhead = values['filesystem-overhead'] ?? env.HPP_FILESYSTEM_OVERHEAD ?? DEFAULT_FILESYSTEM_OVERHEAD;
  const metricsText = values['metrics-address'] ?? env.METRICS_ADDRESS ?? DEFAULT_METRICS_ADDRESS;
  if (showVersion || showHelp) return { driverName, nodeName, endpoint, logLevel, pools: [], showVersion, showHelp, defaultFilesystemOverhead };
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError(`${from('log-level', 'LOG_LEVEL')} ${JSON.stringify(logLevel)}: not a log level${didYouMean(logLevel, LOG_LEVELS)}; levels: ${LOG_LEVELS.join(', ')}`);
  }
  let metricsAddress: string | undefined;
  try {
    metricsAddress = parseListenAddress(metricsText) ? metricsText.trim() : undefined;
  } catch (err) {
    throw new ConfigError(`${from('metrics-address', 'METRICS_ADDRESS')}: ${(err as Error).message}`);
  }
  try {
    parseOverhead(defaultFilesystemOverhead, from('filesystem-overhead', 'HPP_FILESYSTEM_OVERHEAD'));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }

  if (!DRIVER_NAME_RE.test(driverName)) throw new ConfigError(`${from('driver-name', 'DRIVER_NAME')}: driver name ${JSON.stringify(driverName)} is not a valid CSI plugin name`);
  if (!isValidNodeName(nodeName)) {
    const what = values['node-name'] !== undefined || env.NODE_NAME !== undefined ? from('node-name', 'NODE_NAME') : 'the hostname (give --node-name)';
    throw new ConfigError(`${what}: node name ${JSON.stringify(nodeName)} is not valid`);
  }
  if (!endpoint.startsWith('unix:///')) throw new ConfigError(`${from('endpoint', 'CSI_ENDPOINT')}: endpoint ${endpoint} must be unix:///absolute/path`);
  const mountBackend = env.HPP_MOUNT_BACKEND;
  if (mountBackend !== undefined && mountBackend !== '' && !MOUNT_BACKENDS.includes(mountBackend)) {
    throw new ConfigError(`HPP_MOUNT_BACKEND ${JSON.stringify(mountBackend)}: expected ${MOUNT_BACKENDS.join(' or ')}${didYouMean(mountBackend, MOUNT_BACKENDS)}`);
  }

  const pools = parsePools(values, env);
  const registration = registrationOptions(values, env, driverName, endpoint);
  const poolRetry = poolRetryOptions(values, env);
  return { driverName, nodeName, endpoint, logLevel, pools, showVersion, showHelp, defaultFilesystemOverhead, metricsAddress, peer: peerOptions(values, env), registration, poolRetry };
}

/** --pool-retry-initial and --pool-retry-max, in seconds (fractions allowed), as milliseconds. */
function poolRetryOptions(values: Record<string, unknown>, env: NodeJS.ProcessEnv): NonNullable<DriverOptions['poolRetry']> {
  const seconds = (flag: string, envName: string, fallbackMs: number): number => {
    const text = (values[flag] as string | undefined) ?? env[envName];
    if (text === undefined || text === '') return fallbackMs;
    const n = Number(text);
    if (!/^\d+(\.\d+)?$/.test(text.trim()) || !(n > 0) || n > 86_400) {
      throw new ConfigError(`${source(values, env, flag, envName)} ${JSON.stringify(text)}: expected seconds, more than 0 and at most 86400`);
    }
    return Math.round(n * 1000);
  };
  const initialMs = seconds('pool-retry-initial', 'HPP_POOL_RETRY_INITIAL', DEFAULT_RETRY_INITIAL_MS);
  const maxMs = seconds('pool-retry-max', 'HPP_POOL_RETRY_MAX', Math.max(DEFAULT_RETRY_MAX_MS, initialMs));
  if (maxMs < initialMs) throw new ConfigError(`--pool-retry-max (${maxMs / 1000} s) is less than --pool-retry-initial (${initialMs / 1000} s)`);
  return { initialMs, maxMs };
}

/** The pool flags, each with its environment variable as the fallback. */
export interface PoolFlags {
  pool?: string[];
  'pools-file'?: string;
  'pools-json'?: string;
  hostpath?: string;
  'use-naming-prefix'?: boolean;
}

/** The pools the flags and the environment define, checked; hppctl reads them with this too. */
export function parsePools(values: PoolFlags, env: NodeJS.ProcessEnv): PoolConfig[] {
  const pools: PoolConfig[] = [];
  const from = (flag: string, envName: string) => source(values as Record<string, unknown>, env, flag, envName);
  if (values.pool) pools.push(...values.pool.map((p) => parsePoolFlag(p)));
  else if (env.HPP_POOLS) pools.push(...env.HPP_POOLS.split(',').filter(Boolean).map((p) => parsePoolFlag(p, 'HPP_POOLS')));
  const file = values['pools-file'] ?? env.HPP_POOLS_FILE;
  if (file) pools.push(...loadPoolsFile(file, from('pools-file', 'HPP_POOLS_FILE')));
  const json = values['pools-json'] ?? env.HPP_POOLS_JSON;
  if (json) pools.push(...parsePoolsJson(json, from('pools-json', 'HPP_POOLS_JSON')));
  const hostpath = values.hostpath ?? env.HPP_HOSTPATH;
  if (hostpath) {
    const prefix = values['use-naming-prefix'] ?? envBoolean(env, 'HPP_USE_NAMING_PREFIX');
    pools.push({ ...parsePoolFlag(`${LEGACY_POOL_NAME}=${hostpath}`, from('hostpath', 'HPP_HOSTPATH')), useNamingPrefix: prefix });
  }
  return checkPools(pools);
}

/** What set an option, for the errors: `--flag` when given, else the environment variable. */
function source(values: Record<string, unknown>, env: NodeJS.ProcessEnv, flag: string, envName: string): string {
  return values[flag] === undefined && env[envName] !== undefined ? envName : `--${flag}`;
}

/** A boolean environment variable; unset or '' is false, a word that is neither yes nor no is refused. */
function envBoolean(env: NodeJS.ProcessEnv, name: string): boolean {
  const v = (env[name] ?? '').trim().toLowerCase();
  if (['true', '1', 'yes'].includes(v)) return true;
  if (['false', '0', 'no', ''].includes(v)) return false;
  throw new ConfigError(`${name} ${JSON.stringify(env[name])}: expected true or false`);
}

function peerOptions(values: Record<string, unknown>, env: NodeJS.ProcessEnv): DriverOptions['peer'] {
  const address = (values['peer-address'] as string | undefined) ?? env.PEER_ADDRESS;
  if (!address) return undefined;
  const addressFrom = source(values, env, 'peer-address', 'PEER_ADDRESS');
  const port = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(address)?.[2];
  if (port === undefined || Number(port) > 65535) throw new ConfigError(`${addressFrom} ${JSON.stringify(address)}: expected HOST:PORT`);
  const tokenFile = (values['peer-token-file'] as string | undefined) ?? env.PEER_TOKEN_FILE;
  if (!tokenFile) throw new ConfigError('--peer-address needs --peer-token-file: the peer endpoint is never open without a token');
  let token: string;
  try {
    token = readToken(tokenFile);
  } catch (err) {
    throw new ConfigError(`${source(values, env, 'peer-token-file', 'PEER_TOKEN_FILE')}: ${(err as Error).message}`);
  }
  const certFile = (values['peer-tls-cert'] as string | undefined) ?? env.PEER_TLS_CERT;
  const keyFile = (values['peer-tls-key'] as string | undefined) ?? env.PEER_TLS_KEY;
  if (!!certFile !== !!keyFile) throw new ConfigError('--peer-tls-cert and --peer-tls-key go together');
  // Read again when the endpoint is served; an unreadable file is a configuration error, not a crash then.
  if (certFile) readable(certFile, source(values, env, 'peer-tls-cert', 'PEER_TLS_CERT'));
  if (keyFile) readable(keyFile, source(values, env, 'peer-tls-key', 'PEER_TLS_KEY'));
  return { address, token, ...(certFile && keyFile ? { tls: { certFile, keyFile } } : {}) };
}

/** --registration-dir and --kubelet-registration-path; undefined when the daemon does not register itself. */
function registrationOptions(values: Record<string, unknown>, env: NodeJS.ProcessEnv, driverName: string, endpoint: string): DriverOptions['registration'] {
  const dir = (values['registration-dir'] as string | undefined) ?? env.REGISTRATION_DIR ?? '';
  const kubeletText = (values['kubelet-registration-path'] as string | undefined) ?? (env.KUBELET_REGISTRATION_PATH || undefined);
  if (dir === '') {
    if (kubeletText !== undefined) throw new ConfigError('--kubelet-registration-path needs --registration-dir: without it the daemon does not register with kubelet');
    return undefined;
  }
  if (!path.isAbsolute(dir)) throw new ConfigError(`--registration-dir ${JSON.stringify(dir)} must be an absolute path (kubelet's plugins_registry directory as mounted here)`);
  const socket = registrationSocketPath(path.normalize(dir), driverName);
  checkSocketLength(socket, `--registration-dir: the registration socket ${socket}`);
  checkSocketLength(bindName(socket), `--registration-dir: the registration socket's bind name ${bindName(socket)}`);
  // kubelet dials a plain path; accept the unix:// form --endpoint uses as well.
  const kubeletEndpoint = kubeletText === undefined ? socketPath(endpoint) : kubeletText.replace(/^unix:\/\//, '');
  if (!path.isAbsolute(kubeletEndpoint)) {
    throw new ConfigError(`--kubelet-registration-path ${JSON.stringify(kubeletText)} must be an absolute path: the CSI socket as kubelet sees it on the host`);
  }
  checkSocketLength(kubeletEndpoint, `--kubelet-registration-path ${kubeletEndpoint}`);
  return { dir: path.normalize(dir), kubeletEndpoint };
}

function checkSocketLength(sock: string, what: string): void {
  const bytes = Buffer.byteLength(sock);
  if (bytes > MAX_SOCKET_PATH) throw new ConfigError(`${what} is ${bytes} bytes long; a unix socket path can have at most ${MAX_SOCKET_PATH}`);
}

function readable(file: string, what: string): void {
  try {
    readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(`${what} ${file}: cannot read it: ${e.code ? e.message.split(',')[0] : e.message}`);
  }
}
