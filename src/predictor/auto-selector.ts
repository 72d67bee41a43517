/**
 * `auto`: per-application selection by the application's own rolling online backtest.
 *
 * Every candidate model is asked, at every sample, for the horizon peak at a ladder of settings:
 * quantile levels (q and stricter ones, 1 - (1 - q) * f for f in LEVEL_FACTORS) for `vpa`, and
 * violation prices (COST_FACTORS) for the regime-ratio models, which then spend violations where
 * they are cheapest. Each (model, setting) pair is scored against the peak that actually followed,
 * with exponentially decaying sums (7-day half-life, as the ratio models). The pair used is the one
 * with the least slack among those whose rolling violation rate is at most the target, where
 *
 *   target = min(1 - q, 0.9 x violation rate of the baseline `vpa` on this application, 30-day half-life)
 *
 * i.e. "calibrated at q, and never less safe on this application than the recommender users would
 * otherwise run". Budget the rule left unspent over the target's memory (auto's own violations
 * fewer than the sum of its targets) is carried over and raises that threshold (`threshold`,
 * see ownBudget). If no pair qualifies (the recent week was harder than the application's long
 * run), the pair with the fewest rolling violations answers. Until a day of points is scored, the
 * baseline answers.
 * `capByBaseline = false` drops the vpa cap (calibrated at q only; `auto-calibrated` in backtests).
 *
 * Besides each model's own settings, every price k also has a **blend** pair: the equal-weight
 * mean of every candidate's answer at that setting (the ratio models at price k, `vpa` at q).
 * Averaging the quantile forecasts of models whose errors are not perfectly correlated
 * (Vincentization; Lichtendahl, Grushka-Cockayne & Winkler, "Is it better to average
 * probabilities or quantiles?", Management Science 2013) gives a sharper forecast than the
 * members at a like violation rate; equal weights because estimated combination weights rarely
 * beat them (the forecast-combination puzzle: Clemen 1989; Stock & Watson 2004). The blend is
 * scored and selected like any other pair, so it answers only where it has done better.
 * Work per sample: one update per candidate, one percentile read per level of vpa and one
 * histogram tail walk per ratio model for all prices together, and one mean per blend: constant.
 */
import { checkState, horizonSteps, type DemandModel, type ModelOptions, type ModelState, type ResourceSample } from './demand-model';
import { ConditionalRatioModel } from './conditional-ratio-model';
import { modelFromJSON } from './model-registry';
import { emptyRows, rowParts, sameRows, setRowParts } from './pending-rows';
import { SampleRing, type SampleRingState } from './sample-ring';

/** Stricter levels, as fractions of the allowed violation 1 - q. */
export const LEVEL_FACTORS = [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.42, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05] as const;
/**
 * Prices of one violation, in units of the application's long-run mean level, for models that
 * can trade slack against violations across regimes (ConditionalRatioModel.predictAtCost).
 * A price k buys roughly a violation rate of 1/k on an exponential tail, so 2.5..640 in steps of
 * sqrt(2) spans 40 % down to 0.16 %.
 */
export const COST_FACTORS = [2.5, 3.5, 5, 7, 10, 14, 20, 28, 40, 56, 80, 113, 160, 226, 320, 452, 640] as const;

interface Pair {
  /** The candidate model; -1 for a blend (every candidate). */
  readonly candidate: number;
  readonly kind: 'level' | 'cost' | 'blend';
  readonly factor: number;
  /** For a blend: the pairs it averages (each candidate's pair at this setting). */
  readonly members?: readonly number[];
}

/** The name `selection` reports for a blend pair. */
export const BLEND = 'blend';
export const SELECTION_HALF_LIFE_SECONDS = 7 * 86400;
export const TARGET_HALF_LIFE_SECONDS = 30 * 86400;
/**
 * The share of the baseline's rolling violation rate auto aims at where that rate caps the
 * target. Aiming at all of it makes auto's violations equal vpa's on average, so whether a fleet
 * ends up below or above vpa is a coin flip on which applications it holds (cpu, fleets
 * resampled from the Bitbrains VMs: auto at or below vpa in 54 % of them). Holding 10 % back
 * makes that 97 %, for 0.04 of cpu slack ratio (docs/predictor.md, "Over other fleets").
 */
export const BASELINE_SHARE = 0.9;
const MIN_SCORED_SECONDS = 86400;

