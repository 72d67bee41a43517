/**
 * The host agent daemon: wires the plan source, the shard manager (kernel side), the sampler,
 * the event log, metrics and the API, and owns the reconcile loop. Everything with side effects
 * is created by the injected factories (agent-parts.ts in production, fakes in tests); the
 * decisions it makes are the pure functions it calls (judgePlan, desiredShardsForHost).
 *
 * Stopping the agent (SIGTERM) stops supervising only: workloads keep running in their cgroups
 * and the next agent adopts them (ShardManager.close vs drain).
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Plan } from '../src/contracts/plan-schema';
import { planHost } from '../src/contracts/plan';
import { ShardformError, type FieldError } from '../src/errors';
import type { MetricHistory, MetricRetention } from '../src/store/metric-history';
import type { ModelStateStore } from '../src/store/sqlite-model-states';
import type { Store, Watcher } from '../src/store/store';
import { buildApp } from './api/app';
import type { DrainControl } from './api/api-deps';
import { readFleetToken } from './api/fleet-token';
import { checkListenable, listen, parseListenAddress, type ListenAddress } from './api/listen';
import type { CgroupDriver } from './cgroups/driver';
import { CoalescedTask } from './coalesced-task';
import { EventLog } from './event-log';
import { HostClaim, claimStoreOf } from './host-claim';
import type { AgentLogger } from './log';
import { AgentMetrics } from './metrics/agent-metrics';
import { desiredShardsForHost } from './plan-source/desired-shards';
import { PlanSource, planFetcherFor } from './plan-source/plan-source';
import type { PlanFetcher } from './plan-source/plan-fetcher';
import { assignmentsPrefix, parseAssignments } from './plan-source/shard-assignment';
import type { ReconcileReport, ShardManager } from './reconcile/shard-manager';
import { MigrationClient } from './migration/migration-client';
import { peerUrls } from './peer-urls';
import { ForecastLoop } from './prediction/forecast-loop';
import { Sampler } from './sampler/sampler';
import type { ShardEventSink } from './shard-event';
import { resizeStoreOf, ShardResizer } from './shard-resize';
import { agentCapacityView, NO_RESOURCES, type CapacityView } from './host-capacity';
import type { AgentMigration, AgentMigrationContext } from './agent-migration';
import type { UnreadableRecord } from './migration/migration-journal';
import type { DesiredShard } from './reconcile/desired-shard';
import type { RestartHandover, ShardHandover } from './reconcile/shard-handover';

/** `txn` is what migration's journal needs (compare-and-swap); an agent whose store lacks it does not migrate. */
export type AgentStore = Pick<Store, 'get' | 'put' | 'delete' | 'list'> & Partial<Pick<Store, 'watch' | 'txn' | 'grantLease'>>;

export interface AgentStores {
  readonly store: AgentStore;
  readonly history: MetricHistory;
  /** Where the predictors' state survives restarts (beside the history); without it a start replays the history. */
  readonly modelStates?: ModelStateStore;
  close(): Promise<void>;
}

export interface AgentKernel {
  readonly driver: CgroupDriver;
  readonly manager: ShardManager;
  /** How migration and the manager hand shards over (the ShardKeeper); an agent without it does not migrate. */
  readonly handover?: ShardHandover;
  /** Stop/start of held shards for the restart strategy (the ShardKeeper); without it restart migrations are refused. */
  readonly restartHandover?: RestartHandover;
}

