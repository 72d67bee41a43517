/**
 * A weighted histogram over a bucket scheme: add a sample, read a percentile, scale, save/load.
 * Follows the VPA recommender's `histogram` (pkg/recommender/util/histogram.go): the percentile
 * is the END of the first bucket whose cumulative weight reaches p * total (the start of the last,
 * open-ended bucket), which errs on the generous side by up to one bucket width.
 *
 * Sparse: only the buckets that hold weight are kept, as sorted (bucket, weight) entries. A
 * ratio histogram's samples fall in ~30 buckets spread over a span of ~200 of its 691 (a few
 * outliers far from the rest), and an agent keeps hundreds of histograms per shard
 * (docs/predictor.md, "In the agent"): a window over the span cost a busy shard ~1.6 MB of
 * weights, the entries ~0.2 MB. Walks visit the entries only; a bucket without an entry weighs
 * 0, which adds nothing to any sum, so every answer is the same as over the full array.
 */
import { bucketSchemeFromJSON, type BucketScheme, type BucketSchemeState } from './bucket-scheme';
import { checkState } from './demand-model';

/** More buckets than any scheme of ours has (VPA's memory scheme raised to 1e18 bytes: ~520; ratios: 691); fits a Uint16Array. */
const MAX_BUCKETS = 10_000;

/** VPA's epsilon: buckets lighter than this are treated as empty after scaling. */
const EPSILON = 1e-4;

export interface HistogramState {
  readonly scheme: BucketSchemeState;
  /** Sparse: [bucket, weight] pairs. */
  readonly buckets: readonly (readonly [number, number])[];
}

/** First allocation, in entries; grown by doubling. */
const INITIAL_ENTRIES = 4;
const NO_BUCKETS = new Uint16Array(0);
const NO_WEIGHTS = new Float64Array(0);

export class Histogram {
  /**
   * The buckets added to since they last fell below epsilon, ascending, and their weights at the
   * same index (`count` of them in use). A bucket added with weight 0 has an entry too, as it
   * set the lowest/highest bucket in the array form.
   */
  private buckets = NO_BUCKETS;
  private weights = NO_WEIGHTS;
  private count = 0;
  private total = 0;
  private moment = 0;

  /**
   * `momentOf` (optional): a per-bucket value whose weighted sum is kept up to date (e.g. the
   * bucket's ratio for log-ratio histograms), so expected-slack sums cost nothing extra.
   */
  constructor(
    readonly scheme: BucketScheme,
    private readonly momentOf?: (bucket: number) => number,
  ) {
    // Bucket indices are kept as 16-bit integers.
    if (!(scheme.numBuckets >= 1 && scheme.numBuckets <= MAX_BUCKETS)) throw new RangeError(`a histogram has 1 to ${MAX_BUCKETS} buckets, not ${scheme.numBuckets}`);
  }

  get totalWeight(): number {
    return this.total;
  }

  /** Sum of weight * momentOf(bucket) (0 without momentOf). */
  get momentSum(): number {
    return this.moment;
  }

  get lowestBucket(): number {
    return this.count > 0 ? this.buckets[0] : this.scheme.numBuckets - 1;
  }

  get highestBucket(): number {
    return this.count > 0 ? this.buckets[this.count - 1] : 0;
  }

  /** Entries, lowest bucket first: walk them with `entryBucket(i)` / `entryWeight(i)`, i < entryCount. */
  get entryCount(): number {
    return this.count;
  }

  entryBucket(index: number): number {
    return this.buckets[index];
  }

  entryWeight(index: number): number {
    return this.weights[index];
  }

  weightOf(bucket: number): number {
    const i = this.search(bucket);
    return i < this.count && this.buckets[i] === bucket ? this.weights[i] : 0;
  }

  isEmpty(): boolean {
    return this.total < EPSILON;
  }

  addSample(value: number, weight: number): void {
    this.addToBucket(this.scheme.bucketOf(value), weight);
  }

