/**
 * The demand forecast of one host's shards from its metric history: a predictor per shard, and
 * one per application that has several shards here (fed the sum of their grid points; an
 * application with one shard here is that shard's forecast). The agent feeds it every grid
 * point as it completes (host-agent/prediction/forecast-loop.ts); `shardform predict --history`
 * replays a history file through the same code, so both give the same vectors.
 *
 * Grid point k (time k x interval) is the history's bucket [k x interval, (k + 1) x interval)
 * read at the grid's resolution, each resource its bucket's maximum (gridPointsFromHistory:
 * the predictor targets peaks). A predictor only ever moves forward: each has a cursor, the
 * last grid time it has considered, and takes the points after it, so feeding the same range
 * twice, or ranges that overlap, changes nothing. Before its first measured point a new
 * predictor skips the gap; after it a missing point is fed as missing (gaps stay gaps).
 */
import type { DemandVector } from '../contracts/demand-vector';
import type { MetricBucket, MetricHistory, MetricQuery, MetricSample } from '../store/metric-history';
import { gridPointsFromHistory, type GridPoints, type GridValues } from '../traces/metric-history-adapter';
import { ApplicationPredictor, sameSettings, type ApplicationPredictorState, type PredictorSettings } from './application-predictor';
import { RESOURCE_NAMES, type Allocation } from './series';

export interface ForecastShard {
  readonly shardId: string;
  readonly applicationId: string;
  readonly allocation?: Allocation;
}

/** Key of a predictor's saved state. */
export type ForecastKey = `shard/${string}` | `application/${string}`;

interface Tracked {
  readonly predictor: ApplicationPredictor;
  /** Last grid time considered (fed or skipped); NaN = nothing yet, needs all of history. */
  cursor: number;
}

export interface TrackReport {
  readonly created: ForecastKey[];
  readonly restored: ForecastKey[];
  readonly dropped: ForecastKey[];
  /** Saved states that could not be used (another version, other settings, unreadable), rebuilt from history. */
  readonly rejected: { key: ForecastKey; reason: string }[];
  /** Predictors not opened by this call (`maxOpens` reached): the next call opens them. */
  deferred: number;
}

const MISSING: GridValues = { cpu: NaN, memory: NaN, read: NaN, write: NaN };

export class HostForecast {
  private readonly shards = new Map<string, Tracked & { info: ForecastShard }>();
  private readonly applications = new Map<string, Tracked & { shardIds: readonly string[] }>();

  constructor(readonly settings: PredictorSettings) {}

  get intervalSeconds(): number {
    return this.settings.intervalSeconds;
  }

  /**
   * Sets the shards on the host now: new ones get a predictor (their saved state when `saved`
   * has one for these settings), those gone are dropped, allocations follow resizes. At most
   * `maxOpens` predictors are opened per call; the others are `deferred` to the next call.
   */
  track(shards: readonly ForecastShard[], saved?: (key: ForecastKey) => unknown, maxOpens = Infinity): TrackReport {
    const report: TrackReport = { created: [], restored: [], dropped: [], rejected: [], deferred: 0 };
    // Loading a saved predictor takes ~15 ms: a caller that must stay responsive opens a few per call.
    let opens = 0;
    const mayOpen = () => (opens < maxOpens ? (opens++, true) : (report.deferred++, false));
    const here = new Map(shards.map((s) => [s.shardId, s]));
    for (const [shardId] of this.shards) {
      if (!here.has(shardId)) {
        this.shards.delete(shardId);
        report.dropped.push(`shard/${shardId}`);
      }
    }
    for (const info of shards) {
      const known = this.shards.get(info.shardId);
      if (known && known.info.applicationId === info.applicationId) {
        known.info = info;
        known.predictor.setAllocation(info.allocation);
        continue;
      }
      const key: ForecastKey = `shard/${info.shardId}`;
      if (!mayOpen()) continue;
      this.shards.set(info.shardId, { info, ...this.open(key, info.applicationId, info.shardId, info.allocation, saved, report) });
    }
    const members = new Map<string, string[]>();
    for (const info of shards) {
      const ids = members.get(info.applicationId);
      if (ids) ids.push(info.shardId);
      else members.set(info.applicationId, [info.shardId]);
    }
    for (const [applicationId] of this.applications) {
      if ((members.get(applicationId)?.length ?? 0) < 2) {
        this.applications.delete(applicationId);
        report.dropped.push(`application/${applicationId}`);
      }
    }
    for (const [applicationId, shardIds] of members) {
      if (shardIds.length < 2) continue;
      const allocation = sumAllocations(shardIds.map((id) => here.get(id)?.allocation));
      const known = this.applications.get(applicationId);
      if (known) {
        known.shardIds = shardIds;
        known.predictor.setAllocation(allocation);
        continue;
      }
      const key: ForecastKey = `application/${applicationId}`;
      if (!mayOpen()) continue;
      this.applications.set(applicationId, { shardIds, ...this.open(key, applicationId, undefined, allocation, saved, report) });
    }
    return report;
  }

