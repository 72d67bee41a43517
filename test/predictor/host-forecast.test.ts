import Database from 'better-sqlite3';
import { checkDemandVector } from '../../src/contracts/demand-vector';
import { ApplicationPredictor, DEFAULT_PREDICTOR_SETTINGS, type ApplicationPredictorState } from '../../src/predictor/application-predictor';
import { vectorsFromHistory } from '../helpers/history-vectors';
import { catchUp, HostForecast, lastCompleteGridSeconds, type ForecastKey } from '../../src/predictor/host-forecast';
import type { MetricBucket, MetricSample } from '../../src/store/metric-history';
import { SqliteMetricHistory } from '../../src/store/sqlite-metric-history';
import { gridPointsFromHistory } from '../../src/traces/metric-history-adapter';

const T = 1_700_006_400; // a multiple of 300
const settings = { ...DEFAULT_PREDICTOR_SETTINGS, minHistorySeconds: 3600 };

const sample = (shardId: string, atSeconds: number, cpuCores: number, applicationId = 'web'): MetricSample => ({
  atSeconds,
  shardId,
  applicationId,
  cpuCores,
  cpuThrottledRatio: 0,
  memoryBytes: 1e9 + cpuCores * 1e8,
  readOps: 1,
  writeOps: 2,
  readBytesPerSecond: 0,
  writeBytesPerSecond: 0,
});

/** A day of 10 s samples for two shards of `web` and one of `db`, with a daily-ish wave and noise. */
function history(hours = 24): MetricSample[] {
  const rows: MetricSample[] = [];
  for (let t = T; t < T + hours * 3600; t += 10) {
    const wave = 1 + Math.sin((2 * Math.PI * (t - T)) / 21600);
    const noise = ((t * 7919) % 97) / 97;
    rows.push(sample('web-1', t, 0.5 * wave + 0.2 * noise), sample('web-2', t, 0.4 * wave + 0.1 * noise), sample('db-1', t, 0.3 + 0.3 * noise, 'db'));
  }
  return rows;
}

function openHistory(rows: readonly MetricSample[]): SqliteMetricHistory {
  const store = new SqliteMetricHistory(new Database(':memory:'));
  store.append(rows);
  return store;
}

describe('grid points from metric history', () => {
  it('takes each bucket maximum; rows finer than the grid give the maximum of their union, raw samples too', () => {
    const bucket = (shardId: string, at: number, max: number): MetricBucket => ({ ...sample(shardId, at, 0.1), bucketSeconds: 300, samples: 30, cpuCoresMax: max, memoryBytesMax: 2e9, readOpsMax: 3, writeOpsMax: 4 });
    const grid = gridPointsFromHistory([bucket('a', T, 0.9), bucket('a', T + 300, 1.4), bucket('a', T + 600, 0.2), sample('b', T + 5, 0.3), sample('b', T + 890, 0.7)], 900);
    expect(grid.get('a')?.get(T / 900)).toEqual({ cpu: 1.4, memory: 2e9, read: 3, write: 4 });
    expect(grid.get('b')?.get(T / 900)?.cpu).toBe(0.7);
  });
});

