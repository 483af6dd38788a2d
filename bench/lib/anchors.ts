// The two Go drivers the issue measures against, built at pinned commits into a cache outside the
// checkout (BENCH_ANCHOR_CACHE, /var/cache/hpp-bench): the module source from the Go module proxy, or,
// when the proxy refuses it, from a git directory given by BENCH_ANCHOR_GIT_<KEY> at the same commit.
// Both repositories vendor their dependencies, so a build needs no network once the source is there.
// A build that cannot be had is reported (unavailable, with why), never replaced by something else.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';

export interface AnchorSpec {
  key: 'hpp' | 'chp';
  title: string;
  module: string;
  /** The pinned commit, and its pseudo-version for the module proxy. */
  commit: string;
  version: string;
  pkg: string;
}

export const ANCHORS: AnchorSpec[] = [
  {
    key: 'hpp',
    title: 'kubevirt hostpath-provisioner CSI plugin (Go)',
    module: 'kubevirt.io/hostpath-provisioner',
    commit: '7c1422556950ab737c0128e2ac4c69a8f05c4001',
    version: 'v0.25.1-0.20260724174720-7c1422556950',
    pkg: './cmd/plugin',
  },
  {
    key: 'chp',
    title: 'kubernetes-csi csi-driver-host-path hostpathplugin (Go)',
    module: 'github.com/kubernetes-csi/csi-driver-host-path',
    commit: '1f2b2e64d01e8dd93e1f2e8fa6efcda7280208f2',
    version: 'v1.18.1-0.20260727141600-1f2b2e64d01e',
    pkg: './cmd/hostpathplugin',
  },
];

export type AnchorBuild = { spec: AnchorSpec; binary: string; source: string } | { spec: AnchorSpec; unavailable: string };

const cacheDir = () => process.env.BENCH_ANCHOR_CACHE || '/var/cache/hpp-bench';

function run(cmd: string, args: string[], cwd?: string): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, GOFLAGS: '-buildvcs=false' } });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() || String(r.error ?? '') };
}

/** The source tree of `spec` at its commit, fetched once; returns where it came from, or throws why not. */
function source(spec: AnchorSpec, goBin: string, dir: string): string {
  if (existsSync(path.join(dir, 'go.mod'))) return 'cache';
  const tries: string[] = [];
  const dl = run(goBin, ['mod', 'download', '-json', `${spec.module}@${spec.version}`], cacheDir());
  const found = /"Dir":\s*"([^"]+)"/.exec(dl.out)?.[1];
  if (dl.ok && found) {
    cpSync(found, dir, { recursive: true });
    return `module proxy ${spec.module}@${spec.version}`;
  }
  tries.push(`module proxy: ${/"Error":\s*"([^"]+)"/.exec(dl.out)?.[1] ?? dl.out}`);
  const git = process.env[`BENCH_ANCHOR_GIT_${spec.key.toUpperCase()}`];
  if (git) {
    mkdirSync(dir, { recursive: true });
    const r = spawnSync('sh', ['-c', 'git --git-dir="$1" archive "$2" | tar -x -C "$3"', 'sh', git, spec.commit, dir], { encoding: 'utf8' });
    if (r.status === 0 && existsSync(path.join(dir, 'go.mod'))) return `git ${git} at ${spec.commit}`;
    rmSync(dir, { recursive: true, force: true });
    tries.push(`git ${git}: ${r.stderr.trim()}`);
  } else {
    tries.push(`BENCH_ANCHOR_GIT_${spec.key.toUpperCase()} not set`);
  }
  throw new Error(tries.join('; '));
}

/** Build (or find built) every anchor; `nice -n 19` so the build does not crowd the machine. */
export function buildAnchors(say: (s: string) => void): AnchorBuild[] {
  const goBin = ['go', '/usr/local/go/bin/go'].find((g) => spawnSync(g, ['version'], { stdio: 'ignore' }).status === 0);
  return ANCHORS.map((spec): AnchorBuild => {
    if (!goBin) return { spec, unavailable: 'no Go toolchain' };
    const short = spec.commit.slice(0, 12);
    const binary = path.join(cacheDir(), 'bin', `${spec.key}-${short}`);
    const dir = path.join(cacheDir(), 'src', `${spec.key}-${spec.commit}`);
    mkdirSync(path.dirname(binary), { recursive: true });
    let from: string;
    try {
      from = source(spec, goBin, dir);
    } catch (err) {
      return { spec, unavailable: `source of ${spec.module} at ${short} cannot be had: ${(err as Error).message}` };
    }
    if (!existsSync(binary)) {
      say(`  building ${spec.key} (${spec.module} ${short}) from ${from}`);
      const vendored = existsSync(path.join(dir, 'vendor', 'modules.txt'));
      const b = run('nice', ['-n', '19', goBin, 'build', `-mod=${vendored ? 'vendor' : 'mod'}`, '-o', binary, spec.pkg], dir);
      if (!b.ok) return { spec, unavailable: `go build of ${spec.pkg} failed: ${b.out.slice(-2000)}` };
    }
    return { spec, binary, source: from };
  });
}
