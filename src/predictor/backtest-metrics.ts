/**
 * Accumulates how a model's predictions of the horizon peak fared against what happened:
 * - violation rate: fraction of evaluated points where the actual peak exceeded the prediction;
 * - slack: mean of max(prediction - actual, 0) divided by the mean actual peak (scale-free);
 * - pinball loss at q (Koenker & Bassett 1978), also divided by the mean actual peak so that
 *   series of different sizes (cores, bytes) can be pooled.
 * Pooling over series adds the sums, so big and long series weigh by their points and sizes.
 */
export interface BacktestFigures {
  readonly violation: number;
  readonly slack: number;
  readonly pinball: number;
  readonly points: number;
}

export class BacktestMetrics {
  points = 0;
  violations = 0;
  slackSum = 0;
  peakSum = 0;
  pinballSum = 0;

  constructor(readonly quantile: number) {}

  add(prediction: number, actualPeak: number): void {
    this.points += 1;
    this.peakSum += actualPeak;
    if (actualPeak > prediction) {
      this.violations += 1;
      this.pinballSum += this.quantile * (actualPeak - prediction);
    } else {
      this.slackSum += prediction - actualPeak;
      this.pinballSum += (1 - this.quantile) * (prediction - actualPeak);
    }
  }

  merge(other: BacktestMetrics): void {
    this.points += other.points;
    this.violations += other.violations;
    this.slackSum += other.slackSum;
    this.peakSum += other.peakSum;
    this.pinballSum += other.pinballSum;
  }

  /** Pooled figures; for pooling across series of different units, merge per-series *normalised* sums (see Backtest). */
  figures(): BacktestFigures {
    const meanPeak = this.points > 0 ? this.peakSum / this.points : 0;
    return {
      violation: this.points > 0 ? this.violations / this.points : 0,
      slack: meanPeak > 0 ? this.slackSum / this.points / meanPeak : 0,
      pinball: meanPeak > 0 ? this.pinballSum / this.points / meanPeak : 0,
      points: this.points,
    };
  }
}