describe('host forecast', () => {
  it('gives the vectors a predictor fed the same grid points directly gives, however the history is read', async () => {
    const rows = history();
    const through = lastCompleteGridSeconds(T + 86400 + 5, 300, 10);
    const forecast = new HostForecast(settings);
    forecast.track([
      { shardId: 'web-1', applicationId: 'web', allocation: { cpuCores: 2, memoryBytes: 4e9 } },
      { shardId: 'web-2', applicationId: 'web', allocation: { cpuCores: 1, memoryBytes: 2e9 } },
      { shardId: 'db-1', applicationId: 'db' },
    ]);
    const store = openHistory(rows);
    // Read 7 grid points at a time, and the last hour twice: each predictor moves forward only.
    const updates = await catchUp(forecast, store, { historyStartSeconds: T - 86400, throughSeconds: through - 3600, pointsPerRead: 7 });
    await catchUp(forecast, store, { historyStartSeconds: T - 86400, throughSeconds: through, pointsPerRead: 7 });
    expect(forecast.feed(store.query({ fromSeconds: through - 3600, toSeconds: through + 299, resolutionSeconds: 300 }), through - 3600, through)).toBe(0);
    expect(updates).toBe(((through - 3600 - T) / 300 + 1) * 4);

    const direct = new ApplicationPredictor('web', settings, { cpuCores: 2, memoryBytes: 4e9 }, 'web-1');
    const sum = new ApplicationPredictor('web', settings, { cpuCores: 3, memoryBytes: 6e9 });
    const grid = gridPointsFromHistory(store.query({ fromSeconds: T, toSeconds: through + 299, resolutionSeconds: 300 }), 300);
    for (let at = T; at <= through; at += 300) {
      const a = grid.get('web-1')?.get(at / 300);
      const b = grid.get('web-2')?.get(at / 300);
      if (!a || !b) throw new Error(`no point at ${at}`);
      direct.update(at, a);
      sum.update(at, { cpu: a.cpu + b.cpu, memory: a.memory + b.memory, read: a.read + b.read, write: a.write + b.write });
    }
    const { shards, applications } = forecast.vectors();
    expect(shards.map((v) => v.shard_id)).toEqual(['db-1', 'web-1', 'web-2']);
    expect(shards[1]).toEqual(direct.vector());
    expect(applications.find((v) => v.application_id === 'web')).toEqual(sum.vector());
    expect(applications.find((v) => v.application_id === 'web')?.resources.cpu.percentage).toBeDefined();
    // db has one shard here: its application vector is that shard's.
    const { shard_id: _id, ...db } = shards[0];
    expect(applications.find((v) => v.application_id === 'db')).toEqual(db);
    for (const v of [...shards, ...applications]) expect(checkDemandVector(v).ok).toBe(true);
    expect(shards[1].timestamp).toBe(new Date((through + 900) * 1000).toISOString().replace('.000Z', 'Z'));
  });

  it('continues from saved state exactly where an unbroken forecast is, and rebuilds state saved under other settings', async () => {
    const rows = history(12);
    const store = openHistory(rows);
    const shards = [{ shardId: 'web-1', applicationId: 'web' }, { shardId: 'web-2', applicationId: 'web' }];
    const middle = T + 6 * 3600;
    const end = T + 12 * 3600 - 600;
    const unbroken = new HostForecast(settings);
    unbroken.track(shards);
    await catchUp(unbroken, store, { historyStartSeconds: T, throughSeconds: end });

    const before = new HostForecast(settings);
    before.track(shards);
    await catchUp(before, store, { historyStartSeconds: T, throughSeconds: middle });
    const saved = new Map<ForecastKey, unknown>();
    for (const { key, state } of before.states()) saved.set(key, JSON.parse(JSON.stringify(state())));

    const after = new HostForecast(settings);
    const report = after.track(shards, (key) => saved.get(key));
    expect(report.restored.sort()).toEqual(['application/web', 'shard/web-1', 'shard/web-2']);
    expect(after.neededFromSeconds()).toBe(middle + 300);
    await catchUp(after, store, { historyStartSeconds: T, throughSeconds: end });
    expect(after.vectors()).toEqual(unbroken.vectors());

    const other = new HostForecast({ ...settings, quantile: 0.9 });
    const rebuilt = other.track(shards, (key) => saved.get(key));
    expect(rebuilt.restored).toEqual([]);
    expect(rebuilt.rejected.map((r) => r.reason)).toEqual(Array(3).fill('saved under other predictor settings'));
    expect(other.neededFromSeconds()).toBeUndefined();

    const broken = new HostForecast(settings);
    const garbage = broken.track(shards, (key) => (key === 'shard/web-1' ? { version: 1, models: {} } : (saved.get(key) as ApplicationPredictorState)));
    expect(garbage.rejected).toEqual([{ key: 'shard/web-1', reason: 'unreadable: state.lastSeconds: undefined is not null or a grid time (a multiple of the interval) from 1970 to 2286' }]);
    expect(garbage.created).toEqual(['shard/web-1']);
  });

  it('starts a new shard at its first sample, keeps later gaps missing, and drops shards that left', async () => {
    const store = openHistory([...history(2).filter((r) => r.shardId === 'web-1'), sample('late', T + 3600, 1, 'late'), sample('late', T + 4200, 1, 'late')]);
    const forecast = new HostForecast(settings);
    forecast.track([{ shardId: 'web-1', applicationId: 'web' }, { shardId: 'late', applicationId: 'late' }]);
    await catchUp(forecast, store, { historyStartSeconds: T - 3600, throughSeconds: T + 7200 - 600 });
    const late = forecast.vectors().shards.find((v) => v.shard_id === 'late');
    // Fed from T + 3600 (not from T - 3600): its last point is the newest grid time, its history one hour less.
    expect(late?.timestamp).toBe(new Date((T + 7200 - 600 + 900) * 1000).toISOString().replace('.000Z', 'Z'));
    expect(late?.model).toBe('cold-start-prior');
    expect(late?.resources.cpu.cores).toBe(2);
    const report = forecast.track([{ shardId: 'late', applicationId: 'late' }]);
    expect(report.dropped).toEqual(['shard/web-1']);
    expect(forecast.vectors().shards.map((v) => v.shard_id)).toEqual(['late']);
  });

  it('refuses a saved state whose numbers this code could not have written, before they can stall or break the agent', async () => {
    const store = openHistory(history(3));
    const forecast = new HostForecast(settings);
    forecast.track([{ shardId: 'web-1', applicationId: 'web' }]);
    await catchUp(forecast, store, { historyStartSeconds: T, throughSeconds: T + 2 * 3600 });
    const good = JSON.stringify(forecast.shardState('web-1'));
    const edited = (edit: (state: any) => void) => { // eslint-disable-line @typescript-eslint/no-explicit-any
      const state = JSON.parse(good);
      edit(state);
      return forecast.restore(state, 'web', 'web-1', undefined);
    };
    expect(typeof edited(() => {})).not.toBe('string');
    const cpu = (state: any) => state.models.cpu.inner; // eslint-disable-line @typescript-eslint/no-explicit-any
    const vpaOf = (state: any) => cpu(state).candidates.find((c: { model: string }) => c.model === 'vpa'); // eslint-disable-line @typescript-eslint/no-explicit-any
    const ratioOf = (state: any) => cpu(state).candidates.find((c: { model: string }) => c.model === 'recent-peak'); // eslint-disable-line @typescript-eslint/no-explicit-any
    const cases: [string, (state: any) => void, RegExp][] = [ // eslint-disable-line @typescript-eslint/no-explicit-any
      ['a time centuries ago', (s) => (s.lastSeconds = -1e15), /state\.lastSeconds: -1000000000000000 is not null or a grid time/],
      ['a time past any date', (s) => (s.lastSeconds = 1e300), /state\.lastSeconds/],
      ['a time off the grid', (s) => (s.lastSeconds += 1), /state\.lastSeconds/],
      ['a string for a time', (s) => (s.lastSeconds = 'abc'), /state\.lastSeconds/],
      ['a bucket far outside the scheme', (s) => vpaOf(s).histogram.buckets.push([1e9, 1]), /state\.buckets: 1000000000 is not a bucket of the scheme/],
      ['a negative weight', (s) => vpaOf(s).histogram.buckets.push([3, -1]), /state\.buckets: -1 is not a weight >= 0/],
      ['a scheme of a billion buckets', (s) => (vpaOf(s).histogram.scheme.maxValue = 1e300), /state\.scheme/],
      ['a ring of a trillion samples', (s) => (ratioOf(s).ring.capacity = 1e12), /state\.ring\.capacity/],
      ['a ring without an interval', (s) => (ratioOf(s).ring.intervalSeconds = 0), /state\.ring\.intervalSeconds/],
      ['a ring holding a string', (s) => (ratioOf(s).ring.values[0] = 'x'), /state\.ring\.values: "x" is not a number or null/],
      ['a selected pair that does not exist', (s) => (cpu(s).selected = 10_000), /state\.selected: 10000 is not a pair of the selection/],
      ['a model built for another horizon', (s) => (ratioOf(s).options.horizonSeconds = 1800), /state\.models\.cpu\.options/],
      ['a half-life of zero', (s) => (vpaOf(s).clock.halfLifeSeconds = 0), /state\.clock\.halfLifeSeconds/],
      // A weight of 0 or less let every regime answer a q-tail from no sample; Infinity (JSON's 1e400) none ever.
      ['a ratio model\'s newest weight of -1', (s) => (ratioOf(s).lastWeight = -1), /state\.lastWeight: -1 is not a weight > 0/],
      ['a ratio model\'s newest weight of Infinity', (s) => (ratioOf(s).lastWeight = Infinity), /state\.lastWeight/],
      ['a holt level of Infinity', (s) => (cpu(s).candidates.find((c: { model: string }) => c.model === 'holt').extra.level = Infinity), /state\.extra\.level/],
      ['a highest value seen below 0', (s) => (s.models.cpu.maxSeen = -1), /state\.models\.cpu\.maxSeen: -1 is not null or a value >= 0/],
      ['a minimum history other than the settings\'', (s) => (s.models.cpu.minHistorySeconds = 0), /state\.models\.cpu\.minHistorySeconds: 0 is not the settings' minimum history, 3600/],
    ];
    for (const [, edit, reason] of cases) expect(edited(edit)).toMatch(reason);
  });

  it('replays a shard that arrives from its own rows only, not every shard\'s history again', async () => {
    const store = openHistory(history(6));
    const reads: { shardId?: string; applicationId?: string; fromSeconds: number; limit?: number }[] = [];
    const recording = { query: (q: Parameters<typeof store.query>[0]) => (reads.push(q), store.query(q)) };
    const forecast = new HostForecast(settings);
    forecast.track([{ shardId: 'web-1', applicationId: 'web' }]);
    const through = T + 6 * 3600 - 600;
    await catchUp(forecast, recording, { historyStartSeconds: T, throughSeconds: through });
    reads.length = 0;
    forecast.track([{ shardId: 'web-1', applicationId: 'web' }, { shardId: 'db-1', applicationId: 'db' }]);
    await catchUp(forecast, recording, { historyStartSeconds: T, throughSeconds: through });
    // One row to find where db-1's history begins, then its rows from there (at T, not the history start).
    expect(reads.map((q) => [q.shardId ?? q.applicationId ?? '(all)', q.limit ?? 'rows'])).toEqual([['db-1', 1], ['db-1', 'rows']]);
    expect(reads[1].fromSeconds).toBe(T);
    const unbroken = new HostForecast(settings);
    unbroken.track([{ shardId: 'web-1', applicationId: 'web' }, { shardId: 'db-1', applicationId: 'db' }]);
    await catchUp(unbroken, store, { historyStartSeconds: T, throughSeconds: through });
    expect(forecast.vectors()).toEqual(unbroken.vectors());
  });

  it('reads the history at a grid interval that is not a whole number of seconds', async () => {
    const rows: MetricSample[] = [];
    for (let t = T; t < T + 600; t += 2.5) rows.push(sample('web-1', t, 0.5 + (t % 7.5 === 0 ? 0.25 : 0)));
    const forecast = new HostForecast({ ...settings, intervalSeconds: 7.5, horizonSeconds: 15, minHistorySeconds: 60 });
    forecast.track([{ shardId: 'web-1', applicationId: 'web' }]);
    const through = lastCompleteGridSeconds(T + 600, 7.5, 0);
    expect(await catchUp(forecast, openHistory(rows), { historyStartSeconds: T, throughSeconds: through })).toBe(through / 7.5 - T / 7.5 + 1);
    // Each point is the maximum of its three samples.
    expect(forecast.vectors().shards[0].resources.cpu.cores).toBeGreaterThanOrEqual(0.75);
  });

  it('opens at most maxOpens predictors per call and the rest on the next calls', () => {
    const forecast = new HostForecast(settings);
    const shards = [{ shardId: 'web-1', applicationId: 'web' }, { shardId: 'web-2', applicationId: 'web' }, { shardId: 'db-1', applicationId: 'db' }];
    const first = forecast.track(shards, undefined, 2);
    expect([first.created, first.deferred]).toEqual([['shard/web-1', 'shard/web-2'], 2]);
    const second = forecast.track(shards, undefined, 2);
    expect([second.created, second.deferred, second.dropped]).toEqual([['shard/db-1', 'application/web'], 0, []]);
    expect(forecast.size).toBe(4);
  });

  it('adopts a shard\'s predictor learnt on another host when it has more history, and feeds it this host\'s points after its own', async () => {
    const store = openHistory(history(12));
    const shards = [{ shardId: 'web-1', applicationId: 'web' }];
    const source = new HostForecast(settings);
    source.track(shards);
    await catchUp(source, store, { historyStartSeconds: T, throughSeconds: T + 6 * 3600 });
    const handed = JSON.parse(JSON.stringify(source.shardState('web-1')));

    // The destination has seen the shard for half an hour only (under the hour it needs), after a gap.
    const destination = new HostForecast(settings);
    destination.track(shards);
    const recent = openHistory(history(12).filter((r) => r.atSeconds >= T + 10.5 * 3600));
    await catchUp(destination, recent, { historyStartSeconds: T, throughSeconds: T + 11 * 3600 });
    expect(destination.vectors().shards[0].model).toBe('cold-start-prior');
    expect(destination.adopt('web-1', handed)).toBeUndefined();
    expect(destination.neededFromSeconds()).toBe(T + 6 * 3600 + 300);
    await catchUp(destination, recent, { historyStartSeconds: T, throughSeconds: T + 11 * 3600 });
    const vector = destination.vectors().shards[0];
    expect(vector.model).not.toBe('cold-start-prior');
    expect(vector.timestamp).toBe(new Date((T + 11 * 3600 + 900) * 1000).toISOString().replace('.000Z', 'Z'));

    expect(destination.adopt('web-1', handed)).toBe('the predictor here has as much history already');
    expect(destination.adopt('web-2', handed)).toBe('web-2 is not a shard of this host');
    expect(new HostForecast({ ...settings, horizonSeconds: 1800 }).restore(handed, 'web', 'web-1', undefined)).toBe('saved under other predictor settings');
  });

  it('vectorsFromHistory gives a vector per shard and per application', () => {
    const rows = history(2);
    const { shards, applications } = vectorsFromHistory(rows, settings, new Map([['web-1', { cpuCores: 2, memoryBytes: 4e9 }]]));
    expect(shards.map((v) => v.shard_id)).toEqual(['db-1', 'web-1', 'web-2']);
    expect(applications.map((v) => v.application_id)).toEqual(['db', 'web']);
    expect(shards[1].resources.cpu.percentage).toBeGreaterThan(0);
    for (const v of [...shards, ...applications]) expect(checkDemandVector(v).ok).toBe(true);
  });
});
