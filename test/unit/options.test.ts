import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_DRIVER_NAME, DEFAULT_ENDPOINT, LOG_LEVELS, USAGE, parseCli } from '../../src/config/options.js';
import { ConfigError } from '../../src/pools/config.js';
import { POOL_FLAG_FORM, POOL_FLAG_OPTIONS, POOL_KEYS } from '../../src/pools/pool-keys.js';

const POOL = ['--pool', 'default=/var/hpp'];

describe('parseCli', () => {
  it('flags set every option', () => {
    const o = parseCli(
      ['--endpoint', 'unix:///run/csi/x.sock', '--node-name', 'n1', '--driver-name', 'my.driver', '--pool', 'a=/p/a', '--pool', 'b=/p/b', '--log-level', 'debug'],
      {},
    );
    expect(o).toMatchObject({
      endpoint: 'unix:///run/csi/x.sock',
      nodeName: 'n1',
      driverName: 'my.driver',
      logLevel: 'debug',
      showVersion: false,
      showHelp: false,
    });
    expect(o.pools).toMatchObject([
      { name: 'a', path: '/p/a', useNamingPrefix: false },
      { name: 'b', path: '/p/b', useNamingPrefix: false },
    ]);
  });

  it('defaults: driver name, endpoint, log level, node name from the hostname', () => {
    const o = parseCli(POOL, {});
    expect(o.driverName).toBe(DEFAULT_DRIVER_NAME);
    expect(DEFAULT_DRIVER_NAME).toBe('kubevirt.io.hostpath-provisioner');
    expect(o.endpoint).toBe(DEFAULT_ENDPOINT);
    expect(o.logLevel).toBe('info');
    expect(o.nodeName).toBe(os.hostname());
  });

  it('environment variables are the equivalents of the flags', () => {
    const o = parseCli([], {
      CSI_ENDPOINT: 'unix:///e.sock',
      NODE_NAME: 'env-node',
      DRIVER_NAME: 'env.driver',
      HPP_POOLS: 'a=/p1,b=/p2',
      LOG_LEVEL: 'warn',
    });
    expect(o).toMatchObject({ endpoint: 'unix:///e.sock', nodeName: 'env-node', driverName: 'env.driver', logLevel: 'warn' });
    expect(o.pools.map((p) => [p.name, p.path])).toEqual([
      ['a', '/p1'],
      ['b', '/p2'],
    ]);
    const j = parseCli([], { HPP_POOLS_JSON: '[{"name":"j","path":"/j"}]' });
    expect(j.pools).toMatchObject([{ name: 'j', path: '/j', useNamingPrefix: false }]);
  });

  it('flags win over the environment', () => {
    const o = parseCli(['--node-name', 'flag-node', '--driver-name', 'flag.driver', '--pool', 'f=/f'], {
      NODE_NAME: 'env-node',
      DRIVER_NAME: 'env.driver',
      HPP_POOLS: 'e=/e',
    });
    expect(o.nodeName).toBe('flag-node');
    expect(o.driverName).toBe('flag.driver');
    expect(o.pools.map((p) => p.name)).toEqual(['f']);
  });

  it('--pools-file and HPP_POOLS_FILE', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-unit-opts-'));
    try {
      const file = path.join(dir, 'pools.json');
      writeFileSync(file, JSON.stringify({ pools: [{ name: 'filepool', path: '/fp', useNamingPrefix: true }] }));
      expect(parseCli(['--pools-file', file], {}).pools).toMatchObject([{ name: 'filepool', path: '/fp', useNamingPrefix: true }]);
      expect(parseCli([], { HPP_POOLS_FILE: file }).pools).toMatchObject([{ name: 'filepool', path: '/fp', useNamingPrefix: true }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('legacy --hostpath (and HPP_HOSTPATH) gives the pool "legacy", with the naming prefix when asked', () => {
    expect(parseCli(['--hostpath', '/var/hpvolumes'], {}).pools).toMatchObject([{ name: 'legacy', path: '/var/hpvolumes', useNamingPrefix: false }]);
    expect(parseCli(['--hostpath', '/var/hpvolumes', '--use-naming-prefix'], {}).pools).toMatchObject([
      { name: 'legacy', path: '/var/hpvolumes', useNamingPrefix: true },
    ]);
    expect(parseCli([], { HPP_HOSTPATH: '/h', HPP_USE_NAMING_PREFIX: 'true' }).pools).toMatchObject([{ name: 'legacy', path: '/h', useNamingPrefix: true }]);
    expect(parseCli([], { HPP_HOSTPATH: '/h', HPP_USE_NAMING_PREFIX: 'false' }).pools[0]!.useNamingPrefix).toBe(false);
    // Legacy and named pools together.
    expect(parseCli(['--hostpath', '/h', '--pool', 'x=/x'], {}).pools.map((p) => p.name).sort()).toEqual(['legacy', 'x']);
  });

  it('bad driver names are ConfigErrors', () => {
    for (const bad of ['', '-bad', 'bad-', 'has space', 'a', `a${'b'.repeat(62)}c`, 'x/y', 'ends.9']) {
      expect(() => parseCli([...POOL, '--driver-name', bad], {}), JSON.stringify(bad)).toThrow(ConfigError);
    }
    for (const good of ['ab', 'kubevirt.io.hostpath-provisioner', `a${'b'.repeat(61)}c`, 'a_b.c-D']) {
      expect(parseCli([...POOL, '--driver-name', good], {}).driverName).toBe(good);
    }
  });

  it('other bad input is a ConfigError: no pool, unknown flag, positional, bad endpoint, bad node, overlapping pools', () => {
    expect(() => parseCli([], {})).toThrow(ConfigError);
    expect(() => parseCli([...POOL, '--no-such-flag'], {})).toThrow(ConfigError);
    expect(() => parseCli([...POOL, 'positional'], {})).toThrow(ConfigError);
    expect(() => parseCli([...POOL, '--endpoint', 'tcp://0.0.0.0:1234'], {})).toThrow(ConfigError);
    expect(() => parseCli([...POOL, '--endpoint', 'unix://relative.sock'], {})).toThrow(ConfigError);
    expect(() => parseCli([...POOL, '--node-name', 'bad node'], {})).toThrow(ConfigError);
    expect(() => parseCli(['--pool', 'a=/x', '--pool', 'b=/x/y'], {})).toThrow(ConfigError);
    expect(() => parseCli(['--pool', 'a=/x', '--pool', 'a=/y'], {})).toThrow(ConfigError);
    expect(() => parseCli(['--pool', 'bad'], {})).toThrow(ConfigError);
  });

  it('--version and --help need no pools', () => {
    expect(parseCli(['--version'], {}).showVersion).toBe(true);
    expect(parseCli(['--help'], {}).showHelp).toBe(true);
  });
});

describe('parseCli: registration with kubelet', () => {
  const DIR = '/registration';
  const HOST = '/var/lib/kubelet/plugins/kubevirt.io.hostpath-provisioner/csi.sock';

  it('is off unless --registration-dir (or REGISTRATION_DIR) is given; "" turns it off', () => {
    expect(parseCli(POOL, {}).registration).toBeUndefined();
    expect(parseCli([...POOL, '--registration-dir', ''], { REGISTRATION_DIR: DIR }).registration).toBeUndefined();
  });

  it('kubelet reaches the CSI socket at --kubelet-registration-path, by default at the --endpoint path', () => {
    expect(parseCli([...POOL, '--registration-dir', DIR, '--kubelet-registration-path', HOST], {}).registration).toEqual({ dir: DIR, kubeletEndpoint: HOST });
    expect(parseCli([...POOL, '--endpoint', 'unix:///run/hpp/csi.sock', '--registration-dir', DIR], {}).registration).toEqual({ dir: DIR, kubeletEndpoint: '/run/hpp/csi.sock' });
    // The unix:// form of --endpoint is taken too; kubelet is given the plain path it dials.
    expect(parseCli([...POOL, '--registration-dir', DIR, `--kubelet-registration-path=unix://${HOST}`], {}).registration?.kubeletEndpoint).toBe(HOST);
    expect(parseCli([...POOL, '--registration-dir', '/registration/./sub/..//'], {}).registration?.dir).toBe('/registration/');
  });

  it('environment variables are the equivalents of the flags, and flags win', () => {
    expect(parseCli(POOL, { REGISTRATION_DIR: DIR, KUBELET_REGISTRATION_PATH: HOST }).registration).toEqual({ dir: DIR, kubeletEndpoint: HOST });
    expect(parseCli(POOL, { REGISTRATION_DIR: DIR, KUBELET_REGISTRATION_PATH: '' }).registration).toEqual({ dir: DIR, kubeletEndpoint: '/csi/csi.sock' });
    expect(parseCli([...POOL, '--registration-dir', '/r2', '--kubelet-registration-path', '/h2.sock'], { REGISTRATION_DIR: DIR, KUBELET_REGISTRATION_PATH: HOST }).registration).toEqual({
      dir: '/r2',
      kubeletEndpoint: '/h2.sock',
    });
  });

  it('bad flags are ConfigErrors that say what is wrong', () => {
    const bad = (args: string[], env: NodeJS.ProcessEnv, message: string) => {
      expect(() => parseCli([...POOL, ...args], env), args.join(' ')).toThrow(ConfigError);
      expect(() => parseCli([...POOL, ...args], env), args.join(' ')).toThrow(message);
    };
    bad(['--kubelet-registration-path', HOST], {}, '--kubelet-registration-path needs --registration-dir');
    bad([], { KUBELET_REGISTRATION_PATH: HOST }, '--kubelet-registration-path needs --registration-dir');
    bad(['--registration-dir', 'registration'], {}, '--registration-dir "registration" must be an absolute path');
    bad(['--registration-dir', DIR, '--kubelet-registration-path', 'csi.sock'], {}, '--kubelet-registration-path "csi.sock" must be an absolute path');
    bad(['--registration-dir', DIR, '--kubelet-registration-path', ''], {}, '--kubelet-registration-path "" must be an absolute path');
    bad(['--registration-dir', DIR, '--kubelet-registration-path', 'unix://csi.sock'], {}, 'must be an absolute path');
    // sun_path: 107 bytes. The socket is <driver>-reg.sock (41 bytes for the default driver), bound first
    // as .<driver>-reg.bind (42 bytes).
    const longDir = `/${'d'.repeat(63)}`;
    expect(parseCli([...POOL, '--registration-dir', longDir], {}).registration?.dir).toBe(longDir);
    bad(['--registration-dir', `${longDir}d`], {}, `--registration-dir: the registration socket's bind name ${longDir}d/.kubevirt.io.hostpath-provisioner-reg.bind is 108 bytes long; a unix socket path can have at most 107`);
    bad(['--registration-dir', `${longDir}dd`], {}, `--registration-dir: the registration socket ${longDir}dd/kubevirt.io.hostpath-provisioner-reg.sock is 108 bytes long`);
    bad(['--registration-dir', DIR, '--kubelet-registration-path', `/${'k'.repeat(107)}`], {}, 'is 108 bytes long; a unix socket path can have at most 107');
    expect(parseCli([...POOL, '--registration-dir', DIR, '--kubelet-registration-path', `/${'k'.repeat(106)}`], {}).registration?.kubeletEndpoint).toHaveLength(107);
  });

  it('--help lists both flags', () => {
    expect(USAGE).toContain('--registration-dir DIR');
    expect(USAGE).toContain('--kubelet-registration-path PATH');
  });
});

describe('--pool-retry-initial and --pool-retry-max', () => {
  it('default to 1 s and 60 s; flags, then the environment, in seconds', () => {
    expect(parseCli(POOL, {}).poolRetry).toEqual({ initialMs: 1_000, maxMs: 60_000 });
    expect(parseCli([...POOL, '--pool-retry-initial', '0.25', '--pool-retry-max', '30'], {}).poolRetry).toEqual({ initialMs: 250, maxMs: 30_000 });
    expect(parseCli(POOL, { HPP_POOL_RETRY_INITIAL: '2', HPP_POOL_RETRY_MAX: '10' }).poolRetry).toEqual({ initialMs: 2_000, maxMs: 10_000 });
    expect(parseCli([...POOL, '--pool-retry-max=5'], { HPP_POOL_RETRY_MAX: '10' }).poolRetry).toEqual({ initialMs: 1_000, maxMs: 5_000 });
    // A first retry later than the default cap raises the cap with it.
    expect(parseCli([...POOL, '--pool-retry-initial', '120'], {}).poolRetry).toEqual({ initialMs: 120_000, maxMs: 120_000 });
    expect(USAGE).toContain('--pool-retry-initial S');
    expect(USAGE).toContain('--pool-retry-max S');
  });

  it('refuses what is not a positive number of seconds, and a cap below the first retry', () => {
    for (const v of ['0', '-1', 'soon', '1e3', '1s', '90000']) {
      expect(() => parseCli([...POOL, '--pool-retry-initial', v], {}), v).toThrow(ConfigError);
      expect(() => parseCli([...POOL, '--pool-retry-max', v], {}), v).toThrow(/--pool-retry-max/);
    }
    expect(() => parseCli([...POOL, '--pool-retry-initial', '10', '--pool-retry-max', '5'], {})).toThrow('--pool-retry-max (5 s) is less than --pool-retry-initial (10 s)');
  });
});

describe('parseCli: bad configuration is a one-line ConfigError naming the flag, variable or file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-unit-opts-bad-'));
  const badJson = path.join(dir, 'bad.json');
  writeFileSync(badJson, '[{"name": "a", "path": "/a"},');
  const unknownKey = path.join(dir, 'unknown-key.json');
  writeFileSync(unknownKey, '[{"name": "fast", "path": "/f", "overcommitratio": 2}]');
  const token = path.join(dir, 'token');
  writeFileSync(token, 'x'.repeat(32));
  const peer = ['--peer-address', '127.0.0.1:0', '--peer-token-file', token];
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cases: [string[], NodeJS.ProcessEnv, string][] = [
    [['--log-level', 'verbose'], {}, '--log-level "verbose": not a log level; levels: fatal, error, warn, info, debug, trace, silent'],
    [['--log-level', 'Debug'], {}, '--log-level "Debug": not a log level (did you mean "debug"?)'],
    [[], { LOG_LEVEL: 'verbose' }, 'LOG_LEVEL "verbose": not a log level'],
    [['--pools-file', '/nonexistent'], {}, '--pools-file /nonexistent: cannot read the pools file: ENOENT: no such file or directory'],
    [[], { HPP_POOLS_FILE: '/nonexistent' }, 'HPP_POOLS_FILE /nonexistent: cannot read the pools file'],
    [['--pools-file', dir], {}, `--pools-file ${dir}: cannot read the pools file: EISDIR`],
    [['--pools-file', badJson], {}, `${badJson}: not valid JSON`],
    [['--pools-file', unknownKey], {}, `${unknownKey}[0] (pool fast): unknown key "overcommitratio" (did you mean "overcommitRatio"?)`],
    [['--pools-json', '{'], {}, '--pools-json: not valid JSON'],
    [[], { HPP_POOLS_JSON: '[{"name": "a", "path": "/a", "sise": 1}]' }, 'HPP_POOLS_JSON[0] (pool a): unknown key "sise"'],
    [['--pool', 'a=/x:overcomit=2'], {}, '--pool "a=/x:overcomit=2": unknown option "overcomit" (did you mean "overcommit"?)'],
    [[], { HPP_POOLS: 'a=/x:devise=/dev/sdz' }, 'HPP_POOLS "a=/x:devise=/dev/sdz": unknown option "devise" (did you mean "device"?)'],
    [[], { HPP_POOLS: 'a' }, 'HPP_POOLS "a": expected NAME=PATH[:device=DEV]'],
    [['--pool', 'a=/x:device'], {}, '--pool "a=/x:device": option device needs a value'],
    [['--pool', 'a=/x:overcommit=lots'], {}, '--pool: pool a: overcommitRatio must be a number >= 1'],
    [['--hostpath', 'relative'], {}, '--hostpath: pool legacy needs an absolute "path"'],
    [[], { HPP_HOSTPATH: '/h', HPP_USE_NAMING_PREFIX: 'ture' }, 'HPP_USE_NAMING_PREFIX "ture": expected true or false'],
    [['--metrics-address', 'foo'], {}, '--metrics-address: "foo" is not [HOST]:PORT'],
    [[], { METRICS_ADDRESS: ':99999' }, 'METRICS_ADDRESS: ":99999": port 99999 is out of range'],
    [['--filesystem-overhead', '1.5'], {}, '--filesystem-overhead 1.5 must be below 1'],
    [[], { HPP_FILESYSTEM_OVERHEAD: 'lots' }, 'HPP_FILESYSTEM_OVERHEAD "lots" must be a decimal number'],
    [['--pool-retry-initial', 'soon'], {}, '--pool-retry-initial "soon": expected seconds'],
    [[], { HPP_POOL_RETRY_INITIAL: 'soon' }, 'HPP_POOL_RETRY_INITIAL "soon": expected seconds'],
    [[], { HPP_POOL_RETRY_MAX: '0' }, 'HPP_POOL_RETRY_MAX "0": expected seconds'],
    [['--pool-retry-initial'], {}, "Option '--pool-retry-initial"],
    [[], { DRIVER_NAME: '-bad' }, 'DRIVER_NAME: driver name "-bad" is not a valid CSI plugin name'],
    [[], { NODE_NAME: 'bad node' }, 'NODE_NAME: node name "bad node" is not valid'],
    [[], { CSI_ENDPOINT: 'tcp://0.0.0.0:1' }, 'CSI_ENDPOINT: endpoint tcp://0.0.0.0:1 must be unix:///absolute/path'],
    [[], { HPP_MOUNT_BACKEND: 'tool' }, 'HPP_MOUNT_BACKEND "tool": expected auto or tools (did you mean "tools"?)'],
    [[], { PEER_ADDRESS: 'nowhere' }, 'PEER_ADDRESS "nowhere": expected HOST:PORT'],
    [['--peer-address', '127.0.0.1:70000'], {}, '--peer-address "127.0.0.1:70000": expected HOST:PORT'],
    [['--peer-address', '127.0.0.1:0', '--peer-token-file', '/nonexistent'], {}, '--peer-token-file: '],
    [[...peer, '--peer-tls-cert', '/nonexistent.crt', '--peer-tls-key', token], {}, '--peer-tls-cert /nonexistent.crt: cannot read it: ENOENT'],
    [[...peer], { PEER_TLS_CERT: token, PEER_TLS_KEY: '/nonexistent.key' }, 'PEER_TLS_KEY /nonexistent.key: cannot read it: ENOENT'],
  ];

  it.each(cases)('%j %j', (args, env, message) => {
    const givesPools = args.some((a) => a === '--pool' || a === '--pools-file' || a === '--pools-json' || a === '--hostpath') || ['HPP_POOLS', 'HPP_POOLS_FILE', 'HPP_POOLS_JSON', 'HPP_HOSTPATH'].some((k) => k in env);
    const pools = givesPools ? [] : POOL;
    let error: unknown;
    try {
      parseCli([...pools, ...args], env);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const text = (error as Error).message;
    expect(text).toContain(message);
    expect(text).not.toContain('\n');
  });

  it('the same inputs, corrected, are accepted', () => {
    expect(parseCli([...POOL, '--log-level', 'debug'], {}).logLevel).toBe('debug');
    for (const level of LOG_LEVELS) expect(parseCli(POOL, { LOG_LEVEL: level }).logLevel).toBe(level);
    expect(parseCli([], { HPP_HOSTPATH: '/h', HPP_USE_NAMING_PREFIX: 'no' }).pools[0]!.useNamingPrefix).toBe(false);
    expect(parseCli([], { HPP_HOSTPATH: '/h', HPP_USE_NAMING_PREFIX: 'YES' }).pools[0]!.useNamingPrefix).toBe(true);
    for (const backend of ['', 'auto', 'tools']) expect(() => parseCli(POOL, { HPP_MOUNT_BACKEND: backend }), backend).not.toThrow();
    expect(parseCli(['--pool', 'a=/x:overcommit=2:device=/dev/sdz:overhead=0.1'], {}).pools[0]).toMatchObject({ overcommitRatio: 2, device: '/dev/sdz', filesystemOverhead: '0.1' });
  });
});

describe('--help', () => {
  it('lists every pool flag option and form, and every pools-file key with what it means', () => {
    expect(USAGE).toContain(`--pool ${POOL_FLAG_FORM}`);
    for (const [o, { key, metavar }] of Object.entries(POOL_FLAG_OPTIONS)) {
      expect(USAGE).toContain(`[:${o}=${metavar}]`);
      expect(USAGE).toContain(`:${o}= sets ${key}`);
    }
    for (const [k, { help }] of Object.entries(POOL_KEYS)) expect(USAGE).toMatch(new RegExp(`\\n +${k}( \\(required\\))?: ${help.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`));
    expect(USAGE).toContain('docs/pools-file.schema.json');
  });

  it('lists the log levels and every environment variable parseCli reads', () => {
    for (const level of LOG_LEVELS) expect(USAGE).toContain(level);
    const source = readFileSync(path.resolve(__dirname, '../../src/config/options.ts'), 'utf8');
    const read = new Set([...source.matchAll(/env(?:\.|\[')([A-Z][A-Z0-9_]+)/g)].map((m) => m[1]!));
    read.add('HPP_POOL_RETRY_INITIAL').add('HPP_POOL_RETRY_MAX');
    expect(read.size).toBeGreaterThan(15);
    for (const name of read) expect(USAGE, name).toContain(name);
  });
});
