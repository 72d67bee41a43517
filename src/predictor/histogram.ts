/**
 * A weighted histogram over a bucket scheme: add a sample, read a percentile, scale, save/load.
 * Follows the VPA recommender's `histogram` (pkg/recommender/util/histogram.go): the percentile
 * is the END of the first bucket whose cumulative weight reaches p * total (the start of the last,
 * open-ended bucket), which errs on the generous side by up to one bucket width.
 *
 * Weights are kept only for a window of buckets around the ones ever used, grown by doubling
 * when a sample lands outside it: a ratio histogram's samples sit in a few dozen of its 691
 * buckets, and an agent keeps hundreds of histograms per shard (docs/predictor.md, "In the
 * agent"), so a full array per histogram made a shard's models ~3 MB. The arithmetic is the same
 * bucket by bucket.
 */
import { bucketSchemeFromJSON, type BucketScheme, type BucketSchemeState } from './bucket-scheme';
import { checkState } from './demand-model';

/** More buckets than any scheme of ours has (VPA's memory scheme raised to 1e18 bytes: ~520; ratios: 691). */
const MAX_BUCKETS = 10_000;

/** VPA's epsilon: buckets lighter than this are treated as empty after scaling. */
const EPSILON = 1e-4;

export interface HistogramState {
  readonly scheme: BucketSchemeState;
  /** Sparse: [bucket, weight] pairs. */
  readonly buckets: readonly (readonly [number, number])[];
}

/** First window, in buckets: enough for a smooth series' ratios without growing. */
const INITIAL_WINDOW = 32;

export class Histogram {
  /** Weights of buckets `offset .. offset + weights.length - 1`; every other bucket weighs 0. */
  private weights = new Float64Array(0);
  private offset = 0;
  private total = 0;
  private moment = 0;
  private minBucket: number;
  private maxBucket = 0;

  /**
   * `momentOf` (optional): a per-bucket value whose weighted sum is kept up to date (e.g. the
   * bucket's ratio for log-ratio histograms), so expected-slack sums cost nothing extra.
   */
  constructor(
    readonly scheme: BucketScheme,
    private readonly momentOf?: (bucket: number) => number,
  ) {
    this.minBucket = scheme.numBuckets - 1;
  }

  get totalWeight(): number {
    return this.total;
  }

  /** Sum of weight * momentOf(bucket) (0 without momentOf). */
  get momentSum(): number {
    return this.moment;
  }

  get lowestBucket(): number {
    return this.minBucket;
  }

  get highestBucket(): number {
    return this.maxBucket;
  }

  weightOf(bucket: number): number {
    const i = bucket - this.offset;
    return i >= 0 && i < this.weights.length ? this.weights[i] : 0;
  }

  isEmpty(): boolean {
    return this.total < EPSILON;
  }

  addSample(value: number, weight: number): void {
    this.addToBucket(this.scheme.bucketOf(value), weight);
  }

  addToBucket(bucket: number, weight: number): void {
    if (bucket < this.offset || bucket >= this.offset + this.weights.length) this.widen(bucket);
    this.weights[bucket - this.offset] += weight;
    this.total += weight;
    if (this.momentOf !== undefined) this.moment += weight * this.momentOf(bucket);
    if (bucket < this.minBucket) this.minBucket = bucket;
    if (bucket > this.maxBucket) this.maxBucket = bucket;
  }

  /** Grows the window (at least doubling it, within the scheme) so that it holds `bucket`. */
  private widen(bucket: number): void {
    const n = this.scheme.numBuckets;
    const length = this.weights.length;
    const needStart = length === 0 ? bucket : Math.min(bucket, this.offset);
    const needEnd = length === 0 ? bucket + 1 : Math.max(bucket + 1, this.offset + length);
    const size = Math.min(n, Math.max(length === 0 ? INITIAL_WINDOW : 2 * length, needEnd - needStart));
    // The room beyond what is needed goes towards the new bucket (the way the samples move),
    // centred for the first window; then the window is shifted back inside the scheme.
    const room = size - (needEnd - needStart);
    let start = length === 0 ? needStart - (room >> 1) : bucket < this.offset ? needStart - room : needStart;
    start = Math.max(0, Math.min(n - size, start));
    const weights = new Float64Array(size);
    if (length > 0) weights.set(this.weights, this.offset - start);
    this.weights = weights;
    this.offset = start;
  }

  /** Percentile p in [0, 1], VPA semantics (forward walk). */
  percentile(p: number): number {
    if (this.isEmpty()) return 0;
    const bucket = this.percentileBucket(p);
    return bucket < this.scheme.numBuckets - 1 ? this.scheme.bucketStart(bucket + 1) : this.scheme.bucketStart(bucket);
  }

  /**
   * The first bucket whose cumulative weight reaches p * total. For high percentiles the walk
   * starts at the top (same bucket, fewer steps: cumsum(b) >= pT  <=>  weight above b <= (1-p)T).
   */
  percentileBucket(p: number): number {
    const threshold = p * this.total;
    if (p < 0.5) {
      let partial = 0;
      let bucket = this.minBucket;
      for (; bucket < this.maxBucket; bucket++) {
        partial += this.weights[bucket - this.offset];
        if (partial >= threshold) break;
      }
      return bucket;
    }
    let above = 0;
    let bucket = this.maxBucket;
    while (bucket > this.minBucket) {
      const aboveNext = above + this.weights[bucket - this.offset];
      if (this.total - aboveNext < threshold) break;
      above = aboveNext;
      bucket--;
    }
    return bucket;
  }

  /** Multiplies every weight (decay); drops buckets that fall below epsilon, as VPA does. */
  scale(factor: number): void {
    let total = 0;
    let moment = 0;
    let min = this.scheme.numBuckets - 1;
    let max = 0;
    for (let b = this.minBucket; b <= this.maxBucket; b++) {
      let w = this.weights[b - this.offset] * factor;
      if (w < EPSILON) w = 0;
      this.weights[b - this.offset] = w;
      if (w > 0) {
        total += w;
        if (this.momentOf !== undefined) moment += w * this.momentOf(b);
        if (b < min) min = b;
        if (b > max) max = b;
      }
    }
    this.total = total;
    this.moment = moment;
    this.minBucket = min;
    this.maxBucket = max;
  }

  toJSON(): HistogramState {
    const buckets: [number, number][] = [];
    for (let b = this.minBucket; b <= this.maxBucket; b++) {
      const weight = this.weights[b - this.offset];
      if (weight > 0) buckets.push([b, weight]);
    }
    return { scheme: this.scheme.toJSON(), buckets };
  }

  static fromJSON(state: HistogramState, momentOf?: (bucket: number) => number): Histogram {
    const scheme = bucketSchemeFromJSON(state.scheme);
    checkState(scheme.numBuckets >= 1 && scheme.numBuckets <= MAX_BUCKETS, 'scheme', state.scheme, `a bucket scheme of 1 to ${MAX_BUCKETS} buckets`);
    const histogram = new Histogram(scheme, momentOf);
    for (const [bucket, weight] of state.buckets) {
      checkState(Number.isInteger(bucket) && bucket >= 0 && bucket < scheme.numBuckets, 'buckets', bucket, `a bucket of the scheme (0 to ${scheme.numBuckets - 1})`);
      checkState(typeof weight === 'number' && weight >= 0 && weight < Infinity, 'buckets', weight, 'a weight >= 0');
      histogram.addToBucket(bucket, weight);
    }
    return histogram;
  }
}