  /**
   * The first grid time some predictor still needs, or undefined when a predictor has seen
   * nothing yet (it needs all of history); `Infinity` when nothing is tracked.
   */
  neededFromSeconds(): number | undefined {
    let from = Infinity;
    for (const tracked of this.all()) {
      if (tracked.cursor !== tracked.cursor) return undefined;
      from = Math.min(from, tracked.cursor + this.intervalSeconds);
    }
    return from;
  }

  /**
   * Feeds the grid points from `fromSeconds` through `throughSeconds` (grid times, inclusive) of
   * history rows read for that range; each predictor takes those after its cursor (with `only`,
   * just that predictor: the rows may then be its own only). Returns how many predictor updates
   * were made.
   */
  feed(rows: readonly (MetricSample | MetricBucket)[], fromSeconds: number, throughSeconds: number, only?: ForecastKey): number {
    const interval = this.intervalSeconds;
    const grid: GridPoints = gridPointsFromHistory(rows, interval);
    const first = Math.ceil(fromSeconds / interval - 1e-9);
    const last = Math.floor(throughSeconds / interval + 1e-9);
    let updates = 0;
    const take = (tracked: Tracked, atSeconds: number, values: GridValues) => {
      if (atSeconds <= tracked.cursor) return;
      // A predictor starts at its first measured point: the time before it is not a gap.
      const started = tracked.predictor.fedUntilSeconds === tracked.predictor.fedUntilSeconds;
      if (started || RESOURCE_NAMES.some((r) => values[r] === values[r])) {
        tracked.predictor.update(atSeconds, values);
        updates++;
      }
      tracked.cursor = atSeconds;
    };
    const pick = <T>(map: Map<string, T>, prefix: string): T[] => {
      if (only === undefined) return [...map.values()];
      const one = only.startsWith(prefix) ? map.get(only.slice(prefix.length)) : undefined;
      return one === undefined ? [] : [one];
    };
    const shards = pick(this.shards, 'shard/');
    const applications = pick(this.applications, 'application/');
    for (let k = first; k <= last; k++) {
      const atSeconds = k * interval;
      for (const tracked of shards) take(tracked, atSeconds, grid.get(tracked.info.shardId)?.get(k) ?? MISSING);
      for (const tracked of applications) {
        // A sum with a shard missing would read as a drop in load: the point is missing instead.
        const sum: GridValues = { cpu: 0, memory: 0, read: 0, write: 0 };
        for (const shardId of tracked.shardIds) {
          const values = grid.get(shardId)?.get(k) ?? MISSING;
          for (const resource of RESOURCE_NAMES) sum[resource] += values[resource];
        }
        take(tracked, atSeconds, sum);
      }
    }
    return updates;
  }

  /** Vectors at each predictor's last point + horizon: every shard, and every application here (validated). */
  vectors(): { shards: DemandVector[]; applications: DemandVector[] } {
    const shards: DemandVector[] = [];
    const applications: DemandVector[] = [];
    const single = new Map<string, DemandVector>();
    for (const tracked of this.shards.values()) {
      const vector = tracked.predictor.vector();
      if (vector === null) continue;
      shards.push(vector);
      if (!this.applications.has(tracked.info.applicationId)) single.set(tracked.info.applicationId, vector);
    }
    for (const [applicationId, tracked] of this.applications) {
      const vector = tracked.predictor.vector();
      if (vector !== null) applications.push(vector);
      single.delete(applicationId);
    }
    for (const vector of single.values()) {
      const { shard_id: _shard, ...application } = vector;
      applications.push(application);
    }
    const byId = (a: DemandVector, b: DemandVector) => (a.shard_id ?? a.application_id).localeCompare(b.shard_id ?? b.application_id);
    return { shards: shards.sort(byId), applications: applications.sort(byId) };
  }

