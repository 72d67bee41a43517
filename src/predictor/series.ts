/**
 * The predictor's input: one application's (or shard's) metric history on a regular time grid.
 * Trace readers and the metric-history adapter produce it; models consume one resource of it.
 * A missing sample is NaN (a gap is missing data, never zero load).
 */

/** The resources a model predicts; io is predicted per direction. */
export type ResourceName = 'cpu' | 'memory' | 'read' | 'write';

export const RESOURCE_NAMES: readonly ResourceName[] = ['cpu', 'memory', 'read', 'write'];

/** What the application currently has, used for the vector's `percentage` fields. */
export interface Allocation {
  readonly cpuCores?: number;
  readonly memoryBytes?: number;
  /** Read + write operations per second allowed (io.max / blkio throttle), when limited. */
  readonly iops?: number;
}

/** One application's history on a grid: sample i is at `startSeconds + i * intervalSeconds`. */
export interface ApplicationSeries {
  readonly applicationId: string;
  readonly shardId?: string;
  readonly startSeconds: number;
  readonly intervalSeconds: number;
  readonly cpuCores: Float64Array;
  readonly memoryBytes: Float64Array;
  /** Read / write operations per second (see docs/predictor.md for how throughput-only traces map here). */
  readonly readOps: Float64Array;
  readonly writeOps: Float64Array;
  readonly rxBytesPerSecond?: Float64Array;
  readonly txBytesPerSecond?: Float64Array;
  readonly allocation?: Allocation;
  /** Where the series came from (file path, store), for messages. */
  readonly source: string;
}

export function valuesOf(series: ApplicationSeries, resource: ResourceName): Float64Array {
  switch (resource) {
    case 'cpu':
      return series.cpuCores;
    case 'memory':
      return series.memoryBytes;
    case 'read':
      return series.readOps;
    case 'write':
      return series.writeOps;
  }
}

export function sampleCount(series: ApplicationSeries): number {
  return series.cpuCores.length;
}

export function timeAt(series: ApplicationSeries, index: number): number {
  return series.startSeconds + index * series.intervalSeconds;
}
