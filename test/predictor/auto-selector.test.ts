import { AutoSelector, BASELINE_SHARE, COST_FACTORS, type AutoState } from '../../src/predictor/auto-selector';
import { ConditionalRatioModel } from '../../src/predictor/conditional-ratio-model';
import { backtestSeries, DEFAULT_WARMUP_SECONDS } from '../../src/predictor/backtest';
import type { ModelOptions } from '../../src/predictor/demand-model';
import { createModel, MODEL_NAMES } from '../../src/predictor/model-registry';
import { BacktestMetrics } from '../../src/predictor/backtest-metrics';
import { DAY_STEPS, dailySineWithNoise, expectGoesOnAlike, INTERVAL, random, seriesOf, START_SECONDS } from './synthetic';

const options: ModelOptions = { resource: 'cpu', intervalSeconds: INTERVAL, horizonSeconds: 900 };
const auto = (o: ModelOptions) => new AutoSelector(o, MODEL_NAMES.map((n) => createModel(n, o)), 0.95);

/** Idle with noise, and about three bursts a day of 30-90 min at a random height in [1, 1 + spread]. */
function bursty(seed: number, days: number, spread = 2): Float64Array {
  const rand = random(seed);
  let burst = 0;
  return Float64Array.from({ length: days * DAY_STEPS }, () => {
    if (burst === 0 && rand() < 3 / DAY_STEPS) burst = 6 + Math.floor(12 * rand());
    const v = burst > 0 ? 1 + spread * rand() : 0.3 + 0.2 * rand();
    if (burst > 0) burst--;
    return v;
  });
}