export interface AgentOptions {
  readonly hostId: string;
  /** File path or http(s) URL of the plan. */
  readonly plan: string | PlanFetcher;
  readonly stateDir: string;
  /** host:port; default the plan's address of this host (port: the address's, else plan.agent.port). */
  readonly listen?: string;
  readonly tokenFile?: string;
  readonly logger: AgentLogger;
  readonly openStores: (ctx: { stateDir: string; logger: AgentLogger; plan: Plan }) => Promise<AgentStores>;
  readonly createKernel: (ctx: { hostId: string; stateDir: string; events: ShardEventSink; logger: AgentLogger }) => Promise<AgentKernel>;
  /** One agent per cgroup root on this machine (agent-parts.ts lockAgentCgroups); taken before the store's host claim, released last. */
  readonly lockCgroups?: (ctx: { hostId: string; stateDir: string }) => Promise<{ release(): void }>;
  /** Extra authenticated API route groups. */
  readonly apiPlugins?: (ctx: { agent: Agent }) => FastifyPluginAsync[];
  /** Live migration (agent-migration.ts in production): its routes join the authenticated API, its recovery runs before the first reconcile. */
  readonly migration?: (ctx: AgentMigrationContext) => Promise<AgentMigration>;
  readonly planPollSeconds?: number;
  /** The host claim's lease (host-claim.ts); default 15 s. */
  readonly hostClaimTtlSeconds?: number;
  /** Periodic reconcile even without triggers (converges after partial failures); default 10 s. */
  readonly reconcileEverySeconds?: number;
  readonly env?: NodeJS.ProcessEnv;
}

/** Present (value 'true') while the host is drained; read at start so a restart keeps shards stopped. */
export const DRAINED_KEY = (hostId: string) => `/hosts/${hostId}/drained`;

/** How long stop() waits for a migration recovery pass in progress before closing what it uses. */
const RECOVERY_STOP_WAIT_MS = 15_000;

export class Agent implements DrainControl {
  readonly metrics = new AgentMetrics();
  private planSource!: PlanSource;
  private stores!: AgentStores;
  private kernel!: AgentKernel;
  private events!: EventLog;
  private sampler!: Sampler;
  private forecast: ForecastLoop | undefined;
  private app: FastifyInstance | undefined;
  private token: string | undefined;
  /** The token of the plan last checked for this host (tokenProblem), applied when that plan is accepted. */
  private acceptedToken: string | undefined;
  private drained = false;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private unwatch: (() => Promise<void>) | undefined;
  private stopped = false;
  /** The stop in progress or done: every caller waits for the same one. */
  private stopping: Promise<void> | undefined;
  private claim: HostClaim | undefined;
  private cgroupLock: { release(): void } | undefined;
  /** The start in progress or done: a halt waits for it, so it never stops half a start. */
  private starting: Promise<void> | undefined;
  /** A reconcile pass skipped for a lost host claim has been logged (once per loss). */
  private skipLogged = false;
  /** A recovery pass postponed for a lost host claim has been logged (once per loss). */
  private recoveryPostponedLogged = false;
  private markHalted!: (error: Error) => void;
  /** Resolves when the agent stopped itself (another agent took its host id over): the process should exit non-zero. */
  readonly halted = new Promise<Error>((resolve) => {
    this.markHalted = resolve;
  });
  private readonly reconciles = new CoalescedTask(() => this.reconcileOnce());
  private migration: AgentMigration | undefined;
  /** Resizes on request; a migration's prepare counts the growth of one in progress. */
  private resizer: ShardResizer | undefined;
  /** This host's capacity and what its shards hold: what a resize and a migration's prepare are both judged by. */
  private readonly capacity: CapacityView;
  /** Some migration could not be recovered (the other agent unreachable): retried on the reconcile timer. */
  private recoveryPending = false;
  /** Unreadable journal records already logged, key → reason (logged again when it changes). */
  private unreadableLogged = new Map<string, string>();
  /** The recovery pass running now, if any. */
  private recovering: Promise<void> | undefined;
  /** Reconcile passes and drains change the same shards: they take turns. */
  private kernelTurn: Promise<unknown> = Promise.resolve();
  address: string | undefined;

  constructor(private readonly options: AgentOptions) {
    this.capacity = agentCapacityView({
      hostId: options.hostId,
      plan: () => this.plan(),
      shards: () => this.kernel?.manager.status() ?? [],
      resizing: () => this.resizer?.growing() ?? NO_RESOURCES,
    });
  }

