/**
 * Metrics and health of the real daemon over HTTP (--metrics-address): counters and histograms moved by
 * a volume lifecycle, pool and volume gauges, /healthz and /readyz, the endpoint switched off, and the
 * HTTP server closed on SIGTERM.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DriverApp } from '../../src/app.js';
import { silentLogger } from '../../src/observe/logger.js';
import { parsePoolFlag } from '../../src/pools/config.js';
import { listLoopDevices } from '../../src/system/loop.js';
import { BLOCK_CAP, MOUNT_CAP, cleanupDir, connect, expectCode, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';

const MiB = 1024 * 1024;

interface Scrape {
  /** `name{a="x",b="y"}` (labels sorted) → value. */
  values: Map<string, number>;
  /** metric family → counter, gauge, histogram, ... */
  types: Map<string, string>;
  get(name: string, labels?: Record<string, string>): number | undefined;
  /** Every sample of a metric name (labels as an object). */
  series(name: string): Array<{ labels: Record<string, string>; value: number }>;
}

/** A small parser of the Prometheus text format (what prom-client writes: no timestamps, no exemplars). */
function parseExposition(text: string): Scrape {
  const values = new Map<string, number>();
  const types = new Map<string, string>();
  const parsed: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  const key = (name: string, labels: Record<string, string>) => {
    const l = Object.keys(labels)
      .sort()
      .map((k) => `${k}="${labels[k]}"`);
    return l.length ? `${name}{${l.join(',')}}` : name;
  };
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      types.set(t[1]!, t[2]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    // Prometheus reads floats with Go's ParseFloat, where "NaN" is case-insensitive; prom-client writes
    // "Nan" for a summary with no samples yet (the event-loop lag right after start).
    if (Number.isNaN(value) && m[3]!.toLowerCase() !== 'nan') throw new Error(`bad value in ${line}`);
    values.set(key(m[1]!, labels), value);
    parsed.push({ name: m[1]!, labels, value });
  }
  return {
    values,
    types,
    get: (name, labels = {}) => values.get(key(name, labels)),
    series: (name) => parsed.filter((p) => p.name === name).map(({ labels, value }) => ({ labels, value })),
  };
}

/** The metrics address the daemon logged in its "serving CSI" line ('off' when disabled). */
function metricsAddressOf(d: DriverProcess): string {
  const line = d
    .logs()
    .split('\n')
    .find((l) => l.includes('"serving CSI"'));
  if (!line) throw new Error(`no "serving CSI" line in:\n${d.logs()}`);
  return (JSON.parse(line) as { metrics: string }).metrics;
}

async function scrape(addr: string): Promise<Scrape> {
  const res = await fetch(`http://${addr}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

async function get(addr: string, p: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${addr}${p}`);
  return { status: res.status, body: await res.text() };
}

