/**
 * `predict --history FILE`: an agent's metric history (its `<state-dir>/metrics.db`) replayed
 * through HostForecast and catchUp, the code the agent runs, so the vectors are the ones an
 * agent with the same settings would serve. The file is opened read-only: a running agent keeps
 * writing it meanwhile, unhindered.
 */
import type { DemandVector } from '../../contracts/demand-vector';
import { MAX_GRID_POINTS } from '../../contracts/prediction-grid';
import { ShardformError, showValue } from '../../errors';
import type { PredictorSettings } from '../../predictor/application-predictor';
import { catchUp, HostForecast, lastCompleteGridSeconds } from '../../predictor/host-forecast';
import type { MetricHistory } from '../../store/metric-history';
import { SqliteMetricHistory } from '../../store/sqlite-metric-history';
import { StoreError } from '../../store/store-error';
import { invalidFlag } from './invalid-flag';
import { startProgress } from './progress';

export interface HistoryForecast {
  readonly shards: DemandVector[];
  readonly applications: DemandVector[];
  /** The newest grid time fed: the last complete one before the history's newest row. */
  readonly fedThroughSeconds: number;
  /** Shards in the history without a vector, with the reason. */
  readonly unpredicted: { id: string; reason: string }[];
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString().replace(/\.000Z$/, 'Z');

export async function forecastFromHistory(path: string, settings: PredictorSettings, app: string | undefined): Promise<HistoryForecast> {
  let store: SqliteMetricHistory;
  try {
    store = SqliteMetricHistory.openReadOnly(path, '--history');
  } catch (error) {
    if (error instanceof StoreError) throw new ShardformError('INVALID_ARGUMENT', '--history', path, error.message);
    throw error;
  }
  try {
    let spans = store.shardSpans();
    const bad = spans.find((span) => !(Number.isFinite(span.firstSeconds) && Number.isFinite(span.lastSeconds) && typeof span.applicationId === 'string'));
    if (bad) throw new Error(`shard ${showValue(bad.shardId)} has times ${showValue(bad.firstSeconds)} to ${showValue(bad.lastSeconds)}`);
    // As --trace with a directory of no traces: nothing to predict from is a usage error.
    if (spans.length === 0) throw new ShardformError('UNREADABLE_FILE', '--history', path, `--history: ${showValue(path)} holds no metric samples yet`);
    if (app !== undefined) {
      spans = spans.filter((s) => s.applicationId === app);
      if (spans.length === 0) throw invalidFlag('--app', app, `an application in ${path}`);
    }
    const interval = settings.intervalSeconds;
    let first = Infinity;
    let last = -Infinity;
    for (const span of spans) {
      first = Math.min(first, span.firstSeconds);
      last = Math.max(last, span.lastSeconds);
    }
    const start = Math.floor(first / interval) * interval;
    // The grid point of the newest row may still be filling (a running agent's): left out, as the agent does.
    const through = lastCompleteGridSeconds(last, interval, 0);
    const points = Math.max(0, (through - start) / interval + 1);
    if (points > MAX_GRID_POINTS)
      throw new ShardformError(
        'INVALID_ARGUMENT',
        '--history',
        path,
        `--history: ${showValue(path)} spans ${points} grid points of ${interval} s (${iso(first)} to ${iso(last)}), more than ${MAX_GRID_POINTS}; check for a wrong timestamp, or use a coarser --interval`,
      );

    const forecast = new HostForecast(settings);
    forecast.track(spans.map(({ shardId, applicationId }) => ({ shardId, applicationId })));
    const history: Pick<MetricHistory, 'query'> = app === undefined ? store : { query: (q) => store.query({ ...q, applicationId: app }) };
    // catchUp's own default (a day of points per read), named here to count the reads for the progress bar.
    const pointsPerRead = Math.ceil(86400 / interval);
    // Every predictor is new here: each replays every grid point once.
    const total = points * forecast.size;
    const progress = startProgress(total, 'predict', 'points');
    try {
      await catchUp(forecast, history, {
        historyStartSeconds: start,
        throughSeconds: through,
        pointsPerRead,
        between: async (considered) => progress.update(Math.min(total, considered)),
      });
      // A predictor replays from its own first row, so fewer than `total` may have been considered.
      progress.update(total);
    } finally {
      progress.stop();
    }

    const { shards, applications } = forecast.vectors();
    const predicted = new Set(shards.map((v) => v.shard_id));
    const unpredicted = spans
      .filter((s) => !predicted.has(s.shardId))
      .map((s) => ({
        id: s.shardId,
        reason: s.firstSeconds >= through + interval ? `its history starts in the newest grid point (${iso(through + interval)}), which is left out while it may still be filling` : 'its cpu or memory was never measured',
      }));
    return { shards, applications, fedThroughSeconds: through, unpredicted };
  } catch (error) {
    if (error instanceof ShardformError) throw error;
    // Tables of the right names with other columns or types: not a history an agent wrote.
    throw new ShardformError('INVALID_ARGUMENT', '--history', path, `--history: ${showValue(path)} is not a metric history an agent wrote (${(error as Error).message}); give an agent's <state-dir>/metrics.db`);
  } finally {
    store.close();
  }
}
