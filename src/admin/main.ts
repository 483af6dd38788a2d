import { CapacityTracker } from '../pools/capacity.js';
import { detectQuota, type QuotaBackend } from '../pools/quota.js';
import type { ProcessLock } from '../system/flock.js';
import { linuxHost } from '../system/linux-host.js';
import { VERSION } from '../version.js';
import { HPPCTL_USAGE, UsageError, parseAdminCli, type AdminCli } from './cli.js';
import { formatBytes, formatRatio, renderTable, toJson } from './format.js';
import { buildsInProgress, type BuildInProgress } from './builds.js';
import { runGc, type GcStep } from './gc.js';
import { isScannable, loadRecords, lstatOrUndefined, mountedTargets, openPool, scanNode, type LoadedRecord, type LoadedSnapshot, type NodeScan, type PoolView } from './inspect.js';
import { daemonLockState, takeDaemonLock } from './locks.js';
import { readMounts } from '../system/mount.js';
import { findOrphans, gcText, type Orphan } from './orphans.js';
import { diskUsage } from '../system/walk.js';
import { diskImagePath } from '../format/layout.js';

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

/** hppctl: returns the exit status (0 ok, 1 failure, 2 usage). */
export async function main(argv: string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  let cli: AdminCli;
  try {
    cli = parseAdminCli(argv, env);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`hppctl: ${err.message}\n\nRun 'hppctl --help' for usage.\n`);
      return 2;
    }
    throw err;
  }
  if (cli.showHelp) {
    io.out(HPPCTL_USAGE);
    return 0;
  }
  if (cli.showVersion) {
    io.out(`hppctl ${VERSION}\n`);
    return 0;
  }
  const configs = cli.only.length > 0 ? cli.pools.filter((p) => cli.only.includes(p.name)) : cli.pools;
  const mounts = await readMounts();
  const views = await Promise.all(configs.map((c) => openPool(c, mounts)));
  switch (cli.command) {
    case 'pools':
      return poolsCommand(cli, views, io);
    case 'volumes':
      return volumesCommand(cli, views, io);
    case 'snapshots':
      return snapshotsCommand(cli, views, io);
    case 'orphans':
      return orphansCommand(cli, views, io);
    case 'gc':
      return gcCommand(cli, views, io);
    default:
      return 2;
  }
}

async function scanAll(views: PoolView[]): Promise<NodeScan> {
  for (const v of views) await loadRecords(v);
  return scanNode(views);
}

async function quotaOf(v: PoolView): Promise<QuotaBackend | undefined> {
  if (!isScannable(v)) return undefined;
  return detectQuota(linuxHost(), v.root, v.pool.metaDir).catch(() => undefined);
}

const STATE_TEXT: Record<PoolView['state'], string> = {
  ready: 'ready',
  missing: 'missing',
  'not-directory': 'not a directory',
  'not-writable': 'not writable',
  'not-mounted': 'not mounted',
  unusable: 'unusable',
};

function poolStateText(v: PoolView): string {
  const s = STATE_TEXT[v.state];
  return v.daemon.held ? (v.state === 'ready' ? `served by pid ${v.daemon.pid}` : `${s}, locked by pid ${v.daemon.pid}`) : s;
}

