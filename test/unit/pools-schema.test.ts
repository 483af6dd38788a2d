// docs/pools-file.schema.json documents the pools file; the validator in src/pools/config.ts decides.
// These tests hold the two together: the file is what the code generates, every key the schema lists is
// accepted, every other key refused, and the values the schema refuses the validator refuses too.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parsePoolsJson } from '../../src/pools/config.js';
import { POOL_KEYS, POOL_KEY_NAMES, poolsFileSchema } from '../../src/pools/pool-keys.js';

const FILE = path.resolve(__dirname, '../../docs/pools-file.schema.json');
const schema = JSON.parse(readFileSync(FILE, 'utf8'));
const poolSchema = schema.$defs.pool as { properties: Record<string, Prop>; required: string[]; additionalProperties: boolean };

interface Prop {
  type: string | string[];
  pattern?: string;
  minimum?: number;
  exclusiveMaximum?: number;
  maxLength?: number;
}

/** The parts of JSON Schema the pool schema uses, enough to tell whether a value fits a property. */
function fits(prop: Prop, v: unknown): boolean {
  const types = Array.isArray(prop.type) ? prop.type : [prop.type];
  const t = typeof v === 'number' ? 'number' : typeof v === 'boolean' ? 'boolean' : typeof v === 'string' ? 'string' : 'other';
  if (!types.includes(t)) return false;
  if (typeof v === 'string') return (prop.pattern === undefined || new RegExp(prop.pattern, 'u').test(v)) && (prop.maxLength === undefined || v.length <= prop.maxLength);
  if (typeof v === 'number') return (prop.minimum === undefined || v >= prop.minimum) && (prop.exclusiveMaximum === undefined || v < prop.exclusiveMaximum);
  return true;
}

const base = { name: 'p', path: '/p' };
const accepts = (pool: Record<string, unknown>) => parsePoolsJson(JSON.stringify([pool]), 'pools.json');

describe('docs/pools-file.schema.json', () => {
  it('is what the code generates (npm run gen:pools-schema)', () => {
    expect(schema).toEqual(poolsFileSchema());
  });

  it('lists the keys the validator knows, and no other key may be added', () => {
    expect(Object.keys(poolSchema.properties).sort()).toEqual([...POOL_KEY_NAMES].sort());
    expect(poolSchema.additionalProperties).toBe(false);
    expect(schema.oneOf[1].additionalProperties).toBe(false);
  });

  it('every key the schema lists is accepted with a value the schema allows', () => {
    for (const k of Object.keys(poolSchema.properties)) {
      const example = POOL_KEYS[k as keyof typeof POOL_KEYS].example;
      expect(fits(poolSchema.properties[k]!, example), k).toBe(true);
      expect(() => accepts({ ...base, [k]: example }), k).not.toThrow();
    }
    const all = Object.fromEntries(POOL_KEY_NAMES.map((k) => [k, POOL_KEYS[k].example]));
    expect(accepts(all)).toMatchObject([{ name: 'fast', path: '/var/hpp-fast', device: '/dev/disk/by-id/nvme-1', overcommitRatio: 1.5, filesystemOverhead: '0.08', useNamingPrefix: false }]);
  });

  it('the required keys are those a pool cannot do without', () => {
    for (const k of Object.keys(poolSchema.properties)) {
      const without = Object.fromEntries(POOL_KEY_NAMES.filter((x) => x !== k).map((x) => [x, POOL_KEYS[x].example]));
      if (poolSchema.required.includes(k)) expect(() => accepts(without), k).toThrow(ConfigError);
      else expect(() => accepts(without), k).not.toThrow();
    }
  });

  it('every other key is refused: near misses of each key, other words, the prototype', () => {
    const others = ['overcommit', 'size', 'pool', 'pools', 'type', 'quota', '', '__proto__', 'constructor', 'toString'];
    for (const k of POOL_KEY_NAMES) others.push(k.toLowerCase() === k ? k.toUpperCase() : k.toLowerCase(), `${k}s`, ` ${k}`);
    for (const k of others) {
      expect(() => parsePoolsJson(`[{"name": "p", "path": "/p", ${JSON.stringify(k)}: 1}]`, 'pools.json'), k).toThrow(`unknown key ${JSON.stringify(k)}`);
    }
  });

  it('values the schema refuses, the validator refuses', () => {
    const bad: Record<string, unknown[]> = {
      name: ['Fast', 'a_b', '-a', 'a'.repeat(64), 1, true],
      path: ['relative', '', 1, false],
      device: ['sdz', '', 1],
      overcommitRatio: [0.5, 0, -1, '2', true],
      filesystemOverhead: ['1', '1.5', 'x', '', 1, 1.5, -0.1, true],
      useNamingPrefix: ['yes', 'true', 1],
      hppVolumes: ['/var/hpvolumes/csi', '', 1, true],
    };
    expect(Object.keys(bad).sort()).toEqual([...POOL_KEY_NAMES].sort());
    for (const [k, values] of Object.entries(bad)) {
      for (const v of values) {
        expect(fits(poolSchema.properties[k]!, v), `${k} ${JSON.stringify(v)}`).toBe(false);
        expect(() => accepts({ ...base, [k]: v }), `${k} ${JSON.stringify(v)}`).toThrow(ConfigError);
      }
    }
  });
});
