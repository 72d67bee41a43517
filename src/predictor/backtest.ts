/**
 * Strictly online backtest: samples are fed in time order, and the prediction made at sample t
 * (after updating with t, before seeing t+1) is scored against the actual peak of
 * (t, t + horizon]. Points are scored only after the warm-up (default 7 days from the series'
 * start), only when the whole horizon was observed (gaps are not zero load), and only where
 * every compared model answered, so all models are scored on the same points.
 */
import { BacktestMetrics } from './backtest-metrics';
import type { DemandModel, ModelOptions } from './demand-model';
import { timeAt, valuesOf, type ApplicationSeries, type ResourceName } from './series';

export const DEFAULT_WARMUP_SECONDS = 7 * 86400;

export interface BacktestOptions {
  readonly resource: ResourceName;
  readonly horizonSeconds: number;
  readonly quantile: number;
  readonly warmupSeconds: number;
}

/** Builds the models to compare for one series (fresh state per series). */
export type ModelFactory = (options: ModelOptions) => DemandModel;

export interface SeriesBacktest {
  readonly applicationId: string;
  readonly source: string;
  readonly metrics: Map<string, BacktestMetrics>;
  /** Model updates performed (for throughput). */
  readonly updates: number;
}

/** The peak over samples (i, i + steps] if all are present, else NaN. */
export function futurePeak(values: Float64Array, i: number, steps: number): number {
  if (i + steps >= values.length) return NaN;
  let peak = -Infinity;
  for (let k = i + 1; k <= i + steps; k++) {
    const v = values[k];
    if (v !== v) return NaN;
    if (v > peak) peak = v;
  }
  return peak;
}

export function backtestSeries(series: ApplicationSeries, factories: ReadonlyMap<string, ModelFactory>, options: BacktestOptions): SeriesBacktest {
  const modelOptions: ModelOptions = { resource: options.resource, intervalSeconds: series.intervalSeconds, horizonSeconds: options.horizonSeconds };
  const names = [...factories.keys()];
  const models = names.map((name) => (factories.get(name) as ModelFactory)(modelOptions));
  const metrics = new Map(names.map((name) => [name, new BacktestMetrics(options.quantile)]));
  const values = valuesOf(series, options.resource);
  const steps = Math.max(1, Math.round(options.horizonSeconds / series.intervalSeconds));
  const predictions = new Float64Array(models.length);
  let updates = 0;
  for (let i = 0; i < values.length; i++) {
    const atSeconds = timeAt(series, i);
    const value = values[i];
    for (const model of models) model.update({ atSeconds, value });
    updates += models.length;
    if (atSeconds - series.startSeconds < options.warmupSeconds) continue;
    const actual = futurePeak(values, i, steps);
    if (actual !== actual) continue;
    let all = true;
    for (let m = 0; m < models.length; m++) {
      predictions[m] = models[m].predict(options.horizonSeconds, options.quantile);
      if (!(predictions[m] >= 0)) all = false;
    }
    if (!all) continue;
    for (let m = 0; m < models.length; m++) (metrics.get(names[m]) as BacktestMetrics).add(predictions[m], actual);
  }
  return { applicationId: series.applicationId, source: series.source, metrics, updates };
}

/** Sums per-series metrics into pooled ones, per model. */
export function poolBacktests(results: readonly SeriesBacktest[], quantile: number): Map<string, BacktestMetrics> {
  const pooled = new Map<string, BacktestMetrics>();
  for (const result of results) {
    for (const [name, metrics] of result.metrics) {
      let total = pooled.get(name);
      if (total === undefined) {
        total = new BacktestMetrics(quantile);
        pooled.set(name, total);
      }
      total.merge(metrics);
    }
  }
  return pooled;
}
