/**
 * Reads every shard's usage from the cgroup driver on a fixed interval, turns counters into
 * rates (usage-rates.ts), appends the samples to the metric history, publishes the readings to
 * /metrics, and compacts the history with the plan's retention every `compactEverySeconds`.
 * Time comes from an injected clock; `sampleOnce(now)` is what the timer calls and what tests
 * drive directly.
 */
import type { CgroupDriver, ShardLimits, ShardUsage } from '../cgroups/driver';
import type { MetricHistory, MetricRetention, MetricSample } from '../../src/store/metric-history';
import type { AgentLogger } from '../log';
import type { AgentMetrics } from '../metrics/agent-metrics';
import { usageSample, type UsageReading } from './usage-rates';

export interface SampledShard {
  readonly shardId: string;
  readonly applicationId: string;
  readonly limits: ShardLimits;
  readonly restarts: number;
}

export interface SamplerOptions {
  readonly driver: Pick<CgroupDriver, 'usage'>;
  readonly history: MetricHistory;
  /** The shards to read this pass (the shard manager's status). */
  readonly shards: () => readonly SampledShard[];
  readonly metrics?: Pick<AgentMetrics, 'observeShard' | 'retainShards' | 'sampleDuration' | 'sampleErrors'>;
  readonly logger: AgentLogger;
  /** Unix seconds; default Date.now()/1000. */
  readonly clock?: () => number;
  /** Monotonic seconds for measuring durations; default process.hrtime. */
  readonly monotonic?: () => number;
  readonly compactEverySeconds?: number;
  /**
   * Told every successful reading (the agent hands the OOM counter to the shard keeper, whose
   * tick then need not read that file again; see ShardKeeper.noteOomKills).
   */
  readonly onReading?: (shardId: string, usage: ShardUsage, atSeconds: number) => void;
}

export interface SamplePass {
  readonly samples: readonly MetricSample[];
  readonly failed: readonly { shardId: string; message: string }[];
  readonly compacted?: { folded: number; deleted: number };
}

export class Sampler {
  private readonly previous = new Map<string, UsageReading>();
  private lastCompactSeconds: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<SamplePass> | undefined;
  private readonly clock: () => number;
  private readonly monotonic: () => number;

  constructor(private readonly options: SamplerOptions) {
    this.clock = options.clock ?? (() => Date.now() / 1000);
    this.monotonic = options.monotonic ?? (() => Number(process.hrtime.bigint()) / 1e9);
  }

  /** One pass over every shard at `nowSeconds`. The first reading of a shard only primes its counters. */
  async sampleOnce(nowSeconds: number, retention?: MetricRetention): Promise<SamplePass> {
    const started = this.monotonic();
    const shards = this.options.shards();
    const failed: { shardId: string; message: string }[] = [];
    const samples: MetricSample[] = [];
    // One shard after another: the driver's reads are synchronous underneath, so running them
    // "in parallel" bought nothing but a closure and a promise per shard per pass.
    for (const shard of shards) {
      let usage: ShardUsage;
      try {
        usage = await this.options.driver.usage(shard.shardId);
      } catch (error) {
        failed.push({ shardId: shard.shardId, message: (error as Error).message });
        this.options.metrics?.sampleErrors.inc();
        this.options.logger.warn({ shard_id: shard.shardId, application_id: shard.applicationId, error: (error as Error).message }, 'cannot read shard usage');
        continue;
      }
      const current = { atSeconds: nowSeconds, usage };
      const before = this.previous.get(shard.shardId);
      const sample = before ? usageSample(shard, before, current) : undefined;
      if (sample) samples.push(sample);
      this.previous.set(shard.shardId, current);
      this.options.onReading?.(shard.shardId, usage, nowSeconds);
      this.options.metrics?.observeShard({ shardId: shard.shardId, applicationId: shard.applicationId, usage, limits: shard.limits, restarts: shard.restarts });
    }
    const present = new Set(shards.map((s) => s.shardId));
    for (const id of [...this.previous.keys()]) if (!present.has(id)) this.previous.delete(id);
    this.options.metrics?.retainShards(present);
    if (samples.length > 0) this.options.history.append(samples);
    const compacted = retention ? this.compactIfDue(nowSeconds, retention) : undefined;
    this.options.metrics?.sampleDuration.observe(this.monotonic() - started);
    return { samples, failed, ...(compacted ? { compacted } : {}) };
  }

  /** Samples every `intervalSeconds()` (read each time, so a new plan's interval applies at once). */
  start(intervalSeconds: () => number, retention: () => MetricRetention | undefined): void {
    const tick = () => {
      this.running = this.sampleOnce(this.clock(), retention())
        .catch((error: Error) => {
          this.options.logger.error({ error: error.message }, 'sampling pass failed');
          return { samples: [], failed: [] };
        })
        .finally(() => {
          this.running = undefined;
          if (this.timer) this.timer = setTimeout(tick, intervalSeconds() * 1000);
        });
    };
    this.timer = setTimeout(tick, intervalSeconds() * 1000);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private compactIfDue(nowSeconds: number, retention: MetricRetention): { folded: number; deleted: number } | undefined {
    const every = this.options.compactEverySeconds ?? 300;
    // A last compaction in the future means the clock stepped back: waiting for it to come round
    // again would leave raw samples unfolded for as long as the step.
    const last = this.lastCompactSeconds;
    if (last !== undefined && nowSeconds >= last && nowSeconds - last < every) return undefined;
    this.lastCompactSeconds = nowSeconds;
    const result = this.options.history.compact(nowSeconds, retention);
    if (result.folded > 0 || result.deleted > 0) this.options.logger.debug(result, 'metric history compacted');
    return result;
  }
}
