/**
 * How a pooled comparison of two models would come out on other fleets like this one: fleets of
 * as many applications, drawn with replacement from the backtested ones (a bootstrap over
 * applications, Efron 1979). The goal compares pooled rates, so one fleet's verdict can hinge on
 * which applications it happens to hold; this says how often it holds.
 */
import { BacktestMetrics } from './backtest-metrics';
import type { SeriesBacktest } from './backtest';
import { seededRandom } from './seeded-random';

export interface ResampledFleets {
  readonly fleets: number;
  /** Share of fleets where `model`'s pooled violation rate is at most `baseline`'s. */
  readonly noLessSafe: number;
  /** Share of fleets where `model`'s pooled slack is at most `slackRatio` × `baseline`'s. */
  readonly slackMet: number;
  /** Share of fleets where both hold. */
  readonly bothMet: number;
}

export function resampleFleets(results: readonly SeriesBacktest[], model: string, baseline: string, slackRatio: number, fleets = 2000, seed = 1): ResampledFleets {
  const rand = seededRandom(seed);
  const pooled = (picks: readonly number[], name: string) => {
    const sum = new BacktestMetrics(0); // the quantile weighs only the pinball loss, not read here
    for (const i of picks) {
      const m = results[i]!.metrics.get(name);
      if (m) sum.merge(m);
    }
    return sum.figures();
  };
  let noLessSafe = 0;
  let slackMet = 0;
  let bothMet = 0;
  for (let f = 0; f < fleets; f++) {
    const picks = Array.from({ length: results.length }, () => Math.floor(rand() * results.length));
    const [m, b] = [pooled(picks, model), pooled(picks, baseline)];
    const safe = m.violation <= b.violation;
    const cheap = m.slack <= slackRatio * b.slack;
    if (safe) noLessSafe++;
    if (cheap) slackMet++;
    if (safe && cheap) bothMet++;
  }
  return { fleets, noLessSafe: noLessSafe / fleets, slackMet: slackMet / fleets, bothMet: bothMet / fleets };
}
