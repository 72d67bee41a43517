/**
 * The agent's demand forecast: every shard of this host (and every application with several
 * shards here) has a predictor, fed each grid point of the plan's `predictor` block as the
 * sampler completes it, read back from the metric history (src/predictor/host-forecast.ts).
 * `GET /v1/predictions` and the `shardform_shard_predicted_*` metrics read the vectors.
 *
 * Restarts: every predictor's state is saved into the history file (`predictor_state`), each at
 * most `saveEverySeconds` after its last save and right after it was first built, so a restarted
 * agent loads it and reads only the history since; one without state (new host, new settings, an
 * unreadable row) replays the history it has. That replay reads a bounded range at a time and
 * yields the event loop between ranges, so the API and the sampler keep answering; the reply says
 * `catchingUp` meanwhile. Settings changed by a new plan start every predictor afresh from history
 * (a model learnt for another horizon or quantile answers another question).
 */
import type { DemandVector } from '../../src/contracts/demand-vector';
import type { Plan } from '../../src/contracts/plan-schema';
import { predictorSettingsFromPlan, sameSettings, type IgnoredSamples, type PredictorSettings } from '../../src/predictor/application-predictor';
import { catchUp, HostForecast, lastCompleteGridSeconds, type ForecastKey, type ForecastShard } from '../../src/predictor/host-forecast';
import type { MetricHistory } from '../../src/store/metric-history';
import type { ModelStateStore } from '../../src/store/sqlite-model-states';
import { CoalescedTask } from '../coalesced-task';
import type { AgentLogger } from '../log';
import type { AgentMetrics } from '../metrics/agent-metrics';

/** The reasons of ApplicationPredictor.ignoredSamples as metric label values. */
const IGNORED_REASONS: readonly (readonly [keyof IgnoredSamples, string])[] = [
  ['notFinite', 'not_finite'],
  ['negative', 'negative'],
  ['notAfterLast', 'not_after_last'],
];

/** Saved state older than this, of a predictor no longer here, is deleted (a shard that moved away and did not come back). */
const FORGET_AFTER_SECONDS = 86400;
/**
 * Predictor updates per history read while catching up: ~0.1 s of work on this machine, the
 * longest the event loop waits during a replay (2000 made it wait up to 1.4 s).
 */
const UPDATES_PER_READ = 500;
/** Predictors opened (a saved one loaded: ~15 ms) per turn of the event loop. */
const OPENS_PER_TURN = 8;
/** Handed-over states kept in memory for shards not here yet, when there is no state store. */
const MAX_IMPORTED = 256;
/** States saved per turn of the event loop (each is ~10-40 ms of JSON and gzip). */
const SAVES_PER_TURN = 4;

export interface ForecastLoopOptions {
  readonly history: Pick<MetricHistory, 'query'>;
  /** Where predictor state survives restarts; without it every start replays the history. */
  readonly states?: ModelStateStore;
  /** The shards on this host now, with their allocations. */
  readonly shards: () => readonly ForecastShard[];
  readonly plan: () => Plan | undefined;
  readonly logger: AgentLogger;
  readonly metrics?: Pick<AgentMetrics, 'observePredictions' | 'predictionPassDuration'> & Partial<Pick<AgentMetrics, 'predictorIgnoredSamples'>>;
  /** Unix seconds; default Date.now() / 1000. */
  readonly clock?: () => number;
  readonly saveEverySeconds?: number;
  /** How often to look for completed grid points; default the grid interval, at most 60 s. */
  readonly tickEverySeconds?: number;
}

export interface ForecastView {
  readonly settings: PredictorSettings | null;
  /** Newest grid time fed, null before any. */
  readonly fedThroughSeconds: number | null;
  /** Still replaying history (after a start or a settings change): vectors may be missing or behind. */
  readonly catchingUp: boolean;
  readonly shards: DemandVector[];
  readonly applications: DemandVector[];
}

export class ForecastLoop {
  private forecast: HostForecast | undefined;
  private fedThrough = NaN;
  private catchingUp = true;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastSettingsError: string | undefined;
  private readonly savedAt = new Map<string, number>();
  /** States handed over by a migration's source for shards not tracked here yet (without a state store). */
  private readonly imported = new Map<string, unknown>();
  private lastForget = -Infinity;
  /**
   * The most each predictor key (kind, application, shard) has been counted to ignore
   * (shardform_predictor_ignored_samples_total). Per key, not per predictor object: a predictor
   * rebuilt (new settings, the clock back, a shard back) replays the history and drops the same
   * readings again, which counted from 0 per object were counted twice.
   */
  private readonly ignoredCounted = new Map<string, Readonly<IgnoredSamples>>();
  private readonly passes = new CoalescedTask(() => this.passOnce());
  private readonly clock: () => number;

