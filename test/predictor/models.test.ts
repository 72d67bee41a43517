import { backtestSeries, DEFAULT_WARMUP_SECONDS } from '../../src/predictor/backtest';
import type { DemandModel, ModelOptions } from '../../src/predictor/demand-model';
import { createModel, modelFromJSON, type ModelName } from '../../src/predictor/model-registry';
import { constant, DAY_STEPS, dailySineWithNoise, expectGoesOnAlike, INTERVAL, linearTrend, seriesOf, START_SECONDS, stepChange } from './synthetic';

const options: ModelOptions = { resource: 'cpu', intervalSeconds: INTERVAL, horizonSeconds: 900 };
const OURS: ModelName[] = ['recent-peak', 'seasonal-peak', 'holt'];
const ALL: ModelName[] = ['vpa', ...OURS];

function feed(model: DemandModel, values: Float64Array, upTo = values.length): void {
  for (let i = 0; i < upTo; i++) model.update({ atSeconds: START_SECONDS + i * INTERVAL, value: values[i] });
}

function violationOf(name: ModelName, values: Float64Array): { violation: number; points: number; slack: number } {
  const result = backtestSeries(seriesOf(values), new Map([[name, (o: ModelOptions) => createModel(name, o)]]), {
    resource: 'cpu',
    horizonSeconds: 900,
    quantile: 0.95,
    warmupSeconds: DEFAULT_WARMUP_SECONDS,
  });
  return (result.metrics.get(name) as { figures(): { violation: number; points: number; slack: number } }).figures();
}

describe.each(OURS)('model %s', (name) => {
  it('predicts a constant series as that constant (within one 2 % ratio bucket)', () => {
    const model = createModel(name, options);
    feed(model, constant(1.5, 3 * DAY_STEPS));
    const prediction = model.predict(900, 0.95);
    expect(prediction).toBeGreaterThanOrEqual(1.5);
    expect(prediction).toBeLessThanOrEqual(1.5 * 1.021);
  });

  it('is calibrated at q = 0.95 within +-2 points on a daily sine plus noise', () => {
    const { violation, points } = violationOf(name, dailySineWithNoise(28 * DAY_STEPS));
    expect(points).toBeGreaterThan(5000);
    expect(violation).toBeGreaterThanOrEqual(0.03);
    expect(violation).toBeLessThanOrEqual(0.07);
  });

  it('follows a linear trend: the prediction is the coming peak within 3 %', () => {
    const n = 10 * DAY_STEPS;
    const values = linearTrend(1, 0.001, n);
    const model = createModel(name, options);
    feed(model, values);
    const comingPeak = 1 + 0.001 * (n - 1 + 3);
    const prediction = model.predict(900, 0.95);
    expect(Math.abs(prediction / comingPeak - 1)).toBeLessThan(0.03);
  });

  it('refuses a horizon it was not built for, naming the field', () => {
    const model = createModel(name, options);
    feed(model, constant(1, 100));
    expect(() => model.predict(1800, 0.95)).toThrow(/horizonSeconds: model .* was built for a horizon of 900 s/);
  });
});

describe('step change', () => {
  // Stated absorption times: recent-peak and seasonal-peak one horizon (3 steps) after the new
  // level fills their window; holt four horizons (its level half-life is one horizon).
  it.each([
    ['recent-peak', 3],
    ['seasonal-peak', 3],
    ['holt', 12],
  ] as const)('%s covers a step from 1 to 3 cores within %i steps, without overshooting by more than 20 %', (name, steps) => {
    const at = 8 * DAY_STEPS;
    const values = stepChange(1, 3, at, at + steps + 1);
    const model = createModel(name, options);
    feed(model, values, at);
    expect(model.predict(900, 0.95)).toBeLessThan(1.3);
    for (let i = at; i < at + steps; i++) model.update({ atSeconds: START_SECONDS + i * INTERVAL, value: values[i] });
    const prediction = model.predict(900, 0.95);
    expect(prediction).toBeGreaterThanOrEqual(3);
    expect(prediction).toBeLessThanOrEqual(3 * 1.2);
  });
});

