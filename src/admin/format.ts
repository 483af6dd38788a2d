/** Output helpers of hppctl: sizes, aligned tables, JSON with 64-bit integers. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** 1536 → "1.5 KiB"; whole bytes below 1 KiB; "-" when unknown. */
export function formatBytes(n: bigint | null | undefined): string {
  if (n === null || n === undefined) return '-';
  if (n < 0n) return `-${formatBytes(-n)}`;
  if (n < 1024n) return `${n} B`;
  let unit = 0;
  let div = 1n;
  while (unit < UNITS.length - 1 && n >= div * 1024n) {
    div *= 1024n;
    unit++;
  }
  // One decimal, rounded half up, from integer arithmetic (no float precision loss on large values).
  const tenths = (n * 10n + div / 2n) / div;
  const text = tenths % 10n === 0n ? `${tenths / 10n}` : `${tenths / 10n}.${tenths % 10n}`;
  return `${text} ${UNITS[unit]}`;
}

/** committed / total with two decimals ("0.42"); "-" when total is 0 or unknown. */
export function formatRatio(r: number | null | undefined): string {
  if (r === null || r === undefined || !Number.isFinite(r)) return '-';
  return r.toFixed(2);
}

export interface Column {
  header: string;
  /** Right-align (numbers and sizes). */
  right?: boolean;
}

/**
 * Columns separated by two spaces, each as wide as its widest cell; the last column is not padded, so
 * long free text (details, targets) can go there.
 */
export function renderTable(columns: Column[], rows: string[][]): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? '';
        if (i === columns.length - 1) return c.right ? cell.padStart(widths[i]!) : cell;
        return c.right ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...rows.map(line)].join('\n') + '\n';
}

/** JSON for machines: bigints become decimal strings (JSON has no 64-bit integers), undefined fields vanish. */
export function toJson(value: unknown): string {
  return `${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`;
}
