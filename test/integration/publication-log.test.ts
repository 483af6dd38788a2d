// The publication log on a real filesystem: replay, torn lines, compaction, and a full disk.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync, appendFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayPublications } from '../../src/format/records.js';
import { PublicationLog } from '../../src/volumes/publication-log.js';
import { cleanupDir, scratchDir } from '../helpers/driver.js';

const pub = (device?: string) => ({ readOnly: false, accessMode: 'SINGLE_NODE_WRITER', mountFlags: [], ...(device ? { device } : {}) });

let dir: string;
beforeAll(() => {
  dir = scratchDir('publog');
});
afterAll(async () => {
  await cleanupDir(dir);
});

describe('PublicationLog', () => {
  it('replays to the last line of each volume and skips torn lines anywhere', () => {
    const text = [
      JSON.stringify({ name: 'a', publications: { '/t1': pub() } }),
      '{"name":"b","publica', // cut short by a crash, then appended after
      JSON.stringify({ name: 'b', publications: { '/t2': pub('/dev/loop1') } }),
      JSON.stringify({ name: 'a', publications: {} }),
      '\0\0\0\0', // what a power cut can leave in blocks that were never written
      JSON.stringify({ name: 'c', publications: [] }),
    ].join('\n');
    const { state, badLines } = replayPublications(text);
    expect(badLines).toBe(3);
    expect([...state.keys()]).toEqual(['a', 'b']);
    expect(state.get('a')).toEqual({});
    expect(state.get('b')).toEqual({ '/t2': pub('/dev/loop1') });
  });

  it('appends one line per change, compacts to one line per published volume, and keeps appending after', () => {
    const file = path.join(dir, 'p1.log');
    const log = new PublicationLog(file);
    expect(log.read()).toEqual({ state: new Map(), badLines: 0 });
    log.compact(new Map());
    expect(readFileSync(file, 'utf8')).toBe('');
    log.append('a', { '/t1': pub() });
    log.append('b', { '/t2': pub() });
    log.append('a', {});
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(3);
    log.compact(log.read().state);
    expect(readFileSync(file, 'utf8')).toBe(`${JSON.stringify({ name: 'b', publications: { '/t2': pub() } })}\n`);
    log.append('c', { '/t3': pub() });
    expect([...log.read().state.keys()]).toEqual(['b', 'c']);
    log.close();
    expect(() => log.append('d', {})).toThrow(/not open/);
  });

  it('asks for compaction once it has grown past 4 MiB', () => {
    const log = new PublicationLog(path.join(dir, 'p2.log'));
    log.compact(new Map());
    const pubs = { [`/var/lib/kubelet/pods/${'x'.repeat(150)}/mount`]: pub() };
    const lineBytes = Buffer.byteLength(`${JSON.stringify({ name: 'vol', publications: pubs })}\n`);
    let appends = 1;
    while (!log.append('vol', pubs)) appends++;
    expect(appends * lineBytes).toBeGreaterThan(4 * 1024 * 1024);
    expect((appends - 1) * lineBytes).toBeLessThanOrEqual(4 * 1024 * 1024);
    log.compact(log.read().state);
    expect(statSync(log.file).size).toBeLessThan(400);
    log.close();
  });

  it('a full filesystem fails the append whole: no half line is left for the next one to be glued to', () => {
    const mnt = path.join(dir, 'tiny');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'hpp-test', mnt]);
    const log = new PublicationLog(path.join(mnt, 'publications.log'));
    try {
      log.compact(new Map());
      log.append('a', { '/t1': pub() });
      const before = readFileSync(log.file, 'utf8');
      // Fill the filesystem to its last bytes, then ask for a line that cannot fit.
      try {
        for (let i = 0; ; i++) writeFileSync(path.join(mnt, `fill-${i}`), Buffer.alloc(4096));
      } catch {
        // ENOSPC: full
      }
      try {
        for (;;) appendFileSync(path.join(mnt, 'fill-last'), 'x');
      } catch {
        // ENOSPC: full to the byte
      }
      // Longer than the page the log already has: the kernel writes what fits, then stops short.
      expect(() => log.append('b', { [`/${'y'.repeat(9000)}`]: pub() })).toThrow(/ENOSPC|short write/);
      expect(readFileSync(log.file, 'utf8')).toBe(before);
      execFileSync('sh', ['-c', `rm -f ${mnt}/fill-*`]);
      log.append('c', { '/t3': pub() });
      const { state, badLines } = log.read();
      expect(badLines).toBe(0);
      expect([...state.keys()]).toEqual(['a', 'c']);
    } finally {
      log.close();
      execFileSync('umount', [mnt]);
      rmSync(mnt, { recursive: true });
    }
  });
});
