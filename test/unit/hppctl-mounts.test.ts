import { describe, expect, it } from 'vitest';
import type { LoadedRecord, MountUse, NodeScan } from '../../src/admin/inspect.js';
import { isLegitimateUse } from '../../src/admin/inspect.js';
import { locateInFilesystem, mountSource, relativeInside } from '../../src/admin/mounts.js';
import { parseMountinfo, type MountEntry } from '../../src/system/mount.js';

const MOUNTINFO = [
  '27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '60 27 254:0 /var/hpvolumes /host/hpvolumes rw,relatime shared:1 - ext4 /dev/vda rw',
  '61 27 7:3 / /var/hpp-fast rw,relatime - xfs /dev/loop3 rw,prjquota',
  '70 27 254:0 /var/hpvolumes/pvc-1 /var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pvc-1/mount rw,relatime shared:40 - ext4 /dev/vda rw',
  '71 27 254:0 /var/hpvolumes/pvc-1 /var/lib/kubelet/plugins/copy rw,relatime shared:40 - ext4 /dev/vda rw',
  '72 27 254:0 /var/hpvolumes/pvc-1 /var/lib/other/slave rw,relatime master:40 - ext4 /dev/vda rw',
  '73 27 254:0 /var/hpvolumes/pvc-1/sub\\040dir /var/lib/kubelet/pods/u1/volume-subpaths/x rw - ext4 /dev/vda rw',
  '74 27 254:0 /var/hpvolumes/old//deleted /mnt/stale rw,relatime - ext4 /dev/vda rw',
  '',
].join('\n');

describe('mountinfo for hppctl', () => {
  it('keeps propagation tags, unescapes paths and sees deleted sources', () => {
    const m = parseMountinfo(MOUNTINFO);
    expect(m).toHaveLength(8);
    expect(m[0]).toMatchObject({ mountId: 27, shared: 1 });
    expect(m[2]!.shared).toBeUndefined();
    expect(m[5]).toMatchObject({ master: 40 });
    expect(m[5]!.shared).toBeUndefined();
    expect(m[6]!.root).toBe('/var/hpvolumes/pvc-1/sub dir');
    expect(mountSource(m[7]!)).toEqual({ fsPath: '/var/hpvolumes/old', deleted: true });
    expect(mountSource(m[3]!)).toEqual({ fsPath: '/var/hpvolumes/pvc-1', deleted: false });
  });

  it('locates a pool inside its filesystem', () => {
    const m = parseMountinfo(MOUNTINFO);
    expect(locateInFilesystem(m, '/var/hpvolumes')).toMatchObject({ device: '254:0', fsPath: '/var/hpvolumes' });
    expect(locateInFilesystem(m, '/var/hpp-fast')).toMatchObject({ device: '7:3', fsPath: '/' });
    expect(locateInFilesystem(m, '/var/hpp-fast/a/b')).toMatchObject({ device: '7:3', fsPath: '/a/b' });
    // Seen through a bind mount of the pool's parent filesystem directory.
    expect(locateInFilesystem(m, '/host/hpvolumes/x')).toMatchObject({ device: '254:0', fsPath: '/var/hpvolumes/x' });
  });

  it('relativeInside is strict', () => {
    expect(relativeInside('/p', '/p/a/b')).toBe('a/b');
    expect(relativeInside('/', '/a')).toBe('a');
    expect(relativeInside('/p', '/p')).toBeUndefined();
    expect(relativeInside('/p', '/pa/b')).toBeUndefined();
    expect(relativeInside('/p/', '/p/')).toBeUndefined();
  });

  it('a propagated copy or a subPath mount of a published volume is no orphan; a stale one is', () => {
    const m = parseMountinfo(MOUNTINFO);
    const owner = { rec: { name: 'pvc-1' } } as unknown as LoadedRecord;
    const use = (mount: MountEntry, extra: Partial<MountUse>): MountUse =>
      ({ mount, via: 'directory', rel: 'pvc-1', deleted: false, owner, subdir: false, published: false, claimed: false, ...extra }) as MountUse;
    const published = use(m[3]!, { published: true });
    const peer = use(m[4]!, {});
    const slave = use(m[5]!, {});
    const subpath = use(m[6]!, { rel: 'pvc-1/sub dir', subdir: true });
    const stale = use(m[7]!, { rel: 'old', deleted: true, owner: undefined });
    const scan = { mountUses: [published, peer, slave, subpath, stale] } as unknown as NodeScan;
    expect(isLegitimateUse(published, scan)).toBe(true);
    expect(isLegitimateUse(peer, scan)).toBe(true);
    expect(isLegitimateUse(slave, scan)).toBe(true);
    expect(isLegitimateUse(subpath, scan)).toBe(true);
    expect(isLegitimateUse(stale, scan)).toBe(false);
    expect(isLegitimateUse({ ...stale, claimed: true }, scan)).toBe(true);

    // Once the volume is not published any more, the same mounts are leftovers.
    const unpublished = { mountUses: [{ ...published, published: false }, peer, slave, subpath] } as unknown as NodeScan;
    expect(isLegitimateUse(peer, unpublished)).toBe(false);
    expect(isLegitimateUse(subpath, unpublished)).toBe(false);
  });
});