  get logger(): AgentLogger {
    return this.options.logger;
  }

  plan(): Plan | undefined {
    return this.planSource?.current();
  }

  /**
   * Starts everything; resolves when the API listens. Throws without a good plan (changing
   * nothing on the host) or when another agent holds the host; after a failed start, stop()
   * lets go of what was taken (the cgroups' lock, the stores), as the CLI does.
   */
  start(): Promise<void> {
    this.starting ??= this.startEverything();
    return this.starting;
  }

  private async startEverything(): Promise<void> {
    const { hostId, stateDir, logger } = this.options;
    const fetcher = typeof this.options.plan === 'string' ? planFetcherFor(this.options.plan) : this.options.plan;
    this.planSource = new PlanSource({ fetcher, stateDir, logger, metrics: this.metrics, pollIntervalSeconds: this.options.planPollSeconds });
    // Every input is checked before the first write (state directory, last good plan, stores,
    // cgroups, CRIU's cache): a start refused for a bad one changes nothing on the host.
    await this.planSource.load();
    const plan = this.planSource.current();
    if (!plan) {
      await this.planSource.stop();
      const why = this.planSource.status().lastRejection?.message ?? 'no plan';
      throw new ShardformError('INVALID_PLAN', '--plan', fetcher.source, `no good plan to start from: ${why}`);
    }
    this.token = readFleetToken(plan.security, { tokenFile: this.options.tokenFile, env: this.options.env });
    const address = this.listenAddress(plan);
    await checkListenable(address);
    this.planSource.requireUsableHere((next) => this.tokenProblem(next));
    await this.planSource.start();

    // Before anything on the host is touched: a second agent for these cgroups (this machine) or
    // this host id (the store) must not adopt, restart or start the shards the first one runs.
    this.throwIfStopped();
    this.cgroupLock = await this.options.lockCgroups?.({ hostId, stateDir });
    this.stores = await this.options.openStores({ stateDir, logger, plan });
    this.claim = await this.claimHost(address);
    this.throwIfStopped();
    this.events = new EventLog({ hostId, store: this.stores.store, logger });
    await this.events.load();
    this.kernel = await this.options.createKernel({ hostId, stateDir, events: this.events, logger });
    logger.info({ layout: this.kernel.driver.layout, cgroup_root: this.kernel.driver.hostRoot }, `cgroup layout: ${this.kernel.driver.layout}`);
    this.drained = (await this.stores.store.get(DRAINED_KEY(hostId)))?.value === 'true';

    this.throwIfStopped();
    const adopted = await this.kernel.manager.start();
    this.logReport('adopt', adopted);
    // Built before migration recovery, which may finish a migration and hand its shard's predictor over.
    this.forecast = new ForecastLoop({
      history: this.stores.history,
      ...(this.stores.modelStates ? { states: this.stores.modelStates } : {}),
      shards: () =>
        this.kernel.manager.status().map((s) => ({
          shardId: s.shardId,
          applicationId: s.applicationId,
          allocation: {
            ...(typeof s.limits.cpuCores === 'number' ? { cpuCores: s.limits.cpuCores } : {}),
            ...(typeof s.limits.memoryBytes === 'number' ? { memoryBytes: s.limits.memoryBytes } : {}),
          },
        })),
      plan: () => this.plan(),
      logger,
      metrics: this.metrics,
    });
    const migration = await this.startMigration();
    await this.reconcile();

    this.planSource.onPlan(() => this.onPlan());
    await this.watchAssignments(plan.fleet);
    const every = this.options.reconcileEverySeconds ?? 10;
    this.reconcileTimer = setInterval(() => {
      void this.reconcile().catch(() => {});
      if (this.recoveryPending) void this.recoverMigrations();
    }, every * 1000);

    this.sampler = new Sampler({
      driver: this.kernel.driver,
      history: this.stores.history,
      shards: () => this.kernel.manager.status(),
      metrics: this.metrics,
      logger,
      onReading: (shardId, usage, atSeconds) => this.kernel.manager.noteOomKills?.(shardId, usage.oomKills, atSeconds),
    });
    this.sampler.start(
      () => this.plan()?.agent.sampleIntervalSeconds ?? 5,
      () => this.retention(),
    );

    this.forecast.start();

    this.app = await buildApp({
      hostId,
      driver: this.kernel.driver,
      manager: this.kernel.manager,
      resizer: (this.resizer = new ShardResizer({
        manager: this.kernel.manager,
        store: resizeStoreOf(this.stores.store),
        plan: () => this.plan(),
        hostId,
        capacity: this.capacity,
        reserved: () => this.migration?.reserved?.() ?? NO_RESOURCES,
        logger: this.logger,
      })),
      history: this.stores.history,
      forecast: this.forecast,
      events: this.events,
      plan: this.planSource,
      metrics: this.metrics,
      drain: this,
      token: () => this.token,
      logger,
      plugins: [...(this.options.apiPlugins?.({ agent: this }) ?? []), ...(migration?.plugins ?? [])],
    });
    this.throwIfStopped();
    this.address = await listen(this.app, address);
    logger.info({ address: this.address, generation: plan.generation, drained: this.drained }, 'agent listening');
  }

