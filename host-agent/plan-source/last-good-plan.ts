/**
 * The last plan the agent accepted, kept in its state directory so a restart starts from it
 * (and refuses an older plan the source may still serve) even while the source is down.
 * Written atomically (temp file + rename) so a crash never leaves half a plan.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkPlan, serializePlan } from '../../src/contracts/plan';
import type { Plan } from '../../src/contracts/plan-schema';
import { formatFieldError } from '../../src/errors';

export const LAST_GOOD_PLAN_FILE = 'last-good-plan.json';

export function lastGoodPlanPath(stateDir: string): string {
  return join(stateDir, LAST_GOOD_PLAN_FILE);
}

export function saveLastGoodPlan(stateDir: string, plan: Plan): void {
  mkdirSync(stateDir, { recursive: true });
  const target = lastGoodPlanPath(stateDir);
  const temp = `${target}.${process.pid}.tmp`;
  writeFileSync(temp, serializePlan(plan), { mode: 0o600 });
  renameSync(temp, target);
}

/** The saved plan; `problem` says why none could be used (missing is not a problem). */
export function loadLastGoodPlan(stateDir: string): { plan?: Plan; problem?: string } {
  let text: string;
  try {
    text = readFileSync(lastGoodPlanPath(stateDir), 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? {} : { problem: `cannot read ${lastGoodPlanPath(stateDir)}: ${code ?? (error as Error).message}` };
  }
  try {
    const check = checkPlan(JSON.parse(text));
    if (check.ok) return { plan: check.plan };
    return { problem: `${lastGoodPlanPath(stateDir)} is not a valid plan: ${check.errors.map(formatFieldError).join('; ')}` };
  } catch (error) {
    return { problem: `${lastGoodPlanPath(stateDir)} is not JSON: ${(error as Error).message}` };
  }
}
