import { SampleRing } from '../../src/predictor/sample-ring';
import { BacktestMetrics } from '../../src/predictor/backtest-metrics';
import { backtestSeries, futurePeak } from '../../src/predictor/backtest';
import type { DemandModel, ModelOptions } from '../../src/predictor/demand-model';
import { seriesOf } from './synthetic';

describe('backtest', () => {
  it('scores the peak of the next horizon, and only when all of it was observed', () => {
    const values = Float64Array.of(1, 5, 2, 3, NaN, 4);
    expect(futurePeak(values, 0, 3)).toBe(5);
    expect(futurePeak(values, 1, 3)).toBeNaN();
    expect(futurePeak(values, 3, 3)).toBeNaN();
  });

  it('computes violation rate, slack and pinball from their definitions', () => {
    const metrics = new BacktestMetrics(0.9);
    metrics.add(10, 8); // slack 2, pinball 0.1 * 2
    metrics.add(10, 12); // violation, pinball 0.9 * 2
    expect(metrics.figures()).toEqual({ violation: 0.5, slack: 1 / 10, pinball: 1 / 10, points: 2 });
  });

  it('feeds samples strictly in time order and predicts after each one', () => {
    const seen: number[] = [];
    const spy: DemandModel = {
      name: 'spy',
      options: { resource: 'cpu', intervalSeconds: 300, horizonSeconds: 900 },
      update: (s) => seen.push(s.atSeconds),
      predict: () => {
        // At prediction time the model has seen exactly the samples up to now.
        return seen.length;
      },
      historySeconds: () => 0,
      toJSON: () => ({ model: 'spy', options: { resource: 'cpu', intervalSeconds: 300, horizonSeconds: 900 } }),
    };
    const result = backtestSeries(seriesOf(Float64Array.from({ length: 20 }, (_, i) => i)), new Map([['spy', (_o: ModelOptions) => spy]]), {
      resource: 'cpu',
      horizonSeconds: 900,
      quantile: 0.95,
      warmupSeconds: 0,
    });
    // prediction at index i is i + 1; the actual peak of (i, i+3] is i + 3: every point violates.
    expect(result.metrics.get('spy')?.figures()).toMatchObject({ violation: 1, points: 17 });
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
  });
});

describe('sample ring', () => {
  it('keeps the larger of two samples on one grid step, and a missing duplicate never erases a present one', () => {
    const ring = new SampleRing(4, 300);
    expect(ring.push(3000, 1)).toBe(1);
    expect(ring.push(3010, 2)).toBe(0);
    expect(ring.push(3020, NaN)).toBe(0);
    expect(ring.at(0)).toBe(2);
    expect(ring.push(3900, 5)).toBe(3); // two missing steps in between
    expect(ring.at(1)).toBeNaN();
    expect(ring.completeMax(0, 1)).toBeNaN();
    expect(ring.max(0, 3)).toBe(5);
    expect(ring.push(2000, 9)).toBe(-1); // older than the newest step: ignored
  });
});
