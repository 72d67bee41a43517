/**
 * Turns the agent's metric history rows (src/store/metric-history.ts) into the predictor's grid
 * points (host-forecast.ts sums them per application). Buckets contribute their maxima (`*Max`):
 * the predictor targets peaks, and a bucket's mean would hide them.
 */
import type { MetricBucket, MetricSample } from '../store/metric-history';
import { RESOURCE_NAMES, type ResourceName } from '../predictor/series';
import type { RawSample } from '../traces/resample';

function isBucket(row: MetricSample | MetricBucket): row is MetricBucket {
  return (row as MetricBucket).bucketSeconds !== undefined;
}

export function toRawSample(row: MetricSample | MetricBucket): RawSample {
  const bucket = isBucket(row);
  return {
    atSeconds: row.atSeconds,
    cpuCores: bucket ? row.cpuCoresMax : row.cpuCores,
    memoryBytes: bucket ? row.memoryBytesMax : row.memoryBytes,
    readOps: bucket ? row.readOpsMax : row.readOps,
    writeOps: bucket ? row.writeOpsMax : row.writeOps,
  };
}

export type GridValues = Record<ResourceName, number>;
/** Shard id -> grid index k (time k x interval) -> the values of that grid point. */
export type GridPoints = Map<string, Map<number, GridValues>>;

/**
 * History rows read at the grid's resolution (`query({ resolutionSeconds: interval })`) as grid
 * points per shard: the row of [k x interval, (k + 1) x interval) is point k, each resource its
 * maximum. Rows finer than the grid (history folded into 5-min buckets, read on a 15-min grid)
 * take the larger value per point, which is exactly the maximum of their union; a row coarser
 * than the grid (5-min buckets on a 1-min grid) lands on the point where it starts and leaves
 * the others missing, so nothing is counted twice. Raw samples (not buckets) work the same way.
 */
export function gridPointsFromHistory(rows: readonly (MetricSample | MetricBucket)[], intervalSeconds: number): GridPoints {
  const grid: GridPoints = new Map();
  for (const row of rows) {
    const sample = toRawSample(row);
    const k = Math.floor(sample.atSeconds / intervalSeconds + 1e-9);
    let points = grid.get(row.shardId);
    if (points === undefined) grid.set(row.shardId, (points = new Map()));
    const values = { cpu: sample.cpuCores, memory: sample.memoryBytes, read: sample.readOps, write: sample.writeOps };
    const before = points.get(k);
    if (before === undefined) points.set(k, values);
    else for (const resource of RESOURCE_NAMES) if (!(before[resource] >= values[resource])) before[resource] = values[resource];
  }
  return grid;
}
