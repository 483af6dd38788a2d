import { describe, expect, it } from 'vitest';
import { bindRemountFlags, mountAt, mountContaining, mountsBelow, parseMountinfo } from '../../src/system/mount.js';
import { MS } from '../../src/system/native-mount.js';

const SAMPLE = [
  '22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '36 22 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
  '37 22 253:0 /var/hpp/pool/vol-1 /var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pv1/mount ro,nosuid,nodev,relatime shared:5 - ext4 /dev/vda rw',
  '38 22 0:5 /loop3 /var/lib/kubelet/plugins/blk/target rw,nosuid - devtmpfs udev rw,size=1g',
  '39 22 253:0 /tab\\011and\\134backslash /odd\\011mount\\134point rw - ext4 /dev/my\\040disk rw',
  '40 37 0:42 / /var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pv1/mount rw - tmpfs tmpfs rw',
  '41 22 0:43 / /mnt rw - tmpfs tmpfs rw',
  '',
  'garbage line without separator',
].join('\n');

describe('parseMountinfo', () => {
  const entries = parseMountinfo(SAMPLE);

  it('parses every well-formed line and skips the rest', () => {
    expect(entries.map((e) => e.mountId)).toEqual([22, 36, 37, 38, 39, 40, 41]);
  });

  it('unescapes \\040 (space) in mount points and roots', () => {
    const e = entries.find((x) => x.mountId === 36)!;
    expect(e).toEqual({
      mountId: 36,
      parentId: 22,
      device: '98:0',
      root: '/mnt1',
      mountPoint: '/mnt/with space',
      options: ['rw', 'noatime'],
      fsType: 'ext3',
      source: '/dev/root',
      superOptions: ['rw', 'errors=continue'],
      master: 1,
    });
  });

  it('unescapes tab and backslash, in the source as well', () => {
    const e = entries.find((x) => x.mountId === 39)!;
    expect(e.root).toBe('/tab\tand\\backslash');
    expect(e.mountPoint).toBe('/odd\tmount\\point');
    expect(e.source).toBe('/dev/my disk');
  });

  it('handles optional fields (shared:, master:) and bind mount roots', () => {
    const e = entries.find((x) => x.mountId === 37)!;
    expect(e.root).toBe('/var/hpp/pool/vol-1');
    expect(e.options).toEqual(['ro', 'nosuid', 'nodev', 'relatime']);
    expect(e.fsType).toBe('ext4');
    expect(e.shared).toBe(5);
    expect(e.master).toBeUndefined();
    expect(entries.find((x) => x.mountId === 22)!.options).toEqual(['rw', 'relatime']);
  });

  it('mountAt gives the top-most mount at a path', () => {
    expect(mountAt(entries, '/var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pv1/mount')!.mountId).toBe(40);
    expect(mountAt(entries, '/mnt/with space')!.mountId).toBe(36);
    expect(mountAt(entries, '/mnt/with\\040space')).toBeUndefined();
    expect(mountAt(entries, '/nothing')).toBeUndefined();
  });

  it('mountContaining finds the longest mount-point prefix, on path boundaries', () => {
    expect(mountContaining(entries, '/mnt/x')!.mountId).toBe(41);
    expect(mountContaining(entries, '/mntx')!.mountId).toBe(22);
    expect(mountContaining(entries, '/mnt/with space/a')!.mountId).toBe(36);
  });

  it('mountsBelow lists mounts strictly below a directory', () => {
    expect(mountsBelow(entries, '/mnt').map((e) => e.mountId)).toEqual([36]);
    expect(mountsBelow(entries, '/mnt/').map((e) => e.mountId)).toEqual([36]);
    expect(mountsBelow(entries, '/var/lib/kubelet/pods/p1').map((e) => e.mountId)).toEqual([37, 40]);
    expect(mountsBelow(entries, '/var/lib/kubelet/pods/p')).toEqual([]);
  });

  it('parses the real /proc/self/mountinfo', async () => {
    const { readFileSync } = await import('node:fs');
    const real = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    expect(real.length).toBeGreaterThan(0);
    expect(real.some((e) => e.mountPoint === '/')).toBe(true);
    for (const e of real) {
      expect(e.mountPoint.startsWith('/')).toBe(true);
      expect(e.fsType).not.toBe('');
    }
  });
});

describe('bindRemountFlags', () => {
  const base = MS.REMOUNT | MS.BIND;

  it('keeps the per-mount flags the new bind mount inherited and adds read-only', () => {
    expect(bindRemountFlags(['rw', 'nosuid', 'nodev', 'relatime'], true, [])).toBe(base | MS.NOSUID | MS.NODEV | MS.RELATIME | MS.RDONLY);
  });

  it('adds and clears flags as mount(8) names them; the last atime flag wins', () => {
    expect(bindRemountFlags(['rw', 'nosuid', 'relatime'], false, ['noexec', 'suid', 'noatime'])).toBe(base | MS.NOEXEC | MS.NOATIME);
    expect(bindRemountFlags(['rw', 'noatime'], false, ['strictatime'])).toBe(base | MS.STRICTATIME);
    expect(bindRemountFlags(['rw', 'noatime'], false, ['atime'])).toBe(base | MS.RELATIME);
    expect(bindRemountFlags(['rw', 'nodiratime'], false, ['nodev'])).toBe(base | MS.NODIRATIME | MS.NODEV | MS.STRICTATIME);
  });

  it('refuses a flag it does not know instead of dropping it', () => {
    expect(() => bindRemountFlags(['rw'], false, ['uid=0'])).toThrow(/uid=0/);
  });
});
