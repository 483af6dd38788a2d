import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MOUNT_CAP, cleanupDir, scratchDir, startDriver, type DriverProcess } from '../helpers/driver.js';

describe('driver smoke', () => {
  let dir: string;
  let d: DriverProcess;
  beforeAll(async () => {
    dir = scratchDir('smoke');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(`${dir}/pool`);
    d = await startDriver({ dir, args: ['--pool', `default=${dir}/pool`] });
  });
  afterAll(async () => {
    await d?.stop();
    await cleanupDir(dir);
  });

  it('creates a volume', async () => {
    const res = await d.clients.controller.CreateVolume({ name: 'smoke-1', volume_capabilities: [MOUNT_CAP], capacity_range: { required_bytes: '1048576' } });
    expect(res.volume.volume_id).toBe('test-node:default:smoke-1');
    expect(res.volume.capacity_bytes).toBe('1048576');
  });
});
