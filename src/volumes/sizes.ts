import { invalidInput } from '../errors.js';

const FACTORS: Record<string, bigint> = {
  '': 1n,
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  Pi: 1n << 50n,
  k: 10n ** 3n,
  M: 10n ** 6n,
  G: 10n ** 9n,
  T: 10n ** 12n,
  P: 10n ** 15n,
};

/**
 * A size as Kubernetes writes quantities, in bytes: `1073741824`, `10Gi`, `1.5Gi`, `500M`; a fraction of a
 * byte is rounded up. INVALID_ARGUMENT naming `field` for anything else (no negative, no exponent).
 */
export function parseSize(text: string, field: string): bigint {
  const m = /^(\d+)(?:\.(\d+))?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$/.exec(text.trim());
  if (!m) throw invalidInput(`${field} ${JSON.stringify(text)} is not a size such as 1Gi, 512Mi or 1073741824`);
  const factor = FACTORS[m[3] ?? '']!;
  const frac = m[2] ?? '';
  const scale = 10n ** BigInt(frac.length);
  const scaled = (BigInt(m[1]!) * scale + BigInt(frac || '0')) * factor;
  return (scaled + scale - 1n) / scale;
}
