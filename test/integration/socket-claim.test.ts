// One endpoint, one process: a second daemon (or snapshot controller) on a live socket refuses to start
// and changes nothing; a stale socket is replaced; a path that is not a socket is never removed.
import type { ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { poolLayout } from '../../src/format/layout.js';
import { bindName } from '../../src/system/unix-socket.js';
import { BuiltProcess } from '../helpers/built-process.js';
import { DRIVER_JS, MOUNT_CAP, ROOT, cleanupDir, connect, scratchDir, startDriver, type Clients, type DriverProcess } from '../helpers/driver.js';

const ROUTER_JS = path.join(ROOT, 'dist/cmd/hpp-snapshot-controller.js');
const MiB = 1024 * 1024;

interface Run {
  child: ChildProcess;
  out(): string;
  /** 'served' once the ready line was printed, else the exit code. */
  outcome: Promise<'served' | number | null>;
  stop(): Promise<void>;
}

/**
 * Starts a built command (`node js args`, under `wrapper` if given); `outcome` settles when it prints
 * `ready` or exits, whichever comes first.
 */
function run(js: string, args: string[], ready: string, wrapper: string[] = []): Run {
  const p = new BuiltProcess({ script: js, args, wrapper });
  const served = p.log.waitFor(ready, Infinity).then(() => 'served' as const);
  return {
    child: p.child,
    out: () => p.log.text(),
    outcome: Promise.race([served, p.exited]),
    async stop() {
      await p.stop();
    },
  };
}

/** Runs a command that is expected to refuse to start; one that serves instead is stopped (SIGTERM). */
async function refusal(js: string, args: string[], ready: string, wrapper?: string[]): Promise<{ code: 'served' | number | null; out: string }> {
  const r = run(js, args, ready, wrapper);
  const code = await Promise.race([r.outcome, new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), 20_000))]);
  if (code === 'served' || code === 'timeout') await r.stop();
  return { code: code === 'timeout' ? null : code, out: r.out() };
}

const inode = (p: string) => lstatSync(p).ino;
/** This test's mounts (other tests, and other people's, mount and unmount meanwhile). */
const mountsUnder = (dir: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(`${dir}/`));
/** grpc-js shares connections between clients of one target: this one dials the socket again. */
const fresh = (sock: string) => connect(`unix://${sock}`, { 'grpc.use_local_subchannel_pool': 1 });
const driverArgs = (sock: string, pool: string, extra: string[] = []) => ['--endpoint', `unix://${sock}`, '--node-name', 'test-node', '--pool', `default=${pool}`, '--log-level', 'debug', ...extra];

function expectRefused(res: { code: 'served' | number | null; out: string }, pattern: RegExp): void {
  expect(res.code, res.out).not.toBe('served');
  expect(res.code, res.out).not.toBeNull();
  expect(res.code, res.out).not.toBe(0);
  expect(res.out).toMatch(pattern);
  // An expected refusal, not a crash: one line, no stack trace.
  expect(res.out).not.toMatch(/\n\s+at /);
}

