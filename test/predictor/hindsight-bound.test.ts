import { hindsightBound } from '../../src/predictor/hindsight-bound';
import { constant, DAY_STEPS, random, seriesOf } from './synthetic';

const options = { resource: 'cpu' as const, horizonSeconds: 900, warmupSeconds: 0, windowSeconds: 86400 };

describe('hindsight bound (yardstick, not a model)', () => {
  it('a constant series needs no slack and no violation', () => {
    const bound = hindsightBound([seriesOf(constant(2, 3 * DAY_STEPS))], [0.05], options);
    expect(bound.violation).toBe(0);
    expect(bound.slack).toBe(0);
    expect(bound.points).toBe(3 * DAY_STEPS - 3);
  });

  it('a level that rises once a day is known in advance: the few points seeing the next day are the violations', () => {
    const values = Float64Array.from({ length: 4 * DAY_STEPS }, (_, i) => 1 + Math.floor(i / DAY_STEPS));
    const bound = hindsightBound([seriesOf(values)], [0.05], options);
    // Per day, only the 3 points whose horizon reaches into the next (higher) day exceed the day's level.
    expect(bound.violation).toBeCloseTo((3 * 3) / (4 * DAY_STEPS - 3), 6);
    expect(bound.slack).toBe(0);
    // With no budget, those points are covered by the day's constant, which costs slack.
    expect(hindsightBound([seriesOf(values)], [0], options).slack).toBeGreaterThan(0);
  });

  it('meets each series budget and spends it where it saves slack (white noise: the budget is used)', () => {
    const rand = random(5);
    const noise = Float64Array.from({ length: 5 * DAY_STEPS }, () => 1 + rand());
    const loose = hindsightBound([seriesOf(noise)], [0.05], options);
    const strict = hindsightBound([seriesOf(noise)], [0.01], options);
    expect(loose.violation).toBeLessThanOrEqual(0.05);
    expect(loose.violation).toBeCloseTo(0.05, 3);
    expect(strict.violation).toBeCloseTo(0.01, 3);
    expect(strict.slack).toBeGreaterThan(loose.slack);
    // White noise is not predictable within the window: the bound keeps a real slack.
    expect(loose.slack).toBeGreaterThan(0.1);
  });
});
