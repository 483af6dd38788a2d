// The addon's LOOP_GET_STATUS64 against losetup's view of the same devices: the backing file's
// identity (device and inode, no path), the read-only and autoclear flags, and nothing for a free device.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeHolders, detachLoop, fileIdentity, listLoopDevices, loopStatus, loopsOver, usableFor } from '../../src/system/loop.js';
import { mountBackend } from '../../src/system/native-mount.js';
import { cleanupDir, scratchDir } from '../helpers/driver.js';

describe('loop device status from the kernel', () => {
  let dir: string;
  beforeAll(() => {
    dir = scratchDir('loopstatus');
    mkdirSync(`${dir}/a`);
  });
  afterAll(async () => {
    await cleanupDir(dir);
  });

  it('is read by the addon in CI', () => {
    expect(mountBackend.kind).toBe('syscall');
  });

  it('names the backing file by identity, follows a rename, and tells read-only and detaching devices', async () => {
    const file = `${dir}/a/img`;
    writeFileSync(file, Buffer.alloc(1024 * 1024));
    const rw = execFileSync('losetup', ['--find', '--show', file]).toString().trim();
    const ro = execFileSync('losetup', ['--find', '--show', '--read-only', file]).toString().trim();
    const id = await fileIdentity(file);

    const s = await loopStatus(rw);
    expect(s).toEqual({ backing: id, readOnly: false, detaching: false });
    expect((await loopStatus(ro))?.readOnly).toBe(true);
    const listed = (await listLoopDevices()).find((d) => d.name === rw)!;
    expect({ dev: listed.backDev, ino: listed.backIno }).toEqual(s!.backing);

    // A path says nothing: the same inode under another name is still this file.
    renameSync(file, `${dir}/a/moved`);
    expect(usableFor(await loopStatus(rw), await fileIdentity(`${dir}/a/moved`))).toBe(true);
    writeFileSync(file, Buffer.alloc(1024 * 1024));
    expect(usableFor(await loopStatus(rw), await fileIdentity(file))).toBe(false);

    // Held open by another process, a detach only marks it.
    const holder = spawn(process.execPath, ['-e', "require('fs').openSync(process.argv[1], 'r'); console.log('open'); process.stdin.resume()", rw], { stdio: ['pipe', 'pipe', 'inherit'] });
    await new Promise((r) => holder.stdout!.once('data', r));
    execFileSync('losetup', ['-d', rw]);
    const marked = await loopStatus(rw);
    expect(marked?.detaching).toBe(true);
    expect(usableFor(marked, await fileIdentity(`${dir}/a/moved`))).toBe(false);
    const gone = new Promise((r) => holder.on('exit', r));
    holder.kill('SIGKILL');
    await gone;
    for (let i = 0; i < 100 && (await loopStatus(rw)); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await loopStatus(rw)).toBeUndefined();
    execFileSync('losetup', ['-d', ro]);
  });

  // What kubelet does with each block volume it maps into a pod: a loop device over the volume's loop
  // device. A detach of ours is then deferred with no process to show; the outcome names that device.
  it('names a loop device over the device as what holds it', async () => {
    const file = `${dir}/a/over`;
    writeFileSync(file, Buffer.alloc(1024 * 1024));
    const ours = execFileSync('losetup', ['--find', '--show', file]).toString().trim();
    const over = execFileSync('losetup', ['--find', '--show', ours]).toString().trim();
    try {
      expect(await loopsOver(ours)).toEqual([over]);
      expect(await loopsOver(over)).toEqual([]);
      const outcome = await detachLoop(ours);
      expect(outcome).toMatchObject({ device: ours, detached: false, holders: [], loopsOver: [over] });
      if (!outcome.detached) expect(describeHolders(outcome.holders, outcome.loopsOver)).toContain(`loop device ${over} over it`);
      expect((await loopStatus(ours))?.detaching).toBe(true);
    } finally {
      execFileSync('losetup', ['-d', over]);
    }
    // The holder gone, the deferred detach happens.
    for (let i = 0; i < 100 && (await loopStatus(ours)); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await loopStatus(ours)).toBeUndefined();
  });
});
