/**
 * kubelet plugin registration (node-driver-registrar's job, done by the daemon with --registration-dir):
 * a gRPC client in kubelet's place calls the registration socket of the built daemon.
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/observe/logger.js';
import { KubeletRegistrar } from '../../src/csi/registration/registrar.js';
import { cleanupDir, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';
import { kubeletClient, type KubeletClient } from '../helpers/kubelet.js';

const DRIVER = 'kubevirt.io.hostpath-provisioner';
const SOCKET_NAME = `${DRIVER}-reg.sock`;
/** What the socket is bound as before it is linked to its name; kubelet's plugin watcher ignores it (leading dot). */
const BIND_NAME = `.${DRIVER}-reg.bind`;
/** Where deploy/daemonset.yaml's socket dir puts the CSI socket on the host. */
const HOST_CSI_SOCKET = `/var/lib/kubelet/plugins/${DRIVER}/csi.sock`;

function servingLine(d: DriverProcess): Record<string, unknown> {
  const line = d
    .logs()
    .split('\n')
    .find((l) => l.includes('"serving CSI"'));
  if (!line) throw new Error(`no "serving CSI" line in:\n${d.logs()}`);
  return JSON.parse(line) as Record<string, unknown>;
}

/** The JSON log lines with this message. */
function logLines(logs: string, msg: string): Record<string, unknown>[] {
  return logs
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A file's identity: inode numbers alone are reused at once when a socket is removed and another made. */
function identity(p: string): string {
  const st = lstatSync(p, { bigint: true });
  return `${st.ino}@${st.birthtimeNs}`;
}

async function get(addr: string, p: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${addr}${p}`);
  return { status: res.status, body: await res.text() };
}

async function registeredGauge(addr: string): Promise<string | undefined> {
  const { body } = await get(addr, '/metrics');
  return /^hpp_kubelet_registered (\S+)$/m.exec(body)?.[1];
}

describe('the daemon with --registration-dir, called as kubelet calls it', () => {
  let dir: string;
  let registry: string;
  let sock: string;
  let d: DriverProcess;
  let addr: string;
  let kubelet: KubeletClient;

  beforeAll(async () => {
    dir = scratchDir('registration');
    mkdirSync(`${dir}/pool`);
    registry = `${dir}/plugins_registry`;
    mkdirSync(registry);
    sock = path.join(registry, SOCKET_NAME);
    d = await startDriver({
      dir,
      args: ['--pool', `default=${dir}/pool`, '--registration-dir', registry, '--kubelet-registration-path', HOST_CSI_SOCKET, '--metrics-address', '127.0.0.1:0'],
    });
    addr = servingLine(d).metrics as string;
    kubelet = kubeletClient(sock);
  });
  afterAll(async () => {
    kubelet?.close();
    await d?.stop();
    await cleanupDir(dir);
  });

  it('serves <dir>/<driver name>-reg.sock (root only) once CSI is served; nothing else in the directory but its bind name', async () => {
    expect(servingLine(d).registration).toBe(sock);
    const offered = logLines(d.logs(), 'offering the driver to kubelet');
    expect(offered).toHaveLength(1);
    expect(offered[0]).toMatchObject({ level: 30, socket: sock, endpoint: HOST_CSI_SOCKET, driver: DRIVER });
    // Offered while starting, once the CSI socket is bound (kubelet calls NodeGetInfo right after registering).
    expect(d.logs().indexOf('"offering the driver to kubelet"')).toBeLessThan(d.logs().indexOf('"serving CSI"'));
    expect(lstatSync(d.socket).isSocket()).toBe(true);

    // kubelet's plugin watcher takes sockets whose names do not start with a dot.
    expect(readdirSync(registry).sort()).toEqual([BIND_NAME, SOCKET_NAME]);
    const st = lstatSync(sock);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(identity(path.join(registry, BIND_NAME)), 'the bind name is the same socket').toBe(identity(sock));
  });

  it('GetInfo answers what kubelet passes to its CSI handler: type, driver name, host path of the CSI socket, 1.0.0', async () => {
    expect(await kubelet.getInfo()).toEqual({
      type: 'CSIPlugin',
      name: DRIVER,
      endpoint: HOST_CSI_SOCKET,
      supported_versions: ['1.0.0'],
    });
  });

  it('until kubelet says it registered the driver, /readyz says what is missing; /healthz is ok', async () => {
    expect(await get(addr, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await get(addr, '/readyz')).toEqual({
      status: 503,
      body: `not ok: kubelet asked for the plugin info on ${sock} but has not said whether it registered the driver\n`,
    });
    expect(await registeredGauge(addr)).toBe('0');
  });

  it('NotifyRegistrationStatus(true): logged at info, the daemon is ready, hpp_kubelet_registered 1', async () => {
    expect(await kubelet.notify(true)).toEqual({});
    const lines = logLines(await d.waitForLog('"registered with kubelet"'), 'registered with kubelet');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 30, component: 'registration', socket: sock, endpoint: HOST_CSI_SOCKET, driver: DRIVER });
    expect(await get(addr, '/readyz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await registeredGauge(addr)).toBe('1');
  });

  it("NotifyRegistrationStatus(false): logged at error with kubelet's error, /readyz carries it, hpp_kubelet_registered 0; a later success clears it", async () => {
    const error = 'RegisterPlugin error -- plugin registration failed with err: error updating CSINode object with CSI driver node info: timed out';
    expect(await kubelet.notify(false, error)).toEqual({});
    const lines = logLines(await d.waitForLog('"kubelet did not register the driver"'), 'kubelet did not register the driver');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 50, component: 'registration', socket: sock, err: error, retryInMs: 10_000 });
    expect(await get(addr, '/readyz')).toEqual({ status: 503, body: `not ok: kubelet did not register the driver: ${error}\n` });
    expect(await get(addr, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await registeredGauge(addr)).toBe('0');

    await kubelet.notify(true);
    expect(await get(addr, '/readyz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await registeredGauge(addr)).toBe('1');
    await d.waitForLog(/"registered with kubelet"[^]*"registered with kubelet"/);
  });

  it('/healthz fails once the registration socket is removed: kubelet has dropped the driver then', async () => {
    rmSync(sock);
    expect(await get(addr, '/healthz')).toEqual({ status: 503, body: `not ok: registration socket ${sock} was removed: kubelet has dropped the driver\n` });
    expect(await d.stop()).toBe(0);
    expect(readdirSync(registry)).toEqual([]);
  });
});

describe('the registration socket is replaced only when stale and removed on exit only if it is ours', () => {
  let dir: string;
  let registry: string;
  let sock: string;
  const started: DriverProcess[] = [];
  const start = (pool: string, extra: string[] = []) => {
    mkdirSync(`${dir}/${pool}`, { recursive: true });
    return startDriver({ dir, args: ['--pool', `${pool}=${dir}/${pool}`, '--registration-dir', registry, ...extra] }).then((p) => {
      started.push(p);
      return p;
    });
  };

  beforeAll(() => {
    dir = scratchDir('registration-socket');
  });
  afterEach(async () => {
    for (const p of started.splice(0)) await p.stop();
    rmSync(registry, { recursive: true, force: true });
  });
  afterAll(async () => {
    await cleanupDir(dir);
  });
  const fresh = () => {
    registry = `${dir}/plugins_registry`;
    mkdirSync(registry);
    sock = path.join(registry, SOCKET_NAME);
  };

  it('a second daemon refuses a registration socket another one serves, before touching its pools; the first keeps it', async () => {
    fresh();
    const first = await start('a', ['--kubelet-registration-path', HOST_CSI_SOCKET]);
    const before = identity(sock);
    mkdirSync(`${dir}/b`);
    const second = start('b');
    await expect(second).rejects.toThrow(/driver exited with 1/);
    await expect(second).rejects.toThrow(`${sock} is served by another process: not replacing it`);
    expect(readdirSync(`${dir}/b`), 'the pool of the refused daemon is untouched').toEqual([]);
    expect(identity(sock)).toBe(before);
    const kubelet = kubeletClient(sock);
    try {
      expect((await kubelet.getInfo()).endpoint).toBe(HOST_CSI_SOCKET);
    } finally {
      kubelet.close();
    }
    expect(first.child.exitCode).toBeNull();
  });

  it('after a kill -9 the socket stays; the next daemon replaces it (endpoint: its own CSI socket by default) and removes it on SIGTERM', async () => {
    fresh();
    const first = await start('a', ['--kubelet-registration-path', HOST_CSI_SOCKET]);
    const before = identity(sock);
    await first.kill();
    expect(identity(sock), 'a crash leaves the socket behind').toBe(before);
    expect(readdirSync(registry).sort()).toEqual([BIND_NAME, SOCKET_NAME]);

    const second = await start('a');
    expect(identity(sock)).not.toBe(before);
    expect(identity(path.join(registry, BIND_NAME)), 'the stale bind name is replaced as well').toBe(identity(sock));
    const kubelet = kubeletClient(sock);
    try {
      expect(await kubelet.getInfo()).toEqual({ type: 'CSIPlugin', name: DRIVER, endpoint: second.socket, supported_versions: ['1.0.0'] });
    } finally {
      kubelet.close();
    }
    expect(await second.stop()).toBe(0);
    expect(readdirSync(registry)).toEqual([]);
  });

  it('a file that is not a socket is never replaced', async () => {
    fresh();
    writeFileSync(sock, 'not a socket\n');
    await expect(start('a')).rejects.toThrow(`${sock} exists and is not a socket: not replacing it`);
    expect(readFileSync(sock, 'utf8')).toBe('not a socket\n');
  });

  it('a missing registration directory is an error that says whose it is', async () => {
    registry = `${dir}/no-such-registry`;
    await expect(start('a')).rejects.toThrow(`registration directory ${registry}: missing (kubelet makes <root-dir>/plugins_registry; mount it here)`);
    expect(existsSync(registry)).toBe(false);
  });
});

describe('KubeletRegistrar in process', () => {
  let dir: string;
  let sock: string;
  const opts = () => ({ dir, driverName: DRIVER, kubeletEndpoint: HOST_CSI_SOCKET, retryMs: 50, maxRetryMs: 200 });

  beforeAll(() => {
    dir = scratchDir('registrar');
    sock = path.join(dir, SOCKET_NAME);
  });
  afterAll(async () => {
    await cleanupDir(dir);
  });

  async function waitFor(what: string, cond: () => boolean, ms = 5_000): Promise<void> {
    const until = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('after kubelet reports a failure it makes the socket again (kubelet then registers from scratch) until kubelet reports success', async () => {
    const r = new KubeletRegistrar(opts(), silentLogger());
    await r.check();
    await r.listen();
    try {
      const first = identity(sock);
      let kubelet = kubeletClient(sock);
      await kubelet.notify(false, 'no handler');
      kubelet.close();
      expect(r.state).toMatchObject({ state: 'failed', error: 'no handler' });
      await waitFor('a new socket', () => existsSync(sock) && identity(sock) !== first);

      kubelet = kubeletClient(sock);
      expect((await kubelet.getInfo()).name).toBe(DRIVER);
      await kubelet.notify(true);
      kubelet.close();
      expect(r.state.state).toBe('registered');
      const registered = identity(sock);
      await new Promise((res) => setTimeout(res, 400));
      expect(identity(sock), 'no more new sockets once registered').toBe(registered);
      expect(readdirSync(dir).sort()).toEqual([BIND_NAME, SOCKET_NAME]);
    } finally {
      await r.close();
    }
    expect(existsSync(sock)).toBe(false);
  });

  it("close() leaves alone a socket that another process has put in the registration socket's place", async () => {
    const r = new KubeletRegistrar(opts(), silentLogger());
    await r.listen();
    rmSync(sock);
    const other = net.createServer();
    await new Promise<void>((res) => other.listen(sock, res));
    try {
      expect(await r.liveness()).toEqual([`registration socket ${sock} was replaced by another process's`]);
      await r.close();
      expect(lstatSync(sock).isSocket()).toBe(true);
      await new Promise<void>((res, rej) => {
        const conn = net.connect({ path: sock }, () => {
          conn.destroy();
          res();
        });
        conn.once('error', rej);
      });
    } finally {
      await new Promise((res) => other.close(res));
    }
  });

  it('close() before listen() or while waiting to offer again leaves nothing behind', async () => {
    const idle = new KubeletRegistrar(opts(), silentLogger());
    await idle.close();
    await idle.listen();
    expect(existsSync(sock)).toBe(false);

    const r = new KubeletRegistrar({ ...opts(), retryMs: 60_000 }, silentLogger());
    await r.listen();
    const kubelet = kubeletClient(sock);
    await kubelet.notify(false, 'x');
    kubelet.close();
    await r.close();
    expect(readdirSync(dir)).toEqual([]);
  });
});