export interface AutoState extends ModelState {
  readonly quantile: number;
  readonly baseline: string;
  readonly capByBaseline: boolean;
  readonly candidates: readonly ModelState[];
  readonly ring: SampleRingState;
  readonly stats: readonly number[];
  readonly pending: readonly (number | null)[];
  readonly pendingSteps: readonly number[];
  readonly selected: number;
  readonly level: number | null;
  readonly baselinePoints: number;
  readonly baselineViolations: number;
  readonly ownPoints?: number;
  readonly ownViolations?: number;
  readonly ownBudget?: number;
  readonly pendingSelected?: readonly number[];
}

// Per pair: decayed points, violations, slack sum, peak sum.
const STAT_FIELDS = 4;
// A pending row: the grid step (NaN: none), the pair auto answered with (-1: none), then every pair's prediction.
const ROW_STEP = 0;
const ROW_SELECTED = 1;
const ROW_PAIRS = 2;

/**
 * The prices of update's one-walk query and its answers: scratch, shared by every selector
 * (update is not re-entrant; the candidates never call back into a selector).
 */
const COSTS = new Float64Array(COST_FACTORS.length);
const COST_OUT = new Float64Array(COST_FACTORS.length);

const PAIR_LISTS = new Map<string, readonly Pair[]>();

/** The (model, setting) pairs over these candidates: the same list for the same kinds of candidates, built once. */
function pairListFor(candidates: readonly DemandModel[]): readonly Pair[] {
  const key = candidates.map((c) => (c instanceof ConditionalRatioModel ? 'r' : 'l')).join('');
  const known = PAIR_LISTS.get(key);
  if (known) return known;
  const list: Pair[] = [];
  candidates.forEach((candidate, c) => {
    if (candidate instanceof ConditionalRatioModel) for (const factor of COST_FACTORS) list.push({ candidate: c, kind: 'cost', factor });
    else for (const factor of LEVEL_FACTORS) list.push({ candidate: c, kind: 'level', factor });
  });
  // Blends come after every single-model pair, so the indices of those are the same as in state
  // saved before blends existed (fromJSON relies on it).
  if (candidates.some((c) => c instanceof ConditionalRatioModel) && candidates.length > 1) {
    for (const factor of COST_FACTORS) {
      const members = candidates.map((candidate, c) =>
        list.findIndex((p) => p.candidate === c && (candidate instanceof ConditionalRatioModel ? p.factor === factor : p.factor === 1)),
      );
      list.push({ candidate: -1, kind: 'blend', factor, members });
    }
  }
  PAIR_LISTS.set(key, list);
  return list;
}

export class AutoSelector implements DemandModel {
  readonly name = 'auto';
  private readonly steps: number;
  private readonly ring: SampleRing;
  private readonly pairs: number;
  /**
   * Per pair, STAT_FIELDS decayed sums; undefined (all 0) until the first point is scored, a
   * horizon after the first sample: an agent keeps four selectors per shard, and a new or idle
   * shard's would otherwise hold 82 pairs of zeros each.
   */
  private stats: Float64Array | undefined;
  /**
   * The last steps+1 grid steps' rows (row = step mod steps+1, ROW_PAIRS + pairs values each),
   * kept until the peak that followed can score them; undefined (no rows) before the first sample.
   */
  private pending: Float64Array | undefined;
  private readonly decay: number;
  private readonly minScored: number;
  private readonly baselineIndex: number;
  private selected: number;
  /** Shared by every selector over the same kinds of candidates (an agent has four per shard). */
  private readonly pairList: readonly Pair[];
  /** Long-run mean level of the resource (decayed with the selection half-life), the unit of violation prices. */
  private level = NaN;
  /**
   * The baseline's violation rate that sets the target, over a longer memory than the pairs'
   * scores (30-day half-life): how safe vpa is on an application is a long-run property of it;
   * a week's memory lets quiet weeks pull the target (a minimum) down and leaves the
   * application's violation budget unspent.
   */
  private baselinePoints = 0;
  private baselineViolations = 0;
  private readonly targetDecay: number;
  /**
   * Violation budget accounting over auto's *own* answers, with the target's 30-day memory:
   * ownBudget = sum of the target at each point auto answered, ownViolations = how many of them
   * it violated. "The least slack among pairs whose rolling rate is at most the target" leaves
   * budget unspent (no pair sits just under the target, so the chosen one is safer; weeks quieter
   * than the month), so the unspent part is carried over: spread over the selection's memory (its
   * effective number of points), it raises the rolling rate a pair may have, until auto's own
   * rate reaches the target. One-sided: an overspent account does not tighten the rule below the
   * target (that is the rule without carry-over; repaying a burst of violations on an application
   * with a tiny target forced its most conservative pair for days). Capped at 1 - q: a pair whose
   * rolling rate is above the nominal budget is never chosen on purpose.
   */
  private ownPoints = 0;
  private ownViolations = 0;
  private ownBudget = 0;