describe('hpp-csi-driver: a second daemon on a live endpoint', () => {
  let dir: string;
  let pool: string;
  let sock: string;
  let first: DriverProcess;
  let target: string;

  beforeAll(async () => {
    dir = scratchDir('sockclaim');
    pool = path.join(dir, 'pool');
    mkdirSync(pool);
    sock = path.join(dir, 'csi.sock');
    first = await startDriver({ dir, socket: sock, args: ['--pool', `default=${pool}`] });
    const v = await first.clients.controller.CreateVolume({ name: 'v1', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) } });
    target = path.join(dir, 'pods', 'p1', 'mount');
    await first.clients.node.NodePublishVolume({ volume_id: v.volume.volume_id, target_path: target, volume_capability: MOUNT_CAP, readonly: false });
  });

  afterAll(async () => {
    await first?.stop();
    if (dir) await cleanupDir(dir);
  });

  it('exits non-zero naming the first daemon, before touching the socket, the pools, the metrics port or mounts', async () => {
    const ino = inode(sock);
    const poolLock = readFileSync(poolLayout(pool).lockFile, 'utf8');
    const mountsBefore = mountsUnder(dir);
    const res = await refusal(DRIVER_JS, driverArgs(sock, pool, ['--metrics-address', '127.0.0.1:0']), '"serving CSI"');
    expectRefused(res, new RegExp(`pid ${first.child.pid}\\b`));
    expect(res.out).toContain('hpp-csi-driver.js');
    expect(res.out).not.toContain('"serving metrics and health"');
    expect(res.out).not.toMatch(/"pool|"loaded/);

    expect(inode(sock)).toBe(ino);
    expect(readFileSync(poolLayout(pool).lockFile, 'utf8')).toBe(poolLock);
    expect(mountsUnder(dir)).toEqual(mountsBefore);
    expect(mountsBefore).toHaveLength(1);
  });

  it('from another PID and network namespace (another pod), it says what it can: the pid in the lock file', async () => {
    const ino = inode(sock);
    const res = await refusal(DRIVER_JS, driverArgs(sock, pool, ['--metrics-address', 'off']), '"serving CSI"', ['unshare', '--pid', '--fork', '--mount-proc', '--net']);
    expectRefused(res, new RegExp(`another PID namespace \\(pid ${first.child.pid} there, as ${sock}\\.lock says\\)`));
    expect(inode(sock)).toBe(ino);
  });

  it('the first daemon still serves afterwards: Probe, CreateVolume, NodePublishVolume', async () => {
    // A new connection: an existing one would survive the socket file being replaced.
    const c = fresh(sock);
    try {
      expect((await c.identity.Probe({})).ready?.value).toBe(true);
      const v = await c.controller.CreateVolume({ name: 'v2', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) } });
      const t2 = path.join(dir, 'pods', 'p2', 'mount');
      await c.node.NodePublishVolume({ volume_id: v.volume.volume_id, target_path: t2, volume_capability: MOUNT_CAP, readonly: false });
      await c.node.NodeUnpublishVolume({ volume_id: v.volume.volume_id, target_path: t2 });
      await c.node.NodeUnpublishVolume({ volume_id: 'test-node:default:v1', target_path: target });
    } finally {
      c.close();
    }
  });
});

describe('hpp-csi-driver: the socket path at start', () => {
  let dir: string;
  const daemons: DriverProcess[] = [];
  const runs: Run[] = [];

  beforeAll(() => {
    dir = scratchDir('sockpath');
  });
  afterEach(async () => {
    for (const r of runs.splice(0)) await r.stop();
    for (const d of daemons.splice(0)) await d.stop();
  });
  afterAll(async () => {
    if (dir) await cleanupDir(dir);
  });

  function freshPool(name: string): string {
    const p = path.join(dir, name);
    mkdirSync(p);
    return p;
  }

  it('a stale socket left by kill -9 is replaced', async () => {
    const pool = freshPool('stale');
    const sock = path.join(dir, 'stale.sock');
    const d1 = await startDriver({ dir, socket: sock, args: ['--pool', `default=${pool}`] });
    await d1.kill();
    expect(lstatSync(sock).isSocket()).toBe(true);
    const d2 = await startDriver({ dir, socket: sock, args: ['--pool', `default=${pool}`] });
    daemons.push(d2);
    // (Not the inode: the file system may give the new socket the number the stale one freed.)
    const c = fresh(sock);
    try {
      expect((await c.identity.Probe({})).ready?.value).toBe(true);
    } finally {
      c.close();
    }
  });

  for (const kind of ['a regular file', 'a directory'] as const) {
    it(`${kind} at the socket path is refused and kept, and nothing else is touched`, async () => {
      const sub = path.join(dir, kind === 'a directory' ? 'isdir' : 'isfile');
      mkdirSync(sub);
      const pool = path.join(sub, 'pool');
      mkdirSync(pool);
      const sock = path.join(sub, 'csi.sock');
      if (kind === 'a directory') {
        mkdirSync(sock);
        writeFileSync(path.join(sock, 'keep'), 'x');
      } else {
        writeFileSync(sock, 'not a socket\n');
      }
      const res = await refusal(DRIVER_JS, driverArgs(sock, pool, ['--metrics-address', '127.0.0.1:0']), '"serving CSI"');
      expectRefused(res, /not a socket/);
      expect(res.out).toContain(sock);
      expect(res.out).not.toContain('"serving metrics and health"');
      if (kind === 'a directory') expect(readdirSync(sock)).toEqual(['keep']);
      else expect(readFileSync(sock, 'utf8')).toBe('not a socket\n');
      expect(readdirSync(sub).sort()).toEqual(['csi.sock', 'pool']);
      expect(readdirSync(pool)).toEqual([]);
    });
  }

  it('two daemons started at once: one serves, the other refuses naming it', async () => {
    const pool = freshPool('race');
    const sock = path.join(dir, 'race.sock');
    const a = run(DRIVER_JS, driverArgs(sock, pool, ['--metrics-address', 'off']), '"serving CSI"');
    const b = run(DRIVER_JS, driverArgs(sock, pool, ['--metrics-address', 'off']), '"serving CSI"');
    runs.push(a, b);
    const outcomes = await Promise.all([a.outcome, b.outcome]);
    // Both serving is the bug; give a loser time to exit if it got that far.
    expect(outcomes.filter((o) => o === 'served'), `${a.out()}\n----\n${b.out()}`).toHaveLength(1);
    const [winner, loser] = outcomes[0] === 'served' ? [a, b] : [b, a];
    expectRefused({ code: outcomes[winner === a ? 1 : 0]!, out: loser.out() }, new RegExp(`pid ${winner.child.pid}\\b`));
    const c = fresh(sock);
    try {
      expect((await c.identity.Probe({})).ready?.value).toBe(true);
    } finally {
      c.close();
    }
  });

  it('a socket path too long for the private bind name is bound as it is, and still guarded', async () => {
    const pool = freshPool('long');
    const sock = path.join(dir, `${'l'.repeat(99 - dir.length)}.sock`);
    expect(bindName(sock)).toBeUndefined();
    const d = await startDriver({ dir, socket: sock, args: ['--pool', `default=${pool}`] });
    daemons.push(d);
    expectRefused(await refusal(DRIVER_JS, driverArgs(sock, pool, ['--metrics-address', 'off']), '"serving CSI"'), new RegExp(`pid ${d.child.pid}\\b`));
    expect(await d.stop()).toBe(0);
    expect(existsSync(sock)).toBe(false);
  });

  it('on exit a daemon leaves alone a socket that another process made since', async () => {
    const pool = freshPool('other');
    const sock = path.join(dir, 'other.sock');
    const d = await startDriver({ dir, socket: sock, args: ['--pool', `default=${pool}`] });
    daemons.push(d);
    unlinkSync(sock);
    const other = net.createServer((c) => c.end());
    await new Promise<void>((r) => other.listen(sock, r));
    try {
      const ino = inode(sock);
      expect(await d.stop()).toBe(0);
      expect(existsSync(sock)).toBe(true);
      expect(inode(sock)).toBe(ino);
    } finally {
      await new Promise((r) => other.close(r));
    }
  });
});

