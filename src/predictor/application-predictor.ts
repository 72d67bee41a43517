/**
 * One application's (or shard's) predictor: a model per resource (cpu, memory, read and write
 * ops), each `auto` selection over every model wrapped in the cold-start prior, fed with grid
 * samples, and turned into a resource demand vector for now + horizon that is validated against
 * the schema before it leaves this module.
 */
import { assertDemandVector, type DemandVector } from '../contracts/demand-vector';
import { AutoSelector, type AutoState } from './auto-selector';
import { ColdStart, DEFAULT_MIN_HISTORY_SECONDS, type ColdStartState } from './cold-start';
import { checkState, DEFAULT_HORIZON_SECONDS, DEFAULT_INTERVAL_SECONDS, DEFAULT_QUANTILE, type DemandModel, type ModelOptions, type ModelState } from './demand-model';
import type { PredictorSettings as PlanPredictorSettings } from '../contracts/plan-schema';
import { ShardformError, showValue } from '../errors';
import { createModel, isModelName, modelFromJSON, MODEL_NAMES, type ModelName } from './model-registry';
import { RESOURCE_NAMES, timeAt, valuesOf, type Allocation, type ApplicationSeries, type ResourceName } from './series';

export interface PredictorSettings {
  readonly intervalSeconds: number;
  readonly horizonSeconds: number;
  readonly quantile: number;
  readonly minHistorySeconds: number;
  /** `auto` or one model name for every resource. */
  readonly model: 'auto' | ModelName;
}

export const DEFAULT_PREDICTOR_SETTINGS: PredictorSettings = {
  intervalSeconds: DEFAULT_INTERVAL_SECONDS,
  horizonSeconds: DEFAULT_HORIZON_SECONDS,
  quantile: DEFAULT_QUANTILE,
  minHistorySeconds: DEFAULT_MIN_HISTORY_SECONDS,
  model: 'auto',
};

const BYTES_PER_GB = 1e9;

/** The plan's `predictor` block as predictor settings; an unknown model names the plan field. */
export function predictorSettingsFromPlan(plan: PlanPredictorSettings): PredictorSettings {
  if (plan.model !== 'auto' && !isModelName(plan.model)) {
    throw new ShardformError('INVALID_PLAN', 'predictor.model', plan.model, `predictor.model: ${showValue(plan.model)} is not a known model; use auto or one of ${MODEL_NAMES.join(', ')}`);
  }
  return { ...plan, model: plan.model as PredictorSettings['model'] };
}

function allocationOf(allocation: Allocation | undefined, resource: ResourceName): number | undefined {
  if (allocation === undefined) return undefined;
  if (resource === 'cpu') return allocation.cpuCores;
  if (resource === 'memory') return allocation.memoryBytes;
  return undefined;
}

/** The model label for a vector: `auto(cpu=seasonal-peak,memory=vpa)`, `vpa`, `cold-start-prior`. */
function label(models: ReadonlyMap<ResourceName, ColdStart>): string {
  const cpu = models.get('cpu') as ColdStart;
  const memory = models.get('memory') as ColdStart;
  if (cpu.isCold() || memory.isCold()) return 'cold-start-prior';
  const describe = (m: ColdStart) => (m.inner instanceof AutoSelector ? m.inner.selection.model : m.inner.name);
  const text = cpu.inner instanceof AutoSelector ? `auto(cpu=${describe(cpu)},memory=${describe(memory)})` : cpu.inner.name;
  return text.slice(0, 64);
}

/** What an ApplicationPredictor saves (the agent keeps it in its metric store between restarts). */
export interface ApplicationPredictorState {
  readonly version: 1;
  readonly applicationId: string;
  readonly shardId: string | null;
  readonly settings: PredictorSettings;
  /** Time of the last grid sample fed, null before the first. */
  readonly lastSeconds: number | null;
  readonly models: Readonly<Record<ResourceName, ColdStartState>>;
}

/** Readings a predictor did not learn from, by reason. */
export interface IgnoredSamples {
  /** Infinity or -Infinity (taken as missing). */
  notFinite: number;
  /** Below 0 (taken as missing). */
  negative: number;
  /** Grid samples at or before the last one fed (the clock went back): dropped whole. */
  notAfterLast: number;
}

/** Whether two settings predict the same thing (saved state is only reused under equal ones). */
export function sameSettings(a: PredictorSettings, b: PredictorSettings): boolean {
  return (
    a.intervalSeconds === b.intervalSeconds &&
    a.horizonSeconds === b.horizonSeconds &&
    a.quantile === b.quantile &&
    a.minHistorySeconds === b.minHistorySeconds &&
    a.model === b.model
  );
}

export class ApplicationPredictor {
  private readonly models = new Map<ResourceName, ColdStart>();
  private lastSeconds = NaN;
  private readonly ignored: IgnoredSamples = { notFinite: 0, negative: 0, notAfterLast: 0 };

