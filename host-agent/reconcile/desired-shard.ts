import type { ShardLimits } from '../cgroups/driver';

/**
 * One shard this host should run, derived from the plan and the coordinator's assignments
 * (see desiredShardsForHost). Everything the runner needs to start it again from nothing.
 */
export interface DesiredShard {
  readonly shardId: string;
  readonly applicationId: string;
  readonly limits: ShardLimits;
  /** argv; never a shell string. */
  readonly command: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Absolute; default the shard's state directory. */
  readonly workingDirectory?: string;
  /** The application's state directory; the shard's own is `<stateDirectory>/<shardId>`. */
  readonly stateDirectory: string;
}
