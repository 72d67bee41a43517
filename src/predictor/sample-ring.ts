/**
 * The last N samples of one resource on the interval grid, with gaps as NaN. Models keep one to
 * compute recent-window features and to resolve their own labels (the peak that followed a past
 * prediction) without ever looking past the newest sample. A gap longer than the ring just clears
 * it, so work per update stays bounded by the ring length.
 *
 * Storage grows with the samples: until the ring has wrapped once it holds only the steps since
 * its first sample (doubling as they come), so a new shard's models do not take a week of
 * samples each from the start (an agent keeps 16 rings per shard; docs/predictor.md).
 */
import { checkState } from './demand-model';
export interface SampleRingState {
  readonly capacity: number;
  readonly intervalSeconds: number;
  readonly lastStep: number | null;
  readonly values: readonly (number | null)[];
}

/** First storage of a ring, in samples (grown by doubling up to the capacity). */
const INITIAL_SLOTS = 16;

/** The storage of every ring before its first sample (nothing is written to it: it has no slots). */
const NO_SLOTS = new Float64Array(0);

export class SampleRing {
  /** Until `wrapped`, slot i holds step `origin + i`; after, step s is in slot s mod capacity. */
  private values = NO_SLOTS;
  private origin = 0;
  private wrapped = false;
  /** Grid step of the newest sample (atSeconds / interval, rounded), or null before the first. */
  private lastStep: number | null = null;

  constructor(
    readonly capacity: number,
    readonly intervalSeconds: number,
  ) {}

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
      this.origin = step;
      this.makeRoom(step);
      this.lastStep = step;
      this.values[this.slot(step)] = value;
      return 1;
    }
    const advance = step - this.lastStep;
    if (advance < 0) return -1;
    if (advance === 0) {
      const i = this.slot(step);
      if (value === value && !(this.values[i] >= value)) this.values[i] = value;
      return 0;
    }
    this.makeRoom(step);
    const clear = Math.min(advance - 1, this.capacity);
    // Slots not allocated yet hold nothing: only stored ones need clearing.
    for (let k = 1; k <= clear; k++) {
      const i = this.slot(this.lastStep + k);
      if (i >= 0) this.values[i] = NaN;
    }
    this.lastStep = step;
    this.values[this.slot(step)] = value;
    return advance;
  }

  /** The value `stepsAgo` steps before the newest (0 = newest); NaN if missing or out of the ring. */
  at(stepsAgo: number): number {
    if (this.lastStep === null || stepsAgo >= this.capacity || stepsAgo < 0) return NaN;
    const i = this.slot(this.lastStep - stepsAgo);
    return i < 0 ? NaN : this.values[i];
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

  /** Where `step` is stored, or -1 when it is not (before the first sample, or not reached yet). */
  private slot(step: number): number {
    if (this.wrapped) return this.index(step);
    const i = step - this.origin;
    return i >= 0 && i < this.values.length ? i : -1;
  }

  /** Grows the storage so that `step` (not before the first sample) has a slot. */
  private makeRoom(step: number): void {
    if (this.wrapped || step - this.origin < this.values.length) return;
    const size = Math.min(this.capacity, Math.max(2 * this.values.length, step - this.origin + 1, INITIAL_SLOTS));
    if (size < this.capacity) {
      const grown = new Float64Array(size).fill(NaN);
      grown.set(this.values);
      this.values = grown;
      return;
    }
    // From here on the ring wraps: every step has its slot, step mod capacity.
    const full = new Float64Array(this.capacity).fill(NaN);
    for (let i = 0; i < this.values.length; i++) full[this.index(this.origin + i)] = this.values[i];
    this.values = full;
    this.wrapped = true;
  }

  toJSON(): SampleRingState {
    // Saved as a wrapped ring (slot = step mod capacity) whatever the storage: one format.
    const values: (number | null)[] = new Array(this.capacity).fill(null);
    for (let i = 0; i < this.values.length; i++) {
      const v = this.values[i];
      if (v === v) values[this.wrapped ? i : this.index(this.origin + i)] = v;
    }
    return { capacity: this.capacity, intervalSeconds: this.intervalSeconds, lastStep: this.lastStep, values };
  }

  static fromJSON(state: SampleRingState): SampleRing {
    // A week of 1-s samples plus the longest horizon is ~615,000: a million is room, not a limit.
    checkState(Number.isInteger(state.capacity) && state.capacity >= 1 && state.capacity <= 1_000_000, 'ring.capacity', state.capacity, 'a capacity of 1 to 1000000 samples');
    checkState(Array.isArray(state.values) && state.values.length === state.capacity, 'ring.values', state.values?.length, `${state.capacity} values`);
    checkState(state.lastStep === null || Number.isInteger(state.lastStep), 'ring.lastStep', state.lastStep, 'a step number or null');
    checkState(typeof state.intervalSeconds === 'number' && state.intervalSeconds > 0, 'ring.intervalSeconds', state.intervalSeconds, 'an interval > 0');
    checkState(state.values.every((v) => v === null || typeof v === 'number'), 'ring.values', state.values.find((v) => v !== null && typeof v !== 'number'), 'a number or null');
    const ring = new SampleRing(state.capacity, state.intervalSeconds);
    const last = state.lastStep;
    if (last === null) {
      // toJSON writes no value before the first sample; one here would surface after the next.
      checkState(state.values.every((v) => v === null), 'ring.values', state.values.find((v) => v !== null), 'null before the first sample (lastStep null)');
      return ring;
    }
    ring.lastStep = last;
    // Stored like a ring that has not wrapped yet, from the oldest step that has a value, while
    // that spans less than the capacity: a saved new shard's ring stays as small as it was (the
    // steps before it read as missing either way).
    let oldest = last;
    for (let ago = state.capacity - 1; ago > 0; ago--) {
      if (state.values[ring.index(last - ago)] !== null) {
        oldest = last - ago;
        break;
      }
    }
    const size = Math.max(last - oldest + 1, INITIAL_SLOTS);
    if (size < state.capacity) {
      ring.origin = oldest;
      ring.values = new Float64Array(size).fill(NaN);
      for (let step = oldest; step <= last; step++) {
        const v = state.values[ring.index(step)];
        if (v !== null) ring.values[step - oldest] = v;
      }
      return ring;
    }
    ring.values = new Float64Array(state.capacity);
    ring.wrapped = true;
    state.values.forEach((v, i) => (ring.values[i] = v === null ? NaN : v));
    return ring;
  }
}
