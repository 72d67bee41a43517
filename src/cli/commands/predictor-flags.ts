/**
 * Flags shared by `predict` and `backtest`, parsed once at the edge: a bad value is an
 * INVALID_ARGUMENT naming the flag and the value (exit 2 through exitCodeFor).
 */
import { horizonProblem, intervalProblem } from '../../contracts/prediction-grid';
import { parseDurationSeconds } from '../../contracts/quantities';
import { invalidFlag } from './invalid-flag';

export function parseDurationFlag(flag: string, value: string): number {
  let seconds: number;
  try {
    seconds = parseDurationSeconds(value, flag);
  } catch {
    throw invalidFlag(flag, value, 'a duration such as "15m", "1h" or "900s"');
  }
  if (!(seconds > 0)) throw invalidFlag(flag, value, 'a positive duration');
  return seconds;
}

export function parseQuantileFlag(flag: string, value: string): number {
  const q = Number(value);
  if (!/^\s*0?\.\d+\s*$/.test(value) || !(q > 0 && q < 1)) throw invalidFlag(flag, value, 'a quantile strictly between 0 and 1, e.g. 0.95');
  return q;
}

/** The grid of --interval, bounded like the plan's predictor.intervalSeconds (prediction-grid.ts). */
export function parseIntervalFlag(value: string): number {
  const seconds = parseDurationFlag('--interval', value);
  const problem = intervalProblem(seconds);
  if (problem) throw invalidFlag('--interval', value, problem);
  return seconds;
}

/** --horizon on the grid of --interval: whole steps, at most MAX_HORIZON_STEPS of them (prediction-grid.ts). */
export function checkHorizonOnGrid(horizonSeconds: number, intervalSeconds: number, flags: { horizon: string; interval: string }): void {
  const problem = horizonProblem(horizonSeconds, intervalSeconds, `--interval ${flags.interval}`);
  if (problem) throw invalidFlag('--horizon', flags.horizon, problem);
}
