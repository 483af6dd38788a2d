import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(__dirname, '../../src');

/** The gRPC edges: the CSI services (with kubelet's plugin registration) and the routing controller. */
const EDGES = ['csi/', 'router/'];
/** The composition root wires the edges to the domain; it decides nothing. */
const ROOT = ['app.ts'];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** Every module specifier a file imports or re-exports, resolved against src/ when relative. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/g), ...text.matchAll(/(?:^|\n)\s*import\s+'([^']+)'/g), ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]!);
  return specs.map((s) => (s.startsWith('.') ? path.relative(SRC, path.resolve(path.dirname(file), s)) : s));
}

describe('layering: gRPC codes are decided at the edge only', () => {
  const outside = sources(SRC).filter((f) => {
    const rel = path.relative(SRC, f);
    return !EDGES.some((e) => rel.startsWith(e)) && !ROOT.includes(rel);
  });

  it('finds the domain modules it checks', () => {
    expect(outside.map((f) => path.relative(SRC, f))).toEqual(expect.arrayContaining(['errors.ts', 'volumes/manager.ts', 'system/exec.ts', 'pools/pool.ts']));
  });

  it('nothing outside csi/ and router/ imports grpc, csi/ or router/', () => {
    const bad: string[] = [];
    for (const f of outside) {
      for (const spec of importsOf(f)) {
        if (spec.startsWith('@grpc/') || EDGES.some((e) => spec.startsWith(e))) bad.push(`${path.relative(SRC, f)} imports ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('the checker sees an import of grpc and of csi/ (it is not vacuous)', () => {
    const edge = path.join(SRC, 'csi/status.ts');
    expect(importsOf(edge)).toContain('@grpc/grpc-js');
    expect(importsOf(path.join(SRC, 'app.ts')).some((s) => s.startsWith('csi/'))).toBe(true);
  });
});

describe('the on-disk format is spelled and read in src/format/ only', () => {
  const FORMAT = 'format/';
  const code = (file: string) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => !/^\s*(\/\/|\/?\*)/.test(l))
      .join('\n');
  const outsideFormat = sources(SRC).filter((f) => !path.relative(SRC, f).startsWith(FORMAT) && !path.relative(SRC, f).startsWith('csi/gen/'));
  /** JSON that is not the pools': the pools file, the peers file and the API server, losetup's output, package.json. */
  const OTHER_JSON = ['pools/config.ts', 'router/peers.ts', 'system/loop.ts', 'version.ts'];
  /** A name of the layout as a string literal, or a directory of it joined onto a path. */
  const LITERAL = /['"`](\.hpp\b[^'"`]*|disk\.img|publications\.log|project-ids\.json|daemon\.lock|snapshot-records)['"`]|path(\.posix)?\.join\([^)]*['"`](volumes|tmp|trash|snapshots|block)['"`]/;

  it('no module outside format/ parses JSON but those reading something other than a pool', () => {
    const parsing = outsideFormat.filter((f) => /\bJSON\.parse\(/.test(code(f))).map((f) => path.relative(SRC, f));
    expect(parsing.sort()).toEqual(OTHER_JSON);
  });

  it('the daemon and hppctl read volume records through the same validator', () => {
    const readers = outsideFormat.filter((f) => /\bparseVolumeRecord\b/.test(code(f))).map((f) => path.relative(SRC, f));
    expect(readers.sort()).toEqual(['admin/gc.ts', 'admin/inspect.ts', 'volumes/store.ts']);
    for (const f of ['admin/inspect.ts', 'admin/gc.ts', 'volumes/store.ts']) expect(importsOf(path.join(SRC, f))).toContain('format/records.js');
  });

  it('no path under a pool is spelled outside format/', () => {
    const bad = outsideFormat.flatMap((f) =>
      code(f)
        .split('\n')
        .filter((l) => LITERAL.test(l))
        .map((l) => `${path.relative(SRC, f)}: ${l.trim()}`),
    );
    expect(bad).toEqual([]);
  });

  it('the checks see what they look for (they are not vacuous)', () => {
    expect(/\bJSON\.parse\(/.test(code(path.join(SRC, 'format/records.ts')))).toBe(true);
    const layout = code(path.join(SRC, 'format/layout.ts')).split('\n');
    expect(layout.filter((l) => LITERAL.test(l)).length).toBeGreaterThanOrEqual(6);
  });
});
