/**
 * Whether a plan document that just arrived may replace the running one. Pure: the text, the
 * running plan and the time in; a decision out. The agent never goes backwards: a lower
 * generation is refused, and so is different content under the same generation (two plans
 * with one generation would make "which one runs" depend on arrival order).
 */
import { formatFieldError, type FieldError } from '../../src/errors';
import { checkPlan } from '../../src/contracts/plan';
import type { Plan } from '../../src/contracts/plan-schema';

/** Why a plan was refused; the label of shardform_plan_rejected_total. */
export type PlanRejectionReason = 'unreadable' | 'invalid' | 'generation-backwards' | 'generation-not-increased' | 'unusable-here';

export interface PlanRejection {
  readonly reason: PlanRejectionReason;
  /** One readable line (the log message and the API's `message`). */
  readonly message: string;
  /** Field errors for `invalid`, each naming the field and the bad value. */
  readonly errors: readonly FieldError[];
  /** Generation and digest of the refused plan, when it got far enough to have them. */
  readonly generation?: number;
  readonly digest?: string;
  readonly source: string;
  /** ISO time of the refusal. */
  readonly at: string;
}

export type PlanJudgement =
  | { readonly kind: 'accept'; readonly plan: Plan }
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'reject'; readonly rejection: PlanRejection };

export function judgePlanText(text: string, running: Plan | undefined, source: string, at: Date): PlanJudgement {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    const errors = [{ field: '(root)', message: `not JSON: ${(error as Error).message}` }];
    return reject({ reason: 'invalid', errors, source, at, message: `plan from ${source} is not JSON: ${(error as Error).message}` });
  }
  return judgePlan(data, running, source, at);
}

export function judgePlan(data: unknown, running: Plan | undefined, source: string, at: Date): PlanJudgement {
  const check = checkPlan(data);
  const claimed = claimedIdentity(data);
  if (!check.ok) {
    const shown = check.errors.slice(0, 3).map(formatFieldError).join('; ');
    const more = check.errors.length > 3 ? ` (and ${check.errors.length - 3} more)` : '';
    return reject({ reason: 'invalid', errors: check.errors, source, at, ...claimed, message: `plan from ${source} is invalid: ${shown}${more}` });
  }
  const plan = check.plan;
  if (running === undefined) return { kind: 'accept', plan };
  if (plan.digest === running.digest) return { kind: 'unchanged' };
  const identity = { generation: plan.generation, digest: plan.digest };
  if (plan.generation < running.generation) {
    return reject({
      reason: 'generation-backwards',
      errors: [{ field: 'generation', message: `is lower than the running generation ${running.generation}; agents never go backwards`, value: plan.generation }],
      source,
      at,
      ...identity,
      message: `plan from ${source} has generation ${plan.generation}, lower than the running ${running.generation}; keeping generation ${running.generation}`,
    });
  }
  if (plan.generation === running.generation) {
    return reject({
      reason: 'generation-not-increased',
      errors: [{ field: 'generation', message: `content changed but the generation did not increase (running ${running.generation} is ${running.digest})`, value: plan.generation }],
      source,
      at,
      ...identity,
      message: `plan from ${source} changes generation ${plan.generation}'s content without a higher generation; bump generation to roll it out`,
    });
  }
  return { kind: 'accept', plan };
}

/**
 * A valid plan this host cannot run (its fleet token cannot be read here, or its state directory
 * cannot keep it as the last good plan): refused like a bad plan. Accepting it would make it the
 * last good plan, which the agent would then refuse at its next start (or not know at all).
 */
export function unusableHere(plan: Plan, problem: FieldError, source: string, at: Date): PlanJudgement {
  return reject({
    reason: 'unusable-here',
    errors: [problem],
    source,
    at,
    generation: plan.generation,
    digest: plan.digest,
    message: `plan from ${source} (generation ${plan.generation}) cannot be run on this host: ${problem.message}`,
  });
}

/** A fetch that failed (file missing, HTTP error): refused like a bad plan, the old one keeps running. */
export function unreadable(message: string, source: string, at: Date): PlanJudgement {
  return reject({ reason: 'unreadable', errors: [{ field: '(source)', message, value: source }], source, at, message: `plan from ${source} cannot be read: ${message}` });
}

function reject(r: Omit<PlanRejection, 'at'> & { at: Date }): PlanJudgement {
  return { kind: 'reject', rejection: { ...r, at: r.at.toISOString() } };
}

/** Generation and digest as the document claims them, for reporting a refused plan. */
function claimedIdentity(data: unknown): { generation?: number; digest?: string } {
  if (data === null || typeof data !== 'object') return {};
  const { generation, digest } = data as Record<string, unknown>;
  return {
    ...(typeof generation === 'number' ? { generation } : {}),
    ...(typeof digest === 'string' ? { digest } : {}),
  };
}
