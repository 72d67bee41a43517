/**
 * Every Prometheus metric of the agent, registered in one place with units in the names
 * (Prometheus naming guide: base units, `_total` for counters, `_seconds`, `_bytes`).
 *
 * Per-shard values are the kernel's own cumulative counters and gauges: the sampler hands the
 * latest reading of each shard to `observeShard`, and the metrics read that snapshot when
 * scraped (prom-client `collect`), so a counter is exactly the cgroup's counter and a shard
 * that leaves the host disappears from the next scrape instead of lingering at its last value.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DemandVector } from '../../src/contracts/demand-vector';
import { SHARDFORM_VERSION } from '../../src/version';
import type { PressureStall, ShardLimits, ShardUsage } from '../cgroups/driver';

export interface ShardSnapshot {
  readonly shardId: string;
  readonly applicationId: string;
  readonly usage: ShardUsage;
  readonly limits: ShardLimits;
  /** Workload restarts as the runner counts them (ShardStatus.restarts). */
  readonly restarts: number;
}

const SHARD_LABELS = ['shard_id', 'application_id'] as const;
type ShardLabels = Record<(typeof SHARD_LABELS)[number], string>;

export interface AgentMetricsOptions {
  /** Also collect the agent's own CPU, memory, event-loop lag, GC (prom-client defaults); default true. */
  processMetrics?: boolean;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly shards = new Map<string, ShardSnapshot>();

  readonly planGeneration: Gauge;
  readonly hostClaimHeld: Gauge;
  readonly planRejected: Counter<'reason'>;
  readonly planInfo: Gauge<'fleet' | 'digest'>;
  readonly reconcileDuration: Histogram<'outcome'>;
  readonly reconcileActions: Counter<'kind' | 'outcome'>;
  readonly sampleDuration: Histogram;
  readonly sampleErrors: Counter;
  readonly shardsDesired: Gauge;
  readonly migrations: Counter<'outcome'>;
  readonly migrationDowntime: Histogram;
  readonly migrationDowntimeStep: Histogram<'step'>;
  readonly migrationDuration: Histogram<'outcome'>;
  readonly migrationBytes: Counter;
  readonly migrationPreCopyRounds: Counter;
  readonly migrationJournalUnreadable: Gauge;
  readonly predictionPassDuration: Histogram;
  readonly predictorIgnoredSamples: Counter<'application_id' | 'predictor' | 'reason'>;
  /** The latest shard vectors of the forecast (host-agent/prediction/forecast-loop.ts). */
  private predictions: readonly DemandVector[] = [];