describe.each(ALL)('%s state and time', (name) => {
  it('never looks ahead: changing the future leaves every past prediction unchanged', () => {
    const n = 9 * DAY_STEPS;
    const cut = 8 * DAY_STEPS;
    const a = dailySineWithNoise(n, 11);
    const b = Float64Array.from(a);
    // Shuffle the future of b (Fisher-Yates with a fixed order).
    for (let i = n - 1; i > cut; i--) {
      const j = cut + ((i * 7919) % (i - cut));
      [b[i], b[j]] = [b[j], b[i]];
    }
    expect(Array.from(b.subarray(cut))).not.toEqual(Array.from(a.subarray(cut)));
    const ma = createModel(name, options);
    const mb = createModel(name, options);
    for (let i = 0; i < cut; i++) {
      ma.update({ atSeconds: START_SECONDS + i * INTERVAL, value: a[i] });
      mb.update({ atSeconds: START_SECONDS + i * INTERVAL, value: b[i] });
      if (i % 97 === 0) expect(mb.predict(900, 0.95)).toBe(ma.predict(900, 0.95));
    }
  });

  it('survives a JSON round trip of its state and goes on predicting identically', () => {
    const values = dailySineWithNoise(9 * DAY_STEPS, 5);
    const original = createModel(name, options);
    feed(original, values, 8 * DAY_STEPS);
    const restored = modelFromJSON(JSON.parse(JSON.stringify(original.toJSON())));
    expect(restored.name).toBe(name);
    for (let i = 8 * DAY_STEPS; i < values.length; i++) {
      const sample = { atSeconds: START_SECONDS + i * INTERVAL, value: values[i] };
      original.update(sample);
      restored.update(sample);
      expect(restored.predict(900, 0.95)).toBe(original.predict(900, 0.95));
    }
  });

  it('saves a new model, before and after its first samples, in the format it always had, and loads it to go on as one never saved', () => {
    const values = dailySineWithNoise(DAY_STEPS, 6);
    const rows = 900 / INTERVAL + 1;
    for (const fed of [0, 1, 3, rows, rows + 1]) {
      const original = createModel(name, options);
      feed(original, values, fed);
      const state = JSON.parse(JSON.stringify(original.toJSON()));
      if (name === 'vpa') {
        expect(state.histogram.scheme).toEqual({ kind: 'exponential', firstBucketSize: 0.01, ratio: 1.05, maxValue: 1e6 });
        expect(state.histogram.buckets.length > 0).toBe(fed > 0);
      } else {
        const keyLevels = state.levels.length - 1;
        expect(state.pending.steps).toHaveLength(rows);
        expect(state.pending.bases).toHaveLength(rows);
        expect(state.pending.keys).toHaveLength(rows * keyLevels);
        if (fed === 0) {
          expect(state.pending).toEqual({ steps: Array(rows).fill(-1), bases: Array(rows).fill(null), keys: Array(rows * keyLevels).fill(0) });
          expect(state.levels).toEqual(Array(keyLevels + 1).fill([]));
        }
      }
      const restored = modelFromJSON(state);
      expect(restored.toJSON()).toEqual(state);
      expectGoesOnAlike(original, restored, values, fed);
    }
  });

  it('refuses a state whose clock has another half-life or whose histograms another bucket scheme, naming the field', () => {
    const model = createModel(name, options);
    feed(model, dailySineWithNoise(DAY_STEPS, 4), DAY_STEPS);
    const state = JSON.parse(JSON.stringify(model.toJSON()));
    // 1e-300 or Infinity (JSON's 1e400) would make every weight NaN or 0.
    expect(() => modelFromJSON({ ...state, clock: { ...state.clock, halfLifeSeconds: 1e-300 } })).toThrow('state.clock.halfLifeSeconds: 1e-300 is not the model\'s half-life');
    const foreign = { kind: 'linear', min: 0, max: 10_000, width: 1 };
    const withForeignScheme =
      name === 'vpa'
        ? { ...state, histogram: { ...state.histogram, scheme: foreign } }
        : { ...state, levels: state.levels.map((level: [number, { buckets: unknown }][]) => level.map(([key, h]) => [key, { ...h, scheme: foreign }])) };
    expect(() => modelFromJSON(withForeignScheme)).toThrow('state.scheme: {"kind":"linear","min":0,"max":10000,"width":1} is not the model\'s bucket scheme');
  });

  it('treats a gap as missing data, not as zero load', () => {
    const values = constant(2, 4 * DAY_STEPS);
    for (let i = 2 * DAY_STEPS; i < 2 * DAY_STEPS + 370; i++) values[i] = NaN; // a ~31 h gap
    const model = createModel(name, options);
    feed(model, values);
    expect(model.predict(900, 0.95)).toBeGreaterThanOrEqual(2);
  });
});