async function poolsCommand(cli: AdminCli, views: PoolView[], io: Io): Promise<number> {
  const scan = await scanAll(views);
  const reports = [];
  for (const v of scan.views) {
    const quota = await quotaOf(v);
    const live = v.records.filter((r) => r.rec.state === 'ready');
    const committed = live.reduce((n, r) => n + BigInt(r.rec.capacityBytes), 0n);
    const cap = isScannable(v) ? await v.pool.capacity().catch(() => undefined) : undefined;
    // What the daemon's GetCapacity would promise now (free − what volumes may still grow into, ÷ over-commit).
    const promise = cap ? await new CapacityTracker(v.pool, () => live.map((r) => r.rec), undefined, () => quota).figures().catch(() => undefined) : undefined;
    reports.push({
      name: v.name,
      path: v.path,
      ...(v.root !== v.path ? { realPath: v.root } : {}),
      ...(v.cfg.device ? { device: v.cfg.device } : {}),
      state: v.state,
      ...(v.reason ? { reason: v.reason } : {}),
      daemonPid: v.daemon.held ? v.daemon.pid : null,
      initialized: v.initialized,
      filesystem: v.fs?.mount.fsType ?? null,
      mountPoint: v.fs?.mount.mountPoint ?? null,
      sizeEnforcement: quota ? { kind: quota.kind, detail: quota.detail } : null,
      totalBytes: cap?.totalBytes ?? null,
      usedBytes: cap?.usedBytes ?? null,
      freeBytes: cap?.availableBytes ?? null,
      committedBytes: isScannable(v) ? committed : null,
      overcommit: cap && cap.totalBytes > 0n ? Number((committed * 1_000_000n) / cap.totalBytes) / 1_000_000 : null,
      overcommitRatio: v.pool.overcommitRatio,
      promisableBytes: promise?.availableBytes ?? null,
      volumes: isScannable(v) ? live.length : null,
      ...(v.records.length > live.length ? { volumesBeingDeleted: v.records.length - live.length } : {}),
      problems: [...v.problems, ...v.badRecords.map((b) => `unreadable record ${b.file}: ${b.error}`)],
    });
  }
  if (cli.json) {
    io.out(toJson({ pools: reports }));
    return 0;
  }
  io.out(
    renderTable(
      [
        { header: 'POOL' },
        { header: 'PATH' },
        { header: 'STATE' },
        { header: 'FS' },
        { header: 'SIZES' },
        { header: 'TOTAL', right: true },
        { header: 'USED', right: true },
        { header: 'FREE', right: true },
        { header: 'COMMITTED', right: true },
        { header: 'OVERCOMMIT', right: true },
        { header: 'VOLUMES', right: true },
      ],
      reports.map((r, i) => [
        r.name,
        r.path,
        poolStateText(scan.views[i]!),
        r.filesystem ?? '-',
        r.sizeEnforcement ? (r.sizeEnforcement.kind === 'none' ? 'not enforced' : r.sizeEnforcement.kind) : '-',
        formatBytes(r.totalBytes),
        formatBytes(r.usedBytes),
        formatBytes(r.freeBytes),
        formatBytes(r.committedBytes),
        formatRatio(r.overcommit),
        r.volumes === null ? '-' : String(r.volumes),
      ]),
    ),
  );
  const notes: string[] = [];
  for (const r of reports) {
    if (r.reason) notes.push(`${r.name}: ${r.reason}`);
    if (r.sizeEnforcement) notes.push(`${r.name}: ${r.sizeEnforcement.detail}`);
    if (r.promisableBytes !== null) notes.push(`${r.name}: can promise ${formatBytes(r.promisableBytes)} to new volumes (over-commit ratio ${r.overcommitRatio})`);
    for (const p of r.problems) notes.push(`${r.name}: ${p}`);
  }
  if (notes.length > 0) io.out(`\n${notes.join('\n')}\n`);
  return 0;
}

function volumeStateText(r: { state?: string; data: LoadedRecord['data']; mode: string }): string {
  if (r.state === 'deleting') return 'deleting';
  return { present: 'ready', missing: 'data missing', building: 'being created', 'wrong-type': 'data is not a ' + (r.mode === 'block' ? 'file' : 'directory') }[r.data];
}

