/**
 * Reading and signing plans: the one entry through which a plan from outside (file, URL,
 * CLI argument) becomes a typed Plan. Schema first, then semantic checks, then the digest.
 */
import { readFileSync } from 'node:fs';
import { ShardformError, ValidationFailedError, type FieldError } from '../errors';
import { canonicalJson, sha256Hex } from './canonical-json';
import { semanticPlanErrors } from './plan-checks';
import { PlanSchema, type Host, type Plan, type UnsignedPlan } from './plan-schema';
import { compileSchema } from './schema-validator';

export const checkPlanSchema = compileSchema(PlanSchema);

/** sha256 over the canonical JSON of the plan without its digest field. */
export function planDigest(plan: UnsignedPlan | Plan): string {
  const { digest: _ignored, ...content } = plan as Plan;
  return `sha256:${sha256Hex(canonicalJson(content))}`;
}

/** Adds the digest; the result serializes deterministically with `serializePlan`. */
export function signPlan(plan: UnsignedPlan): Plan {
  return { ...plan, digest: planDigest(plan) };
}

/** Stable, human-diffable bytes: canonical key order, two-space indent, trailing newline. */
export function serializePlan(plan: Plan): string {
  return `${JSON.stringify(JSON.parse(canonicalJson(plan)), null, 2)}\n`;
}

export type PlanCheck = { ok: true; plan: Plan } | { ok: false; errors: FieldError[] };

/** Every problem with a parsed document: schema, semantics and digest. */
export function checkPlan(data: unknown): PlanCheck {
  const schema = checkPlanSchema(data);
  if (!schema.ok) return schema;
  const errors = semanticPlanErrors(schema.value);
  const expected = planDigest(schema.value);
  if (schema.value.digest !== expected)
    errors.push({ field: 'digest', message: `does not match the plan's content (expected ${expected}); the plan was edited after synthesis`, value: schema.value.digest });
  return errors.length === 0 ? { ok: true, plan: schema.value } : { ok: false, errors };
}

export function parsePlanText(text: string, source: string): Plan {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new ValidationFailedError('INVALID_PLAN', [{ field: '(root)', message: `not JSON: ${(error as Error).message}` }], `plan ${source}`);
  }
  const result = checkPlan(data);
  if (!result.ok) throw new ValidationFailedError('INVALID_PLAN', result.errors, `plan ${source}`);
  return result.plan;
}

export function readTextFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new ShardformError('UNREADABLE_FILE', path, path, `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

export function loadPlanFile(path: string): Plan {
  return parsePlanText(readTextFile(path), path);
}

/** The host `hostId` as the plan lists it in one of its pools; undefined for a host the plan does not list (a discovered cloud host). */
export function planHost(plan: Pick<Plan, 'pools'>, hostId: string): Host | undefined {
  return plan.pools.flatMap((pool) => pool.hosts).find((host) => host.id === hostId);
}
