/**
 * How the snapshot router finds the daemons (src/router/peers.ts).
 *
 * KubernetesPeers against a fake API server: HTTPS on 127.0.0.1 with a self-signed certificate made by
 * openssl, given to it as apiServer/tokenFile/caFile (or through KUBERNETES_SERVICE_HOST/PORT, as in a
 * pod). StaticPeers with --peer entries and a peers file that changes on disk.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KubernetesPeers, StaticPeers } from '../../src/router/peers.js';

const NAMESPACE = 'hostpath-provisioner';
const SELECTOR = 'app.kubernetes.io/name=hostpath-provisioner-csi,app.kubernetes.io/component=node-plugin';
const TOKEN = 'sa-token-0123456789abcdef';

interface Seen {
  method?: string;
  path: string;
  query: URLSearchParams;
  authorization?: string;
  accept?: string;
}

type Pod = { name?: string; node?: string; ip?: string; phase?: string };

function podList(pods: Pod[]): string {
  return JSON.stringify({
    kind: 'PodList',
    apiVersion: 'v1',
    metadata: { resourceVersion: '1' },
    items: pods.map((p, i) => ({
      metadata: { name: p.name ?? `hpp-csi-node-${i}`, namespace: NAMESPACE },
      spec: p.node === undefined ? {} : { nodeName: p.node },
      status: { ...(p.phase ? { phase: p.phase } : {}), ...(p.ip ? { podIP: p.ip } : {}) },
    })),
  });
}

let dir: string;
let server: Server;
let base: string;
let tokenFile: string;
let caFile: string;
const seen: Seen[] = [];
/** What the fake API server answers next (the last entry repeats). */
let answers: { status: number; body: string }[] = [];

