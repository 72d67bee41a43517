/**
 * The shared machinery of our own models: a base forecast times a calibrated quantile of the
 * ratio (actual horizon peak / base), where the ratio's distribution is learnt online *per
 * regime* from the model's own past forecast errors. That is conformal-style calibration
 * (Vovk et al., "Algorithmic Learning in a Random World", 2005; here split by regime, i.e.
 * Mondrian conformal prediction) on top of a cheap point forecast:
 *
 *   prediction(t) = base(t) * exp(Q_q[ log(peak(t, t+H] / base) | regime key(t) ])
 *
 * Subclasses say what the base and the regime keys are. Keys are a hierarchy from finest to
 * coarsest; the finest key with at least 2 / (1 - q) effective samples answers (so a q-tail rests
 * on at least two observations), else the next one, ending with the pooled distribution.
 *
 * Labels are resolved by the model itself: when sample t arrives, the peak of (t-H, t] becomes
 * the label of the forecast issued at t-H. Nothing past the newest sample is ever read.
 *
 * Ratios live in log space in 2 %-wide buckets over [1/1000, 1000] (the VPA scheme's 5 % buckets
 * would add 2-5 % slack on smooth series such as memory), weights decay with a 7-day half-life:
 * one weekly cycle, longer than VPA's 24 h because the base already tracks the level and the
 * ratio distribution of a regime changes more slowly than the level does.
 */
import { LinearBuckets } from './bucket-scheme';
import { DecayClock, type DecayClockState } from './decay-clock';
import { checkState, horizonSteps, type DemandModel, type ModelOptions, type ModelState, type ResourceSample } from './demand-model';
import { Histogram, type HistogramState } from './histogram';
import { emptyRows, rowParts, sameRows, setRowParts } from './pending-rows';
import { SampleRing, type SampleRingState } from './sample-ring';
import type { ResourceName } from './series';
import { ShardformError } from '../errors';

export const RATIO_HALF_LIFE_SECONDS = 7 * 24 * 3600;
const LOG_RATIO_LIMIT = Math.log(1000);
const LOG_RATIO_WIDTH = 0.02;
/** Effective samples a regime needs before it answers a cost-based query (the q = 0.95 rule: 2 / (1 - q)). */
const MIN_TAIL_SAMPLES = 40;

/**
 * The log-ratio buckets and the ratio at each bucket's middle (histograms keep
 * sum(weight * ratio) for expected slack): the same for every model, so one of each for all of
 * them (an agent keeps twelve ratio models per shard).
 */
const RATIO_BUCKETS = new LinearBuckets(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT, LOG_RATIO_WIDTH);
const ratioOfBucket = (bucket: number): number => Math.exp(RATIO_BUCKETS.bucketStart(bucket) + LOG_RATIO_WIDTH / 2);

/** Smallest base a ratio is taken against: a millicore (the finest CFS quota worth setting), 1 MiB, 0.01 op/s. */
export function baseFloorFor(resource: ResourceName): number {
  return resource === 'cpu' ? 0.001 : resource === 'memory' ? 2 ** 20 : 0.01;
}

/** log2 magnitude class of a value above the floor: factor-2 regimes of the level. */
export function magnitudeClass(value: number, floor: number): number {
  return Math.max(0, Math.min(63, Math.floor(Math.log2(value / floor))));
}

/** Ratio classes used by the regime keys: <=0.8, <=1.25, <=2.5, >2.5, and 4 = not known. */
export function ratioClass(numerator: number, denominator: number): number {
  if (!(numerator >= 0) || !(denominator > 0)) return 4;
  const r = numerator / denominator;
  return r <= 0.8 ? 0 : r <= 1.25 ? 1 : r <= 2.5 ? 2 : 3;
}

/** Where a subclass writes the features of the newest step. */
export interface FeatureSlot {
  base: number;
  readonly keys: Int32Array;
}

/**
 * The slot every model's extract() writes to: update() reads it right after, so one serves
 * them all (grown if a model has more key levels than any before it).
 */
let sharedSlot: FeatureSlot = { base: NaN, keys: new Int32Array(3) };

/** A ratio model's clock before its first label (only ever saved, never moved). */
const NEW_CLOCK = new DecayClock(RATIO_HALF_LIFE_SECONDS);

