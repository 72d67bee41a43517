/**
 * How migration (host-agent/migration) and the keeper hand a shard to each other, so the keeper
 * never restarts a shard that migration froze, dumped or killed on purpose, and supervises a
 * shard whose processes CRIU restored into its cgroup. See docs/shard-processes.md for the
 * sequence on each side. Implemented by ShardKeeper.
 *
 * A held shard is recorded as held under the agent's state directory, so an agent restart in
 * the middle of a migration keeps it held: start() neither adopts nor restarts it, apply()
 * neither starts, resizes, stops nor removes it, drain() reports it as not drained.
 */
import type { ShardStatus } from '../runner/shard-status';
import type { DesiredShard } from './desired-shard';

export interface IncomingShard {
  /** cgroup.procs of every hierarchy: what `criu restore` must put the restored tree into. */
  readonly procsFiles: readonly string[];
  /** Per-hierarchy cgroup directory (controller name or 'unified' -> absolute path). */
  readonly paths: Readonly<Record<string, string>>;
}

export interface ShardHandover {
  /**
   * Destination, step `prepared`: creates the shard's cgroup with `desired.limits` and holds it
   * (no workload is started). Idempotent for a shard already held; refuses (SHARD_EXISTS) a
   * shard this host already runs.
   */
  prepareIncoming(desired: DesiredShard): Promise<IncomingShard>;
  /**
   * Source, before `frozen`: stops supervising the shard — no restart when its processes stop,
   * no exit polling — and leaves processes, cgroup and limits as they are. Returns the main pid
   * (the PID-namespace init, what `criu dump -t` takes) when one runs.
   */
  release(shardId: string): Promise<{ pid?: number }>;
  /**
   * Either side: supervise the workload now in the shard's cgroup, found as the process whose
   * innermost NSpid is 1 — the destination after `criu restore`, or the source after an abort
   * (thaw first). `desired` replaces the recorded definition (required on a host that has no
   * record of the shard). Emits 'adopted'. SHARD_NOT_RUNNING when the cgroup holds no such process.
   */
  adopt(shardId: string, desired?: DesiredShard): Promise<ShardStatus>;
  /**
   * Either side: SIGKILL everything in the shard (thawing it first), remove its cgroup and
   * forget it — the source after `committed` (step `released`), the destination on abort.
   * Idempotent: discarding an unknown shard does nothing.
   */
  discard(shardId: string): Promise<void>;
}

/**
 * What the `restart` strategy needs beyond the hand-over: the workload is stopped and started
 * again instead of checkpointed and restored. Implemented by ShardKeeper (it owns the runner).
 */
export interface RestartHandover {
  /** Source, step `frozen` (restart: "stopped"): SIGTERM, grace, SIGKILL; the cgroup stays and the shard stays held. */
  stopHeld(shardId: string): Promise<void>;
  /**
   * Either side: starts a new run of a held shard in its cgroup and supervises it again — the
   * source when a migration aborts after its workload was stopped. `desired` replaces the
   * recorded definition. With `keepHeld` (the destination, once the state directory arrived)
   * the new run stays held — not supervised, left alone by reconcile — until `adopt` after the
   * commit, like a restored checkpoint shard: until then the assignment still names the source.
   */
  startHeld(shardId: string, desired?: DesiredShard, opts?: { keepHeld?: boolean }): Promise<ShardStatus>;
}
