/**
 * The reconcile decision as a pure function (desired shards x what the host has -> actions), so
 * it is tested without root and the keeper only executes. Level-triggered like a Kubernetes
 * controller: every pass recomputes the whole diff from observed state, so a failed action is
 * simply planned again next pass and a partial failure converges without remembering it.
 */
import type { ShardLimits } from '../cgroups/driver';
import type { DesiredShard } from './desired-shard';

/** What the keeper knows about one shard on this host, read before each pass. */
export interface ObservedShard {
  readonly shardId: string;
  /** The shard's cgroup exists on the host. */
  readonly cgroup: boolean;
  /**
   * `running`: a workload process is alive; `waiting`: crashed, a restart is scheduled (back-off);
   * `none`: no workload and none scheduled; `held`: migration holds it, hands off.
   */
  readonly run: 'running' | 'waiting' | 'none' | 'held';
  /** Limits last written successfully (undefined: never, or unknown). */
  readonly appliedLimits?: ShardLimits;
  /** The workload definition the current or last run was started from. */
  readonly spec?: WorkloadSpec;
}

/** The part of a DesiredShard that, when it changes, needs a new process (not just new limits). */
export type WorkloadSpec = Pick<DesiredShard, 'applicationId' | 'command' | 'env' | 'workingDirectory' | 'stateDirectory'>;

export type ReconcileAction =
  | { readonly kind: 'create'; readonly shardId: string; readonly desired: DesiredShard }
  | { readonly kind: 'set-limits'; readonly shardId: string; readonly limits: ShardLimits }
  | { readonly kind: 'start'; readonly shardId: string; readonly desired: DesiredShard }
  /**
   * The command, env, directories or application changed: stop the old run, start the new one.
   * `limits`: written between the two (they changed too).
   */
  | { readonly kind: 'replace'; readonly shardId: string; readonly desired: DesiredShard; readonly limits?: ShardLimits }
  | { readonly kind: 'stop'; readonly shardId: string }
  | { readonly kind: 'remove'; readonly shardId: string };

export function workloadSpec(desired: DesiredShard): WorkloadSpec {
  return {
    applicationId: desired.applicationId,
    command: desired.command,
    env: desired.env,
    workingDirectory: desired.workingDirectory,
    stateDirectory: desired.stateDirectory,
  };
}

export function sameSpec(a: WorkloadSpec, b: WorkloadSpec): boolean {
  const envA = Object.entries(a.env).sort(([x], [y]) => x.localeCompare(y));
  const envB = Object.entries(b.env).sort(([x], [y]) => x.localeCompare(y));
  return (
    a.applicationId === b.applicationId &&
    a.workingDirectory === b.workingDirectory &&
    a.stateDirectory === b.stateDirectory &&
    a.command.length === b.command.length &&
    a.command.every((arg, i) => arg === b.command[i]) &&
    JSON.stringify(envA) === JSON.stringify(envB)
  );
}

/** True when writing `desired` would change nothing: every field `desired` sets is already applied. */
export function limitsApplied(desired: ShardLimits, applied: ShardLimits | undefined): boolean {
  if (!applied) return false;
  if (desired.cpuCores !== undefined && desired.cpuCores !== applied.cpuCores) return false;
  if (desired.cpuPeriodMicros !== undefined && desired.cpuPeriodMicros !== applied.cpuPeriodMicros) return false;
  if (desired.memoryBytes !== undefined && desired.memoryBytes !== applied.memoryBytes) return false;
  if (desired.io !== undefined) {
    const io = applied.io;
    if (!io || io.device !== desired.io.device) return false;
    if (desired.io.readIops !== undefined && desired.io.readIops !== io.readIops) return false;
    if (desired.io.writeIops !== undefined && desired.io.writeIops !== io.writeIops) return false;
  }
  return true;
}

/**
 * Actions to converge the host, grouped per shard in execution order (a shard's later actions
 * are skipped when an earlier one fails). Shards sorted by id so passes are reproducible.
 * Held shards are never touched: migration owns them until it adopts or discards them.
 */
export function planReconcile(desired: readonly DesiredShard[], observed: readonly ObservedShard[]): ReconcileAction[][] {
  const seen = new Map(observed.map((o) => [o.shardId, o]));
  const wanted = new Map(desired.map((d) => [d.shardId, d]));
  const ids = [...new Set([...wanted.keys(), ...seen.keys()])].sort();
  const plan: ReconcileAction[][] = [];
  for (const shardId of ids) {
    const want = wanted.get(shardId);
    const have = seen.get(shardId);
    const steps: ReconcileAction[] = [];
    if (have?.run === 'held') continue;
    if (!want) {
      // `have` is defined: ids come from desired or observed. Remove also forgets the record.
      if (have && have.run !== 'none') steps.push({ kind: 'stop', shardId });
      steps.push({ kind: 'remove', shardId });
    } else {
      const run = have?.run ?? 'none';
      const specChanged = have?.spec !== undefined && !sameSpec(have.spec, workloadSpec(want));
      const replacing = run !== 'none' && specChanged && have?.cgroup === true;
      const limitsDue = !have?.cgroup || !limitsApplied(want.limits, have.appliedLimits);
      if (!have?.cgroup) steps.push({ kind: 'create', shardId, desired: want });
      // A replaced workload gets its new limits once the old run has stopped: written before, a
      // memory limit below what the old run uses is refused (MEMORY_IN_USE), the replace behind
      // it never came, and a plan giving a shard a leaner workload never converged.
      if (limitsDue && !replacing) steps.push({ kind: 'set-limits', shardId, limits: want.limits });
      if (run === 'none') steps.push({ kind: 'start', shardId, desired: want });
      else if (specChanged) steps.push({ kind: 'replace', shardId, desired: want, ...(limitsDue && replacing ? { limits: want.limits } : {}) });
      // running or waiting with the same spec: the supervisor owns restarts, nothing to do.
    }
    if (steps.length > 0) plan.push(steps);
  }
  return plan;
}
