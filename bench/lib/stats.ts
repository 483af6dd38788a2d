// Percentiles and summary statistics of samples, and rounding for reports.

export interface Stats {
  n: number;
  median: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** Percentile by linear interpolation between closest ranks (R-7, what numpy does by default). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = (sorted.length - 1) * p;
  const lo = sorted[Math.floor(idx)]!;
  const hi = sorted[Math.ceil(idx)]!;
  return lo + (hi - lo) * (idx - Math.floor(idx));
}

export function stats(values: readonly number[]): Stats {
  const s = [...values].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    median: percentile(s, 0.5),
    p90: percentile(s, 0.9),
    p99: percentile(s, 0.99),
    // undefined for no samples, as JSON leaves them out
    min: s[0]!,
    max: s[s.length - 1]!,
    mean: s.length ? sum / s.length : NaN,
  };
}

export const median = (values: readonly number[]): number => percentile([...values].sort((a, b) => a - b), 0.5);

/** Round for reports: 3 significant-ish decimals without noise. */
export function round<T>(x: T, digits = 3): T {
  if (typeof x !== 'number' || !Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return (Math.round(x * f) / f) as T;
}

export function roundDeep(v: unknown, digits = 3): unknown {
  if (typeof v === 'number') return round(v, digits);
  if (Array.isArray(v)) return v.map((x) => roundDeep(x, digits));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, roundDeep(x, digits)]));
  return v;
}
