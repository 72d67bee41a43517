/**
 * Bucket boundaries for the histograms models keep. Two schemes:
 * - `exponential`: the Kubernetes VPA recommender's scheme (vertical-pod-autoscaler/pkg/recommender/
 *   util/histogram_options.go): bucket i starts at first * (ratio^i - 1) / (ratio - 1), the last
 *   bucket is open-ended. VPA uses first = 0.01 cores, max 1000 cores for CPU and first = 1e7 bytes,
 *   max 1e12 bytes for memory, ratio 1.05 for both (model/aggregations_config.go).
 * - `linear`: equal-width buckets over [min, max], used for log-ratios of forecast errors, where
 *   the 5 % resolution of the exponential scheme would cost 2-5 % of slack on smooth series.
 */
export type BucketSchemeState =
  | { readonly kind: 'exponential'; readonly firstBucketSize: number; readonly ratio: number; readonly maxValue: number }
  | { readonly kind: 'linear'; readonly min: number; readonly max: number; readonly width: number };

export interface BucketScheme {
  readonly numBuckets: number;
  bucketOf(value: number): number;
  bucketStart(bucket: number): number;
  toJSON(): BucketSchemeState;
}

export class ExponentialBuckets implements BucketScheme {
  readonly numBuckets: number;
  private readonly logRatio: number;

  constructor(
    readonly firstBucketSize: number,
    readonly ratio: number,
    readonly maxValue: number,
  ) {
    this.logRatio = Math.log(ratio);
    // histogram_options.go: numBuckets = ceil(log(maxValue*(ratio-1)/firstBucketSize + 1) / log(ratio)) + 1
    this.numBuckets = Math.ceil(Math.log((maxValue * (ratio - 1)) / firstBucketSize + 1) / this.logRatio) + 1;
  }

  bucketOf(value: number): number {
    if (!(value >= this.firstBucketSize)) return 0;
    const bucket = Math.floor(Math.log((value * (this.ratio - 1)) / this.firstBucketSize + 1) / this.logRatio);
    return Math.min(bucket, this.numBuckets - 1);
  }

  bucketStart(bucket: number): number {
    return (this.firstBucketSize * (Math.pow(this.ratio, bucket) - 1)) / (this.ratio - 1);
  }

  toJSON(): BucketSchemeState {
    return { kind: 'exponential', firstBucketSize: this.firstBucketSize, ratio: this.ratio, maxValue: this.maxValue };
  }
}

export class LinearBuckets implements BucketScheme {
  readonly numBuckets: number;

  constructor(
    readonly min: number,
    readonly max: number,
    readonly width: number,
  ) {
    this.numBuckets = Math.ceil((max - min) / width) + 1;
  }

  bucketOf(value: number): number {
    if (!(value > this.min)) return 0;
    return Math.min(Math.floor((value - this.min) / this.width), this.numBuckets - 1);
  }

  bucketStart(bucket: number): number {
    return this.min + bucket * this.width;
  }

  toJSON(): BucketSchemeState {
    return { kind: 'linear', min: this.min, max: this.max, width: this.width };
  }
}

export function bucketSchemeFromJSON(state: BucketSchemeState): BucketScheme {
  return state.kind === 'exponential'
    ? new ExponentialBuckets(state.firstBucketSize, state.ratio, state.maxValue)
    : new LinearBuckets(state.min, state.max, state.width);
}

/** VPA's CPU histogram options (cores). */
export const VPA_CPU_BUCKETS = (): ExponentialBuckets => new ExponentialBuckets(0.01, 1.05, 1000);
/** VPA's memory histogram options (bytes). */
export const VPA_MEMORY_BUCKETS = (): ExponentialBuckets => new ExponentialBuckets(1e7, 1.05, 1e12);