/**
 * predictAtCosts' scratch (the least cost per price so far): one for every model, as the method
 * is not re-entrant; a field cost each of the twelve ratio models per shard a typed array.
 */
let bestCostScratch = new Float64Array(0);

// A pending row: the grid step (NaN: none), the base (NaN: none), then the regime keys, finest first.
const ROW_STEP = 0;
const ROW_BASE = 1;
const ROW_KEYS = 2;

interface ConditionalState extends ModelState {
  readonly ring: SampleRingState;
  readonly clock: DecayClockState;
  readonly levels: readonly (readonly [number, HistogramState])[][];
  readonly pending: { readonly steps: number[]; readonly bases: (number | null)[]; readonly keys: number[] };
  readonly firstSeconds: number | null;
  readonly lastSeconds: number | null;
  readonly lastWeight: number;
  readonly extra: unknown;
}

export abstract class ConditionalRatioModel implements DemandModel {
  abstract readonly name: string;
  protected readonly ring: SampleRing;
  protected readonly steps: number;
  protected readonly floor: number;
  /** Per key level (the pooled one last), the regime histograms by key; undefined until the first label. */
  private levels: Map<number, Histogram>[] | undefined;
  /** Made with the first label (what a new one saves is NEW_CLOCK's state). */
  private clock: DecayClock | undefined;
  private lastWeight = 1;
  private firstSeconds: number | null = null;
  private lastSeconds: number | null = null;
  /**
   * Features of the last steps+1 grid steps, a row each (row = step mod steps+1, ROW_KEYS +
   * keyLevels values), kept until their label is known; undefined (no rows) before the first
   * sample. One array, not three: an agent keeps twelve ratio models per shard.
   */
  private pending: Float64Array | undefined;

  protected constructor(
    readonly options: ModelOptions,
    ringCapacity: number,
    private readonly keyLevels: number,
  ) {
    this.steps = horizonSteps(options);
    this.floor = baseFloorFor(options.resource);
    this.ring = new SampleRing(Math.max(ringCapacity, this.steps + 1), options.intervalSeconds);
    if (sharedSlot.keys.length < keyLevels) sharedSlot = { base: NaN, keys: new Int32Array(keyLevels) };
  }

  /** steps+1 rows of nothing pending: no step, no base, keys 0. */
  private emptyRows(): Float64Array {
    return emptyRows(this.steps + 1, ROW_KEYS + this.keyLevels, [NaN, NaN], 0);
  }

  /**
   * Called after the newest sample is in the ring (and any subclass state updated): write base
   * and every one of the model's keys, or return false. The slot is shared by all models, so a
   * key left unwritten would be another model's.
   */
  protected abstract extract(slot: FeatureSlot): boolean;
  /** Subclass state beyond the ring (e.g. smoothing levels). */
  protected abstract extraState(): unknown;
  protected abstract restoreExtra(extra: unknown): void;
  /** Lets subclasses update their own state with each new grid sample, before features are extracted. */
  protected observe(_advance: number, _value: number): void {}

  update(sample: ResourceSample): void {
    const advance = this.ring.push(sample.atSeconds, sample.value);
    if (advance < 0) return;
    const pending = this.pending ?? (this.pending = this.emptyRows());
    this.observe(advance, sample.value);
    const step = this.ring.newestStep as number;
    if (advance > 0) this.resolveLabel(step, sample.atSeconds, pending);
    if (sample.value === sample.value) {
      if (this.firstSeconds === null) this.firstSeconds = sample.atSeconds;
      this.lastSeconds = sample.atSeconds;
    }
    const row = (step % (this.steps + 1)) * (ROW_KEYS + this.keyLevels);
    pending[row + ROW_STEP] = step;
    const slot = sharedSlot;
    slot.base = NaN;
    if (this.extract(slot) && slot.base === slot.base) {
      pending[row + ROW_BASE] = Math.max(slot.base, this.floor);
      for (let l = 0; l < this.keyLevels; l++) pending[row + ROW_KEYS + l] = slot.keys[l];
    } else {
      pending[row + ROW_BASE] = NaN;
    }
  }

