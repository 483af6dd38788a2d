import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, checkPools, loadPoolsFile, parsePoolFlag, parsePoolsJson, type PoolConfig } from '../../src/pools/config.js';
import { POOL_FLAG_OPTIONS, POOL_KEYS } from '../../src/pools/pool-keys.js';

// PoolConfig grows fields over time (device, overcommit...): compare the fields these tests are about.
const pool = (name: string, p: string, useNamingPrefix = false): Partial<PoolConfig> => ({ name, path: p, useNamingPrefix });
const full = (name: string, p: string): PoolConfig => ({ ...(parsePoolFlag(`${name}=${p}`) as PoolConfig) });

describe('parsePoolFlag', () => {
  it('parses NAME=/abs/path and normalises the path', () => {
    expect(parsePoolFlag('fast=/var/hpp/fast')).toMatchObject(pool('fast', '/var/hpp/fast'));
    expect(parsePoolFlag('a1=/var/hpp//x/../y/')).toMatchObject(pool('a1', '/var/hpp/y'));
    // Only the first '=' separates.
    expect(parsePoolFlag('p=/data/a=b').path).toBe('/data/a=b');
  });

  it('rejects a missing name, a bad name, a relative or missing path', () => {
    for (const bad of ['', '=/p', 'noequals', '/p', 'Fast=/p', 'a_b=/p', '-a=/p', 'a-=/p', `${'a'.repeat(64)}=/p`, 'a=relative/p', 'a=', 'a=./p']) {
      expect(() => parsePoolFlag(bad), JSON.stringify(bad)).toThrow(ConfigError);
    }
  });
});

describe('parsePoolFlag options', () => {
  it('each option sets its pools-file key', () => {
    const values: Record<string, string> = { device: '/dev/sdz', overcommit: '2', overhead: '0.1' };
    expect(Object.keys(values).sort()).toEqual(Object.keys(POOL_FLAG_OPTIONS).sort());
    for (const [o, { key }] of Object.entries(POOL_FLAG_OPTIONS)) {
      const p = parsePoolFlag(`a=/p:${o}=${values[o]}`) as unknown as Record<string, unknown>;
      expect(String(p[key]), o).toBe(values[o]);
    }
  });

  it('an unknown option is refused with the closest one; an option without a value is refused', () => {
    expect(() => parsePoolFlag('a=/p:overcomit=2')).toThrow('--pool "a=/p:overcomit=2": unknown option "overcomit" (did you mean "overcommit"?); options: :device=, :overcommit=, :overhead=');
    expect(() => parsePoolFlag('a=/p:size=2', 'HPP_POOLS')).toThrow('HPP_POOLS "a=/p:size=2": unknown option "size"; options:');
    for (const bad of ['a=/p:device', 'a=/p:device=', 'a=/p:overcommit=', 'a=/p:overcommit= ', 'a=/p:overcommit=x', 'a=/p:overcommit=0.5', 'a=/p:overhead=1']) {
      expect(() => parsePoolFlag(bad), bad).toThrow(ConfigError);
      expect(() => parsePoolFlag(bad), bad).toThrow(/^--pool/);
    }
  });
});

describe('hppVolumes', () => {
  const pool = (v: unknown) => parsePoolsJson(JSON.stringify([{ name: 'p', path: '/var/hpvolumes', hppVolumes: v }]), 'pools.json')[0]!;
  it('takes auto, none or a directory inside the pool, normalised', () => {
    expect(pool('auto').hppVolumes).toBe('auto');
    expect(pool('none').hppVolumes).toBe('none');
    expect(pool('csi/').hppVolumes).toBe('csi');
    expect(pool('./csi').hppVolumes).toBe('csi');
    expect(pool('.').hppVolumes).toBe('.');
    expect(parsePoolsJson('[{"name": "p", "path": "/p"}]', 'x')[0]!.hppVolumes).toBeUndefined();
  });
  it.each(['../other', 'csi/../../x', '/var/hpvolumes/csi', '.hpp', '.hpp/volumes', '', 3])('refuses %j, naming the pool', (v) => {
    expect(() => pool(v)).toThrow(/pools\.json\[0\]: pool p: hppVolumes/);
  });
});

