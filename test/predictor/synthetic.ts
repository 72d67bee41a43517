/** Synthetic series with known answers for model tests (seeded, so every run sees the same numbers). */
import type { DemandModel } from '../../src/predictor/demand-model';
import type { ApplicationSeries } from '../../src/predictor/series';
import { seededRandom } from '../../src/predictor/seeded-random';

/** mulberry32: a small seeded PRNG (public domain, Tommy Ettinger). */
export const random = seededRandom;

/** Standard normal by Box-Muller. */
export function gaussian(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

export const START_SECONDS = 1_700_006_400; // a multiple of 300 s and of a day
export const INTERVAL = 300;
export const DAY_STEPS = 86400 / INTERVAL;

export function build(values: (i: number) => number, n: number): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => values(i));
}

export const constant = (level: number, n: number) => build(() => level, n);
export const linearTrend = (start: number, perStep: number, n: number) => build((i) => start + perStep * i, n);
export function dailySineWithNoise(n: number, seed = 7, mean = 2, amplitude = 1, noise = 0.2): Float64Array {
  const normal = gaussian(random(seed));
  return build((i) => Math.max(0, mean + amplitude * Math.sin((2 * Math.PI * i) / DAY_STEPS) + noise * normal()), n);
}
export function stepChange(before: number, after: number, atStep: number, n: number, seed = 3, noise = 0.02): Float64Array {
  const normal = gaussian(random(seed));
  return build((i) => (i < atStep ? before : after) * (1 + noise * normal()), n);
}

/** An application series whose cpu (and memory, scaled to bytes) follow `cpuCores`. */
export function seriesOf(cpuCores: Float64Array, applicationId = 'synthetic'): ApplicationSeries {
  return {
    applicationId,
    startSeconds: START_SECONDS,
    intervalSeconds: INTERVAL,
    cpuCores,
    memoryBytes: cpuCores.map((c) => c * 2 ** 30),
    readOps: cpuCores.map((c) => c * 100),
    writeOps: cpuCores.map((c) => c * 50),
    source: 'synthetic',
  };
}

/**
 * Feeds `values` from index `from` to a model and to its copy restored from saved state, checking
 * after each sample that both predict the same, and at the end that both save the same.
 */
export function expectGoesOnAlike(original: DemandModel, restored: DemandModel, values: Float64Array, from: number): void {
  for (let i = from; i < values.length; i++) {
    const sample = { atSeconds: START_SECONDS + i * INTERVAL, value: values[i] };
    original.update(sample);
    restored.update(sample);
    expect(restored.predict(900, 0.95)).toBe(original.predict(900, 0.95));
  }
  expect(restored.toJSON()).toEqual(original.toJSON());
}
