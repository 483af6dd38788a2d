import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCli } from '../../src/config/options.js';
import { silentLogger } from '../../src/observe/logger.js';
import { readiness, socketAnswers, type PoolView, type VolumeSource } from '../../src/observe/health.js';
import { ObserveServer, formatAddress, parseListenAddress } from '../../src/observe/http.js';
import { DriverMetrics, RPC_DURATION_BUCKETS, attachedLoopDevices, volumesByPoolAndMode, volumesByPreallocation } from '../../src/observe/metrics.js';
import { ConfigError } from '../../src/pools/config.js';
import type { VolumeRecord } from '../../src/format/records.js';

function rec(pool: string, name: string, mode: 'filesystem' | 'block', extra: Partial<VolumeRecord> = {}): VolumeRecord {
  return {
    version: 1,
    id: `n:${pool}:${name}`,
    name,
    pool,
    node: 'n',
    mode,
    data: name,
    capacityBytes: '1048576',
    parameters: {},
    createdAt: '2026-01-01T00:00:00Z',
    state: 'ready',
    publications: {},
    ...extra,
  };
}

/** Parse Prometheus text into name{labels} → value (labels sorted by name). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable line ${line}`);
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}="${l[2]}"`).sort();
    out.set(labels.length ? `${m[1]}{${labels.join(',')}}` : m[1]!, Number(m[3]));
  }
  return out;
}

describe('parseListenAddress', () => {
  it('reads [HOST]:PORT forms', () => {
    expect(parseListenAddress(':8080')).toEqual({ host: undefined, port: 8080 });
    expect(parseListenAddress('0.0.0.0:9090')).toEqual({ host: '0.0.0.0', port: 9090 });
    expect(parseListenAddress('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseListenAddress('[::1]:8080')).toEqual({ host: '::1', port: 8080 });
    expect(parseListenAddress('localhost:8080')).toEqual({ host: 'localhost', port: 8080 });
  });

  it('"" and off disable the endpoint', () => {
    expect(parseListenAddress('')).toBeUndefined();
    expect(parseListenAddress('off')).toBeUndefined();
    expect(parseListenAddress('OFF')).toBeUndefined();
  });

  it('refuses anything else', () => {
    for (const bad of ['8080', 'host', ':', ':port', ':70000', '::1:8080', 'http://x:80', 'a b:80']) {
      expect(() => parseListenAddress(bad), bad).toThrow();
    }
  });

  it('formats bound addresses, IPv6 in brackets', () => {
    expect(formatAddress({ address: '127.0.0.1', family: 'IPv4', port: 5 })).toBe('127.0.0.1:5');
    expect(formatAddress({ address: '::', family: 'IPv6', port: 8080 })).toBe('[::]:8080');
  });
});

describe('--metrics-address', () => {
  const POOL = ['--pool', 'default=/var/hpp'];
  it('defaults to :8080, from the flag or METRICS_ADDRESS', () => {
    expect(parseCli(POOL, {}).metricsAddress).toBe(':8080');
    expect(parseCli([...POOL, '--metrics-address', '127.0.0.1:9100'], {}).metricsAddress).toBe('127.0.0.1:9100');
    expect(parseCli(POOL, { METRICS_ADDRESS: ':9200' }).metricsAddress).toBe(':9200');
    expect(parseCli([...POOL, '--metrics-address=:9300'], { METRICS_ADDRESS: ':9200' }).metricsAddress).toBe(':9300');
  });

  it('"" or off turns it off; a bad address is a config error', () => {
    expect(parseCli([...POOL, '--metrics-address', 'off'], {}).metricsAddress).toBeUndefined();
    expect(parseCli([...POOL, '--metrics-address='], {}).metricsAddress).toBeUndefined();
    expect(parseCli(POOL, { METRICS_ADDRESS: '' }).metricsAddress).toBeUndefined();
    expect(() => parseCli([...POOL, '--metrics-address', 'nope'], {})).toThrow(ConfigError);
  });
});

describe('volume counts', () => {
  const records = [
    rec('a', 'v1', 'filesystem', { preallocation: 'fallocate' }),
    rec('a', 'v2', 'block', { preallocation: 'none', publications: { '/t1': { readOnly: false, accessMode: 'SINGLE_NODE_WRITER', mountFlags: [], device: '/dev/loop3' } } }),
    rec('b', 'v3', 'block', {
      preallocation: 'full',
      publications: {
        '/t2': { readOnly: false, accessMode: 'MULTI_NODE_MULTI_WRITER', mountFlags: [], device: '/dev/loop4' },
        '/t3': { readOnly: false, accessMode: 'MULTI_NODE_MULTI_WRITER', mountFlags: [], device: '/dev/loop4' },
      },
    }),
    rec('b', 'v4', 'filesystem', { publications: { '/t4': { readOnly: false, accessMode: 'SINGLE_NODE_WRITER', mountFlags: [] } } }),
  ];

  it('by pool and mode, zero for configured pools without volumes', () => {
    const m = volumesByPoolAndMode(records, ['a', 'b', 'c']);
    expect(Object.fromEntries([...m].map(([p, byMode]) => [p, Object.fromEntries(byMode)]))).toEqual({
      a: { filesystem: 1, block: 1 },
      b: { filesystem: 1, block: 1 },
      c: { filesystem: 0, block: 0 },
    });
  });

  it('by preallocation method (a record without the field counts as none)', () => {
    expect(Object.fromEntries(volumesByPreallocation(records))).toEqual({ none: 2, fallocate: 1, full: 1 });
  });

  it('loop devices: distinct devices in publications of block volumes', () => {
    expect(attachedLoopDevices(records)).toBe(2);
    expect(attachedLoopDevices([])).toBe(0);
  });
});

/** A VolumeSource with pools in given states. */
function fakeSource(pools: Array<{ name: string; ready: boolean; loadError?: string; capacityError?: string; backend?: 'none' | 'xfs-project' | 'btrfs-qgroup' }>, records: VolumeRecord[] = []): VolumeSource {
  const views: PoolView[] = pools.map((p) => ({
    name: p.name,
    quota: p.backend ? { kind: p.backend } : undefined,
    health: async () => (p.ready ? { ready: true } : { ready: false, reason: `pool ${p.name}: /x/${p.name} does not exist` }),
  }));
  return {
    list: () => records,
    poolList: () => views,
    async poolState(name: string) {
      const p = pools.find((x) => x.name === name)!;
      if (p.loadError) return { name, phase: 'failed', reason: p.loadError };
      return { name, phase: 'ready', backend: p.backend };
    },
    async capacityOf(name: string) {
      const p = pools.find((x) => x.name === name)!;
      if (p.capacityError) throw new Error(p.capacityError);
      return { totalBytes: 1000n, freeBytes: 600n, usedBytes: 400n, reservedBytes: 100n, availableBytes: 500n };
    },
  } as unknown as VolumeSource;
}

