/**
 * Migration in the agent daemon: the migration service (host-agent/migration) built from the
 * agent's own parts — the ShardKeeper as the hand-over, the plan's store for the journal, CRIU
 * located once at start (a host without a usable CRIU still serves everything else and refuses
 * migrations with the reasons), the plan's capacity of this host — plus what a finished
 * migration tells the world: one log line and the migration metrics. The commit moves the
 * shard's assignment to the destination in the journal's own transaction
 * (migration-assignment.ts).
 */
import { join } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import type { Plan } from '../src/contracts/plan-schema';
import type { JournalStore } from './migration/migration-journal';
import type { CgroupDriver } from './cgroups/driver';
import { criuSwitchOn, locateCriu } from './checkpoint/criu';
import { CriuCheckpointer } from './checkpoint/criu-checkpointer';
import { kdatCacheWanted, keepCriuKdatCache } from './checkpoint/criu-kdat-cache';
import type { AgentLogger } from './log';
import type { AgentMetrics } from './metrics/agent-metrics';
import { assignmentOnCommit } from './migration/migration-assignment';
import { MigrationError } from './migration/migration-error';
import { downtimeStepsByName, type MigrationRecord } from './migration/migration-record';
import type { CapacityView } from './host-capacity';
import { createMigrationService, type MigrationServiceDeps, type RecoveryReport } from './migration/migration-service';
import { summarize } from './migration/migration-summary';
import type { DesiredShard } from './reconcile/desired-shard';
import type { RestartHandover, ShardHandover } from './reconcile/shard-handover';
import { shardHoldsEstablishedTcp } from './migration/tcp-connections';
import type { ShardStatus } from './runner/shard-status';

export interface AgentMigrationContext {
  readonly hostId: string;
  readonly stateDir: string;
  readonly store: JournalStore;
  readonly driver: CgroupDriver;
  readonly handover: ShardHandover;
  readonly restartHandover?: RestartHandover;
  readonly logger: AgentLogger;
  readonly metrics: AgentMetrics;
  plan(): Plan | undefined;
  token(): string | undefined;
  /**
   * The shards this host should run now (plan + assignments), as the reconcile computes them;
   * with `evenIfDrained`, those placed here even while the host is drained (what a migration
   * that commits moves away).
   */
  desiredShards(opts?: { evenIfDrained?: boolean }): Promise<DesiredShard[]>;
  /** What the keeper supervises now. */
  shards(): ShardStatus[];
  /** Told every migration this host drove to its end (done or aborted), after the log line and metrics. */
  onFinished?(record: MigrationRecord): void;
  /** Told when a migration ended with an error and may be left unfinished in the journal: run recovery again soon. */
  onRecoveryNeeded?(): void;
  /** Why this agent must not start or take in migrations now (its host claim is not held), or undefined. */
  notActingReason?(): string | undefined;
  /** This host's capacity and what its shards hold (host-capacity.ts), the view a resize is judged by too. */
  readonly capacity: CapacityView;
}

export interface AgentMigration {
  /** Route groups for the authenticated API scope. */
  readonly plugins: FastifyPluginAsync[];
  /** Finishes or undoes the migrations this host was driving when it stopped; run once, before the first reconcile. */
  recover(): Promise<RecoveryReport>;
  /** Capacity reserved by migrations arriving here beyond their held cgroups: a resize counts it as held. */
  reserved?(): { cpuCores: number; memoryBytes: number };
}

type Checkpointer = MigrationServiceDeps['checkpointer'];

/** A checkpointer for a host that cannot checkpoint: every call refuses with the reasons `criu` was not usable. */
function refusingCheckpointer(reasons: readonly string[]): Checkpointer {
  const refuse = () => Promise.reject(new MigrationError('REFUSED', `this host cannot checkpoint: ${reasons.join('; ')} (see shardform doctor)`));
  return { supportsPreCopy: async () => ({ ok: false, reason: reasons.join('; ') }), preDump: refuse, dump: refuse, restore: refuse };
}

