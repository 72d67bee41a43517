import { BacktestMetrics } from '../../src/predictor/backtest-metrics';
import type { SeriesBacktest } from '../../src/predictor/backtest';
import { resampleFleets } from '../../src/predictor/fleet-resampling';

/** One application's backtest: `points` points of actual peak 1, each model's violations and slack as given. */
function series(id: string, models: Record<string, { violations: number; slack: number }>, points = 100): SeriesBacktest {
  const metrics = new Map<string, BacktestMetrics>();
  for (const [name, { violations, slack }] of Object.entries(models)) {
    const m = new BacktestMetrics(0.95);
    for (let i = 0; i < points; i++) m.add(i < violations ? 0 : 1 + slack, 1);
    metrics.set(name, m);
  }
  return { applicationId: id, source: `${id}.csv`, metrics, updates: points };
}

describe('resampled fleets', () => {
  it('says "always" when the model is safer and cheaper on every application', () => {
    const results = ['a', 'b', 'c'].map((id) => series(id, { auto: { violations: 1, slack: 0.2 }, vpa: { violations: 2, slack: 0.5 } }));
    expect(resampleFleets(results, 'auto', 'vpa', 0.75, 500)).toEqual({ fleets: 500, noLessSafe: 1, slackMet: 1, bothMet: 1 });
  });

  it('puts a tie on the pooled fleet at a coin flip over which applications a fleet holds', () => {
    // auto is less safe than vpa on a, safer on b by as much: the full fleet ties, resampled fleets split.
    const results = [series('a', { auto: { violations: 4, slack: 0.1 }, vpa: { violations: 2, slack: 0.5 } }), series('b', { auto: { violations: 0, slack: 0.1 }, vpa: { violations: 2, slack: 0.5 } })];
    const fleets = resampleFleets(results, 'auto', 'vpa', 0.75, 4000);
    // Fleets {a,a}: less safe; {b,b}: safer; {a,b}/{b,a}: tie (counts as no less safe) — 3 in 4.
    expect(fleets.noLessSafe).toBeGreaterThan(0.7);
    expect(fleets.noLessSafe).toBeLessThan(0.8);
    expect(fleets.slackMet).toBe(1);
    expect(fleets.bothMet).toBe(fleets.noLessSafe);
  });

  it('draws the same fleets for the same seed', () => {
    const results = [series('a', { auto: { violations: 3, slack: 0.1 }, vpa: { violations: 2, slack: 0.5 } }), series('b', { auto: { violations: 1, slack: 0.6 }, vpa: { violations: 2, slack: 0.5 } })];
    expect(resampleFleets(results, 'auto', 'vpa', 0.75, 300, 7)).toEqual(resampleFleets(results, 'auto', 'vpa', 0.75, 300, 7));
  });
});