describe('DriverMetrics', () => {
  it('counts RPCs by method and code and observes their duration', async () => {
    const m = new DriverMetrics(fakeSource([]), silentLogger(), { version: '9.9.9', defaultMetrics: false });
    m.observe('CreateVolume', 'OK', 0.002);
    m.observe('CreateVolume', 'OK', 0.2);
    m.observe('CreateVolume', 'INVALID_ARGUMENT', 0.0001);
    const s = samples(await m.render());
    expect(s.get('hpp_csi_rpc_requests_total{code="OK",method="CreateVolume"}')).toBe(2);
    expect(s.get('hpp_csi_rpc_requests_total{code="INVALID_ARGUMENT",method="CreateVolume"}')).toBe(1);
    expect(s.get('hpp_csi_rpc_duration_seconds_count{code="OK",method="CreateVolume"}')).toBe(2);
    expect(s.get('hpp_csi_rpc_duration_seconds_bucket{code="OK",le="0.0025",method="CreateVolume"}')).toBe(1);
    expect(s.get('hpp_csi_rpc_duration_seconds_bucket{code="OK",le="+Inf",method="CreateVolume"}')).toBe(2);
    expect(s.get('hpp_csi_rpc_duration_seconds_sum{code="OK",method="CreateVolume"}')).toBeCloseTo(0.202);
    expect(s.get('hpp_build_info{version="9.9.9"}')).toBe(1);
    expect(RPC_DURATION_BUCKETS[0]).toBe(0.0005);
    expect(RPC_DURATION_BUCKETS.at(-1)).toBe(60);
  });

  it('pool gauges: figures for ready pools, ready 0 and no figures for the others, the scrape never fails', async () => {
    const src = fakeSource(
      [
        { name: 'good', ready: true, backend: 'xfs-project' },
        { name: 'gone', ready: false },
        { name: 'stuck', ready: true, loadError: 'device is not XFS', backend: undefined },
        { name: 'nofigs', ready: true, capacityError: 'statfs failed', backend: 'none' },
      ],
      [rec('good', 'v1', 'block', { preallocation: 'fallocate' })],
    );
    const m = new DriverMetrics(src, silentLogger(), { version: '1', defaultMetrics: false });
    const s = samples(await m.render());
    expect(s.get('hpp_pool_ready{pool="good"}')).toBe(1);
    expect(s.get('hpp_pool_ready{pool="gone"}')).toBe(0);
    expect(s.get('hpp_pool_ready{pool="stuck"}')).toBe(0);
    expect(s.get('hpp_pool_ready{pool="nofigs"}')).toBe(1);
    expect(s.get('hpp_pool_capacity_bytes{pool="good"}')).toBe(1000);
    expect(s.get('hpp_pool_available_bytes{pool="good"}')).toBe(500);
    expect(s.get('hpp_pool_reserved_bytes{pool="good"}')).toBe(100);
    expect(s.get('hpp_pool_used_bytes{pool="good"}')).toBe(400);
    for (const p of ['gone', 'stuck', 'nofigs']) expect(s.has(`hpp_pool_capacity_bytes{pool="${p}"}`), p).toBe(false);
    expect(s.get('hpp_pool_size_enforced{backend="xfs-project",pool="good"}')).toBe(1);
    expect(s.get('hpp_pool_size_enforced{backend="none",pool="nofigs"}')).toBe(0);
    expect([...s.keys()].filter((k) => k.startsWith('hpp_pool_size_enforced{') && /gone|stuck/.test(k))).toEqual([]);
    expect(s.get('hpp_volumes{mode="block",pool="good"}')).toBe(1);
    expect(s.get('hpp_volumes{mode="filesystem",pool="gone"}')).toBe(0);
    expect(s.get('hpp_volumes_preallocated{method="fallocate"}')).toBe(1);
    expect(s.get('hpp_loop_devices_attached')).toBe(0);
  });

  it('readiness lists every pool that is not ready, with its reason', async () => {
    const r = await readiness(fakeSource([{ name: 'good', ready: true }, { name: 'gone', ready: false }, { name: 'stuck', ready: true, loadError: 'device is not XFS' }]));
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual(['pool gone: /x/gone does not exist', 'pool stuck: device is not XFS']);
    expect(await readiness(fakeSource([{ name: 'good', ready: true }]))).toEqual({ ok: true, problems: [] });
  });

  it('hpp_kubelet_registered follows kubelet\'s verdict, and is there only when the daemon registers itself', async () => {
    expect(samples(await new DriverMetrics(fakeSource([]), silentLogger(), { version: '1', defaultMetrics: false }).render()).has('hpp_kubelet_registered')).toBe(false);
    let registered = false;
    const m = new DriverMetrics(fakeSource([]), silentLogger(), { version: '1', defaultMetrics: false, kubeletRegistered: () => registered });
    expect(samples(await m.render()).get('hpp_kubelet_registered')).toBe(0);
    registered = true;
    expect(samples(await m.render()).get('hpp_kubelet_registered')).toBe(1);
  });

  it('several registries live side by side in one process', async () => {
    const a = new DriverMetrics(fakeSource([]), silentLogger(), { version: 'a' });
    const b = new DriverMetrics(fakeSource([]), silentLogger(), { version: 'b' });
    a.observe('Probe', 'OK', 0.001);
    const sa = samples(await a.render());
    const sb = samples(await b.render());
    expect(sa.get('hpp_csi_rpc_requests_total{code="OK",method="Probe"}')).toBe(1);
    expect(sb.has('hpp_csi_rpc_requests_total{code="OK",method="Probe"}')).toBe(false);
    expect(sa.has('hpp_process_cpu_seconds_total')).toBe(true);
    expect(sb.has('hpp_nodejs_heap_size_used_bytes')).toBe(true);
  });
});