  private resolveLabel(step: number, atSeconds: number, pending: Float64Array): void {
    const from = step - this.steps;
    const row = (((from % (this.steps + 1)) + this.steps + 1) % (this.steps + 1)) * (ROW_KEYS + this.keyLevels);
    if (pending[row + ROW_STEP] !== from) return;
    const base = pending[row + ROW_BASE];
    if (base !== base) return;
    const peak = this.ring.completeMax(0, this.steps - 1);
    if (peak !== peak) return;
    const bucket = RATIO_BUCKETS.bucketOf(Math.log(Math.max(peak, this.floor * 1e-3) / base));
    const clock = this.clock ?? (this.clock = new DecayClock(RATIO_HALF_LIFE_SECONDS));
    const weight = clock.weightAt(atSeconds, (factor) => {
      for (const level of this.levels ?? []) for (const histogram of level.values()) histogram.scale(factor);
    });
    this.lastWeight = weight;
    const levels = this.levelMaps();
    for (let l = 0; l <= this.keyLevels; l++) {
      const key = l < this.keyLevels ? pending[row + ROW_KEYS + l] : 0;
      let histogram = levels[l].get(key);
      if (histogram === undefined) {
        histogram = new Histogram(RATIO_BUCKETS, ratioOfBucket);
        levels[l].set(key, histogram);
      }
      histogram.addToBucket(bucket, weight);
    }
  }

  private levelMaps(): Map<number, Histogram>[] {
    return this.levels ?? (this.levels = Array.from({ length: this.keyLevels + 1 }, () => new Map<number, Histogram>()));
  }

  predict(horizonSeconds: number, quantile: number): number {
    this.checkHorizon(horizonSeconds);
    const histogram = this.answering(2 / (1 - quantile));
    return histogram === undefined ? NaN : this.currentBase() * Math.exp(histogram.percentile(quantile));
  }

  /**
   * The prediction p minimising  E[max(p - peak, 0)] + violationCost * P(peak > p)  under the
   * regime's ratio distribution: expected slack (in the resource's unit) plus a price per
   * violation. With one price for all of an application's regimes this spends the violations
   * where avoiding them is expensive (busy regimes) and avoids them where it is cheap (idle
   * ones), which a fixed quantile per regime cannot do (Lagrangian of "least slack subject to a
   * violation budget"; the first-order condition is P(peak <= p) = violationCost * density(p)).
   * The search stops at the 80th percentile: below it the answer is no longer a peak forecast.
   */
  predictAtCost(horizonSeconds: number, violationCost: number): number {
    const out = new Float64Array(1);
    this.predictAtCosts(horizonSeconds, Float64Array.of(violationCost), out);
    return out[0];
  }

  /** predictAtCost for several prices in one walk over the regime's histogram (out[k] for costs[k]). */
  predictAtCosts(horizonSeconds: number, costs: Float64Array, out: Float64Array): void {
    this.checkHorizon(horizonSeconds);
    out.fill(NaN);
    const histogram = this.answering(MIN_TAIL_SAMPLES);
    if (histogram === undefined) return;
    const base = this.currentBase();
    const total = histogram.totalWeight;
    const bestCost = bestCostScratch.length === costs.length ? bestCostScratch : (bestCostScratch = new Float64Array(costs.length));
    bestCost.fill(Infinity);
    let above = 0;
    let aboveMoment = 0;
    // Down from the highest bucket that holds weight; a bucket without an entry weighs 0, so it
    // is no candidate and adds nothing to `above`.
    const top = histogram.entryCount - 1;
    for (let i = top; i >= 0 && above <= 0.2 * total; i--) {
      const b = histogram.entryBucket(i);
      const weight = histogram.entryWeight(i);
      if (weight > 0 || i === top) {
        const prediction = base * Math.exp(RATIO_BUCKETS.bucketStart(b + 1));
        const slack = prediction * (total - above) - base * (histogram.momentSum - aboveMoment);
        for (let k = 0; k < costs.length; k++) {
          const cost = slack + costs[k] * above;
          if (cost < bestCost[k]) {
            bestCost[k] = cost;
            out[k] = prediction;
          }
        }
      }
      above += weight;
      aboveMoment += weight * ratioOfBucket(b);
    }
  }

  private currentBase(): number {
    const step = this.ring.newestStep as number;
    // Only asked once answering() found a histogram for the newest step, so its row is there.
    return (this.pending as Float64Array)[(step % (this.steps + 1)) * (ROW_KEYS + this.keyLevels) + ROW_BASE];
  }

