/** A bad flag value for any command: INVALID_ARGUMENT naming the flag and the value (exit 2 through exitCodeFor). */
import { ShardformError, showValue } from '../../errors';

export function invalidFlag(flag: string, value: unknown, expected: string): ShardformError {
  return new ShardformError('INVALID_ARGUMENT', flag, value, `${flag}: ${showValue(value)} is not ${expected}`);
}