function answer(...a: { status?: number; body: string }[]): void {
  answers = a.map((x) => ({ status: x.status ?? 200, body: x.body }));
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-router-peers-'));
  const key = path.join(dir, 'key.pem');
  caFile = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', caFile, '-days', '1', '-subj', '/CN=kubernetes', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    { stdio: 'ignore' },
  );
  tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`); // a projected token file may end with a newline
  server = createServer({ key: readFileSync(key), cert: readFileSync(caFile) }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    seen.push({ method: req.method, path: url.pathname, query: url.searchParams, authorization: req.headers.authorization, accept: req.headers.accept });
    const a = answers.length > 1 ? answers.shift()! : answers[0] ?? { status: 500, body: 'no answer set' };
    res.writeHead(a.status, { 'content-type': 'application/json' });
    res.end(a.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  seen.length = 0;
  answers = [];
});

function peers(extra: Partial<ConstructorParameters<typeof KubernetesPeers>[0]> = {}): KubernetesPeers {
  return new KubernetesPeers({ namespace: NAMESPACE, selector: SELECTOR, port: 9700, apiServer: base, tokenFile, caFile, ...extra });
}

describe('KubernetesPeers', () => {
  it('lists the pods of its namespace by label selector, with the service account token', async () => {
    answer({ body: podList([{ node: 'worker-1', ip: '10.244.1.5', phase: 'Running' }]) });
    expect(await peers().all()).toEqual(new Map([['worker-1', '10.244.1.5:9700']]));
    expect(seen).toHaveLength(1);
    expect(seen[0]!.method).toBe('GET');
    expect(seen[0]!.path).toBe(`/api/v1/namespaces/${NAMESPACE}/pods`);
    expect(seen[0]!.query.get('labelSelector')).toBe(SELECTOR);
    expect(seen[0]!.authorization).toBe(`Bearer ${TOKEN}`);
    expect(seen[0]!.accept).toBe('application/json');
  });

  it('counts only Running pods with a node and a pod IP; brackets IPv6 addresses', async () => {
    answer({
      body: podList([
        { node: 'worker-1', ip: '10.244.1.5', phase: 'Running' },
        { node: 'worker-2', ip: 'fd00:10:244::7', phase: 'Running' },
        { node: 'worker-3', ip: '10.244.3.9', phase: 'Pending' },
        { node: 'worker-4', phase: 'Running' }, // no IP yet
        { node: 'worker-5', ip: '10.244.5.2', phase: 'Succeeded' },
        { node: 'worker-6', ip: '10.244.6.2', phase: 'Failed' },
        { node: 'worker-7', ip: '10.244.7.2' }, // no phase
        { ip: '10.244.8.2', phase: 'Running' }, // not scheduled
      ]),
    });
    const p = peers({ port: 9701 });
    expect(await p.all()).toEqual(
      new Map([
        ['worker-1', '10.244.1.5:9701'],
        ['worker-2', '[fd00:10:244::7]:9701'],
      ]),
    );
    expect(await p.address('worker-2')).toBe('[fd00:10:244::7]:9701');
  });

  it('a pod being replaced on a node: the Running one is used', async () => {
    answer({
      body: podList([
        { name: 'new', node: 'worker-1', ip: '10.244.1.9', phase: 'Pending' },
        { name: 'old', node: 'worker-1', ip: '10.244.1.5', phase: 'Running' },
      ]),
    });
    expect(await peers().address('worker-1')).toBe('10.244.1.5:9700');
  });

  it('an empty list, or one without items, knows no node', async () => {
    answer({ body: JSON.stringify({ kind: 'PodList', items: [] }) });
    expect(await peers().all()).toEqual(new Map());
    answer({ body: JSON.stringify({ kind: 'PodList' }) });
    expect(await peers().all()).toEqual(new Map());
  });

  it('holds answers for the cache TTL, and asks again after it', async () => {
    answer({ body: podList([{ node: 'worker-1', ip: '10.244.1.5', phase: 'Running' }]) }, { body: podList([{ node: 'worker-1', ip: '10.244.1.6', phase: 'Running' }]) });
    const held = peers({ ttlMs: 60_000 });
    expect(await held.address('worker-1')).toBe('10.244.1.5:9700');
    expect(await held.address('worker-1')).toBe('10.244.1.5:9700');
    expect(await held.all()).toEqual(new Map([['worker-1', '10.244.1.5:9700']]));
    expect(seen).toHaveLength(1);

    seen.length = 0;
    answer({ body: podList([{ node: 'worker-1', ip: '10.244.1.5', phase: 'Running' }]) }, { body: podList([{ node: 'worker-1', ip: '10.244.1.6', phase: 'Running' }]) });
    const short = peers({ ttlMs: 100 });
    expect(await short.address('worker-1')).toBe('10.244.1.5:9700');
    expect(await short.address('worker-1')).toBe('10.244.1.5:9700');
    expect(seen).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 150));
    expect(await short.address('worker-1'), 'the pod was replaced: new IP after the TTL').toBe('10.244.1.6:9700');
    expect(seen).toHaveLength(2);
  });

  it('a node it does not know makes it ask once more at once (a daemon that just started), not wait for the TTL', async () => {
    answer(
      { body: podList([{ node: 'worker-1', ip: '10.244.1.5', phase: 'Running' }]) },
      { body: podList([{ node: 'worker-1', ip: '10.244.1.5', phase: 'Running' }, { node: 'worker-2', ip: '10.244.2.5', phase: 'Running' }]) },
    );
    const p = peers({ ttlMs: 60_000 });
    expect(await p.all()).toEqual(new Map([['worker-1', '10.244.1.5:9700']]));
    expect(seen).toHaveLength(1);
    expect(await p.address('worker-2')).toBe('10.244.2.5:9700');
    expect(seen, 'exactly one refresh').toHaveLength(2);
    // The refreshed list is cached in turn: known nodes cost nothing.
    expect(await p.address('worker-1')).toBe('10.244.1.5:9700');
    expect(await p.address('worker-2')).toBe('10.244.2.5:9700');
    expect(seen).toHaveLength(2);
  });

  it('a node that is nowhere: one refresh, then undefined (no loop)', async () => {
    answer({ body: podList([{ node: 'worker-1', ip: '10.244.1.5', phase: 'Running' }]) });
    const p = peers({ ttlMs: 60_000 });
    await p.all();
    expect(seen).toHaveLength(1);
    expect(await p.address('ghost')).toBeUndefined();
    expect(seen).toHaveLength(2);
    // The known node is still served from the list just read.
    expect(await p.address('worker-1')).toBe('10.244.1.5:9700');
    expect(seen).toHaveLength(2);
  });

  it('HTTP errors of the API server surface as errors, with the status, and are not cached', async () => {
    const forbidden = JSON.stringify({ kind: 'Status', status: 'Failure', reason: 'Forbidden', code: 403, message: 'pods is forbidden: User "system:serviceaccount:hostpath-provisioner:hpp-snapshot-controller" cannot list resource "pods"' });
    answer({ status: 403, body: forbidden }, { body: podList([{ node: 'worker-1', ip: '10.244.1.5', phase: 'Running' }]) });
    const p = peers({ ttlMs: 60_000 });
    await expect(p.address('worker-1')).rejects.toThrow(/HTTP 403.*forbidden/);
    expect(await p.address('worker-1'), 'the next call asks again').toBe('10.244.1.5:9700');

    answer({ status: 401, body: '{"kind":"Status","code":401}' });
    await expect(peers().all()).rejects.toThrow(/HTTP 401/);
    answer({ status: 500, body: 'etcdserver: request timed out' });
    await expect(peers().address('worker-1')).rejects.toThrow(/HTTP 500/);
  });

  it('a body that is not JSON is an error', async () => {
    answer({ body: '<html>proxy error</html>' });
    await expect(peers().all()).rejects.toThrow();
  });

  it('refuses an API server whose certificate the CA does not sign', async () => {
    const other = path.join(dir, 'other-ca.pem');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(dir, 'other-key.pem'), '-out', other, '-days', '1', '-subj', '/CN=other', '-addext', 'subjectAltName=IP:127.0.0.1'],
      { stdio: 'ignore' },
    );
    answer({ body: podList([]) });
    await expect(peers({ caFile: other }).all()).rejects.toThrow(/self[- ]signed|certificate/i);
    expect(seen).toHaveLength(0);
  });

  it('a missing token file is an error, not an anonymous request', async () => {
    answer({ body: podList([]) });
    await expect(peers({ tokenFile: path.join(dir, 'nope') }).all()).rejects.toThrow(/ENOENT/);
    expect(seen).toHaveLength(0);
  });

  describe('in a pod: the API server from KUBERNETES_SERVICE_HOST/PORT', () => {
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    afterEach(() => {
      for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    });

    it('uses https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT', async () => {
      process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
      process.env.KUBERNETES_SERVICE_PORT = new URL(base).port;
      answer({ body: podList([{ node: 'worker-1', ip: '10.244.1.5', phase: 'Running' }]) });
      const p = new KubernetesPeers({ namespace: NAMESPACE, selector: SELECTOR, port: 9700, tokenFile, caFile });
      expect(await p.address('worker-1')).toBe('10.244.1.5:9700');
      expect(seen[0]!.path).toBe(`/api/v1/namespaces/${NAMESPACE}/pods`);
    });

    it('outside a cluster and without an API server it says so', async () => {
      delete process.env.KUBERNETES_SERVICE_HOST;
      const p = new KubernetesPeers({ namespace: NAMESPACE, selector: SELECTOR, port: 9700, tokenFile, caFile });
      await expect(p.all()).rejects.toThrow(/not running in a cluster/);
    });
  });
});

describe('StaticPeers', () => {
  let file: string;
  beforeEach(() => {
    file = path.join(dir, `peers-${Math.random().toString(36).slice(2)}.json`);
  });

  it('answers from --peer entries alone', async () => {
    const p = new StaticPeers(new Map([['worker-1', '10.0.0.1:9700']]));
    expect(await p.address('worker-1')).toBe('10.0.0.1:9700');
    expect(await p.address('worker-2')).toBeUndefined();
    expect(await p.all()).toEqual(new Map([['worker-1', '10.0.0.1:9700']]));
  });

  it('reads the peers file again when it changes on disk', async () => {
    writeFileSync(file, JSON.stringify({ 'worker-1': '10.0.0.1:9700' }));
    const p = new StaticPeers(new Map(), file);
    expect(await p.address('worker-1')).toBe('10.0.0.1:9700');
    expect(await p.address('worker-2')).toBeUndefined();

    writeFileSync(file, JSON.stringify({ 'worker-1': '10.0.0.11:9700', 'worker-2': '[fd00::2]:9700' }));
    expect(await p.address('worker-1')).toBe('10.0.0.11:9700');
    expect(await p.address('worker-2')).toBe('[fd00::2]:9700');
    expect(await p.all()).toEqual(new Map([['worker-1', '10.0.0.11:9700'], ['worker-2', '[fd00::2]:9700']]));

    writeFileSync(file, JSON.stringify({ 'worker-2': '[fd00::2]:9700' }));
    expect(await p.address('worker-1'), 'a node removed from the file is gone').toBeUndefined();
  });

  it('--peer entries win over the file; entries that are not strings are ignored', async () => {
    writeFileSync(file, JSON.stringify({ 'worker-1': '10.0.0.1:9700', 'worker-2': '10.0.0.2:9700', 'worker-3': 9700, 'worker-4': null }));
    const p = new StaticPeers(new Map([['worker-1', '192.168.0.1:9700']]), file);
    expect(await p.address('worker-1')).toBe('192.168.0.1:9700');
    expect(await p.address('worker-3')).toBeUndefined();
    expect(await p.all()).toEqual(new Map([['worker-1', '192.168.0.1:9700'], ['worker-2', '10.0.0.2:9700']]));
  });

  it('a file that is half-written (not JSON) is an error, and the next good version is read', async () => {
    writeFileSync(file, JSON.stringify({ 'worker-1': '10.0.0.1:9700' }));
    const p = new StaticPeers(new Map(), file);
    expect(await p.address('worker-1')).toBe('10.0.0.1:9700');
    writeFileSync(file, '{"worker-1": "10.0.0.');
    await expect(p.address('worker-1')).rejects.toThrow(SyntaxError);
    writeFileSync(file, JSON.stringify({ 'worker-1': '10.0.0.9:9700' }));
    expect(await p.address('worker-1')).toBe('10.0.0.9:9700');
  });

  it('a missing peers file is an error', async () => {
    const p = new StaticPeers(new Map([['worker-1', '10.0.0.1:9700']]), path.join(dir, 'missing.json'));
    await expect(p.address('worker-1')).rejects.toThrow(/ENOENT/);
  });
});