  /**
   * Takes a shard's predictor learnt elsewhere (the source host of a migration): it replaces the
   * one tracked here when it has more history behind it, and is fed this host's points after its
   * own last one (the time between the two hosts' histories is a gap; the source fed it until its
   * next pass after the release, so a point or two of this host's first ones are not fed).
   * Returns why not, or undefined when it was taken; a shard not tracked here is refused (the
   * caller keeps the state for when it is).
   */
  adopt(shardId: string, state: unknown): string | undefined {
    const tracked = this.shards.get(shardId);
    if (!tracked) return `${shardId} is not a shard of this host`;
    const predictor = this.restore(state, tracked.info.applicationId, shardId, tracked.info.allocation);
    if (typeof predictor === 'string') return predictor;
    if (!(predictor.historySeconds() > tracked.predictor.historySeconds())) return 'the predictor here has as much history already';
    // From its own last point: the points this host recorded since the shard arrived are fed to it next.
    this.shards.set(shardId, { info: tracked.info, predictor, cursor: predictor.fedUntilSeconds });
    return undefined;
  }

  tracks(shardId: string): boolean {
    return this.shards.has(shardId);
  }

  /** The saved form of one shard's predictor, or undefined when it is not tracked. */
  shardState(shardId: string): ApplicationPredictorState | undefined {
    return this.shards.get(shardId)?.predictor.toJSON();
  }

  /** Predictors that have seen nothing yet, with the rows they read: their shard's, or their application's. */
  unstarted(): { key: ForecastKey; rows: { shardId: string } | { applicationId: string } }[] {
    const out: { key: ForecastKey; rows: { shardId: string } | { applicationId: string } }[] = [];
    for (const [shardId, t] of this.shards) if (t.cursor !== t.cursor) out.push({ key: `shard/${shardId}`, rows: { shardId } });
    for (const [applicationId, t] of this.applications) if (t.cursor !== t.cursor) out.push({ key: `application/${applicationId}`, rows: { applicationId } });
    return out;
  }

  /** Every predictor with its key and cursor, for saving. */
  *states(): IterableIterator<{ key: ForecastKey; cursorSeconds: number; fed: boolean; state: () => ApplicationPredictorState }> {
    const entry = (key: ForecastKey, tracked: Tracked) => ({
      key,
      cursorSeconds: tracked.cursor,
      fed: tracked.predictor.fedUntilSeconds === tracked.predictor.fedUntilSeconds,
      state: () => tracked.predictor.toJSON(),
    });
    for (const [shardId, tracked] of this.shards) yield entry(`shard/${shardId}`, tracked);
    for (const [applicationId, tracked] of this.applications) yield entry(`application/${applicationId}`, tracked);
  }

  /** Every predictor tracked, as what it predicts: one shard, or an application's unified view (two shards or more here). */
  *predictors(): IterableIterator<{ readonly kind: 'shard' | 'application'; readonly predictor: ApplicationPredictor }> {
    for (const tracked of this.shards.values()) yield { kind: 'shard', predictor: tracked.predictor };
    for (const tracked of this.applications.values()) yield { kind: 'application', predictor: tracked.predictor };
  }

  /** How many predictors are tracked (shards and applications). */
  get size(): number {
    return this.shards.size + this.applications.size;
  }

  private *all(): IterableIterator<Tracked> {
    yield* this.shards.values();
    yield* this.applications.values();
  }

  private open(
    key: ForecastKey,
    applicationId: string,
    shardId: string | undefined,
    allocation: Allocation | undefined,
    saved: ((key: ForecastKey) => unknown) | undefined,
    report: TrackReport,
  ): Tracked {
    let state: unknown;
    try {
      state = saved?.(key);
    } catch (error) {
      report.rejected.push({ key, reason: `unreadable: ${(error as Error).message}` });
    }
    if (state !== undefined) {
      const predictor = this.restore(state, applicationId, shardId, allocation);
      if (typeof predictor === 'string') report.rejected.push({ key, reason: predictor });
      else {
        report.restored.push(key);
        return { predictor, cursor: predictor.fedUntilSeconds };
      }
    }
    report.created.push(key);
    return { predictor: new ApplicationPredictor(applicationId, this.settings, allocation, shardId), cursor: NaN };
  }

  /** The saved predictor, or why it cannot be used here (unreadable, other settings, another shard). */
  restore(state: unknown, applicationId: string, shardId: string | undefined, allocation: Allocation | undefined): ApplicationPredictor | string {
    let predictor: ApplicationPredictor;
    try {
      predictor = ApplicationPredictor.fromJSON(state as ApplicationPredictorState, allocation);
    } catch (error) {
      return `unreadable: ${(error as Error).message}`;
    }
    if (!sameSettings(predictor.settings, this.settings)) return 'saved under other predictor settings';
    if (predictor.applicationId !== applicationId || predictor.shardId !== shardId) return `saved for ${predictor.shardId ?? predictor.applicationId} of ${predictor.applicationId}`;
    try {
      // What the agent will ask of it: a state that loads but cannot answer is not taken.
      predictor.vector();
    } catch (error) {
      return `unusable: ${(error as Error).message}`;
    }
    return predictor;
  }
}

