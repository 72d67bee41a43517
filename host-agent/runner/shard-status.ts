import type { ShardLimits } from '../cgroups/driver';

/**
 * What the runner knows about one shard's workload. `running` covers both "started by this
 * agent" and "adopted after an agent restart"; `backoff` waits before a restart; `crash-loop`
 * is `backoff` whose delay reached the ceiling (restarts keep failing quickly); `held`: migration
 * has taken the shard over (ShardHandover.release/prepareIncoming) and the keeper neither
 * restarts, stops nor removes it until it is adopted or discarded.
 */
export type ShardRunState = 'starting' | 'running' | 'backoff' | 'crash-loop' | 'stopping' | 'stopped' | 'held';

export interface ShardExit {
  /**
   * Exit code of the workload when it exited on its own, else null. Both exitCode and signal
   * are null when the status is unknown: the run was adopted (not a child of this agent), so
   * only its disappearance and the cgroup's OOM counter are known (docs/shard-processes.md).
   */
  readonly exitCode: number | null;
  /** Signal that ended it (e.g. SIGKILL from the OOM killer), else null. */
  readonly signal: string | null;
  readonly at: string;
  /** True when the shard's OOM-kill counter rose during this run. */
  readonly oomKilled: boolean;
}

export interface ShardStatus {
  readonly shardId: string;
  readonly applicationId: string;
  readonly state: ShardRunState;
  /** The workload's main pid as the agent sees it (the PID-namespace init; see docs/shard-processes.md). */
  readonly pid?: number;
  readonly startedAt?: string;
  /** Restarts since the agent (re)started supervising this shard (persisted across agent restarts). */
  readonly restarts: number;
  readonly lastExit?: ShardExit;
  readonly nextRestartAt?: string;
  readonly adopted: boolean;
  readonly frozen: boolean;
  readonly limits: ShardLimits;
}
