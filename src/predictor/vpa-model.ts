/**
 * `vpa`: the Kubernetes VPA recommender's method, as the baseline users would otherwise run.
 * Every sample goes into an exponentially decaying histogram (24 h half-life, VPA's
 * CPUHistogramDecayHalfLife and MemoryHistogramDecayHalfLife) over all history, with VPA's
 * bucket scheme (1.05 growth; first bucket 0.01 cores / 1e7 bytes); the recommendation is the
 * target percentile times (1 + 15 % safety margin) (recommender/logic/recommender.go,
 * safetyMarginFraction = 0.15). Sample weight is 1 (VPA weighs CPU samples by the request, a
 * constant per container here). The horizon is ignored: VPA has no notion of one.
 */
import { ExponentialBuckets, VPA_CPU_BUCKETS, VPA_MEMORY_BUCKETS, type BucketScheme } from './bucket-scheme';
import { DecayClock, type DecayClockState } from './decay-clock';
import { checkState, type DemandModel, type ModelOptions, type ModelState, type ResourceSample } from './demand-model';
import { Histogram, type HistogramState } from './histogram';
import type { ResourceName } from './series';

export const VPA_HALF_LIFE_SECONDS = 24 * 3600;
export const VPA_SAFETY_MARGIN = 0.15;

/**
 * The top of each scheme. VPA's (1000 cores, 1e12 bytes) is per container; an application here is
 * the sum of its shards and may pass it, and the last bucket is open-ended, so a value past the top
 * was predicted as the top: a 5000-core application got 1150 cores. Raising the top only adds
 * buckets: bucket i depends on the first bucket and the growth alone, so below VPA's top the
 * histogram and its percentiles are VPA's.
 */
const TOP: Record<ResourceName, number> = { cpu: 1e6, memory: 1e18, read: 1e12, write: 1e12 };

/** VPA has schemes for cpu and memory only; io ops use the cpu scheme's shape from 0.01 op/s. */
export function vpaBucketsFor(resource: ResourceName): BucketScheme {
  const vpa = resource === 'cpu' ? VPA_CPU_BUCKETS() : resource === 'memory' ? VPA_MEMORY_BUCKETS() : new ExponentialBuckets(0.01, 1.05, 1e7);
  return new ExponentialBuckets(vpa.firstBucketSize, vpa.ratio, TOP[resource]);
}

interface VpaState extends ModelState {
  readonly histogram: HistogramState;
  readonly clock: DecayClockState;
  readonly firstSeconds: number | null;
  readonly lastSeconds: number | null;
}

/** One scheme per resource for every new model's histogram (a scheme is immutable). */
const SCHEMES: Readonly<Record<ResourceName, BucketScheme>> = {
  cpu: vpaBucketsFor('cpu'),
  memory: vpaBucketsFor('memory'),
  read: vpaBucketsFor('read'),
  write: vpaBucketsFor('write'),
};

export class VpaModel implements DemandModel {
  readonly name = 'vpa';
  private firstSeconds: number | null = null;
  private lastSeconds: number | null = null;

  constructor(
    readonly options: ModelOptions,
    /**
     * Histogram and clock are made with the first sample (until then the model saves an empty
     * histogram and a new clock): an agent keeps four vpa models per shard, idle ones too.
     */
    private histogram?: Histogram,
    private clock?: DecayClock,
  ) {}

  update(sample: ResourceSample): void {
    if (!(sample.value >= 0)) return;
    const histogram = this.histogram ?? (this.histogram = new Histogram(SCHEMES[this.options.resource]));
    const clock = this.clock ?? (this.clock = new DecayClock(VPA_HALF_LIFE_SECONDS));
    const weight = clock.weightAt(sample.atSeconds, (factor) => histogram.scale(factor));
    histogram.addSample(sample.value, weight);
    if (this.firstSeconds === null) this.firstSeconds = sample.atSeconds;
    this.lastSeconds = sample.atSeconds;
  }

  predict(_horizonSeconds: number, quantile: number): number {
    if (this.histogram === undefined || this.histogram.isEmpty()) return NaN;
    return this.histogram.percentile(quantile) * (1 + VPA_SAFETY_MARGIN);
  }

  historySeconds(): number {
    return this.firstSeconds === null || this.lastSeconds === null ? 0 : this.lastSeconds - this.firstSeconds;
  }

  toJSON(): VpaState {
    return {
      model: this.name,
      options: this.options,
      histogram: (this.histogram ?? new Histogram(SCHEMES[this.options.resource])).toJSON(),
      clock: (this.clock ?? new DecayClock(VPA_HALF_LIFE_SECONDS)).toJSON(),
      firstSeconds: this.firstSeconds,
      lastSeconds: this.lastSeconds,
    };
  }

  static fromJSON(state: VpaState): VpaModel {
    const resource = state.options?.resource;
    checkState(Object.hasOwn(SCHEMES, resource), 'options.resource', resource, `one of ${Object.keys(SCHEMES).join(', ')}`);
    const model = new VpaModel(state.options, Histogram.fromJSON(state.histogram, undefined, SCHEMES[resource]), DecayClock.fromJSON(state.clock, VPA_HALF_LIFE_SECONDS));
    model.firstSeconds = state.firstSeconds;
    model.lastSeconds = state.lastSeconds;
    return model;
  }
}
