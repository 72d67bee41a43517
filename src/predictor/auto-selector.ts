/**
 * `auto`: per-application selection by the application's own rolling online backtest.
 *
 * Every candidate model is asked, at every sample, for the horizon peak at a ladder of quantile
 * levels (q, and stricter ones: 1 - (1 - q) * f for f in LEVEL_FACTORS); each (model, level) pair
 * is scored against the peak that actually followed, with exponentially decaying sums
 * (7-day half-life, as the ratio models). The pair used is the one with the least slack among
 * those whose rolling violation rate is at most the target, where
 *
 *   target = min(1 - q, rolling violation rate of the baseline `vpa` on this application)
 *
 * i.e. "calibrated at q, and never less safe on this application than the recommender users would
 * otherwise run". The baseline always meets its own rate, so a feasible pair exists once scored;
 * if the baseline itself violates more than 1 - q and nothing else qualifies, the pair with the
 * fewest violations is used. Until a day of points is scored, the baseline answers.
 * Work per sample: one update and |levels| percentile reads per candidate: constant.
 */
import { horizonSteps, type DemandModel, type ModelOptions, type ModelState, type ResourceSample } from './demand-model';
import { modelFromJSON } from './model-registry';
import { SampleRing, type SampleRingState } from './sample-ring';

/** Stricter levels, as fractions of the allowed violation 1 - q. */
export const LEVEL_FACTORS = [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.42, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05] as const;
export const SELECTION_HALF_LIFE_SECONDS = 7 * 86400;
const MIN_SCORED_SECONDS = 86400;

export interface AutoState extends ModelState {
  readonly quantile: number;
  readonly baseline: string;
  readonly candidates: readonly ModelState[];
  readonly ring: SampleRingState;
  readonly stats: readonly number[];
  readonly pending: readonly (number | null)[];
  readonly pendingSteps: readonly number[];
  readonly selected: number;
}

// Per pair: decayed points, violations, slack sum, peak sum.
const STAT_FIELDS = 4;

export class AutoSelector implements DemandModel {
  readonly name = 'auto';
  private readonly steps: number;
  private readonly ring: SampleRing;
  private readonly pairs: number;
  private readonly stats: Float64Array;
  private readonly pending: Float64Array;
  private readonly pendingSteps: Float64Array;
  private readonly decay: number;
  private readonly minScored: number;
  private readonly baselineIndex: number;
  private selected: number;

  constructor(
    readonly options: ModelOptions,
    readonly candidates: readonly DemandModel[],
    readonly quantile: number,
    readonly baseline = 'vpa',
  ) {
    this.steps = horizonSteps(options);
    this.ring = new SampleRing(this.steps + 1, options.intervalSeconds);
    this.pairs = candidates.length * LEVEL_FACTORS.length;
    this.stats = new Float64Array(this.pairs * STAT_FIELDS);
    this.pending = new Float64Array((this.steps + 1) * this.pairs).fill(NaN);
    this.pendingSteps = new Float64Array(this.steps + 1).fill(NaN);
    this.decay = Math.pow(2, -options.intervalSeconds / SELECTION_HALF_LIFE_SECONDS);
    // A decayed count's ceiling is 1 / (1 - decay); require a day's worth of it.
    const oneDay = MIN_SCORED_SECONDS / options.intervalSeconds;
    this.minScored = (1 - Math.pow(this.decay, oneDay)) / (1 - this.decay);
    const baselineModel = candidates.findIndex((c) => c.name === baseline);
    this.baselineIndex = Math.max(0, baselineModel) * LEVEL_FACTORS.length;
    this.selected = this.baselineIndex;
  }

  /** The model and quantile level answering now, e.g. `seasonal-peak` at 0.975. */
  get selection(): { model: string; level: number } {
    const model = this.candidates[Math.floor(this.selected / LEVEL_FACTORS.length)].name;
    return { model, level: this.levelOf(this.selected, this.quantile) };
  }

