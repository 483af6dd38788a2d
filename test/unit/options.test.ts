import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_DRIVER_NAME, DEFAULT_ENDPOINT, parseCli } from '../../src/config/options.js';
import { ConfigError } from '../../src/pools/config.js';

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