  constructor(
    readonly options: ModelOptions,
    readonly candidates: readonly DemandModel[],
    readonly quantile: number,
    readonly baseline = 'vpa',
    /**
     * true (default): the target is also capped by the baseline's own rolling violation rate, so
     * `auto` is never less safe than `vpa` on an application; false: calibrated at q only.
     */
    readonly capByBaseline = true,
  ) {
    this.steps = horizonSteps(options);
    this.ring = new SampleRing(this.steps + 1, options.intervalSeconds);
    this.pairList = pairListFor(candidates);
    this.pairs = this.pairList.length;
    this.decay = Math.pow(2, -options.intervalSeconds / SELECTION_HALF_LIFE_SECONDS);
    this.targetDecay = Math.pow(2, -options.intervalSeconds / TARGET_HALF_LIFE_SECONDS);
    // A decayed count's ceiling is 1 / (1 - decay); require a day's worth of it.
    const oneDay = MIN_SCORED_SECONDS / options.intervalSeconds;
    this.minScored = (1 - Math.pow(this.decay, oneDay)) / (1 - this.decay);
    const baselineModel = Math.max(0, candidates.findIndex((c) => c.name === baseline));
    this.baselineIndex = Math.max(0, this.pairList.findIndex((p) => p.candidate === baselineModel && (p.kind === 'cost' || p.factor === 1)));
    this.selected = this.baselineIndex;
  }

  /** The pair answering now, e.g. `seasonal-peak` at violation price 40, `vpa` at level factor 0.5, or `blend` at price 10. */
  get selection(): { model: string; kind: 'level' | 'cost' | 'blend'; factor: number } {
    const pair = this.pairList[this.selected];
    return { model: pair.kind === 'blend' ? BLEND : this.candidates[pair.candidate].name, kind: pair.kind, factor: pair.factor };
  }

  /** Every (model, setting) pair auto scores, in its internal order. */
  get settings(): readonly { model: string; kind: 'level' | 'cost' | 'blend'; factor: number }[] {
    return this.pairList.map((pair) => ({ model: pair.kind === 'blend' ? BLEND : this.candidates[pair.candidate].name, kind: pair.kind, factor: pair.factor }));
  }

  /** What the pair `settings[index]` answers now (the prediction auto would make if it were selected). */
  predictSetting(index: number, quantile: number = this.quantile): number {
    return this.predictPair(index, quantile);
  }

  /** The application's long-run mean level (the unit of violation prices). */
  get priceUnit(): number {
    return this.level;
  }

  update(sample: ResourceSample): void {
    for (const candidate of this.candidates) candidate.update(sample);
    const advance = this.ring.push(sample.atSeconds, sample.value);
    if (advance < 0) return;
    const step = this.ring.newestStep as number;
    if (sample.value === sample.value && advance > 0) {
      this.level = this.level === this.level ? this.level * this.decay + sample.value * (1 - this.decay) : sample.value;
    }
    const pending = this.pending ?? (this.pending = this.emptyRows());
    if (advance > 0) this.score(step, pending);
    const row = (step % (this.steps + 1)) * (ROW_PAIRS + this.pairs);
    const predictions = row + ROW_PAIRS;
    pending[row + ROW_STEP] = step;
    for (let pair = 0; pair < this.pairs; pair++) {
      const p = this.pairList[pair];
      if (p.kind === 'level') pending[predictions + pair] = this.predictPair(pair, this.quantile);
      else if (p.kind === 'blend') pending[predictions + pair] = this.meanOf(p.members as readonly number[], (m) => pending[predictions + m]);
      else if (p.factor === COST_FACTORS[0]) {
        // All prices of one model in one walk.
        for (let k = 0; k < COST_FACTORS.length; k++) COSTS[k] = COST_FACTORS[k] * this.level;
        (this.candidates[p.candidate] as ConditionalRatioModel).predictAtCosts(this.options.horizonSeconds, COSTS, COST_OUT);
        for (let k = 0; k < COST_FACTORS.length; k++) pending[predictions + pair + k] = COST_OUT[k];
      }
    }
    this.select();
    pending[row + ROW_SELECTED] = this.stats !== undefined && this.stats[this.baselineIndex * STAT_FIELDS] >= this.minScored ? this.selected : -1;
  }

