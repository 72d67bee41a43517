/**
 * Cold start: while a model has less history than `minHistorySeconds` (the plan's minimum), or
 * cannot answer yet, the prediction is a conservative prior instead: the larger of the current
 * allocation (assume it needs everything it was given) and twice the highest value seen so far
 * (Kubernetes VPA likewise widens its bounds for young containers: recommender/logic/estimator.go,
 * confidence multiplier). The vector then says `model: cold-start-prior` and `confidence: 0`.
 */
import type { DemandModel, ModelOptions, ModelState, ResourceSample } from './demand-model';

export const DEFAULT_MIN_HISTORY_SECONDS = 86400;
export const COLD_START_MODEL = 'cold-start-prior';
/** History at which confidence reaches 1: one weekly cycle. */
export const FULL_CONFIDENCE_SECONDS = 7 * 86400;

export interface ColdStartState extends ModelState {
  readonly inner: ModelState;
  readonly minHistorySeconds: number;
  readonly allocation: number | null;
  readonly maxSeen: number | null;
}

export class ColdStart implements DemandModel {
  private maxSeen = NaN;

  constructor(
    readonly inner: DemandModel,
    readonly minHistorySeconds = DEFAULT_MIN_HISTORY_SECONDS,
    /** The current allocation of this resource, if known (a resize changes it). */
    public allocation?: number,
  ) {}

  get options(): ModelOptions {
    return this.inner.options;
  }

  /** `cold-start-prior` while cold, else the inner model's name. */
  get name(): string {
    return this.isCold() ? COLD_START_MODEL : this.inner.name;
  }

  isCold(): boolean {
    return this.inner.historySeconds() < this.minHistorySeconds;
  }

  /** 0 for the prior; else the share of a week of history behind the prediction. */
  confidence(): number {
    return this.isCold() ? 0 : Math.min(1, this.inner.historySeconds() / FULL_CONFIDENCE_SECONDS);
  }

  update(sample: ResourceSample): void {
    if (sample.value === sample.value && !(this.maxSeen >= sample.value)) this.maxSeen = sample.value;
    this.inner.update(sample);
  }

  prior(): number {
    const seen = this.maxSeen === this.maxSeen ? 2 * this.maxSeen : NaN;
    const allocation = this.allocation ?? NaN;
    if (seen !== seen) return allocation;
    return allocation === allocation ? Math.max(seen, allocation) : seen;
  }

  predict(horizonSeconds: number, quantile: number): number {
    if (this.isCold()) return this.prior();
    const prediction = this.inner.predict(horizonSeconds, quantile);
    return prediction === prediction ? prediction : this.prior();
  }

  historySeconds(): number {
    return this.inner.historySeconds();
  }

  toJSON(): ColdStartState {
    return {
      model: 'cold-start',
      options: this.options,
      inner: this.inner.toJSON(),
      minHistorySeconds: this.minHistorySeconds,
      allocation: this.allocation ?? null,
      maxSeen: this.maxSeen === this.maxSeen ? this.maxSeen : null,
    };
  }

  static fromJSON(state: ColdStartState, loadInner: (inner: ModelState) => DemandModel): ColdStart {
    const model = new ColdStart(loadInner(state.inner), state.minHistorySeconds, state.allocation ?? undefined);
    model.maxSeen = state.maxSeen ?? NaN;
    return model;
  }
}