  constructor(private readonly options: ForecastLoopOptions) {
    this.clock = options.clock ?? (() => Date.now() / 1000);
    for (const saved of options.states?.list() ?? []) this.savedAt.set(saved.key, saved.savedAtSeconds);
  }

  /** Starts the timer and a first pass (which replays history where no state was saved). */
  start(): void {
    const every = this.options.tickEverySeconds ?? Math.min(60, this.options.plan()?.predictor.intervalSeconds ?? 60);
    this.timer = setInterval(() => void this.pass().catch(() => {}), every * 1000);
    this.timer.unref?.();
    void this.pass().catch(() => {});
  }

  /** One pass now (coalesced with one in progress). */
  pass(): Promise<void> {
    return this.passes.run();
  }

  view(): ForecastView {
    const vectors = this.forecast?.vectors() ?? { shards: [], applications: [] };
    return {
      settings: this.forecast?.settings ?? null,
      fedThroughSeconds: this.fedThrough === this.fedThrough ? this.fedThrough : null,
      catchingUp: this.catchingUp,
      ...vectors,
    };
  }

  /**
   * A shard's predictor state to hand to the host it migrated to: the tracked one, else the last
   * saved (the source drops the predictor at its next pass after the release).
   */
  stateOf(shardId: string): unknown {
    return this.forecast?.shardState(shardId) ?? this.options.states?.read(`shard/${shardId}`);
  }

  /**
   * Takes the predictor state a migration's source handed over, so that a shard that moved keeps
   * what its demand was learnt from instead of starting cold: it replaces the predictor here when
   * it has more history; for a shard not tracked yet it is saved and loaded when the shard is.
   * Returns why it was not taken, or undefined.
   */
  importState(shardId: string, state: unknown): string | undefined {
    const forecast = this.forecast;
    if (!forecast) return 'this agent has no predictor settings yet';
    const key: ForecastKey = `shard/${shardId}`;
    const last = (state as { lastSeconds?: unknown } | null)?.lastSeconds;
    // Learnt up to a time still to come here: another clock, or not a state this code wrote.
    if (typeof last === 'number' && last > this.clock() + forecast.intervalSeconds) return `its last point (${last}) is in this host's future`;
    if (forecast.tracks(shardId)) {
      const why = forecast.adopt(shardId, state);
      if (why === undefined) {
        this.savedAt.delete(key);
        this.options.logger.info({ shard_id: shardId }, `predictor of ${shardId} taken over from its previous host`);
      }
      return why;
    }
    const given = (state as { applicationId?: unknown } | null)?.applicationId;
    const application = typeof given === 'string' ? given : '';
    const checked = forecast.restore(state, application, shardId, undefined);
    if (typeof checked === 'string') return checked;
    if (!(checked.historySeconds() > 0)) return 'it has no history';
    // A shard that ran here before and comes back: what is kept for it is replaced only by more
    // history, as adopt() does for a tracked shard (a host that got it without its predictor
    // would otherwise hand back hours in place of the weeks learnt here).
    if (!(checked.historySeconds() > this.keptHistorySeconds(forecast, key, application, shardId))) return 'the predictor here has as much history already';
    // What is kept is the state as this code writes it (not the request body, extra fields and all).
    const clean = checked.toJSON();
    if (this.options.states) {
      this.options.states.save([{ key, savedAtSeconds: this.clock(), state: clean }]);
      this.savedAt.set(key, this.clock());
    } else {
      // Without a store they wait in memory, the newest MAX_IMPORTED of them.
      this.imported.delete(key);
      this.imported.set(key, clean);
      if (this.imported.size > MAX_IMPORTED) this.imported.delete(this.imported.keys().next().value as string);
    }
    this.options.logger.info({ shard_id: shardId }, `predictor of ${shardId} kept for when it runs here`);
    return undefined;
  }