  /** steps+1 rows of nothing pending: no step, no pair answered (-1), no predictions. */
  private emptyRows(): Float64Array {
    return emptyRows(this.steps + 1, ROW_PAIRS + this.pairs, [NaN, -1], NaN);
  }

  /** The violation rate auto aims at on this application now: q's, capped by the baseline's long-run rate. */
  target(): number {
    return this.capByBaseline && this.baselinePoints > 0 ? Math.min(1 - this.quantile, BASELINE_SHARE * (this.baselineViolations / this.baselinePoints)) : 1 - this.quantile;
  }

  /** Mean of the members' answers; NaN when any member cannot answer (members precede their blend). */
  private meanOf(members: readonly number[], answer: (pair: number) => number): number {
    let sum = 0;
    for (const m of members) {
      const value = answer(m);
      if (!(value >= 0)) return NaN;
      sum += value;
    }
    return sum / members.length;
  }

  private predictPair(index: number, quantile: number): number {
    const pair = this.pairList[index];
    if (pair.kind === 'blend') return this.meanOf(pair.members as readonly number[], (m) => this.predictPair(m, quantile));
    const model = this.candidates[pair.candidate];
    if (pair.kind === 'level') return model.predict(this.options.horizonSeconds, 1 - (1 - quantile) * pair.factor);
    return (model as ConditionalRatioModel).predictAtCost(this.options.horizonSeconds, pair.factor * this.level);
  }

  private score(step: number, pending: Float64Array): void {
    const from = step - this.steps;
    const row = (((from % (this.steps + 1)) + this.steps + 1) % (this.steps + 1)) * (ROW_PAIRS + this.pairs);
    const predictions = row + ROW_PAIRS;
    if (pending[row + ROW_STEP] !== from) return;
    const peak = this.ring.completeMax(0, this.steps - 1);
    if (peak !== peak) return;
    const stats = this.stats ?? (this.stats = new Float64Array(this.pairs * STAT_FIELDS));
    for (let pair = 0; pair < this.pairs; pair++) {
      const prediction = pending[predictions + pair];
      if (!(prediction >= 0)) continue;
      const s = pair * STAT_FIELDS;
      if (pair === this.baselineIndex) {
        this.baselinePoints = this.baselinePoints * this.targetDecay + 1;
        this.baselineViolations = this.baselineViolations * this.targetDecay + (peak > prediction ? 1 : 0);
      }
      stats[s] = stats[s] * this.decay + 1;
      stats[s + 1] = stats[s + 1] * this.decay + (peak > prediction ? 1 : 0);
      stats[s + 2] = stats[s + 2] * this.decay + Math.max(prediction - peak, 0);
      stats[s + 3] = stats[s + 3] * this.decay + peak;
    }
    // Budget accounting over the points auto itself answered once selecting.
    const chosen = pending[row + ROW_SELECTED];
    pending[row + ROW_SELECTED] = -1;
    if (chosen < 0) return;
    this.ownPoints = this.ownPoints * this.targetDecay + 1;
    this.ownViolations = this.ownViolations * this.targetDecay + (peak > pending[predictions + chosen] ? 1 : 0);
    this.ownBudget = this.ownBudget * this.targetDecay + this.target();
  }

  /**
   * The rolling violation rate a pair may have to be selected: the target plus the unspent budget
   * (in violations) spread over the selection's memory (1 / (1 - decay) effective points, the
   * unit the pairs' rolling rates are measured in); only a surplus is carried; at most 1 - q.
   */
  get threshold(): number {
    const carried = (this.ownBudget - this.ownViolations) * (1 - this.decay);
    return Math.min(1 - this.quantile, this.target() + Math.max(0, carried));
  }

  /** Auto's own scored points since it began selecting, and their violations (30-day half-life). */
  get ownRecord(): { points: number; violations: number; budget: number } {
    return { points: this.ownPoints, violations: this.ownViolations, budget: this.ownBudget };
  }

