/**
 * A backtest over many series for a list of model names (any of MODEL_NAMES plus `auto`, the
 * per-application selection over all models), with per-series and pooled figures in the shape
 * `shardform backtest --json` prints.
 */
import { AutoSelector } from './auto-selector';
import type { BacktestFigures } from './backtest-metrics';
import { backtestSeries, poolBacktests, type BacktestOptions, type ModelFactory, type SeriesBacktest } from './backtest';
import { createModel, MODEL_NAMES, type SuiteModelName } from './model-registry';
import type { ApplicationSeries, ResourceName } from './series';

export { SUITE_MODEL_NAMES, type SuiteModelName } from './model-registry';

export interface BacktestReport {
  readonly resource: ResourceName;
  readonly quantile: number;
  readonly horizon_seconds: number;
  readonly series: number;
  readonly models: Record<string, BacktestFigures>;
  readonly per_series?: { readonly application_id: string; readonly source: string; readonly models: Record<string, BacktestFigures> }[];
}

export function factoriesFor(names: readonly SuiteModelName[], quantile: number): Map<string, ModelFactory> {
  return new Map(
    names.map((name) => [
      name,
      name === 'auto' || name === 'auto-calibrated'
        ? (options) => new AutoSelector(options, MODEL_NAMES.map((m) => createModel(m, options)), quantile, 'vpa', name === 'auto')
        : (options) => createModel(name, options),
    ]),
  );
}

export interface SuiteResult {
  readonly report: BacktestReport;
  readonly results: readonly SeriesBacktest[];
  readonly updates: number;
}

export function runBacktestSuite(
  series: readonly ApplicationSeries[],
  names: readonly SuiteModelName[],
  options: BacktestOptions,
  perSeries = false,
  onSeriesDone: (done: number) => void = () => undefined,
): SuiteResult {
  const factories = factoriesFor(names, options.quantile);
  const results: SeriesBacktest[] = [];
  series.forEach((s, i) => {
    results.push(backtestSeries(s, factories, options));
    onSeriesDone(i + 1);
  });
  const pooled = poolBacktests(results, options.quantile);
  const figures = (metrics: ReadonlyMap<string, { figures(): BacktestFigures }>) =>
    Object.fromEntries(names.map((name) => [name, (metrics.get(name) as { figures(): BacktestFigures }).figures()]));
  const report: BacktestReport = {
    resource: options.resource,
    quantile: options.quantile,
    horizon_seconds: options.horizonSeconds,
    series: series.length,
    models: figures(pooled),
    ...(perSeries ? { per_series: results.map((r) => ({ application_id: r.applicationId, source: r.source, models: figures(r.metrics) })) } : {}),
  };
  return { report, results, updates: results.reduce((sum, r) => sum + r.updates, 0) };
}
