// Shared pieces of the benchmark harness: a scratch area per benchmark with a real daemon on a unix
// socket, cleanup that never leaks mounts or loop devices, statistics, tables, machine facts and a
// dependency-free SVG bar chart. Plain Node ESM; the CSI proto comes from the build (dist/).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, statfsSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BENCH_DIR = path.join(ROOT, 'bench');
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');
export const DRIVER_JS = path.join(ROOT, 'dist/cmd/hpp-csi-driver.js');
const PROTO_JS = path.join(ROOT, 'dist/src/csi/proto.js');

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const POOL_NAME = 'bench';
export const NODE_NAME = 'bench-node';
export const MOUNT_CAP = { access_mode: { mode: 'SINGLE_NODE_WRITER' }, mount: { fs_type: '', mount_flags: [] } };
export const BLOCK_CAP = { access_mode: { mode: 'SINGLE_NODE_WRITER' }, block: {} };

export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** An integer from the environment, or the default; refuses garbage instead of guessing. */
export function envInt(name, dflt, min = 1) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${v} is not an integer >= ${min}`);
  return n;
}

/** Run a tool synchronously (no shell); returns stdout, throws with stderr on failure. */
export function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' }, ...opts });
}

/** Run a tool asynchronously; resolves with stdout, stderr, exit code and wall time (never throws on exit code). */
export function runTool(cmd, args) {
  return new Promise((resolve, reject) => {
    const started = nowMs();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ stdout, stderr, code, ms: nowMs() - started }));
  });
}

// ---------------------------------------------------------------- statistics

/** Percentile by linear interpolation between closest ranks (R-7, what numpy does by default). */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const idx = (sorted.length - 1) * p;
  const lo = Math.floor(idx);
  const hi = Math.ceil(idx);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - lo);
}

export function stats(values) {
  const s = [...values].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    median: percentile(s, 0.5),
    p90: percentile(s, 0.9),
    p99: percentile(s, 0.99),
    min: s[0],
    max: s[s.length - 1],
    mean: s.length ? sum / s.length : NaN,
  };
}

export const median = (values) => percentile([...values].sort((a, b) => a - b), 0.5);

/** Round for reports: 3 significant-ish decimals without noise. */
export function round(x, digits = 3) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function roundDeep(v, digits = 3) {
  if (typeof v === 'number') return round(v, digits);
  if (Array.isArray(v)) return v.map((x) => roundDeep(x, digits));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, roundDeep(x, digits)]));
  return v;
}

// ---------------------------------------------------------------- tables

/** A small aligned text table: numbers right-aligned, text left-aligned. */
export function formatTable({ title, columns, rows }) {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? fmtNum(c) : String(c ?? ''))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const numeric = columns.map((_, i) => rows.every((r) => typeof r[i] === 'number' || r[i] === '' || r[i] == null) && rows.length > 0);
  const line = (r) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const out = [];
  if (title) out.push(title);
  out.push(line(columns));
  out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells) out.push(line(r));
  return out.join('\n');
}

export function fmtNum(x) {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 10) return x.toFixed(2);
  return x.toFixed(3);
}

// ---------------------------------------------------------------- machine facts

export function machineFacts(dir) {
  const cpu = (() => {
    try {
      const m = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m);
      return m ? m[1].trim() : os.cpus()[0]?.model ?? 'unknown';
    } catch {
      return os.cpus()[0]?.model ?? 'unknown';
    }
  })();
  const tryTool = (cmd, args) => {
    try {
      return sh(cmd, args).trim();
    } catch {
      return 'unknown';
    }
  };
  const [fsType, fsSource] = tryTool('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '-T', dir]).split(/\s+/);
  const gitHead = tryTool('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = tryTool('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src', 'cmd', 'proto']);
  return {
    node: process.version,
    kernel: tryTool('uname', ['-r']),
    cpu,
    cpus: os.cpus().length,
    memory_gib: round(os.totalmem() / GiB, 1),
    tmp_dir: path.dirname(dir),
    tmp_fs_type: fsType ?? 'unknown',
    tmp_fs_source: fsSource ?? 'unknown',
    util_linux: tryTool('losetup', ['--version']).replace(/^.*util-linux\s*/, ''),
    driver_commit: gitHead,
    driver_tree_dirty: dirty !== '' && dirty !== 'unknown',
    date: new Date().toISOString(),
  };
}

// ---------------------------------------------------------------- how busy the machine is

/**
 * System-wide CPU jiffies from /proc/stat: `proc` (user+nice+system: what processes and kernel threads
 * use), `irq` (irq+softirq, nobody's in particular), `steal` (the hypervisor gave the CPU to someone
 * else), and total.
 */
export function systemCpu() {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const proc = user + nice + system;
  return { proc, irq: irq + softirq, steal, busy: proc + irq + softirq, total: proc + idle + iowait + irq + softirq + steal };
}

/** CPU jiffies of all kernel threads now alive (children of kthreadd: loop workers, kworkers, jbd2...). */
export function kernelThreadsCpu() {
  let sum = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (pid === '2' || f[1] === '2') sum += Number(f[11]) + Number(f[12]);
    } catch {
      // gone meanwhile
    }
  }
  return sum;
}

/** CPU jiffies used by a process and its waited-for children (utime+stime+cutime+cstime). */
export function processCpu(pid = 'self') {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    // fields after the command: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
    return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  } catch {
    return 0;
  }
}

/** Fraction of all CPUs busy over `ms`. */
export async function cpuBusy(ms = 1000) {
  const a = systemCpu();
  await sleep(ms);
  const b = systemCpu();
  return (b.busy - a.busy) / Math.max(1, b.total - a.total);
}

/**
 * The machine is shared (other people's tests and builds): wait until it is quiet, at most
 * BENCH_QUIET_WAIT seconds (default 120), quiet meaning at most BENCH_QUIET_BUSY (default 0.15) of all
 * CPUs busy over a second. Says how it went; the benchmark runs either way.
 */
export async function waitQuiet(log) {
  const maxWait = envInt('BENCH_QUIET_WAIT', 120, 0);
  const threshold = Number(process.env.BENCH_QUIET_BUSY ?? 0.15);
  const started = Date.now();
  let busy = await cpuBusy(1000);
  let said = false;
  while (busy > threshold && (Date.now() - started) / 1000 < maxWait) {
    if (!said) log(`  machine busy (${(busy * 100).toFixed(0)}% of CPUs); waiting up to ${maxWait} s for it to settle`);
    said = true;
    busy = await cpuBusy(2000);
  }
  return { cpu_busy_before: busy, waited_s: (Date.now() - started) / 1000, quiet: busy <= threshold };
}

// ---------------------------------------------------------------- leaks and cleanup

/** Every mount point of this mount namespace, unescaped. */
export function readMountPoints() {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter(Boolean)
    .map((m) => m.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))));
}

function mountPointsUnder(dir) {
  return readMountPoints().filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** Loop devices as losetup lists them: name, backing file (without " (deleted)"), direct I/O flag. */
export function loopDevices() {
  const out = sh('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,DIO,LOG-SEC']).trim();
  if (!out) return [];
  return (JSON.parse(out).loopdevices ?? []).map((d) => ({
    name: d.name,
    backFile: String(d['back-file'] ?? '').trim().replace(/ \(deleted\)$/, ''),
    dio: d.dio === true || d.dio === '1' || d.dio === 1,
    logSec: Number(d['log-sec'] ?? 0),
  }));
}

function loopsUnder(dir) {
  return loopDevices().filter((d) => d.backFile.startsWith(`${dir}/`));
}

/** What a benchmark left behind under its scratch directory: mounts, loop devices, the directory. */
export function leaksUnder(dir) {
  const leaks = [];
  for (const m of mountPointsUnder(dir)) leaks.push(`mount ${m}`);
  for (const l of loopsUnder(dir)) leaks.push(`loop ${l.name} -> ${l.backFile}`);
  if (existsSync(dir)) leaks.push(`directory ${dir}`);
  return leaks;
}

/** Every open scratch area, so a signal can clean them up too. */
const open = new Set();

export async function cleanupAll() {
  for (const b of [...open]) await b.cleanup();
}

// ---------------------------------------------------------------- gRPC clients

let csiPromise;
async function loadCsi() {
  if (!existsSync(PROTO_JS)) throw new Error(`${PROTO_JS} is missing: run 'npm run build' (npm run bench does it)`);
  csiPromise ??= import(PROTO_JS).then((m) => m.loadCsi());
  return csiPromise;
}

function promisify(client, service) {
  const out = {};
  for (const name of Object.keys(service.service)) {
    const fn = client[name].bind(client);
    out[name] = (req, timeoutMs = 120_000) =>
      new Promise((resolve, reject) =>
        fn(req, { deadline: Date.now() + timeoutMs }, (err, res) => {
          if (err) reject(Object.assign(new Error(`${name}: ${err.details ?? err.message} (code ${err.code})`), { code: err.code }));
          else resolve(res);
        }),
      );
  }
  return out;
}

export async function connect(endpoint) {
  const csi = await loadCsi();
  const grpc = await import('@grpc/grpc-js');
  const creds = grpc.credentials.createInsecure();
  // channelz off: per-call bookkeeping nobody reads here (the daemon turns it off too).
  const opts = { 'grpc.enable_channelz': 0 };
  const id = new csi.Identity(endpoint, creds, opts);
  const ctl = new csi.Controller(endpoint, creds, opts);
  const nd = new csi.Node(endpoint, creds, opts);
  return {
    identity: promisify(id, csi.Identity),
    controller: promisify(ctl, csi.Controller),
    node: promisify(nd, csi.Node),
    close() {
      id.close();
      ctl.close();
      nd.close();
    },
  };
}

// ---------------------------------------------------------------- the daemon

/**
 * Start the built daemon on `<dir>/csi.sock` with one pool and wait until it serves. Its log lines
 * (pino JSON) are kept and parsed, so a benchmark can read the daemon's own timings.
 */
async function startDaemon(bench, { pool, logLevel = 'info', nodeArgs = [], args = [], env = {} }) {
  if (!existsSync(DRIVER_JS)) throw new Error(`${DRIVER_JS} is missing: run 'npm run build' first`);
  const socket = path.join(bench.dir, `csi-${bench.daemons.length}.sock`);
  const endpoint = `unix://${socket}`;
  // `pool` is a directory, or `MOUNT:device=/dev/loopN` for a pool the daemon formats and mounts itself.
  const spawnedAtEpochMs = Date.now();
  const spawnedAt = nowMs();
  const child = spawn(
    process.execPath,
    [...nodeArgs, DRIVER_JS, '--endpoint', endpoint, '--node-name', NODE_NAME, '--pool', `${POOL_NAME}=${pool}`, '--log-level', logLevel, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  const entries = [];
  let raw = '';
  let partial = '';
  const onData = (d) => {
    const text = partial + d.toString();
    const lines = text.split('\n');
    partial = lines.pop();
    for (const l of lines) {
      if (raw.length < 4 * MiB) raw += `${l}\n`;
        // `at`: when this process read the line (nowMs clock), for start-up timelines.
      const at = nowMs();
      try {
        entries.push({ ...JSON.parse(l), at });
      } catch {
        entries.push({ msg: l, at });
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  const d = {
    endpoint,
    socket,
    logLevel,
    child,
    entries,
    clients: undefined,
    /** nowMs() and Date.now() just before the spawn. */
    spawnedAt,
    spawnedAtEpochMs,
    /** Resolves with the exit code or signal name. */
    exited,
    logText: () => raw + partial,
    /** Resident set size of the daemon process (VmRSS of /proc/<pid>/status), bytes. */
    rssBytes: () => procStatusBytes(child.pid, 'VmRSS'),
    /** Kill with SIGKILL (a crash) and wait until it is gone; the pool's lock dies with it. */
    async kill9() {
      d.clients?.close();
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    /** Wait until `pred(entries)` holds (log lines travel through a pipe and may trail the reply). */
    async waitForLog(pred, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!pred(entries)) {
        if (Date.now() > deadline) return false;
        await sleep(10);
      }
      return true;
    },
    async stop() {
      d.clients?.close();
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const r = await Promise.race([exited, sleep(10_000).then(() => 'timeout')]);
      if (r === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
  bench.daemons.push(d);
  const deadline = Date.now() + 20_000;
  while (!entries.some((e) => e.msg === 'serving CSI')) {
    if (child.exitCode !== null) throw new Error(`driver exited with ${child.exitCode}:\n${d.logText()}`);
    if (Date.now() > deadline) throw new Error(`driver did not start within 20 s:\n${d.logText()}`);
    await sleep(5);
  }
  d.clients = await connect(endpoint);
  return d;
}

/**
 * A scratch area for one benchmark: a fresh directory under the temp dir, daemons started in it, and a
 * cleanup that stops the daemons, unmounts everything below the directory (deepest first), detaches
 * every loop device whose backing file is below it, and removes it. Safe to call twice.
 */
export function openBench(name) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `hpp-bench-${name}-`));
  const bench = {
    name,
    dir,
    daemons: [],
    facts: machineFacts(dir),
    mkdir(rel) {
      const p = path.join(dir, rel);
      mkdirSync(p, { recursive: true });
      return p;
    },
    startDaemon: (opts) => startDaemon(bench, opts),
    /** Start counting CPU: the whole machine's and ours (this process, its tools, the daemons). */
    startLoadWatch() {
      bench.load0 = { sys: systemCpu(), self: processCpu(), kthreads: kernelThreadsCpu(), loadavg: os.loadavg()[0] };
    },
    /** CPU busy during the run, and the part of it that was not us (other people's work). */
    loadReport() {
      if (!bench.load0) return undefined;
      // Daemons already stopped were reaped by this process: their time is in its cutime/cstime.
      const alive = bench.daemons.filter((d) => d.child.exitCode === null && d.child.signalCode === null);
      const sys = systemCpu();
      const total = Math.max(1, sys.total - bench.load0.sys.total);
      const ours = processCpu() - bench.load0.self + alive.reduce((a, d) => a + processCpu(d.child.pid), 0);
      const kthreads = Math.max(0, kernelThreadsCpu() - bench.load0.kthreads);
      const d = (k) => (sys[k] - bench.load0.sys[k]) / total;
      return {
        loadavg_1m_start: bench.load0.loadavg,
        loadavg_1m_end: os.loadavg()[0],
        // Fractions of all CPUs over the run.
        cpu_busy_during: d('busy'),
        cpu_ours: ours / total,
        cpu_kernel_threads: kthreads / total,
        cpu_irq_softirq: d('irq'),
        cpu_steal: d('steal'),
        // Processes that are neither this benchmark (runner, daemons, their tools) nor kernel threads.
        cpu_busy_not_ours_during: Math.max(0, d('proc') - (ours + kthreads) / total),
      };
    },
    async cleanup() {
      if (!open.has(bench)) return [];
      open.delete(bench);
      const problems = [];
      for (const d of bench.daemons) {
        try {
          await d.stop();
        } catch (err) {
          problems.push(`stop daemon: ${err.message}`);
        }
      }
      for (const m of mountPointsUnder(dir).sort((a, b) => b.length - a.length)) {
        try {
          sh('umount', [m]);
        } catch {
          try {
            sh('umount', ['-l', m]);
          } catch (err) {
            problems.push(`umount ${m}: ${err.stderr ?? err.message}`);
          }
        }
      }
      for (const l of loopsUnder(dir)) {
        try {
          sh('losetup', ['--detach', l.name]);
        } catch (err) {
          problems.push(`losetup -d ${l.name}: ${err.stderr ?? err.message}`);
        }
      }
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch (err) {
        problems.push(`rm ${dir}: ${err.message}`);
      }
      // A detach of a busy device is deferred by the kernel (autoclear); give it a moment.
      for (let i = 0; i < 50 && leaksUnder(dir).length > 0; i++) await sleep(100);
      return [...problems, ...leaksUnder(dir)];
    },
  };
  open.add(bench);
  return bench;
}

// ---------------------------------------------------------------- processes, space, loop devices

/** A `... kB` field of /proc/<pid>/status in bytes (VmRSS, VmHWM, ...); NaN when unreadable. */
export function procStatusBytes(pid, field) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Space an unprivileged writer could still use on the filesystem holding `p` (statfs bavail), bytes. */
export function freeBytes(p) {
  const s = statfsSync(p);
  return s.bavail * s.bsize;
}

/** Bytes allocated on disk for one file (stat blocks x 512). */
export function allocatedBytes(file) {
  return statSync(file).blocks * 512;
}

/** Flush dirty data everywhere and, unless BENCH_DROP_CACHES=0, drop the page cache (cold reads). */
export async function settleCaches() {
  await runTool('sync', []);
  if (process.env.BENCH_DROP_CACHES !== '0') writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/**
 * A sparse file of `bytes` under the benchmark's directory attached to a loop device (direct I/O on,
 * as a disk would behave, unless directIo is false). Returns { file, device }. The harness's cleanup
 * detaches it and removes the file; releaseLoop() does it earlier.
 */
export function makeLoopDevice(bench, rel, bytes, { directIo = true, prefill = false } = {}) {
  const file = path.join(bench.dir, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, '');
  truncateSync(file, bytes);
  // prefill: write the whole backing file first, so that writes through the device do not also pay for
  // the host filesystem allocating the file (a real disk has its blocks). Then keep mkfs from discarding.
  if (prefill) sh('dd', ['if=/dev/zero', `of=${file}`, 'bs=8M', `count=${Math.ceil(bytes / (8 * MiB))}`, 'conv=notrunc,fsync', 'status=none']);
  let device;
  try {
    device = sh('losetup', ['--find', '--show', ...(directIo ? ['--direct-io=on'] : []), file]).trim();
  } catch (err) {
    if (!directIo) throw err;
    device = sh('losetup', ['--find', '--show', file]).trim();
  }
  return { file, device };
}

/** Unmount `mountPoint` when mounted, detach `device`, remove its backing file: a pool's teardown mid-benchmark. */
export async function releaseLoop({ file, device }, mountPoint) {
  if (mountPoint && readMountPoints().includes(mountPoint)) sh('umount', [mountPoint]);
  if (device) {
    try {
      sh('losetup', ['--detach', device]);
    } catch {
      // already gone (autoclear)
    }
  }
  for (let i = 0; i < 50 && loopDevices().some((l) => l.name === device && l.backFile === file); i++) await sleep(100);
  if (file) rmSync(file, { force: true });
}

/** Wait until `<pool>/.hpp/trash` is empty (deleted data is removed in the background); false on timeout. */
export async function waitTrashEmpty(pool, timeoutMs = 120_000) {
  const trash = path.join(pool, '.hpp', 'trash');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let n = 0;
    try {
      n = readdirSync(trash).length;
    } catch {
      n = 0;
    }
    if (n === 0) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

/** Capacity whose disk.img (CDI formula, overhead 0.055) is exactly `imageBytes` (a whole number of MiB). */
export function capacityForDiskImage(imageBytes, overheadPermille = 55) {
  const img = BigInt(imageBytes);
  const keep = 1000n - BigInt(overheadPermille);
  let cap = (img * 1000n + keep - 1n) / keep;
  const MiBn = BigInt(MiB);
  const imageOf = (c) => (((keep * c + 999n) / 1000n) / MiBn) * MiBn;
  while (imageOf(cap) < img) cap += 1n;
  if (imageOf(cap) !== img) throw new Error(`no capacity gives a disk.img of exactly ${imageBytes} bytes`);
  return cap;
}

export const fmtBytes = (b) => (Math.abs(b) >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / MiB).toFixed(1)} MiB`);

// ---------------------------------------------------------------- SVG chart

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceStep(max, ticks = 5) {
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

export const COLORS = { blue: '#4e79a7', lightBlue: '#a0cbe8', orange: '#f28e2b', green: '#59a14f', red: '#e15759', grey: '#9c9c9c', teal: '#76b7b2' };

/**
 * Horizontal bar chart, one or more panels each with its own scale.
 * chart = { title, subtitle, notes: [..], panels: [{ title, unit, bars: [{ label, value, color, text, points }], goal: { value, label } }] }
 * `points` (optional) are the individual samples behind a bar, drawn as small circles.
 */
export function renderSvg(chart) {
  const W = 820;
  const labelW = 210;
  const x0 = labelW + 10;
  const plotW = W - x0 - 110;
  const barH = 20;
  const gap = 8;
  const parts = [];
  let y = 28;
  parts.push(`<text x="16" y="${y}" class="title">${esc(chart.title)}</text>`);
  if (chart.subtitle) {
    y += 20;
    parts.push(`<text x="16" y="${y}" class="sub">${esc(chart.subtitle)}</text>`);
  }
  y += 16;
  for (const panel of chart.panels) {
    y += 26;
    parts.push(`<text x="16" y="${y}" class="panel">${esc(panel.title)}</text>`);
    y += panel.goal ? 30 : 14;
    const values = panel.bars.flatMap((b) => [b.value, ...(b.points ?? [])]).filter(Number.isFinite);
    const maxV = Math.max(...values, panel.goal?.value ?? 0, 1e-9) * 1.08;
    const step = niceStep(maxV);
    const top = Math.ceil(maxV / step) * step;
    const sx = (v) => x0 + (Math.max(0, v) / top) * plotW;
    const plotTop = y;
    const plotH = panel.bars.length * (barH + gap) + gap;
    // grid and axis labels
    for (let t = 0; t <= top + step / 1e6; t += step) {
      const gx = sx(t).toFixed(1);
      parts.push(`<line x1="${gx}" y1="${plotTop}" x2="${gx}" y2="${plotTop + plotH}" class="grid"/>`);
      parts.push(`<text x="${gx}" y="${plotTop + plotH + 14}" class="tick">${esc(fmtTick(t))}</text>`);
    }
    parts.push(`<text x="${x0 + plotW}" y="${plotTop + plotH + 28}" class="unit">${esc(panel.unit ?? '')}</text>`);
    let by = plotTop + gap;
    for (const b of panel.bars) {
      const w = Number.isFinite(b.value) ? Math.max(1, sx(b.value) - x0) : 0;
      parts.push(`<text x="${labelW}" y="${by + barH / 2 + 4}" class="label">${esc(b.label)}</text>`);
      parts.push(`<rect x="${x0}" y="${by}" width="${w.toFixed(1)}" height="${barH}" fill="${b.color ?? COLORS.blue}"><title>${esc(`${b.label}: ${b.text ?? fmtNum(b.value)}`)}</title></rect>`);
      const right = Math.max(x0 + w, ...(b.points ?? []).map((v) => sx(v) + 3));
      for (const v of b.points ?? []) {
        parts.push(`<circle cx="${sx(v).toFixed(1)}" cy="${by + barH / 2}" r="3" class="point"><title>${esc(fmtNum(v))}</title></circle>`);
      }
      parts.push(`<text x="${(right + 6).toFixed(1)}" y="${by + barH / 2 + 4}" class="value">${esc(b.text ?? fmtNum(b.value))}</text>`);
      by += barH + gap;
    }
    if (panel.goal && Number.isFinite(panel.goal.value)) {
      const gx = sx(panel.goal.value).toFixed(1);
      parts.push(`<line x1="${gx}" y1="${plotTop - 4}" x2="${gx}" y2="${plotTop + plotH}" class="goal"/>`);
      parts.push(`<text x="${gx}" y="${plotTop - 7}" class="goaltext">${esc(panel.goal.label)}</text>`);
    }
    parts.push(`<line x1="${x0}" y1="${plotTop}" x2="${x0}" y2="${plotTop + plotH}" class="axis"/>`);
    y = plotTop + plotH + 34;
  }
  for (const n of chart.notes ?? []) {
    // Wrap long notes at word boundaries (about 135 characters fit the width at this font size).
    const lines = [''];
    for (const w of String(n).split(' ')) {
      if (lines.at(-1) && `${lines.at(-1)} ${w}`.length > 135) lines.push(w);
      else lines[lines.length - 1] = lines.at(-1) ? `${lines.at(-1)} ${w}` : w;
    }
    lines.forEach((l, i) => {
      y += i === 0 ? 16 : 14;
      parts.push(`<text x="${i === 0 ? 16 : 26}" y="${y}" class="note">${esc(l)}</text>`);
    });
  }
  y += 16;
  const style = `
    text { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; fill: #222; }
    .title { font-size: 17px; font-weight: 600; }
    .sub { font-size: 11.5px; fill: #555; }
    .panel { font-size: 13.5px; font-weight: 600; }
    .label { font-size: 12px; text-anchor: end; }
    .value { font-size: 12px; }
    .tick { font-size: 10.5px; fill: #666; text-anchor: middle; }
    .unit { font-size: 10.5px; fill: #666; text-anchor: end; }
    .note { font-size: 11.5px; fill: #444; }
    .grid { stroke: #e4e4e4; stroke-width: 1; }
    .axis { stroke: #888; stroke-width: 1; }
    .point { fill: #ffffff; stroke: #222; stroke-width: 1.2; }
    .goal { stroke: ${COLORS.red}; stroke-width: 1.5; stroke-dasharray: 5 3; }
    .goaltext { font-size: 11px; fill: ${COLORS.red}; text-anchor: middle; }`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}">
<style>${style}
</style>
<rect x="0" y="0" width="${W}" height="${y}" fill="#ffffff"/>
${parts.join('\n')}
</svg>
`;
}

function fmtTick(t) {
  const s = Number(t.toPrecision(6));
  return Math.abs(s) >= 1000 ? s.toFixed(0) : String(s);
}
