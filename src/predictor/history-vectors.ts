/**
 * The agent's path: metric history rows -> demand vectors per shard and per application (the sum
 * of its shards), each validated. The agent keeps ApplicationPredictors alive between calls and
 * feeds them new samples; this one-shot form replays the whole history (e.g. after a restart
 * without saved model state, or for `predict` against a store).
 */
import type { DemandVector } from '../contracts/demand-vector';
import type { MetricBucket, MetricSample } from '../store/metric-history';
import { seriesFromHistory } from '../traces/metric-history-adapter';
import { DEFAULT_PREDICTOR_SETTINGS, predictSeries, type PredictorSettings } from './application-predictor';
import type { Allocation } from './series';

export function vectorsFromHistory(
  rows: readonly (MetricSample | MetricBucket)[],
  settings: PredictorSettings = DEFAULT_PREDICTOR_SETTINGS,
  allocations: ReadonlyMap<string, Allocation> = new Map(),
): { shards: DemandVector[]; applications: DemandVector[] } {
  const { shards, applications } = seriesFromHistory(rows, settings.intervalSeconds, allocations);
  const predict = (list: typeof shards) => list.map((s) => predictSeries(s, settings)).filter((v): v is DemandVector => v !== null);
  return { shards: predict(shards), applications: predict(applications) };
}
