/**
 * src/csi/gen/ is what `npm run gen:proto` (hack/gen-proto.mjs) makes from proto/csi.proto today, with
 * the loader options the driver really uses: a proto or option change without a regeneration fails here.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LOADER_OPTIONS } from '../../src/csi/proto.js';
import { ROOT } from '../helpers/driver.js';

const SCRIPT = path.join(ROOT, 'hack', 'gen-proto.mjs');
const CHECKED_IN = path.join(ROOT, 'src', 'csi', 'gen');

/** Every file under `dir`, relative to it, sorted. */
function files(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe('generated CSI types (src/csi/gen)', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'hpp-gen-proto-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('are made with the loader options of src/csi/proto.ts', () => {
    const used = JSON.parse(execFileSync(process.execPath, [SCRIPT, '--print-options'], { encoding: 'utf8' })) as Record<string, unknown>;
    const loader = Object.fromEntries(Object.entries(LOADER_OPTIONS).map(([k, v]) => [k, typeof v === 'function' ? v.name : v]));
    expect(used).toEqual(loader);
    // int64 as strings is what every handler relies on (BigInt from them).
    expect(loader.longs).toBe('String');
  });

  it('are what a fresh generation gives (run `npm run gen:proto` after changing proto/csi.proto)', () => {
    const out = path.join(tmp, 'gen');
    execFileSync(process.execPath, [SCRIPT, '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    const fresh = files(out);
    expect(fresh.length).toBeGreaterThan(0);
    expect(files(CHECKED_IN)).toEqual(fresh);
    const differing = fresh.filter((f) => readFileSync(path.join(out, f), 'utf8') !== readFileSync(path.join(CHECKED_IN, f), 'utf8'));
    expect(differing).toEqual([]);
  });

  it('say string for int64 fields', () => {
    const range = readFileSync(path.join(CHECKED_IN, 'csi', 'v1', 'CapacityRange.ts'), 'utf8');
    expect(range).toMatch(/interface CapacityRange__Output \{\s*'required_bytes': \(string\);\s*'limit_bytes': \(string\);\s*\}/);
  });
});
