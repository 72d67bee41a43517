/** The one way trace readers fail: INVALID_TRACE naming the file, the line and the field. */
import { ShardformError, showValue } from '../errors';

export function traceError(file: string, line: number, field: string, value: unknown, expected: string): ShardformError {
  return new ShardformError('INVALID_TRACE', `${file}:${line}:${field}`, value, `${file}: line ${line}: field "${field}": ${showValue(value)} is not ${expected}`);
}
