/**
 * Metric history: what the sampler records for every shard and the predictor learns from.
 * Samples are rates and gauges already derived from the kernel's cumulative counters (the
 * sampler differentiates), so readers never see counter resets. Implemented by the embedded
 * SQLite store (one table per resolution); every agent keeps its own history locally, also
 * when fleet state lives in etcd, because etcd is not a time-series database.
 */

export interface MetricSample {
  /** Unix time of the sample, seconds (may be fractional). */
  readonly atSeconds: number;
  readonly shardId: string;
  readonly applicationId: string;
  /** CPU used over the interval ending at `atSeconds`, in cores (cpu-seconds per second). */
  readonly cpuCores: number;
  /** Fraction of the interval's CFS periods that were throttled (0..1). */
  readonly cpuThrottledRatio: number;
  readonly memoryBytes: number;
  /** Read / write operations per second over the interval. */
  readonly readOps: number;
  readonly writeOps: number;
  /** Read / write bytes per second over the interval. */
  readonly readBytesPerSecond: number;
  readonly writeBytesPerSecond: number;
  /** PSI "some" avg10 (percent) where the kernel offers it. */
  readonly cpuPressure?: number;
  readonly memoryPressure?: number;
  readonly ioPressure?: number;
}

export interface MetricQuery {
  readonly shardId?: string;
  readonly applicationId?: string;
  readonly fromSeconds: number;
  readonly toSeconds: number;
  /**
   * Wanted resolution: raw samples where they are still kept, else the downsampled buckets
   * (each bucket reports the mean of gauges/rates and keeps the max in `*Max` fields of
   * MetricBucket). Default: the finest available.
   */
  readonly resolutionSeconds?: number;
  /** At most this many rows, the earliest (the predictor asks where a shard's history begins). */
  readonly limit?: number;
}

/** A downsampled bucket: means over the bucket, plus maxima (the predictor targets peaks). */
export interface MetricBucket extends MetricSample {
  readonly bucketSeconds: number;
  readonly samples: number;
  readonly cpuCoresMax: number;
  readonly memoryBytesMax: number;
  readonly readOpsMax: number;
  readonly writeOpsMax: number;
}

export interface MetricRetention {
  /** Raw samples older than this are folded into buckets and deleted. */
  readonly rawRetentionSeconds: number;
  /** Buckets older than this are deleted. */
  readonly historyRetentionSeconds: number;
  /** Bucket width of downsampled history; default 300 s (the predictor's default interval). */
  readonly bucketSeconds?: number;
}

export interface MetricHistory {
  append(samples: readonly MetricSample[]): void;
  /** Raw samples and/or buckets in time order (buckets where raw data has been folded). */
  query(query: MetricQuery): (MetricSample | MetricBucket)[];
  /** Downsamples raw samples past retention and drops history past its retention; `nowSeconds` is passed in. */
  compact(nowSeconds: number, retention: MetricRetention): { folded: number; deleted: number };
}
