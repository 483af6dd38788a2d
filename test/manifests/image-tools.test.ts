/**
 * The driver image has exactly the OS tools the code runs: every command name that src/ and cmd/ run
 * (the literal first argument of exec's run() and of host.tools.run(); nothing else spawns) has an
 * entry in TOOLS below, naming its Debian package, and the packages of those entries are exactly what
 * the Dockerfile's runtime stage installs and what the e2e image (hack/e2e/build, DRIVER_BASE_PACKAGES)
 * is made with. Code that starts running a new tool fails here until the tool is in TOOLS and both
 * images install its package; a tool no longer run fails here until it goes.
 *
 * Where dpkg is there (Debian 12 here, the release of both images) each tool found on the machine is
 * checked to belong to its package.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './manifests.js';

/** Every tool the code runs, and the Debian package it comes from. */
const TOOLS: Record<string, string> = {
  blkid: 'util-linux', // system/blkid.ts: probing a pool device
  fallocate: 'util-linux', // system/preallocate.ts
  findmnt: 'util-linux', // system/btrfs.ts: the btrfs mount of a pool
  flock: 'util-linux', // system/flock.ts: the locks when fs-ext is not installed
  mount: 'mount', // system/mount.ts (mount(8) backend), linux-host.ts (a device pool's XFS)
  umount: 'mount', // system/mount.ts (mount(8) backend)
  losetup: 'mount', // system/loop.ts
  'mkfs.xfs': 'xfsprogs', // system/xfs.ts: a blank pool device
  xfs_quota: 'xfsprogs', // system/project-quota.ts (XFS and ext4 project quotas)
  btrfs: 'btrfs-progs', // system/btrfs.ts: subvolumes and qgroups of btrfs pools
  cp: 'coreutils', // system/copy.ts: reflink/sparse copies
  chcon: 'coreutils', // system/selinux.ts
  mknod: 'coreutils', // pools/device-publisher.ts (hpp-pool-device)
};

/** Packages the e2e image has besides the tools': the machine's Node binary needs libstdc++. */
const E2E_EXTRA = ['libstdc++6'];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'gen' || e.name === 'native' ? [] : sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

interface Found {
  tools: Map<string, string[]>;
  /** Calls whose command is not a string literal, or processes started past exec.ts. */
  unknown: string[];
}