describe('parsePoolsJson', () => {
  it('accepts a list or {"pools": [...]}', () => {
    const list = parsePoolsJson('[{"name":"a","path":"/a"},{"name":"b","path":"/b","useNamingPrefix":true}]', 'x');
    expect(list).toMatchObject([pool('a', '/a'), pool('b', '/b', true)]);
    expect(list).toHaveLength(2);
    expect(parsePoolsJson('{"pools":[{"name":"a","path":"/a/"}]}', 'x')).toMatchObject([pool('a', '/a')]);
    expect(parsePoolsJson('[]', 'x')).toEqual([]);
  });

  it('rejects bad JSON, a wrong shape and bad entries, naming where', () => {
    for (const bad of ['not json', '{', '{"name":"a"}', '"a"', 'null', '[{"name":"a"}]', '[{"path":"/a"}]', '[{"name":"A","path":"/a"}]', '[{"name":"a","path":"rel"}]', '[{"name":"a","path":"/a","useNamingPrefix":"yes"}]']) {
      expect(() => parsePoolsJson(bad, 'where-it-came-from'), bad).toThrow(ConfigError);
      expect(() => parsePoolsJson(bad, 'where-it-came-from'), bad).toThrow(/where-it-came-from/);
    }
  });

  // Product bug at the time of writing: fromRaw() reads raw.name of a null entry and throws a TypeError,
  // so the daemon dies with a stack trace instead of the usage message (exit 1, not 2).
  it('a null or non-object entry in the list is a ConfigError, not a crash', () => {
    for (const bad of ['[null]', '[1]', '["a=/p"]', '{"pools":[null]}']) {
      expect(() => parsePoolsJson(bad, 'where-it-came-from'), bad).toThrow(ConfigError);
    }
  });

  it('refuses an unknown key naming where, the key and the key meant', () => {
    expect(() => parsePoolsJson('[{"name": "fast", "path": "/f", "overcommitratio": 2}]', '/etc/hpp/pools.json')).toThrow(
      '/etc/hpp/pools.json[0] (pool fast): unknown key "overcommitratio" (did you mean "overcommitRatio"?); a pool has: name, path, device, overcommitRatio, filesystemOverhead, hppVolumes, useNamingPrefix, pvcTemplate, snapshotProvider, overlayClassName',
    );
    expect(() => parsePoolsJson('[{"name": "a", "path": "/a"}, {"nmae": "b", "path": "/b"}]', 'x')).toThrow('x[1]: unknown key "nmae" (did you mean "name"?)');
    expect(() => parsePoolsJson('{"pool": [{"name": "a", "path": "/a"}]}', 'x')).toThrow('x: unknown key "pool" (did you mean "pools"?)');
    expect(() => parsePoolsJson('{"pools": [], "version": 1}', 'x')).toThrow('x: unknown key "version"');
  });

  it('accepts each key of a pool', () => {
    for (const [k, { example }] of Object.entries(POOL_KEYS)) {
      expect(parsePoolsJson(JSON.stringify([{ name: 'a', path: '/a', [k]: example }]), 'x'), k).toHaveLength(1);
    }
  });

  it('loadPoolsFile names the file and the key in its refusals, and the flag when it cannot read it', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-unit-pools-'));
    try {
      const file = path.join(dir, 'pools.json');
      writeFileSync(file, JSON.stringify([{ name: 'fast', path: '/f', overcommitratio: 2 }]));
      expect(() => loadPoolsFile(file)).toThrow(`${file}[0] (pool fast): unknown key "overcommitratio" (did you mean "overcommitRatio"?)`);
      expect(() => loadPoolsFile(path.join(dir, 'missing.json'))).toThrow(`--pools-file ${dir}/missing.json: cannot read the pools file: ENOENT: no such file or directory`);
      expect(() => loadPoolsFile(path.join(dir, 'missing.json'), 'HPP_POOLS_FILE')).toThrow(ConfigError);
      expect(() => loadPoolsFile(path.join(dir, 'missing.json'), 'HPP_POOLS_FILE')).toThrow(/^HPP_POOLS_FILE /);
      expect(() => loadPoolsFile(dir)).toThrow(`--pools-file ${dir}: cannot read the pools file: EISDIR`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loadPoolsFile reads the same format from a file', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-unit-pools-'));
    try {
      const file = path.join(dir, 'pools.json');
      writeFileSync(file, JSON.stringify([{ name: 'f', path: '/f' }]));
      expect(loadPoolsFile(file)).toMatchObject([pool('f', '/f')]);
      writeFileSync(file, '[{"name": 1}]');
      expect(() => loadPoolsFile(file)).toThrow(new RegExp(file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
      expect(() => loadPoolsFile(path.join(dir, 'missing.json'))).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('checkPools', () => {
  it('accepts distinct names on disjoint paths (including sibling prefixes)', () => {
    const pools = [full('a', '/data/a'), full('b', '/data/ab'), full('c', '/other')];
    expect(checkPools(pools)).toEqual(pools);
  });

  it('rejects no pools, duplicate names, equal paths and nested paths (either order)', () => {
    expect(() => checkPools([])).toThrow(ConfigError);
    expect(() => checkPools([full('a', '/x'), full('a', '/y')])).toThrow(/twice/);
    expect(() => checkPools([full('a', '/x'), full('b', '/x')])).toThrow(/overlap/);
    expect(() => checkPools([full('a', '/x'), full('b', '/x/y')])).toThrow(/overlap/);
    expect(() => checkPools([full('a', '/x/y/z'), full('b', '/x')])).toThrow(/overlap/);
    expect(() => checkPools([full('a', '/x/'), full('b', '/x/y')])).toThrow(/overlap/);
  });

  // A pool at '/' is refused when parsed; and should one reach checkPools anyway, the nesting test must
  // not build '//' for the root: a pool at '/' contains every other pool.
  it('a pool at / is refused, and overlaps every other pool', () => {
    expect(() => full('a', '/')).toThrow(/cannot be the root directory/);
    const root: PoolConfig = { ...full('a', '/r'), path: '/' };
    expect(() => checkPools([root, full('b', '/x')])).toThrow(/overlap/);
    expect(() => checkPools([full('b', '/x'), root])).toThrow(/overlap/);
  });
});