describe('hpp-snapshot-controller: one process per socket', () => {
  let dir: string;
  let tokenFile: string;
  const runs: Run[] = [];
  const routerArgs = (sock: string) => ['--endpoint', `unix://${sock}`, '--token-file', tokenFile, '--peer', 'n1=127.0.0.1:9'];
  const READY = 'serving snapshot router';

  async function startRouter(sock: string): Promise<{ r: Run; clients: Clients }> {
    const r = run(ROUTER_JS, routerArgs(sock), READY);
    runs.push(r);
    expect(await r.outcome, r.out()).toBe('served');
    return { r, clients: fresh(sock) };
  }

  beforeAll(() => {
    dir = scratchDir('routersock');
    tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, 'test-token-0123456789abcdef\n', { mode: 0o600 });
  });
  afterEach(async () => {
    for (const r of runs.splice(0)) await r.stop();
  });
  afterAll(async () => {
    if (dir) await cleanupDir(dir);
  });

  it('a second one on a live socket exits non-zero naming the first; the first serves on', async () => {
    const sock = path.join(dir, 'live.sock');
    const first = await startRouter(sock);
    try {
      const ino = inode(sock);
      const res = await refusal(ROUTER_JS, routerArgs(sock), READY);
      expectRefused(res, new RegExp(`pid ${first.r.child.pid}\\b`));
      expect(inode(sock)).toBe(ino);
      const c = fresh(sock);
      try {
        expect((await c.identity.GetPluginInfo({})).name).toBe('kubevirt.io.hostpath-provisioner');
      } finally {
        c.close();
      }
    } finally {
      first.clients.close();
    }
  });

  it('a stale socket (kill -9) is replaced; a regular file is refused and kept', async () => {
    const sock = path.join(dir, 'stale.sock');
    const first = await startRouter(sock);
    first.clients.close();
    first.r.child.kill('SIGKILL');
    await new Promise((r) => first.r.child.once('exit', r));
    expect(lstatSync(sock).isSocket()).toBe(true);
    const second = await startRouter(sock);
    try {
      expect((await second.clients.identity.GetPluginInfo({})).name).toBe('kubevirt.io.hostpath-provisioner');
    } finally {
      second.clients.close();
    }

    const file = path.join(dir, 'file.sock');
    writeFileSync(file, 'keep me\n');
    expectRefused(await refusal(ROUTER_JS, routerArgs(file), READY), /not a socket/);
    expect(readFileSync(file, 'utf8')).toBe('keep me\n');
  });
});
