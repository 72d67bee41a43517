/**
 * The last plan the agent accepted, kept in its state directory so a restart starts from it
 * (and refuses an older plan the source may still serve) even while the source is down.
 * Written atomically (temp file, fsync, rename: atomic-file.ts) so a crash never leaves half a plan.
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomically } from '../atomic-file';
import { checkPlan, serializePlan } from '../../src/contracts/plan';
import type { Plan } from '../../src/contracts/plan-schema';
import { formatFieldError } from '../../src/errors';

export const LAST_GOOD_PLAN_FILE = 'last-good-plan.json';

export function lastGoodPlanPath(stateDir: string): string {
  return join(stateDir, LAST_GOOD_PLAN_FILE);
}

export async function saveLastGoodPlan(stateDir: string, plan: Plan): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  await writeFileAtomically(lastGoodPlanPath(stateDir), serializePlan(plan));
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
