/**
 * `seasonal-peak`: the recent-peak base, with the regime extended by daily/weekly seasonality:
 * the peak of the same horizon window one day ago and one week ago (the higher of the two that
 * is present), compared with the current peak. Business workloads repeat their batch jobs and
 * office hours (Shen et al., CCGrid 2015, report daily patterns in the Bitbrains traces), so
 * "yesterday a burst started in this window" raises the quantile before the burst shows.
 * Keys: (magnitude, seasonal class, recent class) -> (magnitude, seasonal class) -> magnitude.
 */
import { ConditionalRatioModel, magnitudeClass, ratioClass, type ConditionalState, type FeatureSlot } from './conditional-ratio-model';
import type { ModelOptions } from './demand-model';
import { RECENT_WINDOW_SECONDS } from './recent-peak-model';

const DAY_SECONDS = 86400;
const WEEK_SECONDS = 7 * DAY_SECONDS;

export class SeasonalPeakModel extends ConditionalRatioModel {
  readonly name = 'seasonal-peak';
  private readonly longSteps: number;
  private readonly daySteps: number;
  private readonly weekSteps: number;

  constructor(options: ModelOptions) {
    const weekSteps = Math.round(WEEK_SECONDS / options.intervalSeconds);
    super(options, weekSteps + 1, 3);
    this.longSteps = Math.max(this.steps, Math.round(RECENT_WINDOW_SECONDS / options.intervalSeconds));
    this.daySteps = Math.round(DAY_SECONDS / options.intervalSeconds);
    this.weekSteps = weekSteps;
  }

  protected extract(slot: FeatureSlot): boolean {
    const peak = this.ring.max(0, this.steps - 1);
    if (peak !== peak) return false;
    const base = Math.max(peak, this.floor);
    // The window (t - period, t - period + H] is `period - 1` .. `period - steps` samples ago.
    const day = this.ring.max(this.daySteps - this.steps, this.daySteps - 1);
    const week = this.ring.max(this.weekSteps - this.steps, this.weekSteps - 1);
    const seasonal = day === day ? (week === week ? Math.max(day, week) : day) : week;
    const seasonalClass = ratioClass(seasonal, base);
    const recentClass = ratioClass(this.ring.max(0, this.longSteps - 1), base);
    const magnitude = magnitudeClass(base, this.floor);
    slot.base = base;
    slot.keys[0] = (magnitude * 5 + seasonalClass) * 5 + recentClass;
    slot.keys[1] = magnitude * 5 + seasonalClass;
    slot.keys[2] = magnitude;
    return true;
  }

  protected extraState(): unknown {
    return null;
  }

  protected restoreExtra(): void {}

  static fromJSON(state: ConditionalState): SeasonalPeakModel {
    return new SeasonalPeakModel(state.options).restore(state);
  }
}
