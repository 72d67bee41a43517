import { LinearBuckets } from '../../src/predictor/bucket-scheme';
import { Histogram } from '../../src/predictor/histogram';
import { seededRandom } from '../../src/predictor/seeded-random';

/** The plain form the sparse histogram must equal: one weight per bucket of the scheme. */
class FullHistogram {
  readonly weights: Float64Array;
  constructor(readonly scheme: LinearBuckets) {
    this.weights = new Float64Array(scheme.numBuckets);
  }
  add(bucket: number, weight: number): void {
    this.weights[bucket] += weight;
  }
  scale(factor: number): void {
    for (let b = 0; b < this.weights.length; b++) {
      const w = this.weights[b] * factor;
      this.weights[b] = w < 1e-4 ? 0 : w;
    }
  }
  percentileBucket(p: number): number {
    const total = this.weights.reduce((a, b) => a + b, 0);
    let partial = 0;
    for (let b = 0; b < this.weights.length; b++) {
      partial += this.weights[b];
      if (partial >= p * total) return b;
    }
    return this.weights.length - 1;
  }
}

describe('histogram storage', () => {
  it('keeps the weights of every bucket exactly while its entries spread in both directions and up to both ends', () => {
    const scheme = new LinearBuckets(-6.9, 6.9, 0.02);
    const random = seededRandom(7);
    const sparse = new Histogram(scheme);
    const full = new FullHistogram(scheme);
    // Starts in the middle, then drifts to each end (the first and last buckets included).
    const centres = [345, 360, 300, 500, 20, 0, scheme.numBuckets - 1, 200];
    for (const centre of centres) {
      for (let i = 0; i < 200; i++) {
        const bucket = Math.max(0, Math.min(scheme.numBuckets - 1, Math.round(centre + (random() - 0.5) * 40)));
        const weight = random() * 3;
        sparse.addToBucket(bucket, weight);
        full.add(bucket, weight);
      }
      if (centre === 500) {
        sparse.scale(0.5);
        full.scale(0.5);
      }
      for (let b = 0; b < scheme.numBuckets; b++) expect(sparse.weightOf(b)).toBe(full.weights[b]);
      for (const p of [0.01, 0.3, 0.5, 0.9, 0.95, 0.999]) expect(sparse.percentileBucket(p)).toBe(full.percentileBucket(p));
      // The entries are exactly the buckets with weight, lowest first.
      const withWeight = [...full.weights.keys()].filter((b) => full.weights[b] > 0);
      expect(Array.from({ length: sparse.entryCount }, (_, i) => sparse.entryBucket(i))).toEqual(withWeight);
      expect(Array.from({ length: sparse.entryCount }, (_, i) => sparse.entryWeight(i))).toEqual(withWeight.map((b) => full.weights[b]));
      expect([sparse.lowestBucket, sparse.highestBucket]).toEqual([withWeight[0], withWeight[withWeight.length - 1]]);
    }
    expect(sparse.weightOf(-1)).toBe(0);
    expect(sparse.weightOf(scheme.numBuckets)).toBe(0);
    const reloaded = Histogram.fromJSON(sparse.toJSON());
    for (let b = 0; b < scheme.numBuckets; b++) expect(reloaded.weightOf(b)).toBeCloseTo(full.weights[b], 9);
  });

  it('treats a bucket added with weight 0 as the array form did: it bounds the walks until a scale drops it', () => {
    const histogram = new Histogram(new LinearBuckets(0, 10, 1));
    histogram.addToBucket(4, 2);
    histogram.addToBucket(9, 0);
    histogram.addToBucket(1, 0);
    expect([histogram.lowestBucket, histogram.highestBucket, histogram.entryCount]).toEqual([1, 9, 3]);
    // Top-down walk: the weightless top bucket is passed over (the weight above it is 0).
    expect(histogram.percentileBucket(0.95)).toBe(4);
    expect(histogram.percentileBucket(0.01)).toBe(4);
    histogram.scale(0.5);
    expect([histogram.lowestBucket, histogram.highestBucket, histogram.entryCount, histogram.totalWeight]).toEqual([4, 4, 1, 1]);
    histogram.scale(1e-5);
    expect([histogram.entryCount, histogram.totalWeight, histogram.isEmpty()]).toEqual([0, 0, true]);
    expect([histogram.lowestBucket, histogram.highestBucket]).toEqual([10, 0]);
  });

  it('answers like an empty histogram before its first sample', () => {
    const histogram = new Histogram(new LinearBuckets(0, 1, 0.1));
    expect(histogram.isEmpty()).toBe(true);
    expect(histogram.percentile(0.95)).toBe(0);
    expect(histogram.weightOf(3)).toBe(0);
    expect(histogram.toJSON().buckets).toEqual([]);
  });

  it('loads a state onto the scheme its model expects, and refuses one saved with another', () => {
    const expected = new LinearBuckets(-6.9, 6.9, 0.02);
    const saved = new Histogram(new LinearBuckets(-6.9, 6.9, 0.02));
    saved.addToBucket(300, 2);
    expect(Histogram.fromJSON(saved.toJSON(), undefined, expected).scheme).toBe(expected);
    // Another model's, or one built to be slow to load (up to 10,000 buckets each).
    const other = new Histogram(new LinearBuckets(0, 10, 1));
    other.addToBucket(3, 1);
    expect(() => Histogram.fromJSON(other.toJSON(), undefined, expected)).toThrow('state.scheme: {"kind":"linear","min":0,"max":10,"width":1} is not the model\'s bucket scheme');
    expect(Histogram.fromJSON(other.toJSON()).percentile(0.5)).toBe(4);
  });

  it('drops a weight that scaling made NaN, as the array form left it out of the total and the range', () => {
    const histogram = new Histogram(new LinearBuckets(0, 10, 1));
    histogram.addToBucket(2, 0);
    histogram.addToBucket(5, 3);
    histogram.scale(Infinity); // 0 x Infinity = NaN for bucket 2
    expect([histogram.entryCount, histogram.lowestBucket, histogram.totalWeight]).toEqual([1, 5, Infinity]);
    histogram.scale(NaN);
    expect([histogram.entryCount, histogram.totalWeight, histogram.isEmpty()]).toEqual([0, 0, true]);
  });
});