  /** The finest regime histogram with at least `samples` effective samples, for the newest step. */
  private answering(samples: number): Histogram | undefined {
    const step = this.ring.newestStep;
    const pending = this.pending;
    const levels = this.levels;
    if (step === null || pending === undefined || levels === undefined) return undefined;
    const row = (step % (this.steps + 1)) * (ROW_KEYS + this.keyLevels);
    const base = pending[row + ROW_BASE];
    if (pending[row + ROW_STEP] !== step || base !== base) return undefined;
    const needed = samples * this.lastWeight;
    for (let l = 0; l <= this.keyLevels; l++) {
      const key = l < this.keyLevels ? pending[row + ROW_KEYS + l] : 0;
      const histogram = levels[l].get(key);
      if (histogram !== undefined && histogram.totalWeight >= needed) return histogram;
    }
    return undefined;
  }

  private checkHorizon(horizonSeconds: number): void {
    if (horizonSeconds !== this.options.horizonSeconds) {
      throw new ShardformError(
        'INVALID_ARGUMENT',
        'horizonSeconds',
        horizonSeconds,
        `horizonSeconds: model ${this.name} was built for a horizon of ${this.options.horizonSeconds} s and cannot answer for ${horizonSeconds} s; build one per horizon`,
      );
    }
  }

  historySeconds(): number {
    return this.firstSeconds === null || this.lastSeconds === null ? 0 : this.lastSeconds - this.firstSeconds;
  }

  toJSON(): ConditionalState {
    const rows = this.pending ?? this.emptyRows();
    const stride = ROW_KEYS + this.keyLevels;
    return {
      model: this.name,
      options: this.options,
      ring: this.ring.toJSON(),
      clock: (this.clock ?? NEW_CLOCK).toJSON(),
      levels: this.levels?.map((level) => [...level.entries()].map(([key, h]) => [key, h.toJSON()] as const)) ?? Array.from({ length: this.keyLevels + 1 }, () => []),
      // The rows' parts as three arrays (the format from before they shared one).
      pending: {
        steps: rowParts(rows, stride, ROW_STEP, 1, (s) => (Number.isNaN(s) ? -1 : s)),
        bases: rowParts(rows, stride, ROW_BASE, 1, (b) => (Number.isNaN(b) ? null : b)),
        keys: rowParts(rows, stride, ROW_KEYS, this.keyLevels, (k) => k),
      },
      firstSeconds: this.firstSeconds,
      lastSeconds: this.lastSeconds,
      lastWeight: this.lastWeight,
      extra: this.extraState(),
    };
  }


  /** Loads state saved by toJSON into a freshly constructed model of the same kind and options. */
  protected restore(state: ConditionalState): this {
    const ring = SampleRing.fromJSON(state.ring);
    Object.assign(this, { ring });
    this.clock = DecayClock.fromJSON(state.clock, RATIO_HALF_LIFE_SECONDS);
    state.levels.forEach((level, l) => {
      for (const [key, h] of level) this.levelMaps()[l].set(key, Histogram.fromJSON(h, ratioOfBucket, RATIO_BUCKETS));
    });
    const pending = this.emptyRows();
    const stride = ROW_KEYS + this.keyLevels;
    setRowParts(pending, stride, ROW_STEP, 1, state.pending.steps, (s) => (s < 0 ? NaN : s));
    setRowParts(pending, stride, ROW_BASE, 1, state.pending.bases, (b) => (b === null ? NaN : b));
    // `| 0`: what the Int32Array keys were kept in made of a saved value.
    setRowParts(pending, stride, ROW_KEYS, this.keyLevels, state.pending.keys, (k) => k | 0);
    // Kept only if it holds something: a saved new model stays as small as a new one.
    if (!sameRows(pending, this.emptyRows())) this.pending = pending;
    this.firstSeconds = state.firstSeconds;
    this.lastSeconds = state.lastSeconds;
    // The newest label's weight scales how many samples a regime needs: 0 or less let every
    // regime answer a q-tail from no sample, Infinity (JSON's 1e400) none ever.
    checkState(typeof state.lastWeight === 'number' && state.lastWeight > 0 && state.lastWeight < Infinity, 'lastWeight', state.lastWeight, 'a weight > 0');
    this.lastWeight = state.lastWeight;
    this.restoreExtra(state.extra);
    return this;
  }
}

export type { ConditionalState };
