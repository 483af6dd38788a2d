import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAtomicTempName, writeFileAtomic } from '../../src/system/atomic-file.js';

describe('writeFileAtomic', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'hpp-unit-atomic-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the file with the content and mode 0600, leaving no temp file', async () => {
    const f = path.join(dir, 'rec.json');
    await writeFileAtomic(f, '{"a":1}\n');
    expect(readFileSync(f, 'utf8')).toBe('{"a":1}\n');
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['rec.json']);
  });

  it('replaces existing content (also a longer one) and takes a Buffer and a mode', async () => {
    const f = path.join(dir, 'rec.json');
    writeFileSync(f, 'x'.repeat(10_000));
    await writeFileAtomic(f, Buffer.from('short'), { mode: 0o640 });
    expect(readFileSync(f, 'utf8')).toBe('short');
    expect(statSync(f).mode & 0o777).toBe(0o640);
    await writeFileAtomic(f, 'again');
    expect(readFileSync(f, 'utf8')).toBe('again');
    expect(readdirSync(dir)).toEqual(['rec.json']);
  });

  it('concurrent writers: the file holds one whole version and no temp file is left', async () => {
    const f = path.join(dir, 'rec.json');
    const versions = Array.from({ length: 20 }, (_, i) => JSON.stringify({ i, pad: String(i).repeat(1000) }));
    await Promise.all(versions.map((v) => writeFileAtomic(f, v)));
    expect(versions).toContain(readFileSync(f, 'utf8'));
    expect(readdirSync(dir)).toEqual(['rec.json']);
  });

  it('fails cleanly when the directory is missing, and when the target is a directory', async () => {
    await expect(writeFileAtomic(path.join(dir, 'nope', 'x.json'), 'x')).rejects.toMatchObject({ code: 'ENOENT' });
    const sub = path.join(dir, 'sub');
    (await import('node:fs')).mkdirSync(sub);
    await expect(writeFileAtomic(sub, 'x')).rejects.toThrow();
    // The failed rename removed its temp file.
    expect(readdirSync(dir)).toEqual(['sub']);
  });

  it('its temp names are recognised by isAtomicTempName, ordinary names are not', () => {
    expect(isAtomicTempName('.rec.json.tmp-1234-0a1b2c3d')).toBe(true);
    expect(isAtomicTempName('rec.json')).toBe(false);
    expect(isAtomicTempName('.rec.json')).toBe(false);
    expect(isAtomicTempName('.rec.json.tmp-1234-0a1b2c3')).toBe(false);
    expect(isAtomicTempName('.rec.json.tmp-x-0a1b2c3d')).toBe(false);
  });
});