  private select(): void {
    const b = this.baselineIndex * STAT_FIELDS;
    const stats = this.stats;
    // No stats yet: 0 points, fewer than minScored (> 0).
    if (stats === undefined || stats[b] < this.minScored) {
      this.selected = this.baselineIndex;
      return;
    }
    const target = this.threshold;
    let best = -1;
    let bestSlack = Infinity;
    let fewest = this.baselineIndex;
    let fewestRate = Infinity;
    for (let pair = 0; pair < this.pairs; pair++) {
      const s = pair * STAT_FIELDS;
      if (stats[s] < this.minScored) continue;
      const rate = stats[s + 1] / stats[s];
      const slack = stats[s + 3] > 0 ? stats[s + 2] / stats[s + 3] : stats[s + 2];
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
    if (horizonSeconds !== this.options.horizonSeconds) {
      const pair = this.pairList[this.selected];
      return this.candidates[pair.kind === 'blend' ? Math.max(0, this.candidates.findIndex((c) => c.name === this.baseline)) : pair.candidate].predict(horizonSeconds, quantile);
    }
    return this.predictPair(this.selected, quantile);
  }

  historySeconds(): number {
    return Math.max(...this.candidates.map((c) => c.historySeconds()));
  }

  toJSON(): AutoState {
    const rows = this.pending ?? this.emptyRows();
    const stride = ROW_PAIRS + this.pairs;
    return {
      model: this.name,
      options: this.options,
      quantile: this.quantile,
      baseline: this.baseline,
      capByBaseline: this.capByBaseline,
      candidates: this.candidates.map((c) => c.toJSON()),
      ring: this.ring.toJSON(),
      stats: this.stats === undefined ? new Array<number>(this.pairs * STAT_FIELDS).fill(0) : Array.from(this.stats),
      // The rows' parts as three arrays (the format from before they shared one).
      pending: rowParts(rows, stride, ROW_PAIRS, this.pairs, (p) => (Number.isNaN(p) ? null : p)),
      pendingSteps: rowParts(rows, stride, ROW_STEP, 1, (s) => (Number.isNaN(s) ? -1 : s)),
      selected: this.selected,
      level: this.level === this.level ? this.level : null,
      baselinePoints: this.baselinePoints,
      baselineViolations: this.baselineViolations,
      ownPoints: this.ownPoints,
      ownViolations: this.ownViolations,
      ownBudget: this.ownBudget,
      pendingSelected: rowParts(rows, stride, ROW_SELECTED, 1, (selected) => selected),
    };
  }

  static fromJSON(state: AutoState): AutoSelector {
    const auto = new AutoSelector(state.options, state.candidates.map(modelFromJSON), state.quantile, state.baseline, state.capByBaseline);
    Object.assign(auto, { ring: SampleRing.fromJSON(state.ring) });
    // State saved before blends existed has fewer pairs: they are a prefix of today's (blends come
    // last), so their scores carry over and the blends start unscored.
    const savedPairs = state.stats.length / STAT_FIELDS;
    const stats = new Float64Array(auto.pairs * STAT_FIELDS);
    state.stats.forEach((v, i) => (stats[i] = v));
    const pending = auto.emptyRows();
    const stride = ROW_PAIRS + auto.pairs;
    const rows = auto.steps + 1;
    setRowParts(pending, stride, ROW_PAIRS, savedPairs, state.pending, (v) => (v === null ? NaN : v));
    setRowParts(pending, stride, ROW_STEP, 1, state.pendingSteps, (v) => (v < 0 ? NaN : v));
    checkState(Number.isInteger(state.selected) && state.selected >= 0 && state.selected < auto.pairs, 'selected', state.selected, `a pair of the selection (0 to ${auto.pairs - 1})`);
    checkState(state.stats.length <= stats.length && state.stats.length % STAT_FIELDS === 0 && state.pendingSteps.length <= rows, 'stats', state.stats.length, `the selection's own size (a multiple of ${STAT_FIELDS}, at most ${stats.length})`);
    // The pair answered with at each pending step scores auto's own budget once its peak is known:
    // one that is not a pair would read another row's prediction.
    const strayPair = state.pendingSelected?.find((v) => !(Number.isInteger(v) && v >= -1 && v < savedPairs));
    checkState(strayPair === undefined, 'pendingSelected', strayPair, `-1 or a saved pair (0 to ${savedPairs - 1})`);
    auto.selected = state.selected;
    auto.level = state.level ?? NaN;
    auto.baselinePoints = state.baselinePoints;
    auto.baselineViolations = state.baselineViolations;
    auto.ownPoints = state.ownPoints ?? 0;
    auto.ownViolations = state.ownViolations ?? 0;
    auto.ownBudget = state.ownBudget ?? 0;
    // `| 0`: what an Int32Array, where these were kept before, made of a saved value.
    setRowParts(pending, stride, ROW_SELECTED, 1, state.pendingSelected ?? [], (v) => v | 0);
    // Kept only if they hold something: a saved fresh selector stays as small as a new one.
    if (stats.some((v) => v !== 0)) auto.stats = stats;
    if (!sameRows(pending, auto.emptyRows())) auto.pending = pending;
    return auto;
  }
}
