/**
 * The bounds of the grid predictions run on, shared by the plan (schema and semantic checks),
 * the constructs and the `predict`/`backtest` flags, so a horizon and an interval mean the same
 * and are refused the same wherever they are given.
 *
 * Work is grid points x horizon steps: a series is replayed one grid point at a time, and at
 * each point the window models take the peak of the last horizon and keep one pending forecast
 * per step of it (src/predictor/sample-ring.ts, conditional-ratio-model.ts). So both factors are
 * bounded: the span of a series (MAX_GRID_POINTS, checked by the trace readers) and the horizon
 * (MAX_HORIZON_STEPS). At both limits one series costs about a minute; at the default 5 min grid
 * a 30-day trace with a 10,000-step horizon takes about 3x the 15 min horizon's time.
 */
import { formatDuration } from './quantities';

/** About 9.5 years at 300 s, 11.5 days at 1 s; replaying it takes about a minute per application. */
export const MAX_GRID_POINTS = 1_000_000;

/** The agent samples every few seconds; a finer grid only repeats samples (and costs memory per point). */
export const MIN_INTERVAL_SECONDS = 1;

/**
 * A coarser grid than a day hides the daily cycle the seasonal models learn; with
 * MAX_HORIZON_STEPS it also keeps `now + horizon` a real date (vectors carry it as a timestamp).
 */
export const MAX_INTERVAL_SECONDS = 86_400;

/** 34 days 17 h at the default 5 min grid, 2.8 h at 1 s. */
export const MAX_HORIZON_STEPS = 10_000;

/** What an interval must be, or undefined when it is one; phrased to follow "is not". */
export function intervalProblem(intervalSeconds: number): string | undefined {
  if (intervalSeconds >= MIN_INTERVAL_SECONDS && intervalSeconds <= MAX_INTERVAL_SECONDS) return undefined;
  return `an interval from ${formatDuration(MIN_INTERVAL_SECONDS)} to ${formatDuration(MAX_INTERVAL_SECONDS)}`;
}

/**
 * What a horizon must be on a grid of `intervalSeconds` (named `intervalName` in the caller's
 * words, e.g. `--interval 5m`), or undefined when it is one; phrased to follow "is not".
 * Models look ahead whole grid steps (horizonSteps rounds), so a horizon off the grid would be
 * reported as the horizon of a prediction made over another.
 */
export function horizonProblem(horizonSeconds: number, intervalSeconds: number, intervalName: string): string | undefined {
  const steps = horizonSeconds / intervalSeconds;
  if (steps > MAX_HORIZON_STEPS)
    return `at most ${MAX_HORIZON_STEPS} steps of ${intervalName} (${formatDuration(MAX_HORIZON_STEPS * intervalSeconds)}); use a shorter horizon or a coarser interval`;
  if (steps < 1 || Math.abs(steps - Math.round(steps)) > 1e-9) return `a whole multiple of ${intervalName}`;
  return undefined;
}
