/**
 * "What is at this target" and what a publish does about it (src/volumes/target.ts,
 * src/volumes/publish-plan.ts), without root: the classification of a mount, where a path leads, the
 * publish plan of every state, and the checks of a target path.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDriverError } from '../../src/errors.js';
import { linuxHost } from '../../src/system/linux-host.js';
import type { MountEntry } from '../../src/system/mount.js';
import { planPublish } from '../../src/volumes/publish-plan.js';
import type { Publication } from '../../src/format/records.js';
import { checkTargetFree, classifyMount, leadsTo, recordedTarget, resolveTarget, whatIsAt, type AtTarget } from '../../src/volumes/target.js';

const host = linuxHost();

function mount(options: string[] = ['rw']): MountEntry {
  return { mountId: 1, parentId: 0, device: '0:1', root: '/vol', mountPoint: '/t', options, fsType: 'xfs', source: '/dev/x', superOptions: [] };
}

const rw: Publication = { readOnly: false, accessMode: 'SINGLE_NODE_WRITER', mountFlags: [] };
const ro: Publication = { ...rw, readOnly: true };

function kindOf(err: unknown): string {
  return isDriverError(err) ? err.kind : String(err);
}

describe('classifyMount', () => {
  it('tells a mount by where its target leads', () => {
    const m = mount();
    expect(classifyMount(m, { to: 'volume' })).toEqual({ kind: 'ours', mount: m });
    expect(classifyMount(m, { to: 'stale-device', why: 'loop3 no longer backs it' })).toEqual({ kind: 'stale', mount: m, why: 'loop3 no longer backs it' });
    expect(classifyMount(m, { to: 'elsewhere' })).toEqual({ kind: 'foreign', mount: m });
  });
});

describe('planPublish: the publication state machine', () => {
  const plan = (at: AtTarget, recorded: Publication | undefined, wanted: Publication) => planPublish(at, recorded, wanted, 'n:p:v', '/t');
  const refused = (p: ReturnType<typeof plan>) => (p.step === 'refuse' ? `refuse ${p.error.kind}` : p.step);

  it('nothing mounted: make it, recorded or not (a reboot took the mount)', () => {
    expect(plan({ kind: 'nothing' }, undefined, rw)).toEqual({ step: 'make' });
    expect(plan({ kind: 'nothing' }, rw, rw)).toEqual({ step: 'make' });
  });

  it('this volume mounted: in place when recorded alike, adopted when not recorded and its read-only flag agrees', () => {
    expect(plan({ kind: 'ours', mount: mount() }, rw, rw)).toEqual({ step: 'in-place' });
    expect(refused(plan({ kind: 'ours', mount: mount() }, rw, ro))).toBe('refuse conflict');
    expect(plan({ kind: 'ours', mount: mount(['rw']) }, undefined, rw)).toEqual({ step: 'adopt' });
    expect(refused(plan({ kind: 'ours', mount: mount(['rw']) }, undefined, ro))).toBe('refuse conflict');
    expect(plan({ kind: 'ours', mount: mount(['ro', 'nosuid']) }, undefined, ro)).toEqual({ step: 'adopt' });
  });

  it('a loop device taken from a recorded publication: made again; from none of ours: refused', () => {
    const stale: AtTarget = { kind: 'stale', mount: mount(), why: 'loop3 is being detached' };
    expect(plan(stale, rw, rw)).toEqual({ step: 'remake', why: 'loop3 is being detached' });
    expect(plan(stale, rw, ro)).toEqual({ step: 'remake', why: 'loop3 is being detached' });
    expect(refused(plan(stale, undefined, rw))).toBe('refuse conflict');
  });

  it('something else mounted: refused, recorded or not, naming what is there', () => {
    const p = plan({ kind: 'foreign', mount: mount() }, rw, rw);
    expect(refused(p)).toBe('refuse conflict');
    expect(p.step === 'refuse' && p.error.message).toBe('target /t already has something else mounted (/dev/x /vol)');
    expect(refused(plan({ kind: 'foreign', mount: mount() }, undefined, rw))).toBe('refuse conflict');
  });

  it('mount flags compare as a set', () => {
    const a = { ...rw, mountFlags: ['noexec', 'nosuid'] };
    const b = { ...rw, mountFlags: ['nosuid', 'noexec'] };
    expect(plan({ kind: 'ours', mount: mount() }, a, b)).toEqual({ step: 'in-place' });
    expect(refused(plan({ kind: 'ours', mount: mount() }, a, rw))).toBe('refuse conflict');
  });
});

describe('targets on disk', () => {
  let dir: string;
  let data: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-targets-'));
    data = path.join(dir, 'pool', 'v1');
    mkdirSync(data, { recursive: true });
    mkdirSync(path.join(dir, 'pods', 'real'), { recursive: true });
    symlinkSync(path.join(dir, 'pods', 'real'), path.join(dir, 'pods', 'link'));
    symlinkSync(data, path.join(dir, 'to-data'));
    mkdirSync(path.join(dir, 'other'));
    writeFileSync(path.join(dir, 'file'), 'x');
    writeFileSync(path.join(dir, 'empty-file'), '');
    mkdirSync(path.join(dir, 'full-dir'));
    writeFileSync(path.join(dir, 'full-dir', 'f'), 'x');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('leadsTo: a filesystem volume by its directory, wherever the path goes through', async () => {
    const vol = { mode: 'filesystem' as const, data };
    expect(await leadsTo(host, vol, data)).toEqual({ to: 'volume' });
    expect(await leadsTo(host, vol, path.join(dir, 'to-data'))).toEqual({ to: 'volume' });
    expect(await leadsTo(host, vol, path.join(dir, 'other'))).toEqual({ to: 'elsewhere' });
    expect(await leadsTo(host, vol, path.join(dir, 'missing'))).toEqual({ to: 'elsewhere' });
  });

  it('leadsTo: a block volume only by a loop device of its image', async () => {
    const vol = { mode: 'block' as const, data: path.join(dir, 'file') };
    expect(await leadsTo(host, vol, path.join(dir, 'empty-file'))).toEqual({ to: 'elsewhere' });
    expect(await leadsTo(host, vol, path.join(dir, 'missing'))).toEqual({ to: 'elsewhere' });
  });

  it('whatIsAt: nothing at a path where nothing is mounted, even the volume itself', async () => {
    expect(await whatIsAt(host, { mode: 'filesystem', data }, path.join(dir, 'other'))).toEqual({ kind: 'nothing' });
    expect(await whatIsAt(host, { mode: 'filesystem', data }, data)).toEqual({ kind: 'nothing' });
    expect(await whatIsAt(host, { mode: 'filesystem', data }, path.join(dir, 'missing', 'deeper'))).toEqual({ kind: 'nothing' });
  });

  it('resolveTarget: the given path and the real one; refused when relative, a symlink, or overlapping a pool', () => {
    const pools = [{ name: 'p', root: path.join(dir, 'pool') }];
    const given = path.join(dir, 'pods', 'link', 'pod1', 'mount');
    expect(resolveTarget(given, 'target_path', pools)).toEqual({ given, real: path.join(dir, 'pods', 'real', 'pod1', 'mount') });
    expect(resolveTarget(`${given}/`, 'target_path', pools).given).toBe(given);
    const refusedWith = (p: unknown) => {
      try {
        resolveTarget(p, 'target_path', pools);
        return 'accepted';
      } catch (err) {
        return kindOf(err);
      }
    };
    expect(refusedWith('')).toBe('invalid-input');
    expect(refusedWith(undefined)).toBe('invalid-input');
    expect(refusedWith('pods/mount')).toBe('invalid-input');
    expect(refusedWith(`${dir}/pods/../pods/real/x`)).toBe('invalid-input');
    expect(refusedWith('/')).toBe('invalid-input');
    expect(refusedWith(path.join(dir, 'pods', 'link'))).toBe('invalid-input');
    expect(refusedWith(path.join(dir, 'pool', 'v1', 'mount'))).toBe('invalid-input');
    expect(refusedWith(path.join(dir, 'to-data', 'mount'))).toBe('invalid-input');
    expect(refusedWith(dir)).toBe('invalid-input');
  });

  it('recordedTarget: a recorded target after a restart, its directory resolved and looked for', async () => {
    expect(await recordedTarget(path.join(dir, 'pods', 'link', 'mount'))).toEqual({ real: path.join(dir, 'pods', 'real', 'mount'), dirThere: true });
    expect(await recordedTarget(path.join(dir, 'gone', 'mount'))).toEqual({ real: path.join(dir, 'gone', 'mount'), dirThere: false });
    expect((await recordedTarget(path.join(dir, 'file', 'mount'))).dirThere).toBe(false);
  });

  it('checkTargetFree: missing, or what a publish makes itself', () => {
    const free = (p: string, mode: 'filesystem' | 'block') => {
      try {
        checkTargetFree(path.join(dir, p), mode);
        return 'free';
      } catch (err) {
        return kindOf(err);
      }
    };
    expect(free('missing', 'filesystem')).toBe('free');
    expect(free('other', 'filesystem')).toBe('free');
    expect(free('full-dir', 'filesystem')).toBe('precondition');
    expect(free('file', 'filesystem')).toBe('precondition');
    expect(free('empty-file', 'block')).toBe('free');
    expect(free('file', 'block')).toBe('precondition');
    expect(free('other', 'block')).toBe('precondition');
  });
});