  constructor(options: AgentMetricsOptions = {}) {
    const registers = [this.registry];
    // Event-loop lag sampled every 100 ms instead of prom-client's 10 ms: the histogram timer
    // would otherwise wake an idle agent 100 times a second; lag below 100 ms is not our concern.
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });

    this.planGeneration = new Gauge({ name: 'shardform_plan_generation', help: 'Generation of the plan the agent is running (0 before the first good plan).', registers });
    this.planGeneration.set(0);
    this.hostClaimHeld = new Gauge({
      name: 'shardform_host_claim_held',
      help: 'Whether this agent holds its host id in the store (1), or lost it and is claiming it again (0): one agent per host id.',
      registers,
    });
    this.planRejected = new Counter({
      name: 'shardform_plan_rejected_total',
      help: 'Plans refused by the agent, by reason (invalid, generation-backwards, generation-not-increased, unreadable, unusable-here).',
      labelNames: ['reason'],
      registers,
    });
    new Gauge({ name: 'shardform_build_info', help: 'The agent build (value 1), labelled by Shardform and Node.js version.', labelNames: ['version', 'node'], registers }).set(
      { version: SHARDFORM_VERSION, node: process.versions.node },
      1,
    );
    this.planInfo = new Gauge({ name: 'shardform_plan_info', help: 'The running plan (value 1), labelled by fleet and digest.', labelNames: ['fleet', 'digest'], registers });
    this.reconcileDuration = new Histogram({
      name: 'shardform_reconcile_duration_seconds',
      help: 'Duration of one reconcile pass (plan -> shards).',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.reconcileActions = new Counter({ name: 'shardform_reconcile_actions_total', help: 'Reconcile actions by kind and outcome (ok, failed).', labelNames: ['kind', 'outcome'], registers });
    this.sampleDuration = new Histogram({
      name: 'shardform_sample_duration_seconds',
      help: 'Duration of one sampling pass over every shard.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.sampleErrors = new Counter({ name: 'shardform_sample_errors_total', help: 'Shard usage reads that failed (the shard is skipped for that pass).', registers });
    this.shardsDesired = new Gauge({ name: 'shardform_shards_desired', help: 'Shards the plan and assignments want on this host.', registers });
    // Counted by the source agent: it drives the migration and knows its outcome.
    this.migrations = new Counter({ name: 'shardform_migrations_total', help: 'Migrations this agent drove to their end, by outcome (done, aborted).', labelNames: ['outcome'], registers });
    // Downtime buckets around the goal (under 1.5 s for 256 MiB).
    this.migrationDowntime = new Histogram({
      name: 'shardform_migration_downtime_seconds',
      help: 'Downtime of committed migrations: frozen on the source to running on the destination.',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30],
      registers,
    });
    // Where it went (freeze, dump, transfer, restore), for the dashboard that shows which step grew.
    this.migrationDowntimeStep = new Histogram({
      name: 'shardform_migration_downtime_step_seconds',
      help: 'Downtime of committed migrations by step: freeze, dump, transfer, restore (restart: stop, archive, transfer, start).',
      labelNames: ['step'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.migrationDuration = new Histogram({
      name: 'shardform_migration_duration_seconds',
      help: 'Duration of migrations, planned to done or aborted.',
      labelNames: ['outcome'],
      buckets: [0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.migrationBytes = new Counter({ name: 'shardform_migration_bytes_total', help: 'Image bytes sent to destination hosts (pre-copy rounds and final images).', registers });
    this.migrationPreCopyRounds = new Counter({ name: 'shardform_migration_precopy_rounds_total', help: 'Pre-copy rounds of finished migrations.', registers });
    // Set by each recovery pass; above 0 pages a human (the records and their shards are left alone until one comes).
    this.migrationJournalUnreadable = new Gauge({
      name: 'shardform_migration_journal_unreadable_records',
      help: 'Records in the fleet\'s migration journal that do not parse or validate, as the last recovery pass found them: skipped, their shards left as they are for a human.',
      registers,
    });

    this.predictionPassDuration = new Histogram({
      name: 'shardform_prediction_pass_duration_seconds',
      help: 'Duration of one prediction pass: new grid points read from the history and fed to every predictor (a replay after a start included).',
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600],
      registers,
    });
    // Labels bounded by the plan: its applications x 2 predictor kinds x 3 reasons (no shard id:
    // shards come and go with migrations; the shard's application says where to look).
    this.predictorIgnoredSamples = new Counter({
      name: 'shardform_predictor_ignored_samples_total',
      help: 'Readings the predictors did not learn from, by application, predictor (shard, application: the sum of its shards here) and reason (not_finite, negative: taken as missing; not_after_last: a grid point at or before the last one fed, dropped).',
      labelNames: ['application_id', 'predictor', 'reason'],
      registers,
    });
    this.predictionGauge('shardform_shard_predicted_cpu_cores', 'Predicted peak CPU demand of the shard over the predictor horizon, at its quantile.', (v) => v.resources.cpu.cores);
    this.predictionGauge('shardform_shard_predicted_memory_bytes', 'Predicted peak memory demand of the shard over the predictor horizon, at its quantile.', (v) => Math.round(v.resources.memory.gb * 1e9));

    this.shardGauge('shardform_shard_cpu_limit_cores', 'CPU limit of the shard in cores (absent when unlimited).', (s) => s.limits.cpuCores ?? undefined);
    this.shardGauge('shardform_shard_memory_limit_bytes', 'Memory limit of the shard (absent when unlimited).', (s) => s.limits.memoryBytes ?? undefined);
    this.shardGauge('shardform_shard_memory_bytes', 'Memory in use by the shard (memory.current / usage_in_bytes).', (s) => s.usage.memoryCurrentBytes);
    this.shardGauge('shardform_shard_memory_peak_bytes', 'High-water mark of the shard\'s memory, where the kernel keeps one.', (s) => s.usage.memoryPeakBytes);
    this.shardCounter('shardform_shard_cpu_usage_seconds_total', 'CPU time used by the shard.', (s) => s.usage.cpuUsageSeconds);
    this.shardCounter('shardform_shard_cpu_throttled_seconds_total', 'Time the shard was throttled by its CPU limit.', (s) => s.usage.cpuThrottledSeconds);
    this.shardCounter('shardform_shard_cpu_throttled_periods_total', 'CFS periods in which the shard was throttled.', (s) => s.usage.cpuThrottledPeriods);
    this.shardCounter('shardform_shard_io_read_operations_total', 'Read operations of the shard.', (s) => s.usage.ioReadOps);
    this.shardCounter('shardform_shard_io_write_operations_total', 'Write operations of the shard.', (s) => s.usage.ioWriteOps);
    this.shardCounter('shardform_shard_io_read_bytes_total', 'Bytes read by the shard.', (s) => s.usage.ioReadBytes);
    this.shardCounter('shardform_shard_io_write_bytes_total', 'Bytes written by the shard.', (s) => s.usage.ioWriteBytes);
    this.shardCounter('shardform_shard_oom_kills_total', 'Processes of the shard killed by the OOM killer.', (s) => s.usage.oomKills);
    this.shardCounter('shardform_shard_restarts_total', 'Workload restarts of the shard since the agent began supervising it.', (s) => s.restarts);
    this.pressureMetrics(registers);
  }

  /** The latest reading of one shard; what the next scrape reports. */
  observeShard(snapshot: ShardSnapshot): void {
    this.shards.set(snapshot.shardId, snapshot);
  }

  /** The forecast's newest shard vectors; what the next scrape reports (shards that left disappear with them). */
  observePredictions(vectors: readonly DemandVector[]): void {
    this.predictions = vectors;
  }

  /** Drops shards that are no longer on this host, their predictions too. */
  retainShards(shardIds: Iterable<string>): void {
    const keep = new Set(shardIds);
    for (const id of [...this.shards.keys()]) if (!keep.has(id)) this.shards.delete(id);
    // The forecast publishes once per pass (up to a minute apart, never while its passes fail):
    // until then a shard that left would still be scraped with its last prediction.
    if (this.predictions.some((v) => v.shard_id !== undefined && !keep.has(v.shard_id))) {
      this.predictions = this.predictions.filter((v) => v.shard_id === undefined || keep.has(v.shard_id));
    }
  }

  /** Records the running plan (generation gauge and info). */
  setPlan(plan: { fleet: string; generation: number; digest: string }): void {
    this.planGeneration.set(plan.generation);
    this.planInfo.reset();
    this.planInfo.set({ fleet: plan.fleet, digest: plan.digest }, 1);
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private labels(s: ShardSnapshot): ShardLabels {
    return { shard_id: s.shardId, application_id: s.applicationId };
  }

  private predictionGauge(name: string, help: string, value: (v: DemandVector) => number): void {
    this.labelledGauge(name, help, () =>
      this.predictions.flatMap((v) => (v.shard_id !== undefined ? [[{ shard_id: v.shard_id, application_id: v.application_id }, value(v)] as const] : [])),
    );
  }

  private shardGauge(name: string, help: string, value: (s: ShardSnapshot) => number | undefined): void {
    this.labelledGauge(name, help, () => [...this.shards.values()].map((s) => [this.labels(s), value(s)] as const));
  }

  /** A per-shard gauge whose values are read when scraped (a shard gone is gone from the scrape). */
  private labelledGauge(name: string, help: string, values: () => Iterable<readonly [ShardLabels, number | undefined]>): void {
    new Gauge({
      name,
      help,
      labelNames: SHARD_LABELS,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [labels, v] of values()) if (v !== undefined) this.set(labels, v);
      },
    });
  }

  private shardCounter(name: string, help: string, value: (s: ShardSnapshot) => number): void {
    const shards = this.shards;
    const labels = (s: ShardSnapshot) => this.labels(s);
    new Counter({
      name,
      help,
      labelNames: SHARD_LABELS,
      registers: [this.registry],
      collect() {
        // The kernel keeps the counter; we republish it as it is (reset + inc = set for a counter).
        this.reset();
        for (const s of shards.values()) this.inc(labels(s), Math.max(0, value(s)));
      },
    });
  }

  /** PSI (kernel Documentation/accounting/psi.rst): stalled time counters and the 10 s average. */
  private pressureMetrics(registers: Registry[]): void {
    const shards = this.shards;
    const each = (visit: (s: ShardSnapshot, resource: string, stall: PressureStall) => void) => {
      for (const s of shards.values())
        for (const resource of ['cpu', 'memory', 'io'] as const) {
          const stall = s.usage.pressure[resource];
          if (stall) visit(s, resource, stall);
        }
    };
    new Counter({
      name: 'shardform_shard_pressure_stalled_seconds_total',
      help: 'Time some (kind="some") or all (kind="full") tasks of the shard were stalled on a resource (PSI total).',
      labelNames: [...SHARD_LABELS, 'resource', 'kind'],
      registers,
      collect() {
        this.reset();
        each((s, resource, stall) => {
          const base = { shard_id: s.shardId, application_id: s.applicationId, resource };
          this.inc({ ...base, kind: 'some' }, stall.someTotalMicros / 1e6);
          if (stall.fullTotalMicros !== undefined) this.inc({ ...base, kind: 'full' }, stall.fullTotalMicros / 1e6);
        });
      },
    });
    new Gauge({
      name: 'shardform_shard_pressure_some_avg10_ratio',
      help: 'Share of the last 10 s in which some tasks of the shard were stalled on a resource (PSI some avg10 / 100).',
      labelNames: [...SHARD_LABELS, 'resource'],
      registers,
      collect() {
        this.reset();
        each((s, resource, stall) => this.set({ shard_id: s.shardId, application_id: s.applicationId, resource }, stall.someAvg10 / 100));
      },
    });
  }
}
