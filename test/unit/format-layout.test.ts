// The pool layout (src/format/layout.ts) spelled out once, literally: a change of any of these names is
// a change of the on-disk format, which pools already on disk (and hppctl reading them) would not follow.
import { describe, expect, it } from 'vitest';
import {
  blockImagePath,
  deletingRecordFile,
  diskImagePath,
  isRecordTempName,
  layoutDirs,
  poolLayout,
  publicationLogTemp,
  recordFile,
  recordFileName,
  resolveInside,
  snapshotBuildPath,
  snapshotDataDir,
  trashEntryPath,
  volumeBuildPath,
} from '../../src/format/layout.js';

describe('pool layout', () => {
  const l = poolLayout('/var/hpvolumes');

  it('every path under a pool', () => {
    expect(l).toEqual({
      root: '/var/hpvolumes',
      metaDir: '/var/hpvolumes/.hpp',
      volumesDir: '/var/hpvolumes/.hpp/volumes',
      snapshotRecordsDir: '/var/hpvolumes/.hpp/snapshot-records',
      blockDir: '/var/hpvolumes/.hpp/block',
      snapshotsDir: '/var/hpvolumes/.hpp/snapshots',
      tmpDir: '/var/hpvolumes/.hpp/tmp',
      trashDir: '/var/hpvolumes/.hpp/trash',
      publicationLog: '/var/hpvolumes/.hpp/publications.log',
      projectIds: '/var/hpvolumes/.hpp/project-ids.json',
      lockFile: '/var/hpvolumes/.hpp/daemon.lock',
    });
    expect(layoutDirs(l)).toEqual(['.hpp', '.hpp/volumes', '.hpp/tmp', '.hpp/trash', '.hpp/snapshots', '.hpp/snapshot-records', '.hpp/block'].map((d) => `/var/hpvolumes/${d}`));
  });

  it('names of data, builds, trash entries and records', () => {
    expect(blockImagePath('vm1')).toBe('.hpp/block/vm1.img');
    expect(snapshotDataDir('s1')).toBe('.hpp/snapshots/s1');
    expect(volumeBuildPath(l, 'vm1')).toBe('/var/hpvolumes/.hpp/tmp/vm1');
    expect(snapshotBuildPath(l, 's1')).toBe('/var/hpvolumes/.hpp/tmp/@s1');
    expect(diskImagePath('/var/hpvolumes/vm1')).toBe('/var/hpvolumes/vm1/disk.img');
    expect(trashEntryPath(l, '/var/hpvolumes/.hpp/block/vm1.img', 1700000000000, 'a1b2c3')).toBe('/var/hpvolumes/.hpp/trash/vm1.img.1700000000000.a1b2c3');
    expect(recordFile(l.volumesDir, 'vm1')).toBe('/var/hpvolumes/.hpp/volumes/vm1.json');
    expect(deletingRecordFile(l.volumesDir, 'vm1')).toBe('/var/hpvolumes/.hpp/volumes/vm1.deleting');
    expect(publicationLogTemp(l.publicationLog)).toBe('/var/hpvolumes/.hpp/publications.log.tmp');
  });

  it.each([
    ['vm1.json', { name: 'vm1', deleting: false }],
    ['vm1.deleting', { name: 'vm1', deleting: true }],
    ['a.b-c_d.json', { name: 'a.b-c_d', deleting: false }],
    ['.vm1.json.tmp-12-0a1b2c3d', undefined],
    ['vm1.json.bak', undefined],
    ['.json', undefined],
    ['@s1.json', undefined],
    ['README', undefined],
  ])('record file name %s', (file, want) => {
    expect(recordFileName(file)).toEqual(want);
  });

  it('temp files of interrupted record writes', () => {
    expect(isRecordTempName('.vm1.json.tmp-12345-0a1b2c3d')).toBe(true);
    expect(isRecordTempName('vm1.json')).toBe(false);
  });

  it('paths in records stay inside the pool', () => {
    expect(resolveInside('/p', 'vm1', 'p')).toBe('/p/vm1');
    expect(resolveInside('/p', '.hpp/block/vm1.img', 'p')).toBe('/p/.hpp/block/vm1.img');
    for (const bad of ['..', '../q/x', '/etc', '.', '', 'a\0b', '/p']) expect(() => resolveInside('/p', bad, 'p'), bad).toThrow(/outside pool p/);
  });
});