  constructor(
    readonly applicationId: string,
    readonly settings: PredictorSettings = DEFAULT_PREDICTOR_SETTINGS,
    private currentAllocation?: Allocation,
    readonly shardId?: string,
    restored?: Readonly<Record<ResourceName, ColdStart>>,
  ) {
    const allocation = currentAllocation;
    if (restored) {
      for (const resource of RESOURCE_NAMES) this.models.set(resource, restored[resource]);
      this.setAllocation(allocation);
      return;
    }
    for (const resource of RESOURCE_NAMES) {
      const options: ModelOptions = { resource, intervalSeconds: settings.intervalSeconds, horizonSeconds: settings.horizonSeconds };
      const inner: DemandModel =
        settings.model === 'auto'
          ? new AutoSelector(options, MODEL_NAMES.map((name) => createModel(name, options)), settings.quantile)
          : createModel(settings.model, options);
      this.models.set(resource, new ColdStart(inner, settings.minHistorySeconds, allocationOf(allocation, resource)));
    }
  }

  get allocation(): Allocation | undefined {
    return this.currentAllocation;
  }

  /** The time of the last grid sample fed (NaN before the first). */
  get fedUntilSeconds(): number {
    return this.lastSeconds;
  }

  /** History behind the vector: the shorter of cpu's and memory's (what its confidence is measured on). */
  historySeconds(): number {
    return Math.min((this.models.get('cpu') as ColdStart).historySeconds(), (this.models.get('memory') as ColdStart).historySeconds());
  }

  /** A resize: percentages and the cold-start prior use the new allocation from now on. */
  setAllocation(allocation: Allocation | undefined): void {
    this.currentAllocation = allocation;
    for (const resource of RESOURCE_NAMES) (this.models.get(resource) as ColdStart).allocation = allocationOf(allocation, resource);
  }

  toJSON(): ApplicationPredictorState {
    const models = {} as Record<ResourceName, ColdStartState>;
    for (const resource of RESOURCE_NAMES) models[resource] = (this.models.get(resource) as ColdStart).toJSON();
    return {
      version: 1,
      applicationId: this.applicationId,
      shardId: this.shardId ?? null,
      settings: { ...this.settings },
      lastSeconds: this.lastSeconds === this.lastSeconds ? this.lastSeconds : null,
      models,
    };
  }

  /**
   * Loads saved state. The state is read back from a file, so anything unexpected in it (another
   * version, a missing resource, a model that does not load) is an error, never a half-loaded
   * predictor; the caller then rebuilds it from history.
   */
  static fromJSON(state: ApplicationPredictorState, allocation?: Allocation): ApplicationPredictor {
    checkState(state?.version === 1, 'version', state?.version, '1');
    const interval = state.settings?.intervalSeconds;
    const last = state.lastSeconds;
    // A grid time up to year 2286 (what trace timestamps may be): a time far off would make the
    // next read of history start centuries away, or the vector's timestamp invalid.
    const onGrid = (t: number) => Math.abs(t / interval - Math.round(t / interval)) < 1e-6;
    checkState(last === null || (typeof last === 'number' && last >= 0 && last <= 1e10 && onGrid(last)), 'lastSeconds', last, 'null or a grid time (a multiple of the interval) from 1970 to 2286');
    const models = {} as Record<ResourceName, ColdStart>;
    for (const resource of RESOURCE_NAMES) {
      const saved = state.models?.[resource];
      checkState(saved !== undefined, `models.${resource}`, saved, `a ${resource} model`);
      // Every model was built for these settings and this resource (the selection's candidates too).
      const same = (o: Partial<ModelOptions> | undefined) => o?.resource === resource && o?.intervalSeconds === interval && o?.horizonSeconds === state.settings?.horizonSeconds;
      const inner = saved.inner as ModelState & { candidates?: ModelState[] };
      checkState(same(saved.options) && same(inner?.options) && (inner?.candidates ?? []).every((c) => same(c?.options)), `models.${resource}.options`, saved.options, `the options of a ${resource} model for these settings`);
      // The prior: a negative or infinite highest value made a negative or invalid vector, and another minimum history another cold start than the settings say.
      checkState(saved.maxSeen === null || (Number.isFinite(saved.maxSeen) && saved.maxSeen >= 0), `models.${resource}.maxSeen`, saved.maxSeen, 'null or a value >= 0');
      checkState(saved.minHistorySeconds === state.settings.minHistorySeconds, `models.${resource}.minHistorySeconds`, saved.minHistorySeconds, `the settings' minimum history, ${state.settings.minHistorySeconds}`);
      models[resource] = ColdStart.fromJSON(saved, (inner) => (inner.model === 'auto' ? AutoSelector.fromJSON(inner as AutoState) : modelFromJSON(inner)));
    }
    const predictor = new ApplicationPredictor(state.applicationId, state.settings, allocation, state.shardId ?? undefined, models);
    predictor.lastSeconds = state.lastSeconds ?? NaN;
    return predictor;
  }

