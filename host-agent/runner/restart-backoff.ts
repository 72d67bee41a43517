/**
 * When to restart a crashed workload: a pure schedule, so it is tested without processes or
 * clocks. Exponential back-off doubling from `baseSeconds` up to `ceilingSeconds`, reset once a
 * run has stayed up for `resetAfterSeconds`. The shape follows Kubernetes' container restart
 * back-off (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#container-restarts:
 * 10 s, 20 s, 40 s, ... capped at 300 s, reset after 10 minutes of running); our base is 1 s
 * because a shard is one process tree on one host, not a pod that an image pull might delay.
 */
import { invalidOption } from '../errors';

export interface BackoffPolicy {
  /** Delay before the first restart. @default 1 */
  readonly baseSeconds: number;
  /** Longest delay; a shard whose delay has reached it is in crash-loop. @default 300 */
  readonly ceilingSeconds: number;
  /** A run at least this long forgets earlier failures (the next crash restarts after baseSeconds). @default 600 */
  readonly resetAfterSeconds: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseSeconds: 1, ceilingSeconds: 300, resetAfterSeconds: 600 };

export function checkBackoffPolicy(policy: BackoffPolicy): BackoffPolicy {
  if (!(policy.baseSeconds > 0)) throw invalidOption('backoff.baseSeconds', policy.baseSeconds, 'use a number of seconds greater than 0');
  if (!(policy.ceilingSeconds >= policy.baseSeconds)) {
    throw invalidOption('backoff.ceilingSeconds', policy.ceilingSeconds, `use at least backoff.baseSeconds (${policy.baseSeconds})`);
  }
  if (!(policy.resetAfterSeconds > 0)) throw invalidOption('backoff.resetAfterSeconds', policy.resetAfterSeconds, 'use a number of seconds greater than 0');
  return policy;
}

export interface RestartDecision {
  /** Consecutive failed runs, this one included (1 for the first crash after a good run). */
  readonly attempt: number;
  readonly delaySeconds: number;
  /** True once the delay is at the ceiling: restarts keep failing quickly. */
  readonly crashLoop: boolean;
}

/**
 * The restart after a run that lasted `runSeconds`, given how many consecutive failed runs
 * came before it (`previousFailures`).
 */
export function nextRestart(policy: BackoffPolicy, previousFailures: number, runSeconds: number): RestartDecision {
  const attempt = runSeconds >= policy.resetAfterSeconds ? 1 : previousFailures + 1;
  // 2^(attempt-1) overflows to Infinity for huge attempts; Math.min keeps the ceiling.
  const delaySeconds = Math.min(policy.ceilingSeconds, policy.baseSeconds * 2 ** (attempt - 1));
  return { attempt, delaySeconds, crashLoop: delaySeconds >= policy.ceilingSeconds };
}
