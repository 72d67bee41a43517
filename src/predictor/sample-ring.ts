/**
 * The last N samples of one resource on the interval grid, with gaps as NaN. Models keep one to
 * compute recent-window features and to resolve their own labels (the peak that followed a past
 * prediction) without ever looking past the newest sample. A gap longer than the ring just clears
 * it, so work per update stays bounded by the ring length.
 */
import { checkState } from './demand-model';
export interface SampleRingState {
  readonly capacity: number;
  readonly intervalSeconds: number;
  readonly lastStep: number | null;
  readonly values: readonly (number | null)[];
}

export class SampleRing {
  private readonly values: Float64Array;
  /** Grid step of the newest sample (atSeconds / interval, rounded), or null before the first. */
  private lastStep: number | null = null;

  constructor(
    readonly capacity: number,
    readonly intervalSeconds: number,
  ) {
    this.values = new Float64Array(capacity).fill(NaN);
  }

  get newestStep(): number | null {
    return this.lastStep;
  }

  /**
   * Appends a sample; returns how many grid steps it advanced (0 when it lands on the newest
   * step, which then takes the larger of the two values, since models target peaks).
   * Samples older than the newest step are ignored (returns -1).
   */
  push(atSeconds: number, value: number): number {
    const step = Math.round(atSeconds / this.intervalSeconds);
    if (this.lastStep === null) {
      this.lastStep = step;
      this.values[this.index(step)] = value;
      return 1;
    }
    const advance = step - this.lastStep;
    if (advance < 0) return -1;
    if (advance === 0) {
      const i = this.index(step);
      if (value === value && !(this.values[i] >= value)) this.values[i] = value;
      return 0;
    }
    const clear = Math.min(advance - 1, this.capacity);
    for (let k = 1; k <= clear; k++) this.values[this.index(this.lastStep + k)] = NaN;
    this.lastStep = step;
    this.values[this.index(step)] = value;
    return advance;
  }

  /** The value `stepsAgo` steps before the newest (0 = newest); NaN if missing or out of the ring. */
  at(stepsAgo: number): number {
    if (this.lastStep === null || stepsAgo >= this.capacity || stepsAgo < 0) return NaN;
    return this.values[this.index(this.lastStep - stepsAgo)];
  }

  /** Max of the present values in [newest - toAgo .. newest - fromAgo]; NaN if none present. */
  max(fromAgo: number, toAgo: number): number {
    let result = NaN;
    for (let k = fromAgo; k <= toAgo; k++) {
      const v = this.at(k);
      if (v === v && !(result >= v)) result = v;
    }
    return result;
  }

  /** Max over the window only if every sample in it is present (a label needs the whole horizon). */
  completeMax(fromAgo: number, toAgo: number): number {
    let result = -Infinity;
    for (let k = fromAgo; k <= toAgo; k++) {
      const v = this.at(k);
      if (v !== v) return NaN;
      if (v > result) result = v;
    }
    return result;
  }

  private index(step: number): number {
    return ((step % this.capacity) + this.capacity) % this.capacity;
  }

  toJSON(): SampleRingState {
    return {
      capacity: this.capacity,
      intervalSeconds: this.intervalSeconds,
      lastStep: this.lastStep,
      values: Array.from(this.values, (v) => (Number.isNaN(v) ? null : v)),
    };
  }

  static fromJSON(state: SampleRingState): SampleRing {
    // A week of 1-s samples plus the longest horizon is ~615,000: a million is room, not a limit.
    checkState(Number.isInteger(state.capacity) && state.capacity >= 1 && state.capacity <= 1_000_000, 'ring.capacity', state.capacity, 'a capacity of 1 to 1000000 samples');
    checkState(Array.isArray(state.values) && state.values.length === state.capacity, 'ring.values', state.values?.length, `${state.capacity} values`);
    checkState(state.lastStep === null || Number.isInteger(state.lastStep), 'ring.lastStep', state.lastStep, 'a step number or null');
    const ring = new SampleRing(state.capacity, state.intervalSeconds);
    ring.lastStep = state.lastStep;
    state.values.forEach((v, i) => (ring.values[i] = v === null ? NaN : v));
    return ring;
  }
}