  /**
   * Feeds one grid sample of every resource (NaN = missing). A reading that is not a finite
   * non-negative number (a rate over a zero or negative interval, a corrupt row) is missing too:
   * one Infinity made every vector invalid and the selection's price unit Infinity for good.
   */
  update(atSeconds: number, values: Readonly<Record<ResourceName, number>>): void {
    // Time only moves forward (the ratio models' rings already ignored a step back; vpa and the
    // prior learnt it, the vector went back in time, and one dated 1970 wiped vpa's histogram:
    // its decay weights were rescaled by 2^19676). The next later sample goes on as before.
    if (!Number.isNaN(this.lastSeconds) && !(atSeconds > this.lastSeconds)) {
      this.ignored.notAfterLast++;
      return;
    }
    for (const resource of RESOURCE_NAMES) {
      let value = values[resource];
      if (value !== value) {
        // missing
      } else if (!Number.isFinite(value)) {
        this.ignored.notFinite++;
        value = NaN;
      } else if (value < 0) {
        this.ignored.negative++;
        value = NaN;
      }
      (this.models.get(resource) as ColdStart).update({ atSeconds, value });
    }
    this.lastSeconds = atSeconds;
  }

  /** Readings taken as missing since this predictor was built or loaded, by reason (not saved). */
  get ignoredSamples(): Readonly<IgnoredSamples> {
    return { ...this.ignored };
  }

  /** Feeds a whole series in time order. */
  updateFromSeries(series: ApplicationSeries): void {
    for (let i = 0; i < series.cpuCores.length; i++) {
      const values = { cpu: 0, memory: 0, read: 0, write: 0 } as Record<ResourceName, number>;
      for (const resource of RESOURCE_NAMES) values[resource] = valuesOf(series, resource)[i];
      this.update(timeAt(series, i), values);
    }
  }

  /**
   * The demand vector for (last sample + horizon); null before any sample, or while cpu or memory
   * has never been measured and no allocation says what to assume (a 0 would read as "needs
   * nothing"). io is left out while read or write ops have no prediction. Validated.
   */
  vector(): DemandVector | null {
    if (this.lastSeconds !== this.lastSeconds) return null;
    const { horizonSeconds, quantile } = this.settings;
    // NaN when the resource was never measured and has no allocation (ColdStart.prior).
    const predicted = (resource: ResourceName) => (this.models.get(resource) as ColdStart).predict(horizonSeconds, quantile);
    const cores = predicted('cpu');
    const memoryBytes = predicted('memory');
    const readOps = predicted('read');
    const writeOps = predicted('write');
    if (!(cores >= 0 && memoryBytes >= 0)) return null;
    const percent = (need: number, allocated: number | undefined) =>
      allocated !== undefined && allocated > 0 ? { percentage: round((need / allocated) * 100, 1) } : {};
    const allocation = this.currentAllocation;
    const cpuModel = this.models.get('cpu') as ColdStart;
    const memoryModel = this.models.get('memory') as ColdStart;
    const vector = {
      timestamp: new Date((this.lastSeconds + horizonSeconds) * 1000).toISOString().replace(/\.000Z$/, 'Z'),
      application_id: this.applicationId,
      resources: {
        cpu: { cores: round(cores, 3), ...percent(cores, allocation?.cpuCores) },
        memory: { gb: round(memoryBytes / BYTES_PER_GB, 3), ...percent(memoryBytes, allocation?.memoryBytes) },
        ...(readOps >= 0 && writeOps >= 0
          ? { io: { read_ops: round(readOps, 1), write_ops: round(writeOps, 1), ...percent(readOps + writeOps, allocation?.iops) } }
          : {}),
      },
      horizon_seconds: horizonSeconds,
      quantile,
      model: label(this.models),
      confidence: round(Math.min(cpuModel.confidence(), memoryModel.confidence()), 2),
      ...(this.shardId !== undefined ? { shard_id: this.shardId } : {}),
    };
    return assertDemandVector(vector, `demand vector of ${this.shardId ?? this.applicationId}`);
  }
}

/** Rounds up (a prediction rounded down could turn a fit into a violation). */
function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.ceil(value * factor - 1e-9) / factor || 0;
}

/** Predicts one series' vector at its end: the offline path behind `shardform predict`. */
export function predictSeries(series: ApplicationSeries, settings: PredictorSettings = DEFAULT_PREDICTOR_SETTINGS): DemandVector | null {
  const predictor = new ApplicationPredictor(series.applicationId, settings, series.allocation, series.shardId);
  predictor.updateFromSeries(series);
  return predictor.vector();
}
