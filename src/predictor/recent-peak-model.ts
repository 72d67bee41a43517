/**
 * `recent-peak`: base = the peak of the last horizon (what VPA ignores: the current level), and
 * the regime = (log2 magnitude of that peak, how it compares to the peak of the last hour).
 * The calibrated ratio quantile of that regime turns it into the q-quantile of the next
 * horizon's peak: an idle period predicts "idle, unless the usual burst", a burst predicts its
 * usual decay, a level just below a recent spike predicts the spike's return as often as it came.
 * A step change is absorbed as soon as the new level fills one horizon (the base is the recent
 * peak; an unseen magnitude falls back to the pooled ratio distribution).
 */
import { ConditionalRatioModel, magnitudeClass, ratioClass, type ConditionalState, type FeatureSlot } from './conditional-ratio-model';
import type { ModelOptions } from './demand-model';

/** How far back "recently" reaches for the regime: one hour, the span of most bursts in the traces' class of workloads. */
export const RECENT_WINDOW_SECONDS = 3600;

export class RecentPeakModel extends ConditionalRatioModel {
  readonly name = 'recent-peak';
  private readonly longSteps: number;

  constructor(options: ModelOptions) {
    const longSteps = Math.max(1, Math.round(RECENT_WINDOW_SECONDS / options.intervalSeconds));
    super(options, longSteps + 1, 2);
    this.longSteps = Math.max(longSteps, this.steps);
  }

  protected extract(slot: FeatureSlot): boolean {
    const peak = this.ring.max(0, this.steps - 1);
    if (peak !== peak) return false;
    const longPeak = this.ring.max(0, this.longSteps - 1);
    const base = Math.max(peak, this.floor);
    const magnitude = magnitudeClass(base, this.floor);
    slot.base = base;
    slot.keys[0] = magnitude * 8 + ratioClass(longPeak, base);
    slot.keys[1] = magnitude;
    return true;
  }

  protected extraState(): unknown {
    return null;
  }

  protected restoreExtra(): void {}

  static fromJSON(state: ConditionalState): RecentPeakModel {
    return new RecentPeakModel(state.options).restore(state);
  }
}
