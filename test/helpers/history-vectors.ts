/**
 * Demand vectors of history rows in one go, the tests' oracle: the rows' shards are tracked and
 * every grid point they span is fed through HostForecast in a single feed (no catchUp, no
 * store), for comparing with what the agent and `predict --history` give.
 */
import type { DemandVector } from '../../src/contracts/demand-vector';
import type { MetricBucket, MetricSample } from '../../src/store/metric-history';
import { DEFAULT_PREDICTOR_SETTINGS, type PredictorSettings } from '../../src/predictor/application-predictor';
import { HostForecast } from '../../src/predictor/host-forecast';
import type { Allocation } from '../../src/predictor/series';

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