describe('auto selection', () => {
  it('answers with the vpa baseline until a day of points is scored', () => {
    const model = auto(options);
    const values = dailySineWithNoise(DAY_STEPS / 2);
    values.forEach((v, i) => model.update({ atSeconds: START_SECONDS + i * INTERVAL, value: v }));
    expect(model.selection.model).toBe('vpa');
  });

  function compare(values: Float64Array) {
    const result = backtestSeries(
      seriesOf(values),
      new Map([
        ['vpa', (o: ModelOptions) => createModel('vpa', o)],
        ['auto', auto],
        ['calibrated', (o: ModelOptions) => new AutoSelector(o, MODEL_NAMES.map((n) => createModel(n, o)), 0.95, 'vpa', false)],
      ]),
      { resource: 'cpu', horizonSeconds: 900, quantile: 0.95, warmupSeconds: DEFAULT_WARMUP_SECONDS },
    );
    const figures = (name: string) => (result.metrics.get(name) as BacktestMetrics).figures();
    return { vpa: figures('vpa'), auto: figures('auto'), calibrated: figures('calibrated') };
  }

  it('is never less safe than vpa: where vpa never violates (a smooth daily sine), neither does auto', () => {
    const { vpa, auto: selected, calibrated } = compare(dailySineWithNoise(21 * DAY_STEPS, 21));
    expect(vpa.violation).toBe(0);
    expect(selected.violation).toBeLessThanOrEqual(0.002);
    expect(selected.slack).toBeLessThanOrEqual(vpa.slack + 1e-9);
    // Calibrated at q only, the selection spends (up to) the 5 % and saves most of vpa's slack.
    expect(calibrated.violation).toBeGreaterThan(0.01);
    expect(calibrated.violation).toBeLessThanOrEqual(0.07);
    expect(calibrated.slack).toBeLessThan(vpa.slack * 0.5);
  });

  it('where vpa violates more than 1 - q (heavy-tailed noise), auto comes back to q', () => {
    const rand = random(17);
    const values = Float64Array.from({ length: 21 * DAY_STEPS }, () => 1 - Math.log(1 - rand()));
    const { vpa, auto: selected } = compare(values);
    expect(vpa.violation).toBeGreaterThan(0.06);
    expect(selected.violation).toBeLessThan(vpa.violation);
    expect(selected.violation).toBeLessThanOrEqual(0.07);
  });

  it('carries over only unspent budget: the threshold is the target plus the surplus, never below it, never above 1 - q', () => {
    const values = bursty(31, 28);
    const model = auto(options);
    let raised = 0;
    values.forEach((v, i) => {
      model.update({ atSeconds: START_SECONDS + i * INTERVAL, value: v });
      const { violations, budget } = model.ownRecord;
      const target = model.target();
      expect(model.threshold).toBeLessThanOrEqual(0.05 + 1e-12);
      expect(model.threshold).toBeGreaterThanOrEqual(Math.min(target, 0.05) - 1e-12);
      if (violations >= budget) expect(model.threshold).toBeCloseTo(Math.min(target, 0.05), 12);
      else if (model.threshold > target + 1e-9) raised++;
    });
    expect(model.ownRecord.points).toBeGreaterThan(DAY_STEPS);
    expect(raised).toBeGreaterThan(0);
  });

  it('spending the carried budget keeps auto as safe as vpa (within half a point) and cheaper on a bursty series', () => {
    const { vpa, auto: selected } = compare(bursty(31, 28, 0.5));
    expect(vpa.violation).toBeLessThan(0.05);
    expect(selected.violation).toBeLessThanOrEqual(vpa.violation + 0.005);
    expect(selected.slack).toBeLessThan(vpa.slack);
  });

  it('holds back part of the budget, so a fleet of bursty applications ends up at or below vpa pooled, not level with it', () => {
    // Aiming at all of vpa's rate per application leaves the pooled comparison to chance (on these
    // eight series auto lands 0.002 points above vpa that way); BASELINE_SHARE keeps it below.
    expect(BASELINE_SHARE).toBeLessThan(1);
    const pooled = { vpa: new BacktestMetrics(0.95), auto: new BacktestMetrics(0.95) };
    for (let seed = 1; seed <= 8; seed++) {
      const result = backtestSeries(seriesOf(bursty(seed, 28, 0.5)), new Map([['vpa', (o: ModelOptions) => createModel('vpa', o)], ['auto', auto]]), {
        resource: 'cpu',
        horizonSeconds: 900,
        quantile: 0.95,
        warmupSeconds: DEFAULT_WARMUP_SECONDS,
      });
      pooled.vpa.merge(result.metrics.get('vpa') as BacktestMetrics);
      pooled.auto.merge(result.metrics.get('auto') as BacktestMetrics);
    }
    const [vpa, selected] = [pooled.vpa.figures(), pooled.auto.figures()];
    expect(selected.violation).toBeLessThan(vpa.violation);
    expect(selected.slack).toBeLessThan(vpa.slack);
  });

  it('never looks ahead: a different future leaves past selections and predictions unchanged', () => {
    const cut = 9 * DAY_STEPS;
    const a = dailySineWithNoise(10 * DAY_STEPS, 4);
    const b = Float64Array.from(a);
    for (let i = cut; i < b.length; i++) b[i] = 5 - b[i];
    const ma = auto(options);
    const mb = auto(options);
    for (let i = 0; i < cut; i++) {
      ma.update({ atSeconds: START_SECONDS + i * INTERVAL, value: a[i] });
      mb.update({ atSeconds: START_SECONDS + i * INTERVAL, value: b[i] });
      expect(mb.predict(900, 0.95)).toBe(ma.predict(900, 0.95));
    }
  });

  it('refuses a saved state whose pending answers name no pair, or whose scores are not whole rows', () => {
    const values = dailySineWithNoise(2 * DAY_STEPS, 5);
    const model = auto(options);
    for (let i = 0; i < values.length; i++) model.update({ atSeconds: START_SECONDS + i * INTERVAL, value: values[i] });
    const state = JSON.parse(JSON.stringify(model.toJSON())) as AutoState;
    const pairs = model.settings.length;
    expect(() => AutoSelector.fromJSON({ ...state, pendingSelected: [-1, pairs, -1, -1] })).toThrow(`state.pendingSelected: ${pairs} is not -1 or a saved pair`);
    expect(() => AutoSelector.fromJSON({ ...state, pendingSelected: [0.5, -1, -1, -1] })).toThrow('state.pendingSelected: 0.5');
    expect(() => AutoSelector.fromJSON({ ...state, stats: state.stats.slice(1) })).toThrow('state.stats');
    expect(AutoSelector.fromJSON(state).toJSON()).toEqual(state);
  });

  it('survives a JSON round trip of its state', () => {
    const values = dailySineWithNoise(10 * DAY_STEPS, 9);
    const original = auto(options);
    for (let i = 0; i < 9 * DAY_STEPS; i++) original.update({ atSeconds: START_SECONDS + i * INTERVAL, value: values[i] });
    const restored = AutoSelector.fromJSON(JSON.parse(JSON.stringify(original.toJSON())));
    for (let i = 9 * DAY_STEPS; i < values.length; i++) {
      const sample = { atSeconds: START_SECONDS + i * INTERVAL, value: values[i] };
      original.update(sample);
      restored.update(sample);
      expect(restored.predict(900, 0.95)).toBe(original.predict(900, 0.95));
      expect(restored.selection).toEqual(original.selection);
    }
  });

  it('saves a new selector, before and after its first samples, in the format it always had, and loads it to go on as one never saved', () => {
    const values = bursty(3, 1);
    const rows = 900 / INTERVAL + 1;
    for (const fed of [0, 1, 3, rows, rows + 1]) {
      const original = auto(options);
      for (let i = 0; i < fed; i++) original.update({ atSeconds: START_SECONDS + i * INTERVAL, value: values[i] });
      const state = JSON.parse(JSON.stringify(original.toJSON())) as AutoState;
      const pairs = original.settings.length;
      expect(state.stats).toHaveLength(pairs * 4);
      expect(state.pending).toHaveLength(rows * pairs);
      expect(state.pendingSteps).toHaveLength(rows);
      expect(state.pendingSelected).toHaveLength(rows);
      if (fed === 0) {
        expect(state.stats.every((v) => v === 0)).toBe(true);
        expect(state.pending.every((v) => v === null)).toBe(true);
        expect(state.pendingSteps.every((v) => v === -1)).toBe(true);
        expect(state.pendingSelected?.every((v) => v === -1)).toBe(true);
      } else {
        expect(state.pendingSteps.filter((s) => s >= 0)).toHaveLength(Math.min(fed, rows));
      }
      const restored = AutoSelector.fromJSON(state);
      expect(restored.toJSON()).toEqual(state);
      expectGoesOnAlike(original, restored, values, fed);
    }
  });

  it('scores an equal-weight blend of every model at each price: the mean of the ratio models at that price and vpa at q', () => {
    const candidates = MODEL_NAMES.map((n) => createModel(n, options));
    const model = new AutoSelector(options, candidates, 0.95);
    const values = bursty(5, 9);
    values.forEach((v, i) => model.update({ atSeconds: START_SECONDS + i * INTERVAL, value: v }));
    const blends = model.settings.map((s, index) => ({ ...s, index })).filter((s) => s.kind === 'blend');
    expect(blends.map((b) => b.factor)).toEqual([...COST_FACTORS]);
    for (const blend of blends) {
      const answers = candidates.map((c) =>
        c instanceof ConditionalRatioModel ? c.predictAtCost(900, blend.factor * model.priceUnit) : c.predict(900, 0.95),
      );
      const mean = answers.reduce((a, b) => a + b, 0) / answers.length;
      expect(mean).toBeGreaterThan(0);
      expect(model.predictSetting(blend.index)).toBeCloseTo(mean, 9);
    }
  });

  it('loads state saved before blends existed: the single-model scores carry over and the blends start unscored', () => {
    const values = bursty(8, 10);
    const original = auto(options);
    for (let i = 0; i < 9 * DAY_STEPS; i++) original.update({ atSeconds: START_SECONDS + i * INTERVAL, value: values[i] });
    const state = JSON.parse(JSON.stringify(original.toJSON())) as AutoState;
    const pairs = original.settings.length;
    const single = original.settings.filter((s) => s.kind !== 'blend').length;
    // The layout of round 2: no blend pairs, pending rows `single` wide.
    const old: AutoState = {
      ...state,
      stats: state.stats.slice(0, single * 4),
      pending: state.pending.filter((_, i) => i % pairs < single),
      selected: original.settings.findIndex((s) => s.model === 'vpa'),
    };
    const restored = AutoSelector.fromJSON(old);
    const saved = restored.toJSON();
    expect(saved.stats.slice(0, single * 4)).toEqual(state.stats.slice(0, single * 4));
    expect(saved.stats.slice(single * 4).every((v) => v === 0)).toBe(true);
    expect(saved.pending.filter((_, i) => i % pairs < single)).toEqual(old.pending);
    for (let i = 9 * DAY_STEPS; i < values.length; i++) restored.update({ atSeconds: START_SECONDS + i * INTERVAL, value: values[i] });
    expect(restored.toJSON().stats.slice(single * 4).some((v) => v > 0)).toBe(true);
    expect(restored.predict(900, 0.95)).toBeGreaterThan(0);
  });
});
