/**
 * ControllerGetVolume and ListVolumes with VOLUME_CONDITION (src/volumes/volume-condition.ts), through
 * the real Controller handlers over a FakeHost: what external-health-monitor reads of each volume.
 */
import { rmSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createRequest, HandlerHarness, MiB, volumeId } from '../../helpers/handler-harness.js';

let h: HandlerHarness;
beforeEach(async () => {
  h = await new HandlerHarness().start();
  for (const spec of [
    { name: 'fs', required: 8n * MiB },
    { name: 'vm', required: 16n * MiB, parameters: { createDiskImage: 'true' } },
    { name: 'blk', kind: 'block' as const, required: 8n * MiB },
  ]) {
    const a = await h.ctl('CreateVolume', createRequest(spec));
    expect(a.code, a.message).toBeUndefined();
  }
});
afterEach(async () => {
  await h.dispose();
});

const condition = async (name: string) => {
  const a = await h.ctl('ControllerGetVolume', { volume_id: volumeId(name) } as never);
  expect(a.code, a.message).toBeUndefined();
  expect(a.res!.volume!.volume_id).toBe(volumeId(name));
  return a.res!.status!.volume_condition;
};

describe('the condition of a volume', () => {
  it('is normal for volumes whose data is there, in ControllerGetVolume and in ListVolumes', async () => {
    for (const n of ['fs', 'vm', 'blk']) expect(await condition(n), n).toMatchObject({ abnormal: false });
    const list = await h.ctl('ListVolumes', { max_entries: 0, starting_token: '' } as never);
    expect(list.res!.entries!.map((e) => [e.volume!.volume_id, e.status!.volume_condition!.abnormal])).toEqual([
      [volumeId('blk'), false],
      [volumeId('fs'), false],
      [volumeId('vm'), false],
    ]);
  });

  it('is abnormal, saying why, when the data is gone, disk.img is gone, or an image was truncated', async () => {
    rmSync(path.join(h.poolRoot, 'fs'), { recursive: true });
    rmSync(path.join(h.poolRoot, 'vm', 'disk.img'));
    truncateSync(path.join(h.poolRoot, '.hpp', 'block', 'blk.img'), 4 * 1024 * 1024);
    expect(await condition('fs')).toEqual({ abnormal: true, message: `volume data ${path.join(h.poolRoot, 'fs')} is missing` });
    expect(await condition('vm')).toMatchObject({ abnormal: true, message: expect.stringContaining('disk.img of the volume is missing') });
    expect(await condition('blk')).toMatchObject({ abnormal: true, message: expect.stringMatching(/has 4194304 bytes, the volume 8388608: it was truncated/) });
    const list = await h.ctl('ListVolumes', { max_entries: 0, starting_token: '' } as never);
    expect(list.res!.entries!.every((e) => e.status!.volume_condition!.abnormal)).toBe(true);
  });

  it('ControllerGetVolume of a volume this node does not have is NOT_FOUND', async () => {
    expect((await h.ctl('ControllerGetVolume', { volume_id: volumeId('nope') } as never)).code).toBe('NOT_FOUND');
    expect((await h.ctl('ControllerGetVolume', { volume_id: '' } as never)).code).toBe('INVALID_ARGUMENT');
  });
});
