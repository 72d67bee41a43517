/** The one way trace readers fail: INVALID_TRACE naming the file, the line and the field. */
import { ShardformError, showValue } from '../errors';

export function traceError(file: string, line: number, field: string, value: unknown, expected: string): ShardformError {
  return new ShardformError('INVALID_TRACE', `${file}:${line}:${field}`, value, `${file}: line ${line}: field "${field}": ${showValue(value)} is not ${expected}`);
}

/** Timestamps after this many seconds since the epoch (year 2286) must be milliseconds. */
const MAX_UNIX_SECONDS = 1e10;

/** A trace timestamp in Unix seconds, refused when it looks like milliseconds. */
export function checkUnixSeconds(seconds: number, file: string, line: number, field: string, text: string): number {
  if (seconds > MAX_UNIX_SECONDS) throw traceError(file, line, field, text, 'Unix seconds (this value looks like milliseconds)');
  return seconds;
}

/**
 * A trace's number cell in decimal (`12`, `0.5`, `.5`, `1e3`), else NaN: Number() would also read
 * `0x10` as 16, `0b11` and `0o17`, and `Infinity`, turning a corrupted cell into a plausible load.
 */
export function parseDecimal(text: string): number {
  return /^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(text) ? Number(text) : NaN;
}
