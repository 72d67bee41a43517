import type { ShardLimits } from '../cgroups/driver';
import type { ShardStatus } from '../runner/shard-status';
import type { DesiredShard } from './desired-shard';

/** What one reconcile pass did; failed actions are retried by the next pass. */
export interface ReconcileReport {
  readonly actions: readonly { kind: string; shardId: string; ok: boolean; error?: string }[];
  readonly converged: boolean;
}

/**
 * Reads the desired shards at the pass's turn. A list read before it may be stale by then: a
 * migration that committed meanwhile moved a shard (its assignment) and handed it over (discard
 * on the source, adopt on the destination), and acting on the old list would start it again on
 * the source or stop it on the destination. Undefined: act on nothing this pass (the report is
 * then empty and not converged).
 */
export type DesiredShardsRead = () => Promise<readonly DesiredShard[] | undefined>;

/**
 * The kernel side of the agent as the daemon (host-agent/agent.ts) sees it: cgroups plus
 * the processes in them. Implemented by ShardKeeper (shard-keeper.ts).
 */
export interface ShardManager {
  /** Adopts whatever already runs in this host's cgroups (agent restart) and starts watching exits. */
  start(): Promise<ReconcileReport>;
  /**
   * Converges the host to `desired`: creates, resizes in place, starts, stops and removes. Idempotent.
   * Given a function, calls it once the pass has its turn, after every hand-over queued before it
   * (DesiredShardsRead).
   */
  apply(desired: readonly DesiredShard[] | DesiredShardsRead): Promise<ReconcileReport>;
  /** Changes limits in place; the workload keeps running (same pid). */
  resize(shardId: string, limits: ShardLimits): Promise<void>;
  freeze(shardId: string): Promise<void>;
  thaw(shardId: string): Promise<void>;
  /**
   * Stops every shard cleanly (SIGTERM, grace, SIGKILL) and removes their cgroups. Also without
   * start() first (the local drain): the shards are then found by their records and cgroups, and
   * none is adopted, supervised or restarted on the way.
   */
  drain(opts?: { graceSeconds?: number }): Promise<ReconcileReport>;
  status(): ShardStatus[];
  /** The sampler's reading of a shard's OOM counter, so the manager need not read it again (optional). */
  noteOomKills?(shardId: string, oomKills: number, atSeconds: number): void;
  /** Stops supervising (timers, watchers); workloads keep running for the next agent to adopt. */
  close(): Promise<void>;
}
