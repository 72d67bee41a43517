/**
 * Human-friendly quantities ("2GiB", "500m" cores, "15m") parsed once at the edge into plain
 * numbers with units in their names. Suffixes follow Kubernetes resource quantities
 * (k8s.io/apimachinery/pkg/api/resource) for bytes and CPU, and Go's time.ParseDuration for
 * durations, because those are what our users already write.
 */
import { ShardformError, showValue } from '../errors';

/** A quantity as users write it: a number in base units or a string with a suffix. */
export type Quantity = number | string;

const BYTE_SUFFIXES: Record<string, number> = {
  '': 1,
  B: 1,
  k: 1e3, K: 1e3, KB: 1e3,
  M: 1e6, MB: 1e6,
  G: 1e9, GB: 1e9,
  T: 1e12, TB: 1e12,
  Ki: 2 ** 10, KiB: 2 ** 10,
  Mi: 2 ** 20, MiB: 2 ** 20,
  Gi: 2 ** 30, GiB: 2 ** 30,
  Ti: 2 ** 40, TiB: 2 ** 40,
};

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

function invalid(field: string, value: unknown, expected: string): ShardformError {
  return new ShardformError('INVALID_QUANTITY', field, value, `${field}: ${showValue(value)} is not ${expected}`);
}

function finiteNonNegative(field: string, value: number, expected: string): number {
  if (!Number.isFinite(value) || value < 0) throw invalid(field, value, expected);
  return value;
}

/** Bytes: `2GiB`, `512Mi`, `1.5G`, `1048576`. Returns a whole number of bytes. */
export function parseBytes(value: Quantity, field = 'memory'): number {
  const expected = 'a byte quantity such as "512MiB", "2GiB", "1G" or a whole number of bytes';
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw invalid(field, value, expected);
    return finiteNonNegative(field, value, expected);
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(String(value));
  const multiplier = match ? BYTE_SUFFIXES[match[2]] : undefined;
  if (!match || multiplier === undefined) throw invalid(field, value, expected);
  const bytes = Math.round(Number(match[1]) * multiplier);
  // A long enough run of digits is Infinity as a number, which JSON would send as null.
  if (!Number.isFinite(bytes)) throw invalid(field, value, expected);
  return bytes;
}

/** CPU cores: `500m` (millicores), `0.5`, `2`. */
export function parseCpuCores(value: Quantity, field = 'cpu'): number {
  const expected = 'a CPU quantity such as "500m", "0.5" or 2 (cores)';
  let millicores: number;
  if (typeof value === 'number') {
    millicores = finiteNonNegative(field, value, expected) * 1000;
  } else {
    const match = /^\s*(\d+(?:\.\d+)?)(m?)\s*$/.exec(String(value));
    if (!match) throw invalid(field, value, expected);
    millicores = Number(match[1]) * (match[2] === 'm' ? 1 : 1000);
    if (!Number.isFinite(millicores)) throw invalid(field, value, expected);
  }
  // A millicore is the finest CPU quantity (as in Kubernetes): rounding "0.0004" to 0 or "1.5m" to
  // 2m in silence would set a limit nobody wrote.
  if (Math.abs(millicores - Math.round(millicores)) > 1e-6)
    throw invalid(field, value, 'a whole number of millicores (1m = 0.001 cores): CPU quantities are no finer than 1m');
  return Math.round(millicores) / 1000;
}

/** Durations: `15m`, `1h30m`, `90s`, `250ms`, `7d`, or a number of seconds. Returns seconds. */
export function parseDurationSeconds(value: Quantity, field = 'duration'): number {
  const expected = 'a duration such as "90s", "15m", "1h30m", "7d" or a number of seconds';
  if (typeof value === 'number') return finiteNonNegative(field, value, expected);
  const text = String(value).trim();
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let consumed = 0;
  let match: RegExpExecArray | null;
  while ((match = part.exec(text)) !== null) {
    total += Number(match[1]) * DURATION_UNITS[match[2]];
    consumed = part.lastIndex;
  }
  if (text.length === 0 || consumed !== text.length || !Number.isFinite(total)) throw invalid(field, value, expected);
  return Math.round(total * 1000) / 1000;
}

/** Formats bytes for people: 2147483648 -> "2GiB", 1536 -> "1.5KiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${Number(value.toFixed(2))}${units[unit]}`;
}

/** Formats seconds for people: 900 -> "15m", 5400 -> "1h30m", 0.25 -> "250ms". */
export function formatDuration(seconds: number): string {
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  const parts: string[] = [];
  let rest = Math.round(seconds);
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('') || '0s';
}