  /** Stops the timer and waits for a pass in progress (a long replay stops at its next read). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.passes.idle();
  }

  private async passOnce(): Promise<void> {
    const plan = this.options.plan();
    if (!plan || this.stopped) return;
    let settings: PredictorSettings;
    try {
      settings = predictorSettingsFromPlan(plan.predictor);
      this.lastSettingsError = undefined;
    } catch (error) {
      const message = (error as Error).message;
      if (message !== this.lastSettingsError) this.options.logger.error({ error: message }, 'no predictions: the plan\'s predictor settings cannot be used');
      this.lastSettingsError = message;
      return;
    }
    const started = process.hrtime.bigint();
    const now = this.clock();
    if (this.forecast && !sameSettings(this.forecast.settings, settings)) {
      this.options.logger.info({ settings }, 'predictor settings changed: every predictor starts again from the history');
      this.forecast = undefined;
      this.fedThrough = NaN;
    }
    // Fed past the newest complete grid point by more than a horizon: the clock was ahead and
    // stepped back. The points fed past it were time that had not come (fed as missing), and
    // a predictor only moves forward, so it would ignore every new point until the clock got
    // there again (days, for a clock days fast). It is rebuilt from the history instead; a step
    // back within one horizon only delays the next points.
    const newest = lastCompleteGridSeconds(now, settings.intervalSeconds, plan.agent.sampleIntervalSeconds + 1);
    if (this.forecast && this.fedThrough > newest + settings.horizonSeconds) {
      this.options.logger.warn({ fedThroughSeconds: this.fedThrough, newestSeconds: newest }, 'the clock went back behind the predictors: every predictor starts again from the history');
      this.forecast = undefined;
      this.fedThrough = NaN;
    }
    const forecast = (this.forecast ??= new HostForecast(settings));
    try {
      await this.feedOnce(forecast, plan, now);
    } catch (error) {
      if (error instanceof Superseded) {
        // The plan changed the settings mid-replay: what is being built answers another question.
        void this.pass().catch(() => {});
        return;
      }
      if (error instanceof Stopped) return;
      this.options.logger.error({ error: (error as Error).message }, 'prediction pass failed; retrying on the next one');
      return;
    }
    this.options.metrics?.predictionPassDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
  }

  /** One pass's work on `forecast`: track the shards, read and feed what is new, publish, save. */
  private async feedOnce(forecast: HostForecast, plan: Plan, now: number): Promise<void> {
    const settings = forecast.settings;
    const between = () => this.yieldUnlessStopped(settings);
    const interval = settings.intervalSeconds;
    const through = lastCompleteGridSeconds(now, interval, plan.agent.sampleIntervalSeconds + 1);
    const saved = (key: ForecastKey) => this.savedState(key, through, settings.horizonSeconds);
    const report = forecast.track(this.options.shards(), saved, OPENS_PER_TURN);
    while (report.deferred > 0) {
      await between();
      const more = forecast.track(this.options.shards(), saved, OPENS_PER_TURN);
      report.created.push(...more.created);
      report.restored.push(...more.restored);
      report.rejected.push(...more.rejected);
      report.deferred = more.deferred;
    }
    // A predictor built afresh is saved as soon as it has caught up, whatever an older state of its key.
    for (const key of report.created) this.savedAt.delete(key);
    for (const { key, reason } of report.rejected) this.options.logger.warn({ predictor: key, reason }, `saved predictor state of ${key} not used (${reason}); rebuilding it from the history`);
    if (report.restored.length > 0 || report.created.length > 0) {
      this.options.logger.info({ restored: report.restored.length, created: report.created.length }, 'predictors loaded');
    }
    const needed = forecast.neededFromSeconds();
    this.catchingUp = needed === undefined || needed < through;
    await catchUp(forecast, this.options.history, {
      historyStartSeconds: now - plan.agent.historyRetentionSeconds,
      throughSeconds: through,
      pointsPerRead: Math.max(1, Math.floor(UPDATES_PER_READ / Math.max(1, forecast.size))),
      between,
    });
    this.fedThrough = Math.max(through, Number.isNaN(this.fedThrough) ? -Infinity : this.fedThrough);
    this.catchingUp = false;
    this.countIgnored(forecast);
    this.options.metrics?.observePredictions(forecast.vectors().shards);
    await this.saveDue(forecast, now);
  }

