import { describe, expect, it } from 'vitest';
import { formatBytes, formatRatio, renderTable, toJson } from '../../src/admin/format.js';

describe('hppctl output', () => {
  it('formats sizes in binary units with one decimal', () => {
    expect(formatBytes(0n)).toBe('0 B');
    expect(formatBytes(1023n)).toBe('1023 B');
    expect(formatBytes(1024n)).toBe('1 KiB');
    expect(formatBytes(1536n)).toBe('1.5 KiB');
    expect(formatBytes(64n * 1024n * 1024n)).toBe('64 MiB');
    expect(formatBytes(1024n ** 3n * 3n + 1024n ** 3n / 10n)).toBe('3.1 GiB');
    expect(formatBytes(2n ** 63n - 1n)).toBe('8 EiB');
    expect(formatBytes(null)).toBe('-');
    expect(formatRatio(0.4249)).toBe('0.42');
    expect(formatRatio(null)).toBe('-');
  });

  it('aligns table columns, right-aligning numbers, leaving the last column unpadded', () => {
    const t = renderTable(
      [{ header: 'NAME' }, { header: 'SIZE', right: true }, { header: 'NOTE' }],
      [
        ['a', '1 KiB', 'x'],
        ['longer-name', '100 MiB', ''],
      ],
    );
    expect(t).toBe(['NAME            SIZE  NOTE', 'a              1 KiB  x', 'longer-name  100 MiB', ''].join('\n'));
  });

  it('prints bigints as strings in JSON', () => {
    expect(JSON.parse(toJson({ a: 2n ** 64n, b: [1n], c: undefined, d: null }))).toEqual({ a: '18446744073709551616', b: ['1'], d: null });
  });
});
