import { promises as fsp } from 'node:fs';
import { run, type ToolContext } from './exec.js';

export type DeviceContent =
  | { kind: 'blank' }
  | { kind: 'filesystem'; type: string; uuid?: string }
  | { kind: 'partitioned'; table: string }
  | { kind: 'unknown-data'; detail: string };

/** How many leading bytes must be zero before a device without a signature counts as blank. */
const BLANK_CHECK_BYTES = 1024 * 1024;

/**
 * What a block device holds, by low-level probe (`blkid -p`, no cache). A device counts as blank only
 * when blkid finds no signature AND its first MiB is all zeros: unrecognised data is never blank.
 */
export async function probeDevice(device: string, tc: ToolContext = {}): Promise<DeviceContent> {
  const res = await run('blkid', ['-p', '-o', 'export', device], { ...tc, okCodes: [0, 2] });
  if (res.code === 0) {
    const fields = Object.fromEntries(
      res.stdout
        .split('\n')
        .map((l) => l.split('='))
        .filter((kv) => kv.length >= 2)
        .map(([k, ...v]) => [k!, v.join('=')]),
    ) as Record<string, string>;
    if (fields.PTTYPE) return { kind: 'partitioned', table: fields.PTTYPE };
    if (fields.TYPE) return { kind: 'filesystem', type: fields.TYPE, uuid: fields.UUID };
    return { kind: 'unknown-data', detail: `blkid reports ${res.stdout.trim().replace(/\n/g, ' ')}` };
  }
  const fh = await fsp.open(device, 'r');
  try {
    const buf = Buffer.alloc(BLANK_CHECK_BYTES);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const firstNonZero = buf.subarray(0, bytesRead).findIndex((b) => b !== 0);
    if (firstNonZero >= 0) return { kind: 'unknown-data', detail: `no signature, but byte ${firstNonZero} of the first MiB is not zero` };
  } finally {
    await fh.close();
  }
  return { kind: 'blank' };
}