  update(sample: ResourceSample): void {
    for (const candidate of this.candidates) candidate.update(sample);
    const advance = this.ring.push(sample.atSeconds, sample.value);
    if (advance < 0) return;
    const step = this.ring.newestStep as number;
    if (advance > 0) this.score(step);
    const i = step % (this.steps + 1);
    this.pendingSteps[i] = step;
    for (let c = 0; c < this.candidates.length; c++) {
      for (let k = 0; k < LEVEL_FACTORS.length; k++) {
        const pair = c * LEVEL_FACTORS.length + k;
        this.pending[i * this.pairs + pair] = this.candidates[c].predict(this.options.horizonSeconds, this.levelOf(pair, this.quantile));
      }
    }
    this.select();
  }

  private levelOf(pair: number, quantile: number): number {
    return 1 - (1 - quantile) * LEVEL_FACTORS[pair % LEVEL_FACTORS.length];
  }

  private score(step: number): void {
    const from = step - this.steps;
    const i = ((from % (this.steps + 1)) + this.steps + 1) % (this.steps + 1);
    if (this.pendingSteps[i] !== from) return;
    const peak = this.ring.completeMax(0, this.steps - 1);
    if (peak !== peak) return;
    for (let pair = 0; pair < this.pairs; pair++) {
      const prediction = this.pending[i * this.pairs + pair];
      if (!(prediction >= 0)) continue;
      const s = pair * STAT_FIELDS;
      this.stats[s] = this.stats[s] * this.decay + 1;
      this.stats[s + 1] = this.stats[s + 1] * this.decay + (peak > prediction ? 1 : 0);
      this.stats[s + 2] = this.stats[s + 2] * this.decay + Math.max(prediction - peak, 0);
      this.stats[s + 3] = this.stats[s + 3] * this.decay + peak;
    }
  }

  private select(): void {
    const b = this.baselineIndex * STAT_FIELDS;
    if (this.stats[b] < this.minScored) {
      this.selected = this.baselineIndex;
      return;
    }
    const target = Math.min(1 - this.quantile, this.stats[b + 1] / this.stats[b]);
    let best = -1;
    let bestSlack = Infinity;
    let fewest = this.baselineIndex;
    let fewestRate = Infinity;
    for (let pair = 0; pair < this.pairs; pair++) {
      const s = pair * STAT_FIELDS;
      if (this.stats[s] < this.minScored) continue;
      const rate = this.stats[s + 1] / this.stats[s];
      const slack = this.stats[s + 3] > 0 ? this.stats[s + 2] / this.stats[s + 3] : this.stats[s + 2];
      if (rate <= target && slack < bestSlack) {
        best = pair;
        bestSlack = slack;
      }
      if (rate < fewestRate) {
        fewest = pair;
        fewestRate = rate;
      }
    }
    this.selected = best >= 0 ? best : fewest;
  }

  predict(horizonSeconds: number, quantile: number): number {
    const model = this.candidates[Math.floor(this.selected / LEVEL_FACTORS.length)];
    return model.predict(horizonSeconds, this.levelOf(this.selected, quantile));
  }

  historySeconds(): number {
    return Math.max(...this.candidates.map((c) => c.historySeconds()));
  }

  toJSON(): AutoState {
    return {
      model: this.name,
      options: this.options,
      quantile: this.quantile,
      baseline: this.baseline,
      candidates: this.candidates.map((c) => c.toJSON()),
      ring: this.ring.toJSON(),
      stats: Array.from(this.stats),
      pending: Array.from(this.pending, (p) => (Number.isNaN(p) ? null : p)),
      pendingSteps: Array.from(this.pendingSteps, (s) => (Number.isNaN(s) ? -1 : s)),
      selected: this.selected,
    };
  }

  static fromJSON(state: AutoState): AutoSelector {
    const auto = new AutoSelector(state.options, state.candidates.map(modelFromJSON), state.quantile, state.baseline);
    Object.assign(auto, { ring: SampleRing.fromJSON(state.ring) });
    state.stats.forEach((v, i) => (auto.stats[i] = v));
    state.pending.forEach((v, i) => (auto.pending[i] = v === null ? NaN : v));
    state.pendingSteps.forEach((v, i) => (auto.pendingSteps[i] = v < 0 ? NaN : v));
    auto.selected = state.selected;
    return auto;
  }
}
