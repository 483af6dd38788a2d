import { readFileSync } from 'node:fs';
import { request } from 'node:https';

/** Where the daemon of a node can be reached (host:port of its peer endpoint). */
export interface PeerResolver {
  address(node: string): Promise<string | undefined>;
  /** Every known node and address, for calls that must ask all of them (ListSnapshots unfiltered). */
  all(): Promise<Map<string, string>>;
}

/** A fixed map, from --peer NODE=ADDR flags or a JSON file {"node": "host:port"} (re-read when it changes). */
export class StaticPeers implements PeerResolver {
  private fileText = '';
  private fromFile = new Map<string, string>();

  constructor(
    private readonly fixed: Map<string, string>,
    private readonly file?: string,
  ) {}

  private refresh(): void {
    if (!this.file) return;
    const text = readFileSync(this.file, 'utf8');
    if (text === this.fileText) return;
    const data = JSON.parse(text) as Record<string, unknown>;
    const m = new Map<string, string>();
    for (const [node, addr] of Object.entries(data)) if (typeof addr === 'string') m.set(node, addr);
    this.fromFile = m;
    this.fileText = text;
  }

  async address(node: string): Promise<string | undefined> {
    this.refresh();
    return this.fixed.get(node) ?? this.fromFile.get(node);
  }

  async all(): Promise<Map<string, string>> {
    this.refresh();
    return new Map([...this.fromFile, ...this.fixed]);
  }
}

/**
 * The daemon pods found through the Kubernetes API: pods matching a label selector in a namespace,
 * one per node, reached at podIP:port. Uses the pod's service account; answers are cached briefly.
 */
export class KubernetesPeers implements PeerResolver {
  private cache?: { at: number; peers: Map<string, string> };

  constructor(
    private readonly opts: {
      namespace: string;
      selector: string;
      port: number;
      apiServer?: string;
      tokenFile?: string;
      caFile?: string;
      ttlMs?: number;
    },
  ) {}

  private async list(): Promise<Map<string, string>> {
    const ttl = this.opts.ttlMs ?? 10_000;
    if (this.cache && Date.now() - this.cache.at < ttl) return this.cache.peers;
    const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
    const host = process.env.KUBERNETES_SERVICE_HOST;
    const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
    const base = this.opts.apiServer ?? (host ? `https://${host.includes(':') ? `[${host}]` : host}:${port}` : undefined);
    if (!base) throw new Error('not running in a cluster (KUBERNETES_SERVICE_HOST unset) and no API server given');
    const token = readFileSync(this.opts.tokenFile ?? `${sa}/token`, 'utf8').trim();
    const ca = readFileSync(this.opts.caFile ?? `${sa}/ca.crt`);
    const url = new URL(`/api/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/pods`, base);
    url.searchParams.set('labelSelector', this.opts.selector);
    const body = await new Promise<string>((resolve, reject) => {
      const req = request(url, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, ca, timeout: 5_000 }, (res) => {
        let data = '';
        res.setEncoding('utf8').on('data', (d: string) => (data += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(data) : reject(new Error(`GET ${url}: HTTP ${res.statusCode}: ${data.slice(0, 300)}`))));
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
      req.on('error', reject);
      req.end();
    });
    const pods = JSON.parse(body) as { items?: Array<{ spec?: { nodeName?: string }; status?: { podIP?: string; phase?: string } }> };
    const peers = new Map<string, string>();
    for (const p of pods.items ?? []) {
      const node = p.spec?.nodeName;
      const ip = p.status?.podIP;
      if (node && ip && p.status?.phase === 'Running') peers.set(node, `${ip.includes(':') ? `[${ip}]` : ip}:${this.opts.port}`);
    }
    this.cache = { at: Date.now(), peers };
    return peers;
  }

  async address(node: string): Promise<string | undefined> {
    let peers = await this.list();
    if (!peers.has(node) && this.cache) {
      // A pod that just started: look again once rather than wait for the cache to expire.
      this.cache = undefined;
      peers = await this.list();
    }
    return peers.get(node);
  }

  async all(): Promise<Map<string, string>> {
    return this.list();
  }
}