  /**
   * Adds what each predictor ignored since the last pass to the counter. A predictor counts from
   * when it was built or loaded, and is rebuilt (new settings, the clock back, a shard back), so
   * the counter takes differences per predictor object and stays monotonic. Every series of a
   * predictor is there from its first pass (at 0), so rate() and alerts see it before the first.
   */
  private countIgnored(forecast: HostForecast): void {
    const counter = this.options.metrics?.predictorIgnoredSamples;
    if (!counter) return;
    for (const { kind, predictor } of forecast.predictors()) {
      const key = `${kind}/${predictor.applicationId}/${predictor.shardId ?? ''}`;
      const now = predictor.ignoredSamples;
      const before = this.ignoredCounted.get(key);
      const most = { ...now };
      for (const [field, reason] of IGNORED_REASONS) {
        // A rebuilt predictor counts again from 0 through what its predecessor was counted for: only beyond it is new.
        counter.inc({ application_id: predictor.applicationId, predictor: kind, reason }, Math.max(0, now[field] - (before?.[field] ?? 0)));
        most[field] = Math.max(now[field], before?.[field] ?? 0);
      }
      this.ignoredCounted.set(key, most);
    }
  }

  /** Saves every predictor whose last save is older than saveEverySeconds (or that was never saved). */
  private async saveDue(forecast: HostForecast, now: number): Promise<void> {
    const store = this.options.states;
    if (!store) return;
    const every = this.options.saveEverySeconds ?? 3600;
    // A predictor that has seen no point has nothing to keep (a new or idle shard): its state
    // would only cost the JSON and gzip of empty models.
    const due = [...forecast.states()].filter((s) => s.fed && !(now - (this.savedAt.get(s.key) ?? -Infinity) < every));
    try {
      for (let i = 0; i < due.length && !this.stopped; i += SAVES_PER_TURN) {
        const batch = due.slice(i, i + SAVES_PER_TURN).map((s) => ({ key: s.key, savedAtSeconds: now, state: s.state() }));
        store.save(batch);
        for (const entry of batch) this.savedAt.set(entry.key, now);
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (now - this.lastForget >= FORGET_AFTER_SECONDS / 24) {
        this.lastForget = now;
        const here = new Set<string>([...forecast.states()].map((s) => s.key));
        const stale = [...this.savedAt].filter(([key, at]) => !here.has(key as ForecastKey) && now - at > FORGET_AFTER_SECONDS).map(([key]) => key);
        if (stale.length > 0) {
          store.delete(stale);
          for (const key of stale) this.savedAt.delete(key);
        }
      }
    } catch (error) {
      this.options.logger.warn({ error: (error as Error).message }, 'predictor state not saved; a restart rebuilds it from the history');
    }
  }

  /** History behind the state kept here for a shard not tracked yet; 0 when there is none it could load. */
  private keptHistorySeconds(forecast: HostForecast, key: ForecastKey, applicationId: string, shardId: string): number {
    let kept: unknown;
    try {
      kept = this.imported.get(key) ?? this.options.states?.read(key);
    } catch {
      return 0;
    }
    if (kept === undefined) return 0;
    const predictor = forecast.restore(kept, applicationId, shardId, undefined);
    return typeof predictor === 'string' ? 0 : predictor.historySeconds();
  }

  /**
   * The state kept for `key`; one fed more than a horizon past `throughSeconds`, the newest
   * complete grid point (saved while the clock was ahead), is refused: loaded, it would ignore
   * every new point until the clock got there again.
   */
  private savedState(key: ForecastKey, throughSeconds: number, horizonSeconds: number): unknown {
    const imported = this.imported.get(key);
    if (imported !== undefined) this.imported.delete(key);
    const state = imported ?? this.options.states?.read(key);
    const last = (state as { lastSeconds?: unknown } | null | undefined)?.lastSeconds;
    if (typeof last === 'number' && last > throughSeconds + horizonSeconds) throw new Error(`its last point (${last}) is after this host's clock (newest complete grid point ${throughSeconds})`);
    return state;
  }

  /** Lets the event loop run; then ends the pass if the agent stops or the plan changed the settings it runs on. */
  private async yieldUnlessStopped(settings: PredictorSettings): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.stopped) throw new Stopped();
    const plan = this.options.plan();
    let now: PredictorSettings | undefined;
    try {
      now = plan && predictorSettingsFromPlan(plan.predictor);
    } catch {
      now = undefined;
    }
    if (now && !sameSettings(now, settings)) throw new Superseded();
  }
}

class Stopped extends Error {}
class Superseded extends Error {}
