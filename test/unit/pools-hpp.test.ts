/**
 * HPP's pool vocabulary in the pools file: the storagePools list of a HostPathProvisioner CR
 * (hostpathprovisioner.kubevirt.io/v1beta1) pasted as it is, its keys pvcTemplate, snapshotProvider and
 * overlayClassName, and what a pvcTemplate makes of the pool on the node (src/pools/config.ts,
 * src/pools/pvc-template.ts), and when a Filesystem-claim pool counts as mounted (claim-mount.ts).
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, parsePoolsJson } from '../../src/pools/config.js';
import { claimNotMounted } from '../../src/pools/claim-mount.js';
import type { MountEntry } from '../../src/system/mount.js';

const parse = (v: unknown) => parsePoolsJson(JSON.stringify(v), 'pools.json');
const size = { requests: { storage: '100Gi' } };
const withTemplate = (pvcTemplate: unknown) => parse([{ name: 'fast', path: '/var/hpp-fast', pvcTemplate }]);

describe('an HPP storagePools list', () => {
  // As in HPP's documentation: a directory pool and a pool on per-node claims.
  const storagePools = [
    { name: 'local', path: '/var/hpvolumes' },
    {
      name: 'fast',
      path: '/var/hpp-fast',
      snapshotProvider: 'reflink',
      overlayClassName: 'hpp-overlay',
      pvcTemplate: { volumeMode: 'Block', storageClassName: 'local-block', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '500Gi' } } },
    },
    { name: 'fs', path: '/var/hpp-fs', pvcTemplate: { storageClassName: 'local-fs', resources: { requests: { storage: '50Gi' } } } },
  ];

  it('is read as the list, as {"storagePools": [...]} and alike as {"pools": [...]}', () => {
    const list = parse(storagePools);
    expect(list.map((p) => p.name)).toEqual(['local', 'fast', 'fs']);
    expect(parse({ storagePools })).toEqual(list);
    expect(parse({ pools: storagePools })).toEqual(list);
  });

  it('a Block template makes a device-backed pool on the device its holder publishes', () => {
    const fast = parse(storagePools)[1]!;
    expect(fast).toMatchObject({ name: 'fast', path: '/var/hpp-fast', device: '/run/hpp/devices/fast', pvcTemplate: storagePools[1]!.pvcTemplate });
    expect(fast.awaitMount).toBeUndefined();
  });

  it('a Filesystem template (also when volumeMode is absent, as in HPP) waits for the claim mounted at path, with no device', () => {
    const fs = parse(storagePools)[2]!;
    expect(fs).toMatchObject({ name: 'fs', path: '/var/hpp-fs', awaitMount: true });
    expect(fs.device).toBeUndefined();
    expect(withTemplate({ volumeMode: 'Filesystem', resources: size })[0]).toMatchObject({ awaitMount: true });
  });

  it('a pool without a template is neither', () => {
    const local = parse(storagePools)[0]!;
    expect(local.device).toBeUndefined();
    expect(local.awaitMount).toBeUndefined();
    expect(local.pvcTemplate).toBeUndefined();
  });

  it('errors name where the pool is in the storagePools list', () => {
    expect(() => parse({ storagePools: [{ name: 'a', path: '/a' }, { name: 'b' }] })).toThrow('pools.json storagePools[1]: pool b needs an absolute "path"');
  });

  it('"pools" and "storagePools" together, a misspelt list key and a non-list are refused', () => {
    expect(() => parse({ pools: [], storagePools: [] })).toThrow('pools.json: give "pools" or "storagePools", not both');
    expect(() => parse({ storagepools: [] })).toThrow('pools.json: unknown key "storagepools" (did you mean "storagePools"?)');
    expect(() => parse({ storagePools: { name: 'a' } })).toThrow(`pools.json: expected a JSON list of pools, {"pools": [...]} or HPP's {"storagePools": [...]}`);
  });
});

describe('snapshotProvider and overlayClassName', () => {
  it('snapshotProvider "reflink" is accepted; any other is refused saying how this driver snapshots', () => {
    expect(parse([{ name: 'a', path: '/a', snapshotProvider: 'reflink' }])).toHaveLength(1);
    for (const bad of ['copy', 'Reflink', '', 1, null]) {
      expect(() => parse([{ name: 'a', path: '/a', snapshotProvider: bad }]), JSON.stringify(bad)).toThrow(
        `pools.json[0]: pool a: snapshotProvider ${JSON.stringify(bad)} is not supported: only "reflink" (this driver snapshots by reflink where the filesystem can, and by copy otherwise)`,
      );
    }
  });

  it('overlayClassName is accepted as a string and changes nothing; another type is refused', () => {
    const [a] = parse([{ name: 'a', path: '/a', overlayClassName: 'x' }]);
    expect(a).toEqual(parse([{ name: 'a', path: '/a' }])[0]);
    expect(() => parse([{ name: 'a', path: '/a', overlayClassName: 1 }])).toThrow('pools.json[0]: pool a: overlayClassName must be a string (it is ignored here)');
  });
});

describe('pvcTemplate', () => {
  const where = 'pools.json[0]: pool fast: pvcTemplate';

  it('keeps every PersistentVolumeClaimSpec key it is given', () => {
    const t = {
      accessModes: ['ReadWriteOncePod'],
      resources: { requests: { storage: '10Gi' }, limits: { storage: 20 } },
      storageClassName: 'local.block',
      volumeMode: 'Block',
      selector: { matchLabels: { tier: 'fast' }, matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }, { key: 'x', operator: 'Exists' }] },
      dataSource: { kind: 'PersistentVolumeClaim', name: 'golden' },
      dataSourceRef: { apiGroup: 'cdi.kubevirt.io', kind: 'VolumeImportSource', name: 'src', namespace: 'images' },
      volumeAttributesClassName: 'gold',
      volumeName: 'pv-1',
    };
    // A number quantity is kept as the quantity's text.
    expect(withTemplate(t)[0]!.pvcTemplate).toEqual({ ...t, resources: { requests: { storage: '10Gi' }, limits: { storage: '20' } } });
    expect(withTemplate({ storageClassName: '', resources: size })[0]!.pvcTemplate).toEqual({ storageClassName: '', resources: size });
  });

  it('device and pvcTemplate together are refused', () => {
    expect(() => parse([{ name: 'fast', path: '/f', device: '/dev/sdz', pvcTemplate: { volumeMode: 'Block', resources: size } }])).toThrow(
      "pools.json[0]: pool fast: give device or pvcTemplate, not both: a Block pvcTemplate's device is /run/hpp/devices/fast, published by its holder",
    );
  });

  it('refuses an unknown key with the key meant, at any depth', () => {
    expect(() => withTemplate({ storageClass: 'x', resources: size })).toThrow(`${where}: unknown key "storageClass" (did you mean "storageClassName"?); it has: accessModes, resources, storageClassName,`);
    expect(() => withTemplate({ volumemode: 'Block', resources: size })).toThrow(`${where}: unknown key "volumemode" (did you mean "volumeMode"?)`);
    expect(() => withTemplate({ resources: { request: { storage: '1Gi' } } })).toThrow(`${where}.resources: unknown key "request" (did you mean "requests"?); it has: requests, limits`);
    expect(() => withTemplate({ resources: size, selector: { matchLabel: {} } })).toThrow(`${where}.selector: unknown key "matchLabel" (did you mean "matchLabels"?)`);
    expect(() => withTemplate({ resources: size, selector: { matchExpressions: [{ key: 'a', operator: 'In', value: ['x'] }] } })).toThrow(
      `${where}.selector.matchExpressions[0]: unknown key "value" (did you mean "values"?)`,
    );
    expect(() => withTemplate({ resources: size, dataSource: { kind: 'X', name: 'y', namespace: 'z' } })).toThrow(`${where}.dataSource: unknown key "namespace"`);
  });

  it('refuses each value of the wrong shape, naming the key', () => {
    const cases: Array<[unknown, string]> = [
      ['Block', `${where} must be an object such as`],
      [[], `${where} must be an object such as`],
      [{}, `${where}.resources.requests.storage is required: the size of each node's claim, e.g. "100Gi"`],
      [{ resources: { requests: {} } }, `${where}.resources.requests.storage is required`],
      [{ resources: { limits: { storage: '1Gi' } } }, `${where}.resources.requests.storage is required`],
      [{ resources: 'big' }, `${where}.resources must be an object`],
      [{ resources: { requests: { storage: 'lots' } } }, `${where}.resources.requests.storage must be a quantity such as "100Gi", got "lots"`],
      [{ resources: { requests: { storage: '1Gi' }, limits: { storage: '1 Gi' } } }, `${where}.resources.limits.storage must be a quantity`],
      [{ resources: size, volumeMode: 'block' }, `${where}.volumeMode must be "Block" or "Filesystem", got "block"`],
      [{ resources: size, accessModes: 'ReadWriteOnce' }, `${where}.accessModes must be a non-empty list such as ["ReadWriteOnce"]`],
      [{ resources: size, accessModes: [] }, `${where}.accessModes must be a non-empty list`],
      [{ resources: size, accessModes: ['RWO'] }, `${where}.accessModes: "RWO" is not an access mode`],
      [{ resources: size, accessModes: ['ReadWriteMany'] }, `${where}.accessModes: ReadWriteMany is not supported: a pool here is node-local`],
      [{ resources: size, accessModes: ['ReadWriteOnce', 'ReadOnlyMany'] }, `${where}.accessModes: ReadOnlyMany is not supported`],
      [{ resources: size, storageClassName: 'Local_Block' }, `${where}.storageClassName must be a StorageClass name (a DNS subdomain), got "Local_Block"`],
      [{ resources: size, storageClassName: 1 }, `${where}.storageClassName must be a StorageClass name`],
      [{ resources: size, selector: [] }, `${where}.selector must be an object`],
      [{ resources: size, selector: { matchLabels: { a: 1 } } }, `${where}.selector.matchLabels.a must be a string, got 1`],
      [{ resources: size, selector: { matchExpressions: {} } }, `${where}.selector.matchExpressions must be a list`],
      [{ resources: size, selector: { matchExpressions: [{ key: 'a', operator: 'in' }] } }, `${where}.selector.matchExpressions[0].operator must be one of In, NotIn, Exists, DoesNotExist, got "in"`],
      [{ resources: size, selector: { matchExpressions: [{ key: '', operator: 'In' }] } }, `${where}.selector.matchExpressions[0].key must be a non-empty string`],
      [{ resources: size, selector: { matchExpressions: [{ key: 'a', operator: 'In', values: [1] }] } }, `${where}.selector.matchExpressions[0].values must be a list of strings`],
      [{ resources: size, dataSource: 'golden' }, `${where}.dataSource must be an object`],
      [{ resources: size, dataSource: { kind: 'PersistentVolumeClaim' } }, `${where}.dataSource.name must be a non-empty string, got undefined`],
      [{ resources: size, dataSource: { name: 'x', apiGroup: 1, kind: 'K' } }, `${where}.dataSource.apiGroup must be a string`],
      [{ resources: size, dataSourceRef: { kind: 'K', name: 'x', namespace: '' } }, `${where}.dataSourceRef.namespace must be a non-empty string`],
      [{ resources: size, volumeName: 'PV_1' }, `${where}.volumeName must be an object name (a DNS subdomain), got "PV_1"`],
      [{ resources: size, volumeAttributesClassName: '' }, `${where}.volumeAttributesClassName must be an object name`],
    ];
    for (const [t, message] of cases) {
      expect(() => withTemplate(t), JSON.stringify(t)).toThrow(ConfigError);
      expect(() => withTemplate(t), JSON.stringify(t)).toThrow(message);
    }
  });
});

let id = 1;
function mount(mountPoint: string, root: string, device = '8:1', fsType = 'ext4'): MountEntry {
  return { mountId: id++, parentId: 1, device, root, mountPoint, options: ['rw'], fsType, source: `/dev/x${device}`, superOptions: ['rw'] };
}

describe('claimNotMounted: a Filesystem-claim pool is served only from its claim', () => {
  const rootfs = mount('/', '/');
  const dir = '/var/hpp-fs';

  it('a bare directory is not: on the node (no mount there) and in the DaemonSet (the hostPath bind of the directory)', () => {
    expect(claimNotMounted('fs', dir, [rootfs])).toBe('pool fs: waiting for its claim\'s filesystem to be mounted at /var/hpp-fs (nothing is mounted there)');
    const container = [mount('/', '/', '0:50', 'overlay'), mount(dir, dir)];
    expect(claimNotMounted('fs', dir, container)).toBe(
      "pool fs: waiting for its claim's filesystem to be mounted at /var/hpp-fs (what is there is a directory of the node's root filesystem)",
    );
  });

  it('a mount of a directory above it does not count', () => {
    expect(claimNotMounted('fs', dir, [rootfs, mount('/var', '/', '253:1', 'xfs')])).toMatch(/nothing is mounted there/);
  });

  it('the claim mounted there is: a disk of its own, or a directory of another filesystem or of another place', () => {
    expect(claimNotMounted('fs', dir, [rootfs, mount(dir, '/', '253:0', 'xfs')])).toBeUndefined();
    // A directory-backed claim (a hostpath volume elsewhere on the root filesystem) bind-mounted here.
    expect(claimNotMounted('fs', dir, [rootfs, mount(dir, '/var/hpp-backing/pvc-1')])).toBeUndefined();
    // In the DaemonSet: propagated on top of the hostPath bind.
    expect(claimNotMounted('fs', dir, [mount('/', '/', '0:50', 'overlay'), mount(dir, dir), mount(dir, '/', '253:0', 'xfs')])).toBeUndefined();
    expect(claimNotMounted('fs', `${dir}/`, [rootfs, mount(dir, '/', '253:0', 'xfs')])).toBeUndefined();
  });

  it('a claim unmounted again (the directory back on top) is not', () => {
    expect(claimNotMounted('fs', dir, [mount('/', '/', '0:50', 'overlay'), mount(dir, '/', '253:0', 'xfs'), mount(dir, dir)])).toMatch(/directory of the node's root filesystem/);
  });
});