  addToBucket(bucket: number, weight: number): void {
    let i = this.search(bucket);
    if (i === this.count || this.buckets[i] !== bucket) this.insert(i, bucket);
    this.weights[i] += weight;
    this.total += weight;
    if (this.momentOf !== undefined) this.moment += weight * this.momentOf(bucket);
  }

  /** The index of the first entry whose bucket is >= `bucket` (count when none). */
  private search(bucket: number): number {
    let low = 0;
    let high = this.count;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.buckets[mid] < bucket) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /** Opens an entry of weight 0 for `bucket` at `index`, growing the arrays by doubling. */
  private insert(index: number, bucket: number): void {
    if (this.count === this.buckets.length) {
      const size = Math.min(this.scheme.numBuckets, Math.max(INITIAL_ENTRIES, 2 * this.count));
      const buckets = new Uint16Array(size);
      const weights = new Float64Array(size);
      buckets.set(this.buckets.subarray(0, this.count));
      weights.set(this.weights.subarray(0, this.count));
      this.buckets = buckets;
      this.weights = weights;
    }
    this.buckets.copyWithin(index + 1, index, this.count);
    this.weights.copyWithin(index + 1, index, this.count);
    this.buckets[index] = bucket;
    this.weights[index] = 0;
    this.count++;
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
    const last = this.count - 1;
    if (last < 0) return p < 0.5 ? this.lowestBucket : this.highestBucket;
    if (p < 0.5) {
      let partial = 0;
      for (let i = 0; i < last; i++) {
        partial += this.weights[i];
        if (partial >= threshold) return this.buckets[i];
      }
      return this.buckets[last];
    }
    let above = 0;
    for (let i = last; i > 0; i--) {
      const aboveNext = above + this.weights[i];
      if (this.total - aboveNext < threshold) return this.buckets[i];
      above = aboveNext;
    }
    return this.buckets[0];
  }

  /** Multiplies every weight (decay); drops buckets that fall below epsilon, as VPA does. */
  scale(factor: number): void {
    let total = 0;
    let moment = 0;
    let kept = 0;
    for (let i = 0; i < this.count; i++) {
      const w = this.weights[i] * factor;
      // Not `w < EPSILON`: a NaN weight (a factor of NaN, or 0 x Infinity) is dropped too, as the
      // array form left it out of the total and the range.
      if (!(w >= EPSILON)) continue;
      const bucket = this.buckets[i];
      this.buckets[kept] = bucket;
      this.weights[kept] = w;
      kept++;
      total += w;
      if (this.momentOf !== undefined) moment += w * this.momentOf(bucket);
    }
    this.count = kept;
    this.total = total;
    this.moment = moment;
  }

  toJSON(): HistogramState {
    const buckets: [number, number][] = [];
    for (let i = 0; i < this.count; i++) if (this.weights[i] > 0) buckets.push([this.buckets[i], this.weights[i]]);
    return { scheme: this.scheme.toJSON(), buckets };
  }

  /**
   * `expected`: the scheme the caller's own histograms use. The state must have been saved with
   * it (anything else is another model's, or built to be slow: up to 10,000 buckets per
   * histogram), and the histogram gets that object, not a copy (a restored shard has hundreds).
   */
  static fromJSON(state: HistogramState, momentOf?: (bucket: number) => number, expected?: BucketScheme): Histogram {
    if (expected !== undefined) checkState(sameScheme(expected.toJSON(), state?.scheme), 'scheme', state?.scheme, `the model's bucket scheme ${JSON.stringify(expected.toJSON())}`);
    const scheme = expected ?? bucketSchemeFromJSON(state.scheme);
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

function sameScheme(a: BucketSchemeState, b: BucketSchemeState | undefined): boolean {
  return a.kind === 'exponential'
    ? b?.kind === 'exponential' && a.firstBucketSize === b.firstBucketSize && a.ratio === b.ratio && a.maxValue === b.maxValue
    : b?.kind === 'linear' && a.min === b.min && a.max === b.max && a.width === b.width;
}