export async function createAgentMigration(ctx: AgentMigrationContext): Promise<AgentMigration> {
  const located = await locateCriu();
  let criu: CriuCheckpointer | undefined;
  let checkpointer: Checkpointer;
  if (located.found) checkpointer = criu = new CriuCheckpointer(located.criu, { lazyPages: criuSwitchOn('SHARDFORM_CRIU_LAZY_PAGES') ? 'auto' : 'off' });
  else checkpointer = refusingCheckpointer(located.reasons);
  if (located.found) ctx.logger.info({ criu: located.criu.version }, 'migration: CRIU found');
  else ctx.logger.warn({ reasons: located.reasons }, 'migration: no usable CRIU; this host refuses checkpoint migrations');
  if (located.found && kdatCacheWanted()) {
    const kdat = await keepCriuKdatCache(located.criu);
    if (kdat.ok) ctx.logger.info({ criu_kdat: kdat.detail }, 'migration: CRIU loads its kernel probe');
    else ctx.logger.warn({ criu_kdat: kdat.detail }, 'migration: CRIU probes the kernel in every dump and restore');
  }
  // Asked now (after the kernel probe is kept), not in the first arriving shard's downtime.
  if (criu) {
    const lazy = await criu.usesLazyPages();
    ctx.logger.info({ lazy_pages: lazy }, lazy ? 'migration: an arriving shard runs while its memory is filled in (lazy restore)' : 'migration: an arriving shard runs once all its memory is in (eager restore)');
  }

  const describe = async (shardId: string, evenIfDrained = false): Promise<DesiredShard> => {
    const desired = (await ctx.desiredShards({ evenIfDrained })).find((d) => d.shardId === shardId);
    if (!desired) throw new MigrationError('INVALID_MIGRATION', `shard ${shardId} is not one this host should run`);
    return desired;
  };
  const service = createMigrationService({
    hostId: ctx.hostId,
    plan: () => ctx.plan(),
    store: ctx.store,
    driver: ctx.driver,
    handover: ctx.handover,
    ...(ctx.restartHandover ? { restartHandover: ctx.restartHandover } : {}),
    holdsEstablishedTcp: async (shardId) => shardHoldsEstablishedTcp(await ctx.driver.pids(shardId)),
    checkpointer,
    describe: (shardId) => describe(shardId),
    applicationOf: (shardId) => ctx.shards().find((s) => s.shardId === shardId && s.state !== 'held')?.applicationId,
    capacity: ctx.capacity,
    token: () => ctx.token(),
    imagesRoot: join(ctx.stateDir, 'migrations'),
    // Where the keeper writes every shard's stdout and stderr (shard-keeper.ts).
    logRoot: join(ctx.stateDir, 'logs'),
    // Even on a host drained since the restore: moving the shard away is what the drain wants,
    // and refusing here aborted a good migration and resumed the shard on the drained host.
    commitWrites: async (record) => [assignmentOnCommit(record, await describe(record.shardId, true), new Date().toISOString())],
    onFinished: (record) => {
      reportFinished(record, ctx);
      ctx.onFinished?.(record);
    },
    onRecoveryNeeded: () => ctx.onRecoveryNeeded?.(),
    notActingReason: () => ctx.notActingReason?.(),
  });
  return { plugins: service.plugins, recover: () => service.recover(), reserved: () => service.reserved() };
}

/** One log line and the metrics of a finished migration (never throws: the migration is over). */
function reportFinished(record: MigrationRecord, ctx: Pick<AgentMigrationContext, 'logger' | 'metrics'>): void {
  const s = summarize(record);
  const outcome = record.state === 'done' ? 'done' : 'aborted';
  ctx.metrics.migrations.inc({ outcome });
  ctx.metrics.migrationBytes.inc(s.bytesSent);
  ctx.metrics.migrationPreCopyRounds.inc(s.rounds);
  if (s.durationMs !== null) ctx.metrics.migrationDuration.observe({ outcome }, s.durationMs / 1000);
  if (outcome === 'done' && s.downtimeMs !== null) ctx.metrics.migrationDowntime.observe(s.downtimeMs / 1000);
  const stepsMs = s.downtimeSteps ? downtimeStepsByName(s.downtimeSteps) : undefined;
  if (outcome === 'done' && stepsMs) for (const [step, ms] of Object.entries(stepsMs)) ctx.metrics.migrationDowntimeStep.observe({ step }, ms / 1000);
  const fields = {
    migration_id: s.id,
    shard_id: s.shardId,
    application_id: record.applicationId,
    source: s.source,
    destination: s.destination,
    strategy: record.strategy,
    outcome,
    bytes: s.bytesSent,
    rounds: s.rounds,
    downtime_ms: s.downtimeMs,
    ...(stepsMs ? { downtime_steps_ms: stepsMs } : {}),
    duration_ms: s.durationMs,
    ...(s.preCopyMethod ? { pre_copy_method: s.preCopyMethod } : {}),
    ...(s.preCopySkipped ? { pre_copy_skipped: s.preCopySkipped } : {}),
    ...(s.abortReason ? { reason: s.abortReason } : {}),
  };
  if (outcome === 'done') ctx.logger.info(fields, `migrated ${s.shardId} to ${s.destination}`);
  else ctx.logger.warn(fields, `migration of ${s.shardId} to ${s.destination} aborted; it runs on ${s.source}`);
}