async function volumesCommand(cli: AdminCli, views: PoolView[], io: Io): Promise<number> {
  const scan = await scanAll(views);
  const rows = [];
  for (const v of scan.views) {
    if (!isScannable(v)) continue;
    const quota = await quotaOf(v);
    const lookup = quota && quota.kind !== 'none' ? await quota.usageLookup().catch(() => undefined) : undefined;
    for (const r of v.records) {
      const rec = r.rec;
      let used: bigint | null = null;
      let usedFrom: string | null = null;
      if (r.data === 'present') {
        if (rec.mode === 'block') {
          used = ((await lstatOrUndefined(r.dataPath))?.blocks ?? 0n) * 512n;
          usedFrom = 'image-allocated';
        } else {
          const q = lookup?.(r.dataPath, rec.projectId);
          if (q) {
            used = q.usedBytes;
            usedFrom = quota!.kind;
          } else {
            used = (await diskUsage(r.dataPath, { mountPoints: scan.mountPoints })).bytes;
            usedFrom = 'du';
          }
        }
      }
      const mounted = mountedTargets(r, scan);
      rows.push({
        id: rec.id,
        pool: v.name,
        name: rec.name,
        mode: rec.mode,
        capacityBytes: BigInt(rec.capacityBytes),
        // 'hpp': made by hostpath-provisioner, served in place; its capacity is unknown (0) until an expansion says it.
        origin: rec.origin ?? 'driver',
        recorded: r.file !== undefined,
        usedBytes: used,
        usedFrom,
        state: rec.state,
        data: r.data,
        dataPath: r.dataPath,
        publications: Object.entries(rec.publications).map(([target, p]) => ({
          target,
          readOnly: p.readOnly,
          accessMode: p.accessMode,
          ...(p.device ? { device: p.device } : {}),
          mounted: mounted.has(target),
        })),
        preallocation: rec.preallocation ?? 'none',
        // HPP kept no record of it: a disk.img in the directory says it.
        diskImage: rec.diskImage !== undefined || (rec.origin === 'hpp' && r.data === 'present' && (await lstatOrUndefined(diskImagePath(r.dataPath)))?.isFile() === true),
        ...(rec.diskImage ? { diskImageOverhead: rec.diskImage.overhead } : {}),
        ...(rec.projectId !== undefined ? { projectId: rec.projectId } : {}),
        // The claim it was made for, when the CO said (csi-provisioner --extra-create-metadata).
        pvc: rec.pvc ? { namespace: rec.pvc.namespace, name: rec.pvc.name } : null,
        createdAt: rec.createdAt,
      });
    }
  }
  const builds = await allBuilds(scan, 'volume');
  if (cli.json) {
    io.out(toJson({ volumes: rows, builds }));
  } else {
    io.out(
      renderTable(
        [
          { header: 'VOLUME' },
          { header: 'POOL' },
          { header: 'MODE' },
          { header: 'CAPACITY', right: true },
          { header: 'USED', right: true },
          { header: 'STATE' },
          { header: 'PVC' },
          { header: 'PREALLOC' },
          { header: 'DISK.IMG' },
          { header: 'PUBLISHED' },
        ],
        [
          ...rows.map((r) => [
            r.id,
            r.pool,
            r.mode,
            r.origin === 'hpp' && r.capacityBytes === 0n ? 'unknown' : formatBytes(r.capacityBytes),
            formatBytes(r.usedBytes),
            r.origin === 'hpp' ? `${volumeStateText(r)} (hostpath-provisioner's)` : volumeStateText(r),
            r.pvc ? `${r.pvc.namespace}/${r.pvc.name}` : '-',
            r.preallocation,
            r.diskImage ? 'yes' : 'no',
            r.publications.map((p) => `${p.target}${p.device ? ` (${p.device})` : ''} [${p.mounted ? 'mounted' : 'NOT MOUNTED'}${p.readOnly ? ', ro' : ''}]`).join(', ') || '-',
          ]),
          ...builds.map(buildCells),
        ],
      ),
    );
  }
  warnPools(scan.views, io, false);
  return 0;
}

