/**
 * `holt`: Holt's linear exponential smoothing (Holt 1957; Hyndman & Athanasopoulos, "Forecasting:
 * Principles and Practice", 3rd ed., section 8.2) for level and trend; the base is the highest
 * point of the linear forecast over the horizon, calibrated by the ratio quantile of the
 * regime (magnitude, trend direction). Follows a trend exactly; absorbs a step change with the
 * level's half-life (one horizon), i.e. within about four horizons to 6 % of the step.
 *
 * Smoothing constants by principle, not by fit: alpha gives the level a half-life of one horizon
 * (alpha = 1 - 2^(-1/steps)), beta gives the trend a half-life of one hour, so a trend must last
 * longer than a burst before it is extrapolated.
 */
import { ConditionalRatioModel, magnitudeClass, type ConditionalState, type FeatureSlot } from './conditional-ratio-model';
import { checkState, type ModelOptions } from './demand-model';
import { RECENT_WINDOW_SECONDS } from './recent-peak-model';

interface HoltExtra {
  readonly level: number | null;
  readonly trend: number;
}

export class HoltModel extends ConditionalRatioModel {
  readonly name = 'holt';
  private readonly alpha: number;
  private readonly beta: number;
  private level = NaN;
  private trend = 0;

  constructor(options: ModelOptions) {
    super(options, 2, 2);
    this.alpha = 1 - Math.pow(2, -1 / this.steps);
    this.beta = 1 - Math.pow(2, -options.intervalSeconds / RECENT_WINDOW_SECONDS);
  }

  protected observe(advance: number, value: number): void {
    if (value !== value || advance <= 0) return;
    if (this.level !== this.level) {
      this.level = value;
      this.trend = 0;
      return;
    }
    const previous = this.level;
    const forecast = previous + this.trend * advance;
    this.level = this.alpha * value + (1 - this.alpha) * forecast;
    this.trend = this.beta * ((this.level - previous) / advance) + (1 - this.beta) * this.trend;
  }

  protected extract(slot: FeatureSlot): boolean {
    if (this.level !== this.level) return false;
    const rise = this.trend * (this.trend > 0 ? this.steps : 1);
    const base = Math.max(this.level + rise, this.floor);
    const relative = (this.trend * this.steps) / base;
    const direction = relative < -0.05 ? 0 : relative > 0.05 ? 2 : 1;
    const magnitude = magnitudeClass(base, this.floor);
    slot.base = base;
    slot.keys[0] = magnitude * 3 + direction;
    slot.keys[1] = magnitude;
    return true;
  }

  protected extraState(): HoltExtra {
    return { level: this.level === this.level ? this.level : null, trend: this.trend };
  }

  protected restoreExtra(extra: unknown): void {
    const state = extra as HoltExtra;
    // An infinite level or trend (JSON's 1e400) would make every base, and so every answer, Infinity or NaN.
    checkState(state?.level === null || Number.isFinite(state?.level), 'extra.level', state?.level, 'null or a finite number');
    checkState(Number.isFinite(state.trend), 'extra.trend', state.trend, 'a finite number');
    this.level = state.level === null ? NaN : state.level;
    this.trend = state.trend;
  }

  static fromJSON(state: ConditionalState): HoltModel {
    return new HoltModel(state.options).restore(state);
  }
}
