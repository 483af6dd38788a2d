import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CheckResult } from './health.js';
import type { Logger } from './logger.js';

export const DEFAULT_METRICS_ADDRESS = ':8080';

export interface ListenAddress {
  /** undefined: every interface. */
  host?: string;
  port: number;
}

/**
 * `--metrics-address`: `[HOST]:PORT` (`:8080`, `0.0.0.0:8080`, `127.0.0.1:0`, `[::1]:9090`,
 * `localhost:8080`). `""` or `off` turn the endpoint off (undefined). Throws on anything else.
 */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const s = text.trim();
  if (s === '' || s.toLowerCase() === 'off') return undefined;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(s);
  if (!m) throw new Error(`${JSON.stringify(text)} is not [HOST]:PORT (or "off")`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`${JSON.stringify(text)}: port ${port} is out of range`);
  const host = m[1] ?? m[2];
  return { host: host ? host : undefined, port };
}

/** `host:port` of a bound server, IPv6 in brackets. */
export function formatAddress(a: AddressInfo): string {
  return a.family === 'IPv6' || a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

export interface ObserveHandlers {
  /** undefined: /metrics is not served (404). */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  healthz: () => Promise<CheckResult>;
  readyz: () => Promise<CheckResult>;
}

/**
 * The daemon's HTTP side (node:http): GET /metrics (Prometheus text), /healthz (liveness) and /readyz
 * (readiness). Health answers `ok` with 200, or 503 with one reason per line.
 */
export class ObserveServer {
  private readonly server: http.Server;
  private closing?: Promise<void>;

  constructor(
    private readonly handlers: ObserveHandlers,
    private readonly log: Logger,
  ) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log.error({ url: req.url, err: String(err) }, 'http handler failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`internal error: ${(err as Error).message ?? String(err)}\n`);
      });
    });
    // A scrape or probe is small; do not let a stuck client hold a socket for long.
    this.server.requestTimeout = 30_000;
    this.server.headersTimeout = 10_000;
    this.server.keepAliveTimeout = 15_000;
  }

  /** Listens; resolves with the bound address (the real port when asked for port 0). */
  async listen(addr: ListenAddress): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host: addr.host, port: addr.port }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.log.error({ err: String(err) }, 'metrics/health server error'));
        resolve();
      });
    });
    return formatAddress(this.server.address() as AddressInfo);
  }

  get listening(): boolean {
    return this.server.listening;
  }

  /** Stops listening; idle keep-alive connections go now, busy ones after `graceMs`. Idempotent. */
  close(graceMs = 2_000): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      const timer = setTimeout(() => this.server.closeAllConnections(), graceMs);
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.server.closeIdleConnections();
    });
    return this.closing;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return;
    }
    const send = (status: number, contentType: string, body: string) => {
      res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
      res.end(head ? undefined : body);
    };
    switch (url.pathname) {
      case '/metrics':
        if (this.handlers.metrics) {
          const m = await this.handlers.metrics();
          send(200, m.contentType, m.body);
          return;
        }
        break;
      case '/healthz':
      case '/readyz': {
        const r = await (url.pathname === '/healthz' ? this.handlers.healthz() : this.handlers.readyz());
        send(r.ok ? 200 : 503, 'text/plain; charset=utf-8', r.ok ? 'ok\n' : `${r.problems.map((p) => `not ok: ${p}`).join('\n')}\n`);
        return;
      }
    }
    send(404, 'text/plain; charset=utf-8', 'not found: try /metrics, /healthz, /readyz\n');
  }
}
