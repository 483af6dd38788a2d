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
  type?: string | string[];
  enum?: unknown[];
  pattern?: string;
  minimum?: number;
  exclusiveMaximum?: number;
  maxLength?: number;
  minLength?: number;
  minItems?: number;
  items?: Prop;
  properties?: Record<string, Prop>;
  required?: string[];
  additionalProperties?: boolean | Prop;
}

function typeOf(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v === null) return 'null';
  return typeof v;
}

/** The parts of JSON Schema the pool schema uses, enough to tell whether a value fits a property. */
function fits(prop: Prop, v: unknown): boolean {
  if (prop.enum && !prop.enum.includes(v)) return false;
  if (prop.type !== undefined) {
    const types = Array.isArray(prop.type) ? prop.type : [prop.type];
    if (!types.includes(typeOf(v))) return false;
  }
  if (typeof v === 'string') {
    return (
      (prop.pattern === undefined || new RegExp(prop.pattern, 'u').test(v)) &&
      (prop.maxLength === undefined || v.length <= prop.maxLength) &&
      (prop.minLength === undefined || v.length >= prop.minLength)
    );
  }
  if (typeof v === 'number') return (prop.minimum === undefined || v >= prop.minimum) && (prop.exclusiveMaximum === undefined || v < prop.exclusiveMaximum);
  if (Array.isArray(v)) return (prop.minItems === undefined || v.length >= prop.minItems) && (prop.items === undefined || v.every((x) => fits(prop.items!, x)));
  if (typeOf(v) === 'object') {
    const o = v as Record<string, unknown>;
    if (!(prop.required ?? []).every((k) => Object.hasOwn(o, k))) return false;
    return Object.entries(o).every(([k, x]) => {
      const p = prop.properties?.[k];
      if (p) return fits(p, x);
      if (prop.additionalProperties === false) return false;
      return typeof prop.additionalProperties === 'object' ? fits(prop.additionalProperties, x) : true;
    });
  }
  return true;
}

/** Keys a pool cannot have together: a pvcTemplate's device is the one its holder publishes. */
const EXCLUSIVE: Array<[string, string]> = [['device', 'pvcTemplate']];
const compatible = (keys: string[]) => keys.filter((k) => !EXCLUSIVE.some(([a, b]) => k === a && keys.includes(b)));

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
    const all = Object.fromEntries(compatible([...POOL_KEY_NAMES]).map((k) => [k, POOL_KEYS[k as keyof typeof POOL_KEYS].example]));
    expect(accepts(all)).toMatchObject([
      { name: 'fast', path: '/var/hpp-fast', device: '/run/hpp/devices/fast', overcommitRatio: 1.5, filesystemOverhead: '0.08', useNamingPrefix: false, pvcTemplate: POOL_KEYS.pvcTemplate.example },
    ]);
    const withDevice = Object.fromEntries(POOL_KEY_NAMES.filter((k) => k !== 'pvcTemplate').map((k) => [k, POOL_KEYS[k].example]));
    expect(accepts(withDevice)).toMatchObject([{ name: 'fast', path: '/var/hpp-fast', device: '/dev/disk/by-id/nvme-1', overcommitRatio: 1.5, filesystemOverhead: '0.08', useNamingPrefix: false }]);
  });

  it('keys that exclude each other are refused together', () => {
    for (const [a, b] of EXCLUSIVE) {
      expect(() => accepts({ ...base, [a]: POOL_KEYS[a as keyof typeof POOL_KEYS].example, [b]: POOL_KEYS[b as keyof typeof POOL_KEYS].example }), `${a} + ${b}`).toThrow(ConfigError);
    }
  });

  it('the required keys are those a pool cannot do without', () => {
    for (const k of Object.keys(poolSchema.properties)) {
      const without = Object.fromEntries(compatible(POOL_KEY_NAMES.filter((x) => x !== k)).map((x) => [x, POOL_KEYS[x as keyof typeof POOL_KEYS].example]));
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
      pvcTemplate: [
        'Block',
        [],
        {},
        { volumeMode: 'Block' },
        { resources: { requests: {} } },
        { resources: { requests: { storage: 'lots' } } },
        { resources: { requests: { storage: '1Gi' } }, volumeMode: 'block' },
        { resources: { requests: { storage: '1Gi' } }, accessModes: ['ReadWriteMany'] },
        { resources: { requests: { storage: '1Gi' } }, accessModes: [] },
        { resources: { requests: { storage: '1Gi' } }, storageClassName: 'Local_Block' },
        { resources: { requests: { storage: '1Gi' } }, storageclassname: 'x' },
        { resources: { requests: { storage: '1Gi' } }, selector: { matchLabels: { a: 1 } } },
        { resources: { requests: { storage: '1Gi' } }, dataSource: { kind: 'PersistentVolumeClaim' } },
        { resources: { requests: { storage: '1Gi' } }, dataSourceRef: { kind: 'X', name: 'y', extra: 1 } },
        { resources: { requests: { storage: '1Gi' } }, volumeName: 'PV_1' },
        { resources: { requests: { storage: '1Gi' }, size: '1Gi' } },
      ],
      snapshotProvider: ['copy', 'Reflink', '', 1, true],
      overlayClassName: [1, true, ['x']],
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
