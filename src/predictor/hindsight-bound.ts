/**
 * A yardstick for the benchmark, not a model: how little slack a predictor could have if it
 * knew, *in hindsight*, the distribution of each window's horizon peaks (one constant
 * prediction per window of `windowSeconds`, e.g. one per day), under the same per-application
 * violation budget `auto` has (min(1 - q, vpa's rate on that application)).
 *
 * Per application, the budget is spent where it saves the most slack: for a price lambda per
 * violation each window takes the constant minimising slack + lambda * violations, and lambda is
 * bisected until the application's violation rate meets its budget (the Lagrangian of "least
 * slack for a violation budget"; at the breakpoint price the two optimal solutions are mixed to
 * spend the budget exactly, i.e. the LP relaxation, so the figure is a *lower bound* on the slack
 * of any constant-per-window predictor with that budget). It looks ahead, so
 * it is never a candidate: it only says whether a goal is within reach of "knowing each day"
 * (or each 6 h) — a workload that is white noise within the window cannot be predicted better.
 * Scored on the same points as the backtest (after the warm-up, whole horizons only).
 */
import { futurePeak } from './backtest';
import type { ApplicationSeries, ResourceName } from './series';
import { timeAt, valuesOf } from './series';

export interface HindsightBound {
  readonly violation: number;
  readonly slack: number;
  readonly points: number;
}

/** Sorted horizon peaks of each window of one series (scored points only). */
function windowsOf(series: ApplicationSeries, resource: ResourceName, horizonSeconds: number, warmupSeconds: number, windowSeconds: number): Float64Array[] {
  const values = valuesOf(series, resource);
  const steps = Math.max(1, Math.round(horizonSeconds / series.intervalSeconds));
  const perWindow = Math.max(1, Math.round(windowSeconds / series.intervalSeconds));
  const windows: Float64Array[] = [];
  for (let from = 0; from < values.length; from += perWindow) {
    const peaks: number[] = [];
    for (let i = from; i < Math.min(values.length, from + perWindow); i++) {
      if (timeAt(series, i) - series.startSeconds < warmupSeconds) continue;
      const peak = futurePeak(values, i, steps);
      if (peak === peak) peaks.push(peak);
    }
    if (peaks.length > 0) windows.push(Float64Array.from(peaks).sort());
  }
  return windows;
}

/** Violations and slack when every window takes its cost-minimising constant at price lambda. */
function atPrice(windows: readonly Float64Array[], lambda: number): { violations: number; slack: number } {
  let violations = 0;
  let slack = 0;
  for (const peaks of windows) {
    let best = Infinity;
    let bestViolations = 0;
    let bestSlack = 0;
    let below = 0;
    for (let k = 0; k < peaks.length; k++) {
      below += peaks[k];
      if (k + 1 < peaks.length && peaks[k + 1] === peaks[k]) continue; // a constant covers all its ties
      const s = peaks[k] * (k + 1) - below;
      const v = peaks.length - 1 - k;
      const cost = s + lambda * v;
      if (cost < best) {
        best = cost;
        bestViolations = v;
        bestSlack = s;
      }
    }
    violations += bestViolations;
    slack += bestSlack;
  }
  return { violations, slack };
}

/**
 * The bound pooled over series like the backtest (sums in the resource's unit); `budgets[i]` is
 * series i's allowed violation rate.
 */
export function hindsightBound(
  series: readonly ApplicationSeries[],
  budgets: readonly number[],
  options: { resource: ResourceName; horizonSeconds: number; warmupSeconds: number; windowSeconds: number },
): HindsightBound {
  let points = 0;
  let violations = 0;
  let slack = 0;
  let peakSum = 0;
  series.forEach((s, index) => {
    const windows = windowsOf(s, options.resource, options.horizonSeconds, options.warmupSeconds, options.windowSeconds);
    let n = 0;
    let largest = 0;
    for (const peaks of windows) {
      n += peaks.length;
      for (const p of peaks) peakSum += p;
      largest = Math.max(largest, peaks[peaks.length - 1]);
    }
    if (n === 0) return;
    const allowed = budgets[index] * n;
    // A price above the largest peak times the window length never buys a violation; bisect in log space.
    let lo = largest * 1e-9;
    let hi = Math.max(largest, 1e-12) * (n + 1);
    for (let it = 0; it < 60; it++) {
      const mid = Math.sqrt(lo * hi);
      if (atPrice(windows, mid).violations > allowed) lo = mid;
      else hi = mid;
    }
    // At the breakpoint price both neighbouring hull vertices are optimal; mixing them meets the
    // budget exactly (the LP relaxation), so the figure is a lower bound on slack, not an estimate.
    const feasible = atPrice(windows, hi);
    const over = atPrice(windows, lo);
    const t = over.violations > feasible.violations ? Math.min(1, Math.max(0, (allowed - feasible.violations) / (over.violations - feasible.violations))) : 0;
    points += n;
    violations += feasible.violations + t * (over.violations - feasible.violations);
    slack += feasible.slack + t * (over.slack - feasible.slack);
  });
  return { violation: points > 0 ? violations / points : 0, slack: peakSum > 0 ? slack / peakSum : 0, points };
}