/** TCP ports a process listens on: its socket inodes matched against /proc/net/tcp{,6} LISTEN rows. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // fd closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of [`/proc/${pid}/net/tcp`, `/proc/${pid}/net/tcp6`]) {
    if (!existsSync(table)) continue;
    for (const row of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = row.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue; // 0A: LISTEN
      if (inodes.has(f[9]!)) ports.push(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

describe('metrics and health over HTTP', () => {
  let dir: string;
  let pool: string;
  let d: DriverProcess | undefined;

  beforeAll(() => {
    dir = scratchDir('metrics');
    pool = `${dir}/pool`;
    mkdirSync(pool);
    mkdirSync(`${dir}/pods`);
  });
  afterEach(async () => {
    await d?.stop();
    d = undefined;
  });
  afterAll(async () => {
    await cleanupDir(dir);
  });

  const start = async (args: string[] = []) =>
    (d = await startDriver({ dir, args: ['--pool', `default=${pool}`, '--metrics-address', '127.0.0.1:0', ...args] }));

  it('counts a volume lifecycle: requests and durations by method and code, volumes, loop devices, pools', async () => {
    const drv = await start();
    const addr = metricsAddressOf(drv);
    expect(addr).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(listeningPorts(drv.child.pid!)).toEqual([Number(addr.split(':')[1])]);

    const s0 = await scrape(addr);
    expect(s0.series('hpp_csi_rpc_requests_total')).toEqual([]);
    expect(s0.get('hpp_volumes', { pool: 'default', mode: 'filesystem' })).toBe(0);
    expect(s0.get('hpp_volumes', { pool: 'default', mode: 'block' })).toBe(0);
    expect(s0.get('hpp_loop_devices_attached')).toBe(0);

    const c = drv.clients.controller;
    const fs1 = await c.CreateVolume({ name: 'm-fs', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(8 * MiB) } });
    const fs2 = await c.CreateVolume({ name: 'm-del', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(4 * MiB) } });
    const blk = await c.CreateVolume({
      name: 'm-blk',
      volume_capabilities: [BLOCK_CAP],
      capacity_range: { required_bytes: String(16 * MiB) },
      parameters: { preallocation: 'true' },
    });
    await expectCode(c.CreateVolume({ name: '', volume_capabilities: [MOUNT_CAP] }), 'INVALID_ARGUMENT');
    const target = `${dir}/pods/p1/dev`;
    await drv.clients.node.NodePublishVolume({ volume_id: blk.volume.volume_id, target_path: target, volume_capability: BLOCK_CAP });
    await c.DeleteVolume({ volume_id: fs2.volume.volume_id });

    const s1 = await scrape(addr);
    expect(s1.types.get('hpp_csi_rpc_requests_total')).toBe('counter');
    expect(s1.types.get('hpp_csi_rpc_duration_seconds')).toBe('histogram');
    const expected: Array<[string, string, number]> = [
      ['CreateVolume', 'OK', 3],
      ['CreateVolume', 'INVALID_ARGUMENT', 1],
      ['NodePublishVolume', 'OK', 1],
      ['DeleteVolume', 'OK', 1],
    ];
    expect(s1.series('hpp_csi_rpc_requests_total').map((x) => [x.labels.method, x.labels.code, x.value]).sort()).toEqual([...expected].sort());
    for (const [method, code, n] of expected) {
      expect(s1.get('hpp_csi_rpc_duration_seconds_count', { method, code }), `${method} ${code}`).toBe(n);
      const buckets = s1.series('hpp_csi_rpc_duration_seconds_bucket').filter((b) => b.labels.method === method && b.labels.code === code);
      expect(buckets.map((b) => b.labels.le)).toEqual(['0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '60', '+Inf']);
      const counts = buckets.map((b) => b.value);
      expect(counts).toEqual([...counts].sort((a, b) => a - b)); // cumulative
      expect(counts.at(-1)).toBe(n);
      const sum = s1.get('hpp_csi_rpc_duration_seconds_sum', { method, code })!;
      expect(sum).toBeGreaterThan(0);
      expect(sum).toBeLessThan(60 * n);
    }

    expect(s1.types.get('hpp_volumes')).toBe('gauge');
    expect(s1.get('hpp_volumes', { pool: 'default', mode: 'filesystem' })).toBe(1);
    expect(s1.get('hpp_volumes', { pool: 'default', mode: 'block' })).toBe(1);
    expect(s1.get('hpp_volumes_preallocated', { method: 'none' })).toBe(1);
    expect(s1.get('hpp_volumes_preallocated', { method: 'fallocate' })).toBe(1);
    expect(s1.get('hpp_volumes_preallocated', { method: 'full' })).toBe(0);
    expect(s1.get('hpp_loop_devices_attached')).toBe(1);
    expect((await listLoopDevices()).filter((l) => l.backFile.startsWith(`${pool}/`))).toHaveLength(1);

    // Pool gauges: present, consistent, and the ext4 scratch dir enforces no sizes.
    const capacity = s1.get('hpp_pool_capacity_bytes', { pool: 'default' })!;
    const used = s1.get('hpp_pool_used_bytes', { pool: 'default' })!;
    const available = s1.get('hpp_pool_available_bytes', { pool: 'default' })!;
    const reserved = s1.get('hpp_pool_reserved_bytes', { pool: 'default' })!;
    expect(capacity).toBeGreaterThan(0);
    expect(used).toBeGreaterThan(0);
    expect(used).toBeLessThanOrEqual(capacity);
    expect(available).toBeGreaterThanOrEqual(0);
    expect(available).toBeLessThanOrEqual(capacity);
    // Free space on the shared /tmp moves while other tests run: leave some slack between two statfs.
    expect(available).toBeLessThanOrEqual(capacity - used + 64 * MiB);
    // Without quotas the filesystem volume keeps its whole capacity reserved (8 MiB); the block image
    // is fallocated, so nothing more once recomputed (until then the tracker counts it whole: 24 MiB).
    expect(reserved).toBeGreaterThanOrEqual(8 * MiB);
    expect(reserved).toBeLessThanOrEqual(24 * MiB);
    expect(s1.get('hpp_pool_ready', { pool: 'default' })).toBe(1);
    expect(s1.series('hpp_pool_size_enforced')).toEqual([{ labels: { pool: 'default', backend: 'none' }, value: 0 }]);
    // GetCapacity answers from the same figures (not compared: other tests write to /tmp meanwhile).
    const gc = await c.GetCapacity({ volume_capabilities: [MOUNT_CAP], parameters: { storagePool: 'default' } });
    expect(Number(gc.available_capacity)).toBeGreaterThan(0);

    // Process metrics under the same prefix, and nothing outside it.
    expect(s1.get('hpp_process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(s1.get('hpp_nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(s1.get('hpp_build_info', { version: '0.1.0' })).toBe(1);
    expect([...s1.types.keys()].filter((n) => !n.startsWith('hpp_'))).toEqual([]);

    expect(await get(addr, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await get(addr, '/readyz')).toEqual({ status: 200, body: 'ok\n' });

    await drv.clients.node.NodeUnpublishVolume({ volume_id: blk.volume.volume_id, target_path: target });
    await c.DeleteVolume({ volume_id: blk.volume.volume_id });
    await c.DeleteVolume({ volume_id: fs1.volume.volume_id });
    const s2 = await scrape(addr);
    expect(s2.get('hpp_loop_devices_attached')).toBe(0);
    expect((await listLoopDevices()).filter((l) => l.backFile.startsWith(`${pool}/`))).toEqual([]);
    expect(s2.get('hpp_volumes', { pool: 'default', mode: 'filesystem' })).toBe(0);
    expect(s2.get('hpp_volumes', { pool: 'default', mode: 'block' })).toBe(0);
    expect(s2.get('hpp_csi_rpc_requests_total', { method: 'DeleteVolume', code: 'OK' })).toBe(3);
    expect(s2.get('hpp_csi_rpc_requests_total', { method: 'NodeUnpublishVolume', code: 'OK' })).toBe(1);
    expect(s2.get('hpp_csi_rpc_requests_total', { method: 'GetCapacity', code: 'OK' })).toBe(1);

    // SIGTERM: the HTTP server goes with the CSI socket.
    expect(await drv.stop()).toBe(0);
    d = undefined;
    expect(existsSync(drv.socket)).toBe(false);
    await expect(fetch(`http://${addr}/healthz`)).rejects.toThrow();
  });

  it('/readyz is 503 naming a pool whose directory does not exist, and 200 once it appears', async () => {
    const late = `${dir}/late-pool`;
    const drv = await start(['--pool', `late=${late}`]);
    const addr = metricsAddressOf(drv);
    expect(await get(addr, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    const r = await get(addr, '/readyz');
    expect(r.status).toBe(503);
    expect(r.body).toBe(`not ok: pool late: ${late} does not exist\n`);

    const s = await scrape(addr);
    expect(s.get('hpp_pool_ready', { pool: 'default' })).toBe(1);
    expect(s.get('hpp_pool_ready', { pool: 'late' })).toBe(0);
    expect(s.get('hpp_pool_capacity_bytes', { pool: 'default' })).toBeGreaterThan(0);
    for (const m of ['hpp_pool_capacity_bytes', 'hpp_pool_used_bytes', 'hpp_pool_available_bytes', 'hpp_pool_size_enforced']) {
      expect(s.series(m).filter((x) => x.labels.pool === 'late'), m).toEqual([]);
    }

    mkdirSync(late);
    expect(await get(addr, '/readyz')).toEqual({ status: 200, body: 'ok\n' });
    const s2 = await scrape(addr);
    expect(s2.get('hpp_pool_ready', { pool: 'late' })).toBe(1);
    expect(s2.get('hpp_pool_capacity_bytes', { pool: 'late' })).toBeGreaterThan(0);
    expect(s2.get('hpp_pool_size_enforced', { pool: 'late', backend: 'none' })).toBe(0);
  });

  it('/readyz is 503 for a daemon whose only pool does not exist', async () => {
    const drv = (d = await startDriver({ dir, args: ['--pool', `gone=${dir}/no-such-pool`, '--metrics-address', '127.0.0.1:0'] }));
    const addr = metricsAddressOf(drv);
    expect(await get(addr, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await get(addr, '/readyz')).toEqual({ status: 503, body: `not ok: pool gone: ${dir}/no-such-pool does not exist\n` });
    const s = await scrape(addr);
    expect(s.series('hpp_pool_ready')).toEqual([{ labels: { pool: 'gone' }, value: 0 }]);
    expect(s.series('hpp_pool_capacity_bytes')).toEqual([]);
    const probe = await drv.clients.identity.Probe({});
    expect(probe.ready.value).toBe(false);
  });

  it('--metrics-address off: no HTTP listener at all', async () => {
    const drv = await start(['--metrics-address', 'off']);
    expect(metricsAddressOf(drv)).toBe('off');
    expect(drv.logs()).not.toContain('serving metrics and health');
    expect(listeningPorts(drv.child.pid!)).toEqual([]);
    // CSI is served as usual.
    expect((await drv.clients.identity.Probe({})).ready.value).toBe(true);
  });

  it('a taken port is logged and CSI is still served', async () => {
    const first = await start();
    const addr = metricsAddressOf(first);
    mkdirSync(`${dir}/pool2`, { recursive: true });
    const second = await startDriver({ dir, args: ['--pool', `other=${dir}/pool2`, '--metrics-address', addr] });
    try {
      expect(metricsAddressOf(second)).toBe('unavailable');
      expect(second.logs()).toContain('"metrics and health endpoint not served"');
      expect(second.logs()).toContain('EADDRINUSE');
      expect((await second.clients.identity.GetPluginInfo({})).name).toBe('kubevirt.io.hostpath-provisioner');
    } finally {
      expect(await second.stop()).toBe(0);
    }
    // The first one's endpoint is untouched.
    expect((await get(addr, '/healthz')).status).toBe(200);
  });

  it('stop(): in-flight calls finish while health says shutting down, then socket and HTTP are gone; idempotent', async () => {
    const sock = `${dir}/inproc.sock`;
    mkdirSync(`${dir}/pool3`, { recursive: true });
    const app = new DriverApp(
      { endpoint: `unix://${sock}`, nodeName: 'test-node', driverName: 'kubevirt.io.hostpath-provisioner', pools: [parsePoolFlag(`p3=${dir}/pool3`)], metricsAddress: '127.0.0.1:0' },
      silentLogger(),
    );
    await app.start();
    const addr = app.metricsAddress!;
    expect(await get(addr, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await get(addr, '/readyz')).toEqual({ status: 200, body: 'ok\n' });

    // Hold a CreateVolume inside the daemon until the test lets it go.
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    let letGo!: () => void;
    const gate = new Promise<void>((r) => (letGo = r));
    const create = app.volumes.create.bind(app.volumes);
    app.volumes.create = async (...args) => {
      entered();
      await gate;
      return create(...args);
    };
    const clients = connect(`unix://${sock}`);
    try {
      const call = clients.controller.CreateVolume({ name: 'in-flight', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: String(MiB) } });
      await inside;
      const stopped = app.stop();
      expect(app.stop()).toBe(stopped);
      expect(await get(addr, '/healthz')).toEqual({ status: 503, body: 'not ok: shutting down\n' });
      expect((await get(addr, '/readyz')).status).toBe(503);
      // No new connections while draining: the socket file goes (stop() removes it without waiting
      // for in-flight calls; the removal is file system work, so it may land after the HTTP answers).
      await vi.waitFor(() => expect(existsSync(sock)).toBe(false), { timeout: 5_000, interval: 10 });
      letGo();
      expect((await call).volume.volume_id).toBe('test-node:p3:in-flight');
      await stopped;
      await app.stop();
      expect(existsSync(sock)).toBe(false);
      await expect(fetch(`http://${addr}/healthz`)).rejects.toThrow();
      const s = parseExposition(await app.metrics.render());
      expect(s.get('hpp_csi_rpc_requests_total', { method: 'CreateVolume', code: 'OK' })).toBe(1);
    } finally {
      letGo();
      clients.close();
      await app.stop();
    }
  });
});