/** What src/ and cmd/ run, read from their source. */
function toolsRun(): Found {
  const tools = new Map<string, string[]>();
  const unknown: string[] = [];
  for (const file of [...sources(path.join(ROOT, 'src')), ...sources(path.join(ROOT, 'cmd'))]) {
    const rel = path.relative(ROOT, file);
    const text = readFileSync(file, 'utf8');
    // child_process is exec.ts's alone: everything else runs tools through run().
    if (rel !== path.join('src', 'system', 'exec.ts') && /from\s+['"](node:)?child_process['"]/.test(text)) unknown.push(`${rel}: imports child_process`);
    const importsRun = /import\s*\{[^}]*\brun\b[^}]*\}\s*from\s*['"][./]*(system\/)?exec\.js['"]/.test(text);
    const lines = text.split('\n');
    lines.forEach((raw, i) => {
      const at = `${rel}:${i + 1}`;
      if (/^\s*(\*|\/\/|\/\*)/.test(raw)) return; // comments
      const line = raw.replace(/\s\/\/\s.*$/, '');
      const calls = [
        ...(importsRun ? [...line.matchAll(/(?<![.\w])run\(\s*([^,)]*)/g)] : []),
        ...line.matchAll(/\btools\.run\(\s*([^,)]*)/g),
      ];
      for (const m of calls) {
        const arg = m[1]!.trim();
        const literal = /^(['"`])([^'"`$]+)\1$/.exec(arg);
        if (literal) tools.set(literal[2]!, [...(tools.get(literal[2]!) ?? []), at]);
        // linux-host.ts's tools.run passes its caller's command on: those callers are checked above.
        else if (!(rel === path.join('src', 'system', 'linux-host.ts') && /^\s*run: \(cmd, args/.test(line))) unknown.push(`${at}: run(${arg}, ...)`);
      }
    });
  }
  return { tools, unknown };
}

/** The packages an apt-get install of the Dockerfile's last stage names. */
function dockerfileRuntimePackages(): string[] {
  const text = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const stages = text.split(/^FROM\s/m);
  const runtime = stages[stages.length - 1]!;
  return [...runtime.matchAll(/apt-get\s+install\s+([^&;|\n]*)/g)].flatMap((m) => m[1]!.split(/\s+/).filter((w) => w && !w.startsWith('-')));
}

function e2ePackages(): string[] {
  const m = /^DRIVER_BASE_PACKAGES=\(([^)]*)\)/m.exec(readFileSync(path.join(ROOT, 'hack', 'e2e', 'build'), 'utf8'));
  if (!m) throw new Error('hack/e2e/build: no DRIVER_BASE_PACKAGES=(...)');
  return m[1]!.split(/\s+/).filter(Boolean);
}

const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();

describe('the OS tools of the driver image', () => {
  const found = toolsRun();

  it('every process the code starts is a tool named in the source (run() with a literal command)', () => {
    expect(found.unknown).toEqual([]);
    // The scan itself works: tools of several modules are found.
    expect(found.tools.get('btrfs')?.length).toBeGreaterThan(1);
    expect(found.tools.has('losetup')).toBe(true);
  });

  it('TOOLS lists exactly the tools the code runs', () => {
    const missing = [...found.tools.keys()].filter((t) => !(t in TOOLS)).map((t) => `${t} (run at ${found.tools.get(t)!.join(', ')})`);
    expect(missing, 'run by the code, not in TOOLS: add the tool and its package (and install it in both images)').toEqual([]);
    expect(Object.keys(TOOLS).filter((t) => !found.tools.has(t)), 'in TOOLS but run nowhere: remove it').toEqual([]);
  });

  it("the Dockerfile's runtime stage installs exactly the tools' packages", () => {
    expect(sorted(dockerfileRuntimePackages())).toEqual(sorted(Object.values(TOOLS)));
  });

  it('the e2e image (hack/e2e/build) has the same packages, and libstdc++6 for its Node', () => {
    expect(sorted(e2ePackages())).toEqual(sorted([...Object.values(TOOLS), ...E2E_EXTRA]));
  });

  it('the Dockerfile comment names the same tools', () => {
    const text = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    const comment = /# Exactly the tools the code runs[^\n]*\n((?:#[^\n]*\n)+)/.exec(text)?.[1] ?? '';
    const named = new Map<string, string>();
    for (const m of comment.replace(/#/g, ' ').matchAll(/([\w-]+):\s*([^;]*)/g)) {
      for (const t of m[2]!.split(/[,\s]+/).filter(Boolean)) named.set(t.replace(/\.$/, ''), m[1]!);
    }
    expect(Object.fromEntries([...named].sort())).toEqual(Object.fromEntries(Object.entries(TOOLS).sort()));
  });

  // This machine is Debian 12, the release both images are made from: each tool found here must come
  // from the package TOOLS names.
  const dpkg = existsSync('/usr/bin/dpkg-query');
  it.runIf(dpkg)('each tool comes from the package TOOLS names (dpkg -S on this machine)', () => {
    const wrong: string[] = [];
    for (const [tool, pkg] of Object.entries(TOOLS)) {
      const dirs = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];
      const file = dirs.map((d) => path.join(d, tool)).find((p) => existsSync(p));
      if (!file) continue;
      const real = realpathSync(file);
      // usrmerge: dpkg knows a file by the path its package ships it at, /bin/x or /usr/bin/x.
      const candidates = [real, real.replace(/^\/usr/, ''), file, file.replace(/^\/usr/, '')];
      let owner: string | undefined;
      for (const c of candidates) {
        try {
          owner = execFileSync('dpkg-query', ['-S', c], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(':')[0];
          break;
        } catch {
          /* not this path */
        }
      }
      if (owner && owner !== pkg) wrong.push(`${tool}: ${owner}, not ${pkg}`);
    }
    expect(wrong).toEqual([]);
  });
});