describe('ObserveServer', () => {
  let dir: string | undefined;
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves /metrics, /healthz and /readyz (200 ok / 503 with reasons), 404 and 405 otherwise', async () => {
    let ready = false;
    const srv = new ObserveServer(
      {
        metrics: async () => ({ contentType: 'text/plain; version=0.0.4', body: 'x 1\n' }),
        healthz: async () => ({ ok: true, problems: [] }),
        readyz: async () => (ready ? { ok: true, problems: [] } : { ok: false, problems: ['pool a: gone', 'pool b: gone'] }),
      },
      silentLogger(),
    );
    const addr = await srv.listen({ host: '127.0.0.1', port: 0 });
    expect(addr).toMatch(/^127\.0\.0\.1:\d+$/);
    const get = async (p: string, init?: RequestInit) => {
      const r = await fetch(`http://${addr}${p}`, init);
      return { status: r.status, body: await r.text(), type: r.headers.get('content-type') };
    };
    expect(await get('/metrics')).toEqual({ status: 200, body: 'x 1\n', type: 'text/plain; version=0.0.4' });
    expect(await get('/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
    expect(await get('/readyz')).toMatchObject({ status: 503, body: 'not ok: pool a: gone\nnot ok: pool b: gone\n' });
    ready = true;
    expect(await get('/readyz?verbose')).toMatchObject({ status: 200, body: 'ok\n' });
    expect((await get('/')).status).toBe(404);
    expect((await get('/metrics', { method: 'POST' })).status).toBe(405);
    await Promise.all([srv.close(), srv.close()]);
    expect(srv.listening).toBe(false);
    await expect(fetch(`http://${addr}/healthz`)).rejects.toThrow();
  });

  it('socketAnswers: a listening unix socket answers; a missing one or a plain file does not', async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-unit-metrics-'));
    const sock = path.join(dir, 's.sock');
    expect(await socketAnswers(sock)).toMatch(/missing/);
    const server = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => server.listen(sock, r));
    expect(await socketAnswers(sock)).toBeUndefined();
    await new Promise<void>((r) => server.close(() => r()));
    expect(await socketAnswers(sock)).toMatch(/missing/);
    expect(await socketAnswers(dir)).toMatch(/not a socket/);
  });
});
