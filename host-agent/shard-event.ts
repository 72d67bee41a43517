/**
 * What the kernel side of the agent reports about shards (runner, reconcile, drain). The agent
 * injects a sink; the services side persists events in the store and serves them on the API.
 */

export type ShardEventType =
  | 'created' // cgroup created
  | 'started' // workload started (first time or after back-off)
  | 'exited' // workload exited (detail: exitCode | signal, runSeconds)
  | 'oom-killed' // the OOM killer killed a process of the shard (detail: oomKills, memoryBytes)
  | 'restarting' // a restart is scheduled (detail: attempt, delaySeconds)
  | 'crash-loop' // restarts keep failing quickly; back-off is at its ceiling (detail: attempt, delaySeconds)
  | 'adopted' // a shard found running in its cgroup after an agent restart (detail: pid)
  | 'resized' // limits changed in place (detail: limits)
  | 'frozen'
  | 'thawed'
  | 'stopped' // stopped on purpose (drain, removal from the plan)
  | 'removed' // cgroup removed
  | 'failed'; // an action failed (detail: action, message); reconcile retries

export interface ShardEvent {
  readonly type: ShardEventType;
  readonly shardId: string;
  readonly applicationId: string;
  /** ISO 8601 UTC with milliseconds, e.g. 2026-11-25T00:40:00.000Z. */
  readonly at: string;
  readonly detail: Readonly<Record<string, unknown>>;
}

export interface ShardEventSink {
  emit(event: ShardEvent): void;
}

/** A sink that keeps events in memory (tests, and the agent's recent-events buffer). */
export class MemoryEventSink implements ShardEventSink {
  readonly events: ShardEvent[] = [];
  emit(event: ShardEvent): void {
    this.events.push(event);
  }
  ofType(type: ShardEventType, shardId?: string): ShardEvent[] {
    return this.events.filter((e) => e.type === type && (shardId === undefined || e.shardId === shardId));
  }
}
