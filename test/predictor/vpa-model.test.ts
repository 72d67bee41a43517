import { ExponentialBuckets } from '../../src/predictor/bucket-scheme';
import { DecayClock } from '../../src/predictor/decay-clock';
import { Histogram } from '../../src/predictor/histogram';
import { VpaModel } from '../../src/predictor/vpa-model';

const options = { resource: 'cpu' as const, intervalSeconds: 300, horizonSeconds: 900 };
const DAY = 86400;
const T0 = 1_700_006_400 - (1_700_006_400 % DAY);

describe('vpa baseline', () => {
  it('uses the VPA cpu bucket scheme: 0.01 core first bucket, 5 % growth, 1000 cores', () => {
    const scheme = new ExponentialBuckets(0.01, 1.05, 1000);
    // histogram_options.go: ceil(log(1000 * 0.05 / 0.01 + 1) / log(1.05)) + 1
    expect(scheme.numBuckets).toBe(176);
    expect(scheme.bucketOf(0.005)).toBe(0);
    expect(scheme.bucketOf(1)).toBe(36);
    expect(scheme.bucketOf(2)).toBe(49);
    expect(scheme.bucketStart(1)).toBeCloseTo(0.01, 12);
    expect(scheme.bucketOf(1e9)).toBe(175);
  });

  it('predicts an application larger than the per-container top of VPA (1000 cores, 1e12 bytes, 1e7 ops) above its level', () => {
    for (const [resource, value] of [['cpu', 5000], ['memory', 1e15], ['read', 1e9]] as const) {
      const model = new VpaModel({ ...options, resource });
      for (let i = 0; i < 288; i++) model.update({ atSeconds: T0 + i * 300, value });
      // Was the top bucket's start times 1.15 (1150 cores, 1.15e12 bytes): every peak a violation.
      expect(model.predict(900, 0.95)).toBeGreaterThan(value);
      expect(model.predict(900, 0.95)).toBeLessThan(value * 1.15 * 1.05);
    }
  });

  it('matches a hand-computed decaying-histogram percentile times 1.15', () => {
    // Samples: 1 core at day 0, 2 cores at day 1 -> weights 1 and 2 (24 h half-life), total 3.
    const model = new VpaModel(options);
    model.update({ atSeconds: T0, value: 1 });
    model.update({ atSeconds: T0 + DAY, value: 2 });
    // p50: threshold 1.5 > 1 -> bucket of 2 cores (49); VPA returns its end = start(50):
    // 0.01 * (1.05^50 - 1) / 0.05 = 2.0934...
    const endOf49 = (0.01 * (Math.pow(1.05, 50) - 1)) / 0.05;
    expect(model.predict(900, 0.5)).toBeCloseTo(endOf49 * 1.15, 10);
    // p30: threshold 0.9 <= 1 -> bucket of 1 core (36), end = start(37).
    const endOf36 = (0.01 * (Math.pow(1.05, 37) - 1)) / 0.05;
    expect(model.predict(900, 0.3)).toBeCloseTo(endOf36 * 1.15, 10);
    expect(model.predict(900, 0.3)).toBeCloseTo(1.1687, 3);
  });

  it('lets old samples fade: a day later the newer sample weighs twice as much', () => {
    const model = new VpaModel(options);
    // Three 1-core samples on day 0, then two 2-core samples on day 1: weights 3 vs 4.
    for (let k = 0; k < 3; k++) model.update({ atSeconds: T0 + k, value: 1 });
    for (let k = 0; k < 2; k++) model.update({ atSeconds: T0 + DAY + k, value: 2 });
    // 3 / (3 + 2 * 2^(1 + tiny)) < 0.45 -> the p45 lands on the 2-core bucket.
    expect(model.predict(900, 0.45)).toBeGreaterThan(2 * 1.15);
    expect(model.predict(900, 0.42)).toBeLessThan(1.1 * 1.15);
  });

  it('moves its reference past 100 half-lives and the old samples become negligible', () => {
    const histogram = new Histogram(new ExponentialBuckets(0.01, 1.05, 1000));
    const clock = new DecayClock(DAY);
    const add = (t: number, v: number) => histogram.addSample(v, clock.weightAt(t, (f) => histogram.scale(f)));
    add(T0, 1);
    add(T0 + 1, 2);
    const before = histogram.percentile(0.5);
    add(T0 + 150 * DAY, 0.5); // forces a reference shift; the old samples are negligible afterwards
    expect(histogram.percentile(0.5)).toBeLessThan(before);
    expect(histogram.percentile(0.99)).toBeCloseTo((0.01 * (Math.pow(1.05, new ExponentialBuckets(0.01, 1.05, 1000).bucketOf(0.5) + 1) - 1)) / 0.05, 10);
  });

  it('has nothing to say before its first sample, and ignores missing samples', () => {
    const model = new VpaModel(options);
    expect(model.predict(900, 0.95)).toBeNaN();
    model.update({ atSeconds: T0, value: NaN });
    expect(model.predict(900, 0.95)).toBeNaN();
  });
});
