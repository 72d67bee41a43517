/**
 * Turns the agent's metric history rows (src/store/metric-history.ts) into predictor series:
 * one series per shard and one per application (the sum of its shards: the unified instance
 * view). Downsampled buckets contribute their maxima (`*Max`): the predictor targets peaks, and a
 * bucket's mean would hide them. Rows are resampled onto the interval grid like trace rows; an
 * application's grid point is missing if any of its shards is missing there (a partial sum would
 * look like a drop in load).
 */
import type { MetricBucket, MetricSample } from '../store/metric-history';
import type { Allocation, ApplicationSeries } from '../predictor/series';
import { resampleToGrid, type RawSample } from '../traces/resample';

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

export interface HistorySeries {
  readonly shards: ApplicationSeries[];
  readonly applications: ApplicationSeries[];
}

function sumShards(applicationId: string, shards: readonly ApplicationSeries[], intervalSeconds: number, allocation?: Allocation): ApplicationSeries {
  const start = Math.min(...shards.map((s) => s.startSeconds));
  const end = Math.max(...shards.map((s) => s.startSeconds + (s.cpuCores.length - 1) * intervalSeconds));
  const n = Math.round((end - start) / intervalSeconds) + 1;
  const sum = (pick: (s: ApplicationSeries) => Float64Array) => {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let total = 0;
      for (const shard of shards) {
        const j = Math.round((start + i * intervalSeconds - shard.startSeconds) / intervalSeconds);
        const v = j >= 0 && j < shard.cpuCores.length ? pick(shard)[j] : NaN;
        total += v;
      }
      out[i] = total;
    }
    return out;
  };
  return {
    applicationId,
    startSeconds: start,
    intervalSeconds,
    cpuCores: sum((s) => s.cpuCores),
    memoryBytes: sum((s) => s.memoryBytes),
    readOps: sum((s) => s.readOps),
    writeOps: sum((s) => s.writeOps),
    ...(allocation !== undefined ? { allocation } : {}),
    source: 'metric-history',
  };
}

/**
 * `allocations` (optional): current allocation per shard id and per application id, for the
 * vectors' percentages.
 */
export function seriesFromHistory(
  rows: readonly (MetricSample | MetricBucket)[],
  intervalSeconds: number,
  allocations: ReadonlyMap<string, Allocation> = new Map(),
): HistorySeries {
  const byShard = new Map<string, { applicationId: string; samples: RawSample[] }>();
  for (const row of rows) {
    let entry = byShard.get(row.shardId);
    if (entry === undefined) byShard.set(row.shardId, (entry = { applicationId: row.applicationId, samples: [] }));
    entry.samples.push(toRawSample(row));
  }
  const shards = [...byShard].map(([shardId, { applicationId, samples }]) => {
    const allocation = allocations.get(shardId);
    return resampleToGrid(applicationId, samples, intervalSeconds, 'metric-history', { shardId, ...(allocation ? { allocation } : {}) });
  });
  const byApplication = new Map<string, ApplicationSeries[]>();
  for (const shard of shards) {
    const list = byApplication.get(shard.applicationId) ?? [];
    list.push(shard);
    byApplication.set(shard.applicationId, list);
  }
  const applications = [...byApplication].map(([applicationId, list]) => sumShards(applicationId, list, intervalSeconds, allocations.get(applicationId)));
  return { shards, applications };
}
