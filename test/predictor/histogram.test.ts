import { LinearBuckets } from '../../src/predictor/bucket-scheme';
import { Histogram } from '../../src/predictor/histogram';
import { seededRandom } from '../../src/predictor/seeded-random';

/** The plain form the windowed histogram must equal: one weight per bucket of the scheme. */
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
  it('keeps the weights of every bucket exactly while its window grows in both directions and up to both ends', () => {
    const scheme = new LinearBuckets(-6.9, 6.9, 0.02);
    const random = seededRandom(7);
    const windowed = new Histogram(scheme);
    const full = new FullHistogram(scheme);
    // Starts in the middle, then drifts to each end (the first and last buckets included).
    const centres = [345, 360, 300, 500, 20, 0, scheme.numBuckets - 1, 200];
    for (const centre of centres) {
      for (let i = 0; i < 200; i++) {
        const bucket = Math.max(0, Math.min(scheme.numBuckets - 1, Math.round(centre + (random() - 0.5) * 40)));
        const weight = random() * 3;
        windowed.addToBucket(bucket, weight);
        full.add(bucket, weight);
      }
      if (centre === 500) {
        windowed.scale(0.5);
        full.scale(0.5);
      }
      for (let b = 0; b < scheme.numBuckets; b++) expect(windowed.weightOf(b)).toBe(full.weights[b]);
      for (const p of [0.01, 0.3, 0.5, 0.9, 0.95, 0.999]) expect(windowed.percentileBucket(p)).toBe(full.percentileBucket(p));
    }
    expect(windowed.weightOf(-1)).toBe(0);
    expect(windowed.weightOf(scheme.numBuckets)).toBe(0);
    const reloaded = Histogram.fromJSON(windowed.toJSON());
    for (let b = 0; b < scheme.numBuckets; b++) expect(reloaded.weightOf(b)).toBeCloseTo(full.weights[b], 9);
  });

  it('answers like an empty histogram before its first sample', () => {
    const histogram = new Histogram(new LinearBuckets(0, 1, 0.1));
    expect(histogram.isEmpty()).toBe(true);
    expect(histogram.percentile(0.95)).toBe(0);
    expect(histogram.weightOf(3)).toBe(0);
    expect(histogram.toJSON().buckets).toEqual([]);
  });
});