/** The builds in tmp/ of every readable pool, of one kind. */
async function allBuilds(scan: NodeScan, kind: BuildInProgress['kind']): Promise<BuildInProgress[]> {
  const out: BuildInProgress[] = [];
  for (const v of scan.views) if (isScannable(v)) out.push(...(await buildsInProgress(v, scan.mountPoints)).filter((b) => b.kind === kind));
  return out;
}

/** A build's row in the volumes table: no id (it has no record yet), its size so far in USED. */
function buildCells(b: BuildInProgress): string[] {
  return [b.name, b.pool, b.mode, b.apparentBytes === null ? '-' : formatBytes(b.apparentBytes), formatBytes(b.allocatedBytes), b.state, '-', '-', b.diskImage ? 'yes' : '-', '-'];
}

function snapshotStateText(s: { state: string; data: LoadedSnapshot['data']; mode: string }): string {
  if (s.state === 'deleting') return 'deleting';
  return { present: 'ready', missing: 'data missing', building: 'being created', 'wrong-type': 'data is not a ' + (s.mode === 'block' ? 'file' : 'directory') }[s.data];
}

async function snapshotsCommand(cli: AdminCli, views: PoolView[], io: Io): Promise<number> {
  const scan = await scanAll(views);
  const rows = [];
  for (const v of scan.views) {
    if (!isScannable(v)) continue;
    for (const s of v.snapshots) {
      const r = s.rec;
      rows.push({
        id: r.id,
        pool: v.name,
        name: r.name,
        sourceVolumeId: r.sourceVolumeId,
        mode: r.mode,
        sizeBytes: BigInt(r.sizeBytes),
        origin: r.origin ?? 'driver',
        method: r.origin === 'hpp' ? 'hostpath-provisioner' : r.method,
        state: r.state,
        data: s.data,
        dataPath: s.dataPath,
        diskImage: r.diskImage !== undefined,
        createdAt: r.createdAt,
      });
    }
  }
  const builds = await allBuilds(scan, 'snapshot');
  const bad = scan.views.flatMap((v) => v.badSnapshots.map((b) => ({ pool: v.name, ...b })));
  if (cli.json) {
    io.out(toJson({ snapshots: rows, builds, badRecords: bad }));
  } else {
    io.out(
      renderTable(
        [{ header: 'SNAPSHOT' }, { header: 'POOL' }, { header: 'SOURCE' }, { header: 'MODE' }, { header: 'SIZE', right: true }, { header: 'METHOD' }, { header: 'STATE' }, { header: 'CREATED' }],
        [
          ...rows.map((r) => [r.id, r.pool, r.sourceVolumeId, r.mode, r.origin === 'hpp' && r.sizeBytes === 0n ? 'unknown' : formatBytes(r.sizeBytes), r.method, snapshotStateText(r), r.createdAt]),
          ...builds.map((b) => [b.name, b.pool, '-', b.mode, formatBytes(b.allocatedBytes), '-', b.state, b.modifiedAt]),
        ],
      ),
    );
  }
  for (const b of bad) io.err(`hppctl: warning: pool ${b.pool}: unreadable snapshot record ${b.file}: ${b.error}\n`);
  warnPools(scan.views, io, false);
  return 0;
}

/** Pools that could not be read, and pools a daemon serves (whose state may change under us). */
function warnPools(views: PoolView[], io: Io, daemonToo: boolean): string[] {
  const lines: string[] = [];
  for (const v of views) {
    if (!isScannable(v)) lines.push(`pool ${v.name} not read: ${v.reason ?? v.state}`);
    else if (daemonToo && v.daemon.held) lines.push(`pool ${v.name} is served by a running daemon (pid ${v.daemon.pid}): work in flight (builds in tmp/, metadata writes) may show up as orphans`);
    for (const p of v.problems) lines.push(`pool ${v.name}: ${p}`);
  }
  for (const l of lines) io.err(`hppctl: warning: ${l}\n`);
  return lines;
}

