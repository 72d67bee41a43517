/**
 * Exponential decay of sample weights by time, as in the VPA recommender's decaying histogram
 * (pkg/recommender/util/decaying_histogram.go): instead of shrinking old weights on every sample,
 * a new sample at time t gets weight 2^((t - reference) / halfLife), so relative weights halve per
 * half-life. When the exponent would exceed 100 (or time goes backwards) the reference moves to t
 * rounded to a multiple of the half-life and the caller scales existing weights by 2^(old - new).
 */
import { checkState } from './demand-model';

const MAX_DECAY_EXPONENT = 100;

export interface DecayClockState {
  readonly halfLifeSeconds: number;
  readonly referenceSeconds: number;
}

export class DecayClock {
  constructor(
    readonly halfLifeSeconds: number,
    private referenceSeconds = 0,
  ) {}

  /**
   * The weight multiplier of a sample at `atSeconds`; `rescale(factor)` is called first when the
   * reference has to move, so the caller can scale what it already holds.
   */
  weightAt(atSeconds: number, rescale: (factor: number) => void): number {
    const maxAllowed = this.referenceSeconds + this.halfLifeSeconds * MAX_DECAY_EXPONENT;
    if (atSeconds < this.referenceSeconds || atSeconds > maxAllowed) {
      const newReference = Math.round(atSeconds / this.halfLifeSeconds) * this.halfLifeSeconds;
      const exponent = Math.round((this.referenceSeconds - newReference) / this.halfLifeSeconds);
      rescale(Math.pow(2, exponent));
      this.referenceSeconds = newReference;
    }
    return Math.pow(2, (atSeconds - this.referenceSeconds) / this.halfLifeSeconds);
  }

  toJSON(): DecayClockState {
    return { halfLifeSeconds: this.halfLifeSeconds, referenceSeconds: this.referenceSeconds };
  }

  /** `halfLifeSeconds`: the model's own; a state saved with another is not this model's (and 1e-300 or Infinity break the weights). */
  static fromJSON(state: DecayClockState, halfLifeSeconds: number): DecayClock {
    checkState(state?.halfLifeSeconds === halfLifeSeconds, 'clock.halfLifeSeconds', state?.halfLifeSeconds, `the model's half-life, ${halfLifeSeconds}`);
    checkState(typeof state.referenceSeconds === 'number' && Math.abs(state.referenceSeconds) <= 1e11, 'clock.referenceSeconds', state.referenceSeconds, 'a Unix time');
    return new DecayClock(state.halfLifeSeconds, state.referenceSeconds);
  }
}