  /** Ends a start that stop() overtook: its later steps would only make what stop has to undo. */
  private throwIfStopped(): void {
    if (this.stopped) throw new Error(`the agent of host ${this.options.hostId} was stopped while it started`);
  }

  /** One reconcile pass now (coalesced with any pass in progress). */
  reconcile(): Promise<ReconcileReport | undefined> {
    return this.reconciles.run();
  }

  isDrained(): boolean {
    return this.drained;
  }

  async drain(): Promise<ReconcileReport> {
    await this.stores.store.put(DRAINED_KEY(this.options.hostId), 'true');
    this.drained = true;
    const report = await this.exclusive(() => this.kernel.manager.drain());
    this.logReport('drain', report);
    this.logger.info({ shards: report.actions.length }, 'host drained');
    return report;
  }

  async undrain(): Promise<void> {
    await this.stores.store.delete(DRAINED_KEY(this.options.hostId));
    this.drained = false;
    this.logger.info('drain lifted');
    await this.reconcile();
  }

  /**
   * Stops supervising and serving; workloads keep running for the next agent to adopt. Every
   * step is tried even if one before it failed (the first failure is thrown at the end): a step
   * left undone would keep a timer alive — the process would not exit, still holding the host
   * claim and the cgroups' lock, and every restart would be refused.
   */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping.catch(() => undefined); // the first caller hears of a failure
    this.stopping = this.stopEverything();
    return this.stopping;
  }

  private async stopEverything(): Promise<void> {
    this.stopped = true;
    // A start in progress ends first (it acts on nothing once `stopped` is set): stopping half of
    // it would leave what its later steps make (the timers, the listener, the claim) running.
    await this.starting?.catch(() => undefined);
    let failure: { error: unknown } | undefined;
    const step = async (what: string, fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (error) {
        this.logger.error({ step: what, error: (error as Error).message }, 'a step of stopping the agent failed; going on with the rest');
        failure ??= { error };
      }
    };
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    await step('plan source', () => this.planSource?.stop());
    await step('assignment watch', () => this.unwatch?.());
    await step('api', () => this.app?.close());
    await step('sampler', () => this.sampler?.stop());
    await step('forecast', () => this.forecast?.stop());
    await step('reconcile', () => this.reconciles.idle());
    // A recovery pass in progress acts on the keeper and the store closed below: let it end, for
    // a while (its HTTP calls can wait out their timeouts; the next agent redoes what is left).
    if (this.recovering) {
      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([this.recovering.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), RECOVERY_STOP_WAIT_MS)))]);
      clearTimeout(timer);
      if (!ended) this.logger.warn({ waited_ms: RECOVERY_STOP_WAIT_MS }, 'stopping while a migration recovery pass still runs; the next start finishes it');
    }
    await step('shard manager', () => this.kernel?.manager.close());
    await step('cgroup driver', () => this.kernel?.driver.close());
    await step('event log', () => this.events?.flush());
    // Last: nothing acts for this host any more, the next agent may start.
    await step('host claim', () => this.claim?.release());
    await step('stores', () => this.stores?.close());
    await step('cgroups lock', () => this.cgroupLock?.release());
    if (failure) throw failure.error;
    this.logger.info('agent stopped; shards keep running');
  }

  private async claimHost(address: ListenAddress): Promise<HostClaim | undefined> {
    const store = claimStoreOf(this.stores.store);
    if (!store) {
      this.logger.warn('host claim disabled: the store has no leases or transactions; nothing stops a second agent for this host id');
      return undefined;
    }
    return HostClaim.acquire({
      store,
      hostId: this.options.hostId,
      address: address.text,
      ...(this.options.hostClaimTtlSeconds ? { ttlSeconds: this.options.hostClaimTtlSeconds } : {}),
      logger: this.logger,
      onHeld: (held) => {
        this.metrics.hostClaimHeld.set(held ? 1 : 0);
        if (held) this.skipLogged = this.recoveryPostponedLogged = false;
      },
      onTakenOver: (_holder, message) => void this.halt(new ShardformError('HOST_CLAIMED', '--host', this.options.hostId, message)),
    });
  }

  /** Stops for good on a condition the agent cannot repair (another agent for its host id); shards keep running. */
  private async halt(error: Error): Promise<void> {
    await this.starting?.catch(() => undefined);
    await this.stop().catch((stopError: Error) => this.logger.error({ error: stopError.message }, 'stopping after a fatal condition failed'));
    this.markHalted(error);
  }

  /**
   * Without the host claim another agent may hold this host: start and stop nothing from the
   * plan until it is held again (the keeper still restarts what crashes here).
   */
  private mayActOnPlan(): boolean {
    if (this.stopped) return false;
    if (!this.claim || this.claim.held()) return true;
    if (!this.skipLogged) this.logger.warn('host claim not held: reconcile passes start and stop no shard until it is held again');
    this.skipLogged = true;
    return false;
  }

  /** Why migrations must not start, arrive or be recovered now, or undefined (see mayActOnPlan). */
  private notActingReason(): string | undefined {
    if (this.stopped) return `the agent of host ${this.options.hostId} is stopping`;
    if (this.claim && !this.claim.held()) return `the agent of host ${this.options.hostId} does not hold its host claim now (another agent may act for it); try again once it does`;
    return undefined;
  }

  private async reconcileOnce(): Promise<ReconcileReport | undefined> {
    const plan = this.plan();
    if (!plan || this.stopped) return undefined;
    if (!this.mayActOnPlan()) return undefined;
    const end = this.metrics.reconcileDuration.startTimer();
    try {
      let acted = false;
      // Read in the keeper's turn, after any hand-over queued before it (DesiredShardsRead), and
      // the claim asked again after the read: it may have lapsed while the store was read or a
      // drain held the shards (a review reproduced an apply after the lapse).
      const readDesired = async () => {
        const desired = await this.desiredShards(plan, true);
        this.metrics.shardsDesired.set(desired.length);
        acted = this.mayActOnPlan();
        return acted ? desired : undefined;
      };
      // Without the claim the pass still goes to the keeper, reading nothing: the first one ends its
      // wait to restart what crashes here (shard-keeper.ts `reconciled`), which mayActOnPlan promises.
      const report = await this.exclusive(async () => this.kernel.manager.apply(this.mayActOnPlan() ? readDesired : async () => undefined));
      if (!report || !acted) return undefined;
      this.logReport('reconcile', report);
      end({ outcome: report.converged ? 'converged' : 'partial' });
      return report;
    } catch (error) {
      end({ outcome: 'error' });
      this.logger.error({ error: (error as Error).message, generation: plan.generation }, 'reconcile pass failed; retrying on the next pass');
      return undefined;
    }
  }

  /** The shards this host should run: the plan's placement, overridden by assignment records, nothing while drained (unless `evenIfDrained`). */
  async desiredShards(plan: Plan, warn = false, evenIfDrained = false): Promise<DesiredShard[]> {
    const { assignments, problems } = parseAssignments(await this.stores.store.list(assignmentsPrefix(plan.fleet)));
    if (warn) for (const problem of problems) this.logger.warn({ problem }, 'ignoring an invalid shard assignment');
    return desiredShardsForHost({ plan, hostId: this.options.hostId, assignments, drained: this.drained && !evenIfDrained });
  }

  /**
   * Builds migration from the agent's parts and recovers what the journal says this host was
   * driving when it stopped — before the first reconcile, so shards held by an unfinished
   * migration are resumed (abort) or discarded (roll forward) first. A recovery that cannot
   * finish now (the other agent unreachable) is logged; the shard stays held (never started
   * twice) and recovery is retried with every periodic reconcile until it finishes.
   */
  private async startMigration(): Promise<AgentMigration | undefined> {
    const { store } = this.stores;
    const handover = this.kernel.handover;
    if (!this.options.migration) return undefined;
    if (!store.txn || !handover) {
      this.logger.warn('migration disabled: the store has no transactions or the shard manager no hand-over');
      return undefined;
    }
    const txn = store.txn.bind(store);
    const migration = await this.options.migration({
      hostId: this.options.hostId,
      stateDir: this.options.stateDir,
      store: { get: (k) => store.get(k), list: (p) => store.list(p), txn },
      driver: this.kernel.driver,
      handover,
      ...(this.kernel.restartHandover ? { restartHandover: this.kernel.restartHandover } : {}),
      logger: this.logger,
      metrics: this.metrics,
      plan: () => this.plan(),
      token: () => this.token,
      desiredShards: async (opts) => {
        const current = this.plan();
        return current ? this.desiredShards(current, false, opts?.evenIfDrained === true) : [];
      },
      shards: () => this.kernel.manager.status(),
      onFinished: (record) => {
        if (record.state === 'done') void this.handOverForecast(record.shardId, record.destination).catch(() => {});
        // An abort may have handed the shard back to reconcile (its workload ended while held, or
        // the host rebooted): start it now rather than at the next tick (measured: 9 s down).
        else void this.reconcile();
      },
      // A migration whose abort could not clean up (the destination unreachable) stays unfinished
      // in the journal, its shard perhaps held: the reconcile timer retries it, as after a restart.
      onRecoveryNeeded: () => {
        this.recoveryPending = true;
      },
      notActingReason: () => this.notActingReason(),
      capacity: this.capacity,
    });
    this.migration = migration;
    await this.recoverMigrations();
    return migration;
  }

  /**
   * Runs migration recovery; marks it pending (retried on the reconcile timer) while some
   * migration cannot finish. One pass at a time: a pass can outlast the timer (an abort to a
   * host that does not answer waits out its request timeout), and two passes working from
   * their own reads of the journal could both act on one migration. Asked for during a pass,
   * another runs at the next tick.
   */
  private recoverMigrations(): Promise<void> {
    if (this.recovering) {
      this.recoveryPending = true;
      return this.recovering;
    }
    this.recovering = this.recoverOnce().finally(() => {
      this.recovering = undefined;
    });
    return this.recovering;
  }

  private async recoverOnce(): Promise<void> {
    const migration = this.migration;
    if (!migration || this.stopped) return;
    // Recovery resumes, discards and restores shards: not while another agent may act for this host.
    const notActing = this.notActingReason();
    if (notActing) {
      this.recoveryPending = true;
      if (!this.recoveryPostponedLogged) this.logger.warn({ reason: notActing }, 'migration recovery postponed until the host claim is held again; held shards stay held');
      this.recoveryPostponedLogged = true;
      return;
    }
    this.recoveryPending = false;
    try {
      const { recovered, failed, unreadable = [] } = await migration.recover();
      this.reportUnreadable(unreadable);
      for (const record of recovered) this.logger.info({ migration_id: record.id, shard_id: record.shardId, state: record.state }, `recovered migration ${record.id}: ${record.state}`);
      for (const f of failed) {
        this.logger.error({ migration_id: f.id, shard_id: f.shardId, state: f.state, error: f.error }, `migration ${f.id} could not be recovered now; ${f.shardId} stays held, retrying`);
      }
      // Not `= failed.length > 0`: a migration that failed during this pass asked for another.
      // Unreadable records keep recovery retrying too: the pass after a human fixed one recovers it.
      if (failed.length > 0 || unreadable.length > 0) this.recoveryPending = true;
    } catch (error) {
      this.recoveryPending = true;
      this.logger.error({ error: (error as Error).message }, 'migration recovery did not run (journal unreadable); held shards stay held, retrying');
    }
  }

  /**
   * Reports the journal records recovery skipped because they do not read: each logged as an
   * error once (again if its reason changes, and when it is gone), all counted in a gauge. Their
   * shards are left exactly as they are — held ones stay held — since what the record said
   * (frozen here? running elsewhere?) is unknown: resuming or killing on a guess could run a
   * shard twice or lose it.
   */
  private reportUnreadable(unreadable: readonly UnreadableRecord[]): void {
    this.metrics.migrationJournalUnreadable.set(unreadable.length);
    const now = new Map(unreadable.map((u) => [u.key, u.reason]));
    for (const u of unreadable) {
      if (this.unreadableLogged.get(u.key) === u.reason) continue;
      this.logger.error(
        { key: u.key, migration_id: u.migrationId, shard_id: u.shardId, reason: u.reason },
        `migration journal record ${u.key} is unreadable (${u.reason}); skipped: not recovered, ${u.shardId ? `shard ${u.shardId} neither resumed nor killed, new migrations of it refused` : 'no shard touched for it, new migrations of every shard refused (which one it names does not read)'}. Fix or delete the key by hand; recovery retries every reconcile`,
      );
    }
    for (const key of this.unreadableLogged.keys()) if (!now.has(key)) this.logger.info({ key }, `migration journal record ${key} is readable again or gone`);
    this.unreadableLogged = now;
  }

  /**
   * Gives the destination of a finished migration the shard's predictor state, so its forecast
   * of the shard goes on from what was learnt here instead of starting cold. Best effort, after
   * the migration is over: a failure is logged and the destination relearns from its own history.
   */
  private async handOverForecast(shardId: string, destination: string): Promise<void> {
    try {
      // The saved state is read from the store when the forecast has dropped the shard: a row
      // that cannot be read throws, which must end here, not in an unhandled rejection.
      const state = this.forecast?.stateOf(shardId);
      const plan = this.plan();
      const token = this.token;
      const url = plan && peerUrls(plan, this.options.hostId).get(destination);
      // A predictor that has seen no point yet (a shard younger than one grid interval) has nothing to give.
      if ((state as { lastSeconds?: unknown } | undefined)?.lastSeconds == null || !url || !token) return;
      await new MigrationClient({ baseUrl: url, token }).handOverPredictor(shardId, state);
      this.logger.info({ shard_id: shardId, destination }, `predictor of ${shardId} handed over to ${destination}`);
    } catch (error) {
      this.logger.warn({ shard_id: shardId, destination, error: (error as Error).message }, `predictor of ${shardId} not handed over to ${destination}; it relearns there from its own history`);
    }
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const turn = this.kernelTurn.then(work, work);
    this.kernelTurn = turn.catch(() => {});
    return turn;
  }

  private onPlan(): void {
    // The plan source accepted this plan only once tokenProblem had read its token.
    if (this.acceptedToken !== undefined) this.token = this.acceptedToken;
    void this.reconcile();
  }

  /**
   * Why this host cannot use `plan`'s fleet token (as its start would refuse it), or undefined;
   * the token read is kept for onPlan, which follows when the plan is accepted.
   */
  private tokenProblem(plan: Plan): FieldError | undefined {
    try {
      this.acceptedToken = readFleetToken(plan.security, { tokenFile: this.options.tokenFile, env: this.options.env });
      return undefined;
    } catch (error) {
      if (!(error instanceof ShardformError)) throw error;
      return { field: error.field, message: error.message, value: error.value };
    }
  }

  /**
   * Reconciles on every change of the fleet's assignments. A watch the store ends (etcd
   * compacted past it, a connection lost for good) is opened again, after a reconcile that
   * catches up on what it missed; without that the agent would notice moves only every 10 s.
   */
  private async watchAssignments(fleet: string): Promise<void> {
    const store = this.stores.store;
    if (!store.watch) return;
    let retry: NodeJS.Timeout | undefined;
    let watcher: Watcher | undefined;
    let ended = false;
    // Try `attempt` (1, 2, ...) of opening it again: 1 s, 2 s, 4 s ... at most 30 s after the last.
    const again = (attempt: number) => {
      if (this.stopped || ended) return;
      retry = setTimeout(() => void open(attempt), Math.min(30_000, 1000 * 2 ** (attempt - 1)));
      retry.unref();
    };
    const open = async (attempt: number): Promise<void> => {
      try {
        watcher = await store.watch!(assignmentsPrefix(fleet), () => void this.reconcile(), {
          onError: (error) => {
            if (this.stopped || ended) return;
            this.logger.warn({ error: error.message, code: (error as { code?: unknown }).code }, 'the assignment watch ended; reconciling now and watching again');
            void this.reconcile();
            again(1);
          },
        });
        if (attempt > 0) this.logger.info({ attempt }, 'watching the assignments again');
        if (ended) await watcher.close();
      } catch (error) {
        if (attempt === 0) throw error; // the first watch fails the start, as before
        this.logger.warn({ error: (error as Error).message, attempt }, 'cannot watch the assignments yet; trying again');
        again(attempt + 1);
      }
    };
    await open(0);
    this.unwatch = async () => {
      ended = true;
      if (retry) clearTimeout(retry);
      await watcher?.close();
    };
  }

  private retention(): MetricRetention | undefined {
    const agent = this.plan()?.agent;
    return agent && { rawRetentionSeconds: agent.rawRetentionSeconds, historyRetentionSeconds: agent.historyRetentionSeconds };
  }

  private listenAddress(plan: Plan): ListenAddress {
    if (this.options.listen) return parseListenAddress(this.options.listen, '--listen', plan.agent.port);
    const host = planHost(plan, this.options.hostId);
    if (!host)
      throw new ShardformError('INVALID_ARGUMENT', '--host', this.options.hostId, `--host: ${JSON.stringify(this.options.hostId)} is not a host of the plan; pass --listen to say where to serve`);
    return parseListenAddress(host.address, `pools[].hosts[${host.id}].address`, plan.agent.port);
  }

  private logReport(pass: string, report: ReconcileReport): void {
    for (const action of report.actions) {
      this.metrics.reconcileActions.inc({ kind: action.kind, outcome: action.ok ? 'ok' : 'failed' });
      const shard = this.kernel.manager.status().find((s) => s.shardId === action.shardId);
      const fields = { pass, action: action.kind, shard_id: action.shardId, application_id: shard?.applicationId, ...(action.error ? { error: action.error } : {}) };
      if (action.ok) this.logger.info(fields, `${action.kind} ${action.shardId}`);
      else this.logger.warn(fields, `${action.kind} ${action.shardId} failed; retrying on the next pass`);
    }
  }
}