function sumAllocations(allocations: readonly (Allocation | undefined)[]): Allocation | undefined {
  const total = (pick: (a: Allocation) => number | undefined) => {
    let sum = 0;
    for (const a of allocations) {
      const v = a === undefined ? undefined : pick(a);
      if (v === undefined) return undefined;
      sum += v;
    }
    return sum;
  };
  const cpuCores = total((a) => a.cpuCores);
  const memoryBytes = total((a) => a.memoryBytes);
  const iops = total((a) => a.iops);
  if (cpuCores === undefined && memoryBytes === undefined && iops === undefined) return undefined;
  return { ...(cpuCores !== undefined ? { cpuCores } : {}), ...(memoryBytes !== undefined ? { memoryBytes } : {}), ...(iops !== undefined ? { iops } : {}) };
}

/**
 * The newest grid point no sample can still join at `nowSeconds`: point k holds
 * [k x interval, (k + 1) x interval), and a sampler's reading is in the history up to `lagSeconds`
 * after the time it is stamped with.
 */
export function lastCompleteGridSeconds(nowSeconds: number, intervalSeconds: number, lagSeconds: number): number {
  return (Math.floor((nowSeconds - lagSeconds) / intervalSeconds) - 1) * intervalSeconds;
}

export interface ReplayOptions {
  /** First grid time to read when some predictor needs all of history (the history's retention start). */
  readonly historyStartSeconds: number;
  /** Last grid time to feed (lastCompleteGridSeconds). */
  readonly throughSeconds: number;
  /** Grid points per read: bounds the rows held at once. Default one day's worth. */
  readonly pointsPerRead?: number;
  /**
   * Awaited after every read (the agent yields its event loop there), with how many
   * (predictor, grid point) pairs have been considered so far, for progress.
   */
  readonly between?: (considered: number) => Promise<void>;
}

/**
 * Brings every predictor up to `throughSeconds` from the history, reading it a bounded range at
 * a time; returns the predictor updates made. The agent calls it every tick (usually one grid
 * point), `predict --history` once over the whole file.
 */
export async function catchUp(forecast: HostForecast, history: Pick<MetricHistory, 'query'>, options: ReplayOptions): Promise<number> {
  const interval = forecast.intervalSeconds;
  const historyStart = Math.ceil(options.historyStartSeconds / interval) * interval;
  const pointsPerRead = Math.max(1, options.pointsPerRead ?? Math.ceil(86400 / interval));
  let updates = 0;
  let considered = 0;
  const replay = async (fromSeconds: number, filter: Partial<Pick<MetricQuery, 'shardId' | 'applicationId'>>, only: ForecastKey | undefined, points: number) => {
    const step = points * interval;
    let from = fromSeconds;
    while (from <= options.throughSeconds) {
      const through = Math.min(options.throughSeconds, from + step - interval);
      // Rows of grid points from..through: bucket starts in [from, through + interval).
      const rows = history.query({ ...filter, fromSeconds: from, toSeconds: through + interval - 1e-6, resolutionSeconds: interval });
      updates += forecast.feed(rows, from, through, only);
      considered += (Math.round((through - from) / interval) + 1) * (only === undefined ? forecast.size : 1);
      from = through + interval;
      await options.between?.(considered);
    }
  };
  // A predictor that has seen nothing reads its own rows from the start of history first, so a
  // shard arriving does not make every other shard's history be read again. It is fed alone, as
  // many points per read as the others together would take.
  for (const { key, rows } of forecast.unstarted()) {
    // Where its rows begin (one indexed read of a single row): a new shard's replay then reads
    // nothing before it, instead of the whole retention in empty ranges. At full resolution, not
    // the grid's: a roll-up would group every raw row of the range before the limit applies.
    const first = history.query({ ...rows, fromSeconds: historyStart, toSeconds: options.throughSeconds + interval - 1e-6, limit: 1 })[0];
    const from = first === undefined ? options.throughSeconds : Math.max(historyStart, Math.floor(first.atSeconds / interval + 1e-9) * interval);
    await replay(from, rows, key, pointsPerRead * Math.max(1, forecast.size));
  }
  // Then everyone from the oldest cursor; none before the start of history (a state saved long
  // ago goes on from there: the time between is a gap).
  const needed = forecast.neededFromSeconds();
  if (needed !== undefined) await replay(Math.max(needed, historyStart), {}, undefined, pointsPerRead);
  return updates;
}