function orphanTable(orphans: Orphan[]): string {
  return renderTable(
    [{ header: 'POOL' }, { header: 'KIND' }, { header: 'GC WOULD' }, { header: 'PATH' }, { header: 'DETAIL' }],
    orphans.map((o) => [o.pool, o.kind, gcText(o), o.path, o.detail]),
  );
}

async function orphansCommand(cli: AdminCli, views: PoolView[], io: Io): Promise<number> {
  const scan = await scanAll(views);
  const orphans = await findOrphans(scan);
  const warnings = warnPools(scan.views, io, true);
  if (cli.json) io.out(toJson({ orphans, warnings }));
  else io.out(orphans.length > 0 ? orphanTable(orphans) : 'no orphans\n');
  return 0;
}

async function gcCommand(cli: AdminCli, views: PoolView[], io: Io): Promise<number> {
  const warnings: string[] = [];
  const warn = (w: string) => {
    warnings.push(w);
    io.err(`hppctl: warning: ${w}\n`);
  };
  const busyText = (v: PoolView) => `pool ${v.name} (${v.root}) is served by a running daemon, pid ${v.daemon.held ? v.daemon.pid : '?'}`;
  const busy = views.filter((v) => v.daemon.held);
  if (busy.length > 0 && !cli.dryRun && !cli.force) {
    for (const v of busy) io.err(`hppctl: ${busyText(v)}\n`);
    io.err('hppctl: gc refused: a daemon may be in the middle of creating or deleting volumes. Stop it first, or give --force.\n');
    return 1;
  }
  for (const v of busy) warn(`${busyText(v)}${cli.dryRun ? ': gc would refuse to run without --force' : ': --force given, going ahead'}`);

  // Hold each idle pool's daemon lock while working, so that no daemon starts on it meanwhile.
  const held: ProcessLock[] = [];
  try {
    if (!cli.dryRun) {
      for (const v of views) {
        if (!v.initialized || v.daemon.held) continue;
        const lockFile = v.pool.lockFile;
        const lock = await takeDaemonLock(lockFile).catch((err: NodeJS.ErrnoException) => {
          warn(`pool ${v.name}: could not take ${lockFile} (${err.code ?? err.message}); going ahead without it`);
          return null;
        });
        if (lock) {
          held.push(lock);
          continue;
        }
        if (lock === null) continue;
        v.daemon = await daemonLockState(lockFile);
        if (!cli.force) {
          io.err(`hppctl: ${busyText(v)} (it started just now)\nhppctl: gc refused; give --force to go ahead anyway.\n`);
          return 1;
        }
        warn(`${busyText(v)}: --force given, going ahead`);
      }
    }
    for (const v of views) if (!isScannable(v)) warn(`pool ${v.name} not read: ${v.reason ?? v.state}`);
    const scan = await scanAll(views);
    const orphans = await findOrphans(scan);
    for (const v of views) for (const p of v.problems) warn(`pool ${v.name}: ${p}`);
    const steps = await runGc(scan, orphans, cli, (s) => {
      if (!cli.json) io.out(`${stepPrefix(s)}${s.message}\n`);
    });
    const summary = { done: 0, would: 0, skipped: 0, failed: 0 };
    for (const s of steps) summary[s.result]++;
    if (cli.json) {
      io.out(toJson({ dryRun: cli.dryRun, steps, summary, warnings }));
    } else {
      io.out(
        steps.length === 0
          ? 'gc: no orphans\n'
          : `gc${cli.dryRun ? ' (dry run)' : ''}: ${cli.dryRun ? `${summary.would} to do` : `${summary.done} done`}, ${summary.skipped} skipped, ${summary.failed} failed\n`,
      );
    }
    return summary.failed > 0 ? 1 : 0;
  } finally {
    for (const l of held) await l.release();
  }
}

function stepPrefix(s: GcStep): string {
  return s.result === 'failed' ? 'FAILED: ' : s.result === 'skipped' ? 'skipped: ' : '';
}
