/**
 * How an application's shards move between hosts, as a value class with static factories
 * (cdk8s-plus style) instead of a string plus loosely related flags: `preCopy` only means
 * something for checkpoints, so only `checkpoint()` takes it.
 */
import { MAX_MIGRATION_TIMEOUT_SECONDS, type Application } from '../src/contracts/plan-schema';
import { parseDurationSeconds, type Quantity } from '../src/contracts/quantities';
import { ShardformError, showValue } from '../src/errors';

export interface CheckpointOptions {
  /**
   * Copy memory with iterative CRIU pre-dumps while the shard keeps running, so the final
   * freeze only copies what changed (shorter downtime, more bytes moved).
   * @default false
   */
  readonly preCopy?: boolean;
  /**
   * Give up and resume the shard on its source host if the migration takes longer.
   * Whole seconds, from 1s to 1d (what a destination agent accepts).
   * @default '5m'
   */
  readonly timeout?: Quantity;
}

export interface RestartOptions {
  /**
   * Give up and restart the shard on its source host if stop + move + start takes longer.
   * Whole seconds, from 1s to 1d (what a destination agent accepts).
   * @default '5m'
   */
  readonly timeout?: Quantity;
}

const DEFAULT_TIMEOUT = '5m';

export class MigrationStrategy {
  /** Freeze, checkpoint with CRIU, stream the image, restore on the destination. */
  static checkpoint(options: CheckpointOptions = {}): MigrationStrategy {
    if (options.preCopy !== undefined && typeof options.preCopy !== 'boolean')
      throw new ShardformError('INVALID_PROPS', 'migration.preCopy', options.preCopy, `migration.preCopy: ${showValue(options.preCopy)} is not a boolean; use true or false`);
    return new MigrationStrategy('checkpoint', options.preCopy ?? false, MigrationStrategy.timeout(options.timeout));
  }

  /**
   * Stop the processes, move the state directory, start them on the destination. For shards
   * that hold established TCP connections or cannot be checkpointed.
   */
  static restart(options: RestartOptions = {}): MigrationStrategy {
    return new MigrationStrategy('restart', false, MigrationStrategy.timeout(options.timeout));
  }

  private static timeout(value: Quantity | undefined): number {
    let seconds: number;
    try {
      seconds = parseDurationSeconds(value ?? DEFAULT_TIMEOUT, 'migration.timeout');
    } catch (error) {
      // A prop like any other: INVALID_PROPS, not the parser's INVALID_QUANTITY.
      if (error instanceof ShardformError) throw new ShardformError('INVALID_PROPS', error.field, error.value, error.message);
      throw error;
    }
    if (seconds < 1) throw new ShardformError('INVALID_PROPS', 'migration.timeout', value, `migration.timeout: ${showValue(value)} is too short; use at least 1s`);
    // A destination agent's prepare takes the timeout as whole seconds up to a day and refuses
    // anything else, so a plan with "2d" or "90500ms" would have every migration refused.
    if (seconds > MAX_MIGRATION_TIMEOUT_SECONDS)
      throw new ShardformError('INVALID_PROPS', 'migration.timeout', value, `migration.timeout: ${showValue(value)} is too long; use at most 1d (${MAX_MIGRATION_TIMEOUT_SECONDS}s), the longest a destination agent accepts`);
    if (!Number.isInteger(seconds))
      throw new ShardformError('INVALID_PROPS', 'migration.timeout', value, `migration.timeout: ${showValue(value)} is not whole seconds; use e.g. "90s" (agents time migrations in whole seconds)`);
    return seconds;
  }

  private constructor(
    readonly strategy: 'checkpoint' | 'restart',
    readonly preCopy: boolean,
    readonly timeoutSeconds: number,
  ) {}

  /** The plan's `migration` field. */
  toPlan(): Application['migration'] {
    return { strategy: this.strategy, timeoutSeconds: this.timeoutSeconds, preCopy: this.preCopy };
  }
}
