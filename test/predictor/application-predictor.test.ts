import { assertDemandVector, checkDemandVector } from '../../src/contracts/demand-vector';
import { ApplicationPredictor, DEFAULT_PREDICTOR_SETTINGS, predictSeries, predictorSettingsFromPlan } from '../../src/predictor/application-predictor';
import { ColdStart } from '../../src/predictor/cold-start';
import { createModel } from '../../src/predictor/model-registry';
import { DAY_STEPS, dailySineWithNoise, INTERVAL, seriesOf, START_SECONDS } from './synthetic';

const SEED_EXAMPLE = `{
  "timestamp": "2024-10-27T10:00:00Z",
  "application_id": "app123",
  "resources": {
    "cpu": { "cores": 8, "percentage": 90 },
    "memory": { "gb": 16, "percentage": 80 },
    "io": { "read_ops": 1000, "write_ops": 500 }
  }
}`;

describe('demand vectors', () => {
  it('round-trips the seed example vector unchanged', () => {
    const parsed = JSON.parse(SEED_EXAMPLE);
    expect(JSON.parse(JSON.stringify(assertDemandVector(parsed)))).toEqual(JSON.parse(SEED_EXAMPLE));
  });

  it('emits a valid vector at now + horizon with absolute need and % of allocation', () => {
    const series = { ...seriesOf(dailySineWithNoise(9 * DAY_STEPS)), allocation: { cpuCores: 4, memoryBytes: 8 * 2 ** 30, iops: 1000 } };
    const vector = predictSeries(series) as NonNullable<ReturnType<typeof predictSeries>>;
    expect(checkDemandVector(vector).ok).toBe(true);
    const lastSeconds = START_SECONDS + (series.cpuCores.length - 1) * INTERVAL;
    expect(vector.timestamp).toBe(new Date((lastSeconds + 900) * 1000).toISOString().replace('.000Z', 'Z'));
    expect(vector.horizon_seconds).toBe(900);
    expect(vector.quantile).toBe(0.95);
    expect(vector.model).toMatch(/^auto\(cpu=[a-z-]+,memory=[a-z-]+\)$/);
    expect(vector.resources.cpu.cores).toBeGreaterThan(0.5);
    expect(vector.resources.cpu.percentage).toBeCloseTo((vector.resources.cpu.cores / 4) * 100, 0);
    expect(vector.resources.memory.gb).toBeCloseTo((vector.resources.cpu.cores * 2 ** 30) / 1e9, 0);
    expect(vector.resources.io?.percentage).toBeDefined();
    expect(vector.confidence).toBe(1);
  });

  it('says so when it answers from the cold-start prior: model cold-start-prior, confidence 0', () => {
    const predictor = new ApplicationPredictor('young', DEFAULT_PREDICTOR_SETTINGS, { cpuCores: 2, memoryBytes: 2 ** 30 }, 'young-0');
    for (let i = 0; i < 12; i++) predictor.update(START_SECONDS + i * INTERVAL, { cpu: 0.5, memory: 2 ** 29, read: 1, write: 1 });
    const vector = predictor.vector();
    expect(vector).toMatchObject({ model: 'cold-start-prior', confidence: 0, shard_id: 'young-0', application_id: 'young' });
    // The prior: the larger of the allocation and twice the highest value seen.
    expect(vector?.resources.cpu.cores).toBe(2);
    expect(vector?.resources.cpu.percentage).toBe(100);
    expect(checkDemandVector(vector).ok).toBe(true);
  });

  it('never predicts 0 for what was never measured: no io without io samples, no vector without memory or its allocation', () => {
    const feed = (predictor: ApplicationPredictor, memory: number) => {
      for (let i = 0; i < 2 * DAY_STEPS; i++) predictor.update(START_SECONDS + i * INTERVAL, { cpu: 1, memory, read: NaN, write: NaN });
      return predictor.vector();
    };
    // A generic CSV with empty read_ops / write_ops: the vector said read_ops 0, write_ops 0.
    const withoutIo = feed(new ApplicationPredictor('no-io'), 2e9);
    expect(withoutIo?.resources.io).toBeUndefined();
    expect(withoutIo?.resources.memory.gb).toBeGreaterThanOrEqual(2);
    expect(withoutIo?.confidence).toBeGreaterThan(0);
    // Memory never measured and no allocation: the vector said memory 0 GB.
    expect(feed(new ApplicationPredictor('cpu-only'), NaN)).toBeNull();
    // With an allocation, the prior assumes all of it, and says so.
    expect(feed(new ApplicationPredictor('cpu-only', DEFAULT_PREDICTOR_SETTINGS, { memoryBytes: 4e9 }), NaN)).toMatchObject({
      resources: { memory: { gb: 4, percentage: 100 } },
      model: 'cold-start-prior',
      confidence: 0,
    });
  });

  it('has no vector before the first sample', () => {
    expect(new ApplicationPredictor('empty').vector()).toBeNull();
  });

  it('a predictor saved new or after a few samples loads and gives the vectors and state of one never saved', () => {
    const settings = { ...DEFAULT_PREDICTOR_SETTINGS, minHistorySeconds: 3600 };
    const values = dailySineWithNoise(2 * DAY_STEPS, 4);
    const feed = (p: ApplicationPredictor, i: number) => p.update(START_SECONDS + i * INTERVAL, { cpu: values[i], memory: values[i] * 1e9, read: values[i] * 100, write: NaN });
    for (const fed of [0, 1, 3, 4, 5]) {
      const original = new ApplicationPredictor('app', settings, { cpuCores: 4, memoryBytes: 8e9 }, 'app-0');
      for (let i = 0; i < fed; i++) feed(original, i);
      const state = JSON.parse(JSON.stringify(original.toJSON()));
      const restored = ApplicationPredictor.fromJSON(state, { cpuCores: 4, memoryBytes: 8e9 });
      expect(restored.toJSON()).toEqual(state);
      for (let i = fed; i < values.length; i++) {
        feed(original, i);
        feed(restored, i);
        expect(restored.vector()).toEqual(original.vector());
      }
      expect(restored.toJSON()).toEqual(original.toJSON());
      expect(original.vector()?.model).toMatch(/^auto\(/);
    }
  });

  it('takes a reading that is not a finite non-negative number as missing, counted, so one bad reading cannot break or skew later vectors', () => {
    // An Infinity (a rate over a zero interval) made every vector invalid for an hour and the
    // selection's price unit Infinity for good; a negative one was learnt as a load.
    const settings = { ...DEFAULT_PREDICTOR_SETTINGS, minHistorySeconds: 3600 };
    const values = dailySineWithNoise(3 * DAY_STEPS, 4);
    const bad = 2 * DAY_STEPS;
    const run = (cpuThere: number) => {
      const predictor = new ApplicationPredictor('app', settings, { cpuCores: 4, memoryBytes: 8e9 });
      const vectors: unknown[] = [];
      for (let i = 0; i < values.length; i++) {
        predictor.update(START_SECONDS + i * INTERVAL, { cpu: i === bad ? cpuThere : values[i], memory: values[i] * 1e9, read: values[i] * 100, write: 1 });
        if (i >= bad) vectors.push(predictor.vector());
      }
      return { vectors, state: predictor.toJSON(), ignored: predictor.ignoredSamples };
    };
    const missing = run(NaN);
    for (const [reading, reason] of [[Infinity, 'notFinite'], [-Infinity, 'notFinite'], [-0.5, 'negative']] as const) {
      const got = run(reading);
      expect(got.vectors).toEqual(missing.vectors);
      expect(got.state).toEqual(missing.state);
      expect(got.ignored).toEqual({ notFinite: 0, negative: 0, notAfterLast: 0, [reason]: 1 });
    }
    expect(missing.ignored).toEqual({ notFinite: 0, negative: 0, notAfterLast: 0 });
  });

  it('drops a sample at or before the last one fed (the clock went back), counted, and goes on with the next later one as if it never came', () => {
    // vpa and the prior learnt it while the ratio models ignored it, the vector went back in
    // time, and one dated 1970 scaled vpa's weights by 2^19676: Infinity, then NaN, its history gone.
    const settings = { ...DEFAULT_PREDICTOR_SETTINGS, model: 'vpa' as const, minHistorySeconds: 3600 };
    const values = dailySineWithNoise(3 * DAY_STEPS, 4);
    const at = (i: number) => START_SECONDS + i * INTERVAL;
    const sample = (i: number, cpu = values[i]) => ({ cpu, memory: values[i] * 1e9, read: 5, write: 1 });
    for (const stray of [at(2 * DAY_STEPS), at(2 * DAY_STEPS) - 3600, 0]) {
      const steady = new ApplicationPredictor('app', settings, { cpuCores: 4 });
      const stepped = new ApplicationPredictor('app', settings, { cpuCores: 4 });
      for (let i = 0; i < values.length; i++) {
        steady.update(at(i), sample(i));
        stepped.update(at(i), sample(i));
        if (i === 2 * DAY_STEPS) stepped.update(stray, sample(i, 3.5));
        expect(stepped.vector()).toEqual(steady.vector());
      }
      expect(stepped.toJSON()).toEqual(steady.toJSON());
      expect(stepped.ignoredSamples).toEqual({ notFinite: 0, negative: 0, notAfterLast: 1 });
    }
  });

  it('every vector emitted over a month of synthetic history validates', () => {
    const predictor = new ApplicationPredictor('month', DEFAULT_PREDICTOR_SETTINGS, { cpuCores: 4 });
    const values = dailySineWithNoise(10 * DAY_STEPS, 2);
    for (let i = 0; i < values.length; i++) {
      predictor.update(START_SECONDS + i * INTERVAL, { cpu: values[i], memory: values[i] * 1e9, read: NaN, write: 0 });
      if (i % 50 === 0) expect(checkDemandVector(predictor.vector())).toMatchObject({ ok: true });
    }
  });
});

describe('cold start wrapper', () => {
  it('uses twice the highest value seen when no allocation is known, then hands over after minHistory', () => {
    const model = new ColdStart(createModel('vpa', { resource: 'cpu', intervalSeconds: INTERVAL, horizonSeconds: 900 }), 3600);
    model.update({ atSeconds: START_SECONDS, value: 0.3 });
    expect(model.name).toBe('cold-start-prior');
    expect(model.predict(900, 0.95)).toBe(0.6);
    for (let i = 1; i <= 12; i++) model.update({ atSeconds: START_SECONDS + i * INTERVAL, value: 0.3 });
    expect(model.name).toBe('vpa');
    expect(model.predict(900, 0.95)).toBeLessThan(0.6);
  });
});

describe('predictor settings from the plan', () => {
  it('takes the plan block as is and refuses an unknown model naming predictor.model', () => {
    const plan = { model: 'auto', horizonSeconds: 900, quantile: 0.95, intervalSeconds: 300, minHistorySeconds: 86400 };
    expect(predictorSettingsFromPlan(plan)).toEqual(plan);
    expect(predictorSettingsFromPlan({ ...plan, model: 'holt' }).model).toBe('holt');
    expect(() => predictorSettingsFromPlan({ ...plan, model: 'prophet' })).toThrow('predictor.model: "prophet" is not a known model; use auto or one of vpa, recent-peak, seasonal-peak, holt');
  });
});
