/**
 * Demand vectors of history rows in one go (tests, small tools): the rows' shards are tracked
 * and every grid point they span is fed through HostForecast, the same code the agent runs.
 */
import type { DemandVector } from '../contracts/demand-vector';
import type { MetricBucket, MetricSample } from '../store/metric-history';
import { DEFAULT_PREDICTOR_SETTINGS, type PredictorSettings } from './application-predictor';
import { HostForecast } from './host-forecast';
import type { Allocation } from './series';

export function vectorsFromHistory(
  rows: readonly (MetricSample | MetricBucket)[],
  settings: PredictorSettings = DEFAULT_PREDICTOR_SETTINGS,
  /** Current allocation per shard id. */
  allocations: ReadonlyMap<string, Allocation> = new Map(),
): { shards: DemandVector[]; applications: DemandVector[] } {
  const forecast = new HostForecast(settings);
  const shards = new Map<string, string>();
  for (const row of rows) shards.set(row.shardId, row.applicationId);
  forecast.track([...shards].map(([shardId, applicationId]) => ({ shardId, applicationId, ...(allocations.has(shardId) ? { allocation: allocations.get(shardId) } : {}) })));
  if (rows.length > 0) {
    let first = Infinity;
    let last = -Infinity;
    for (const row of rows) {
      first = Math.min(first, row.atSeconds);
      last = Math.max(last, row.atSeconds);
    }
    forecast.feed(rows, first - settings.intervalSeconds, last);
  }
  return forecast.vectors();
}
