/**
 * The agent's forecast over a real SQLite history and state store (in memory): a first pass
 * replays the history, state is saved and a restarted loop reads only what is new, settings
 * changes and unreadable state rebuild from the history, stop() ends a long replay.
 */
import Database from 'better-sqlite3';
import { createLogger, memoryLogDestination } from '../../../host-agent/log';
import { AgentMetrics } from '../../../host-agent/metrics/agent-metrics';
import { ForecastLoop } from '../../../host-agent/prediction/forecast-loop';
import type { Plan } from '../../../src/contracts/plan-schema';
import { HostForecast, catchUp, lastCompleteGridSeconds } from '../../../src/predictor/host-forecast';
import type { MetricQuery, MetricSample } from '../../../src/store/metric-history';
import { SqliteMetricHistory } from '../../../src/store/sqlite-metric-history';
import { SqliteModelStates } from '../../../src/store/sqlite-model-states';
import { examplePlan } from '../../helpers/plan-fixture';

const T = 1_700_006_400;
const HOURS = 10;
const NOW = T + HOURS * 3600 + 7;
const SHARDS = [
  { shardId: 'web-0', applicationId: 'web', allocation: { cpuCores: 1, memoryBytes: 2e9 } },
  { shardId: 'web-1', applicationId: 'web', allocation: { cpuCores: 1, memoryBytes: 2e9 } },
  { shardId: 'db-0', applicationId: 'db', allocation: { cpuCores: 2 } },
];

function rows(from: number, to: number): MetricSample[] {
  const out: MetricSample[] = [];
  for (let t = from; t < to; t += 10) {
    for (const [i, s] of SHARDS.entries()) {
      const cpu = 0.2 + 0.1 * i + 0.3 * Math.abs(Math.sin(t / 5000 + i)) + ((t * (i + 3)) % 17) / 100;
      out.push({ atSeconds: t, shardId: s.shardId, applicationId: s.applicationId, cpuCores: cpu, cpuThrottledRatio: 0, memoryBytes: 5e8 + cpu * 1e8, readOps: 2, writeOps: 1, readBytesPerSecond: 0, writeBytesPerSecond: 0 });
    }
  }
  return out;
}

function setup(db = new Database(':memory:')) {
  const history = new SqliteMetricHistory(db);
  const states = new SqliteModelStates(db);
  const reads: MetricQuery[] = [];
  const recording = { query: (q: MetricQuery) => (reads.push(q), history.query(q)) };
  const logs = memoryLogDestination();
  let plan: Plan = examplePlan((p) => {
    p.predictor = { ...p.predictor, minHistorySeconds: 3600 };
  });
  let now = NOW;
  const metrics = new AgentMetrics({ processMetrics: false });
  const loop = (options: { states?: boolean } = {}) =>
    new ForecastLoop({
      history: recording,
      ...(options.states === false ? {} : { states }),
      shards: () => SHARDS,
      plan: () => plan,
      logger: createLogger({ level: 'debug', destination: logs }),
      metrics,
      clock: () => now,
      tickEverySeconds: 3600,
    });
  return {
    db,
    history,
    states,
    reads,
    logs,
    metrics,
    loop,
    setPlan: (p: Plan) => (plan = p),
    plan: () => plan,
    advance: (seconds: number) => (now += seconds),
    now: () => now,
  };
}

async function expected(history: SqliteMetricHistory, plan: Plan, now: number) {
  const forecast = new HostForecast({ ...plan.predictor, model: 'auto' });
  forecast.track(SHARDS);
  await catchUp(forecast, history, { historyStartSeconds: now - plan.agent.historyRetentionSeconds, throughSeconds: lastCompleteGridSeconds(now, 300, plan.agent.sampleIntervalSeconds + 1) });
  return forecast.vectors();
}

describe('ForecastLoop (the agent\'s demand forecast)', () => {
  it('replays the history on its first pass, serves the vectors and the metrics, and saves every predictor', async () => {
    const s = setup();
    s.history.append(rows(T, T + HOURS * 3600));
    const loop = s.loop();
    expect(loop.view()).toMatchObject({ catchingUp: true, fedThroughSeconds: null, shards: [] });
    await loop.pass();
    const view = loop.view();
    const through = lastCompleteGridSeconds(NOW, 300, s.plan().agent.sampleIntervalSeconds + 1);
    expect(view).toMatchObject({ catchingUp: false, fedThroughSeconds: through, settings: { horizonSeconds: 900, quantile: 0.95, intervalSeconds: 300 } });
    expect({ shards: view.shards, applications: view.applications }).toEqual(await expected(s.history, s.plan(), NOW));
    expect(view.shards.map((v) => v.shard_id)).toEqual(['db-0', 'web-0', 'web-1']);
    expect(view.applications.map((v) => v.application_id)).toEqual(['db', 'web']);
    expect(s.states.list().map((x) => x.key)).toEqual(['application/web', 'shard/db-0', 'shard/web-0', 'shard/web-1']);
    const text = await s.metrics.text();
    expect(text).toContain(`shardform_shard_predicted_cpu_cores{shard_id="web-0",application_id="web"} ${view.shards[1].resources.cpu.cores}`);
    expect(text).toMatch(/shardform_prediction_pass_duration_seconds_count 1/);
    // Each predictor replays its own rows (its shard's, its application's), in bounded ranges:
    // 500 updates per read, all for the one predictor.
    // (A first read of one row says where each predictor's rows begin.)
    expect(s.reads.every((q) => (q.limit === 1 ? q.resolutionSeconds === undefined : q.resolutionSeconds === 300 && q.toSeconds - q.fromSeconds < 500 * 300))).toBe(true);
    expect(s.reads.filter((q) => q.limit === undefined).every((q) => q.fromSeconds >= T - 300)).toBe(true);
    expect(new Set(s.reads.map((q) => q.shardId ?? q.applicationId))).toEqual(new Set(['web-0', 'web-1', 'db-0', 'web']));
    await loop.stop();
  });

  it('counts the readings its predictors ignored in shardform_predictor_ignored_samples_total, by application, predictor and reason, across passes', async () => {
    const s = setup();
    // db-0's memory reads negative for its first hour: rows the history's append refuses, so
    // written behind its back (an older version, a hand edit). 12 grid points of 300 s.
    s.history.append(rows(T, T + HOURS * 3600 - 3600));
    const corrupt = (column: string, from: number, to: number) =>
      s.db.prepare(`UPDATE metric_raw SET ${column} = -1 WHERE shard_id = 'db-0' AND at_seconds >= ? AND at_seconds < ?`).run(from, to);
    corrupt('memory_bytes', T, T + 3600);
    const loop = s.loop();
    s.advance(-3600);
    await loop.pass();
    const first = await s.metrics.text();
    expect(first).toContain('shardform_predictor_ignored_samples_total{application_id="db",predictor="shard",reason="negative"} 12');
    // Every series is there at 0 from the first pass; an application predictor (web: two shards here) has its own.
    expect(first).toContain('shardform_predictor_ignored_samples_total{application_id="web",predictor="shard",reason="negative"} 0');
    expect(first).toContain('shardform_predictor_ignored_samples_total{application_id="web",predictor="application",reason="not_finite"} 0');
    expect(first).not.toContain('predictor="application",reason="negative"} 12');
    // The next pass adds what is new only (the counter is not set from the predictor's own count again).
    s.history.append(rows(T + HOURS * 3600 - 3600, T + HOURS * 3600));
    corrupt('cpu_cores', T + HOURS * 3600 - 3600, T + HOURS * 3600);
    s.advance(3600);
    await loop.pass();
    const second = await s.metrics.text();
    expect(second).toContain('shardform_predictor_ignored_samples_total{application_id="db",predictor="shard",reason="negative"} 24');
    await loop.stop();
  });

  it('does not count again the readings a rebuilt predictor ignores as it replays the history (new settings)', async () => {
    const s = setup();
    s.history.append(rows(T, T + HOURS * 3600 - 3600));
    s.db.prepare(`UPDATE metric_raw SET memory_bytes = -1 WHERE shard_id = 'db-0' AND at_seconds >= ? AND at_seconds < ?`).run(T, T + 3600);
    const loop = s.loop();
    s.advance(-3600);
    await loop.pass();
    const series = 'shardform_predictor_ignored_samples_total{application_id="db",predictor="shard",reason="negative"}';
    expect(await s.metrics.text()).toContain(`${series} 12\n`);
    // New settings: every predictor starts again from the history and drops the same 12 readings.
    s.setPlan(examplePlan((p) => {
      p.generation = 2;
      p.predictor = { ...p.predictor, minHistorySeconds: 3600, quantile: 0.9 };
    }));
    await loop.pass();
    expect(await s.metrics.text()).toContain(`${series} 12\n`);
    await loop.stop();
  });

  it('after a restart loads the saved state and reads only the history since, giving what an unbroken agent gives', async () => {
    const s = setup();
    s.history.append(rows(T, T + HOURS * 3600));
    const first = s.loop();
    await first.pass();
    await first.stop();
    s.history.append(rows(T + HOURS * 3600, T + (HOURS + 1) * 3600));
    s.advance(3600);
    s.reads.length = 0;
    const second = s.loop();
    await second.pass();
    const savedThrough = lastCompleteGridSeconds(NOW, 300, s.plan().agent.sampleIntervalSeconds + 1);
    expect(s.reads[0].fromSeconds).toBe(savedThrough + 300);
    expect(s.logs.lines().filter((l) => l.msg === 'predictors loaded').at(-1)).toMatchObject({ restored: 4, created: 0 });
    const view = second.view();
    expect({ shards: view.shards, applications: view.applications }).toEqual(await expected(s.history, s.plan(), s.now()));
    await second.stop();
  });

  it('starts every predictor again from the history when the plan changes the settings, or when a saved state is unreadable', async () => {
    const s = setup();
    s.history.append(rows(T, T + HOURS * 3600));
    const loop = s.loop();
    await loop.pass();
    const changed = examplePlan((p) => {
      p.generation = 2;
      p.predictor = { ...p.predictor, minHistorySeconds: 3600, quantile: 0.9 };
    });
    s.setPlan(changed);
    await loop.pass();
    expect(s.logs.lines().some((l) => l.msg === 'predictor settings changed: every predictor starts again from the history')).toBe(true);
    expect(loop.view().shards[0].quantile).toBe(0.9);
    expect({ shards: loop.view().shards, applications: loop.view().applications }).toEqual(await expected(s.history, changed, NOW));
    await loop.stop();

    s.db.prepare("UPDATE predictor_state SET state = x'00ff' WHERE key = 'shard/web-0'").run();
    const restarted = s.loop();
    await restarted.pass();
    const warning = s.logs.lines().filter((l) => l.predictor === 'shard/web-0').at(-1);
    expect(String(warning?.reason)).toMatch(/^unreadable: /);
    expect({ shards: restarted.view().shards, applications: restarted.view().applications }).toEqual(await expected(s.history, changed, NOW));
    await restarted.stop();
  });

  it('takes a shard\'s predictor handed over by a migration\'s source: now when it tracks the shard, else when the shard arrives', async () => {
    const source = setup();
    source.history.append(rows(T, T + HOURS * 3600));
    const sourceLoop = source.loop();
    await sourceLoop.pass();
    const handed = JSON.parse(JSON.stringify(sourceLoop.stateOf('web-0')));
    await sourceLoop.stop();

    // The destination has a few minutes of web-0 (it just arrived) and does not run db-0 yet.
    const destination = setup();
    destination.history.append(rows(T + HOURS * 3600 - 600, T + HOURS * 3600));
    const shards = [SHARDS[0]];
    const loop = new ForecastLoop({
      history: destination.history,
      states: destination.states,
      shards: () => shards,
      plan: () => destination.plan(),
      logger: createLogger({ level: 'info', destination: destination.logs }),
      clock: () => NOW,
    });
    await loop.pass();
    expect(loop.view().shards[0].model).toBe('cold-start-prior');
    expect(loop.importState('web-0', handed)).toBeUndefined();
    await loop.pass();
    expect(loop.view().shards[0]).toEqual(sourceLoop.view().shards.find((v) => v.shard_id === 'web-0'));
    expect(loop.importState('web-0', handed)).toBe('the predictor here has as much history already');

    const db = JSON.parse(JSON.stringify(sourceLoop.stateOf('db-0')));
    expect(loop.importState('db-0', db)).toBeUndefined();
    expect(destination.states.list().map((x) => x.key)).toContain('shard/db-0');
    expect(loop.importState('db-0', { ...db, settings: { ...db.settings, quantile: 0.5 } })).toBe('saved under other predictor settings');
    expect(loop.importState('db-0', { version: 1, applicationId: 'db' })).toMatch(/^unreadable: /);
    shards.push(SHARDS[2]);
    await loop.pass();
    expect(destination.logs.lines().filter((l) => l.msg === 'predictors loaded').at(-1)).toMatchObject({ restored: 1, created: 0 });
    expect(loop.view().shards.find((v) => v.shard_id === 'db-0')?.model).not.toBe('cold-start-prior');
    await loop.stop();
  });

  it('keeps the saved predictor of a shard that left and comes back when the state handed back has less history', async () => {
    // Host B got web-0 without its predictor (the hand-over is best effort) and learnt 20 minutes there.
    const b = setup();
    b.history.append(rows(T + HOURS * 3600 - 1200, T + HOURS * 3600));
    const bLoop = b.loop();
    await bLoop.pass();
    const fromB = JSON.parse(JSON.stringify(bLoop.stateOf('web-0')));
    await bLoop.stop();

    // This host learnt web-0 for 10 hours, saved it, and web-0 left.
    const s = setup();
    s.history.append(rows(T, T + HOURS * 3600));
    const shards = [...SHARDS];
    const loop = new ForecastLoop({ history: s.history, states: s.states, shards: () => shards, plan: () => s.plan(), logger: createLogger({ level: 'info', destination: s.logs }), clock: () => s.now() });
    await loop.pass();
    const learnt = loop.view().shards.find((v) => v.shard_id === 'web-0');
    shards.splice(0, 1);
    await loop.pass();

    // web-0 migrates back; B hands over what it has before this host tracks web-0 again.
    expect(loop.importState('web-0', fromB)).toBe('the predictor here has as much history already');
    shards.unshift(SHARDS[0]);
    await loop.pass();
    expect(loop.view().shards.find((v) => v.shard_id === 'web-0')).toEqual(learnt);
    await loop.stop();
  });

  it('forgets the saved state of a shard that left a day after its last save, not before', async () => {
    const s = setup();
    s.history.append(rows(T, T + HOURS * 3600));
    const shards = [...SHARDS];
    const loop = new ForecastLoop({ history: s.history, states: s.states, shards: () => shards, plan: () => s.plan(), logger: createLogger({ level: 'info', destination: s.logs }), clock: () => s.now() });
    await loop.pass();
    shards.splice(2, 1); // db-0 leaves
    s.advance(3600);
    await loop.pass();
    expect(s.states.list().map((x) => x.key)).toContain('shard/db-0');
    s.advance(86400);
    await loop.pass();
    expect(s.states.list().map((x) => x.key)).toEqual(['application/web', 'shard/web-0', 'shard/web-1']);
    await loop.stop();
  });

  it('ends a replay when the plan changes the settings under it, and starts again with the new ones', async () => {
    const s = setup();
    s.history.append(rows(T, T + HOURS * 3600));
    const loop = s.loop();
    const first = loop.pass();
    const changed = examplePlan((p) => {
      p.generation = 2;
      p.predictor = { ...p.predictor, minHistorySeconds: 3600, quantile: 0.9 };
    });
    s.setPlan(changed);
    await first;
    await loop.pass();
    expect(loop.view().settings?.quantile).toBe(0.9);
    expect({ shards: loop.view().shards, applications: loop.view().applications }).toEqual(await expected(s.history, changed, NOW));
    // Nothing learnt under the old settings was saved: the replay ended at its first read.
    for (const { key } of s.states.list()) expect((s.states.read(key) as { settings: { quantile: number } }).settings.quantile).toBe(0.9);
    // A handed-over state learnt up to a time still to come here is refused.
    const state = JSON.parse(JSON.stringify(loop.stateOf('web-0')));
    expect(loop.importState('web-0', { ...state, lastSeconds: NOW + 3600 })).toBe(`its last point (${NOW + 3600}) is in this host's future`);
    await loop.stop();
  });

  it('after the clock steps back behind what the predictors were fed, rebuilds them from the history instead of stalling until the clock gets there again', async () => {
    // A clock two days fast for one pass fed every predictor two days of missing points and
    // saved them so; once corrected, each ignored every new point for two days (and a restart
    // loaded the saved states and did the same).
    const s = setup();
    s.history.append(rows(T, T + HOURS * 3600));
    const loop = s.loop();
    await loop.pass();
    s.advance(2 * 86400);
    await loop.pass();
    s.advance(-2 * 86400 + 3600);
    s.history.append(rows(T + HOURS * 3600, T + (HOURS + 1) * 3600));
    await loop.pass();
    const through = lastCompleteGridSeconds(s.now(), 300, s.plan().agent.sampleIntervalSeconds + 1);
    const view = loop.view();
    expect(view.fedThroughSeconds).toBe(through);
    expect({ shards: view.shards, applications: view.applications }).toEqual(await expected(s.history, s.plan(), s.now()));
    expect(s.logs.lines().some((l) => l.msg === 'the clock went back behind the predictors: every predictor starts again from the history')).toBe(true);
    await loop.stop();

    // States saved while the clock was ahead are not loaded by a restarted agent.
    const stale = s.states.read('shard/web-0');
    s.states.save([{ key: 'shard/web-0', savedAtSeconds: s.now(), state: { ...(stale as object), lastSeconds: through + 86400 } }]);
    const restarted = s.loop();
    await restarted.pass();
    expect(String(s.logs.lines().filter((l) => l.predictor === 'shard/web-0').at(-1)?.reason)).toMatch(/after this host's clock/);
    expect({ shards: restarted.view().shards, applications: restarted.view().applications }).toEqual(await expected(s.history, s.plan(), s.now()));
    await restarted.stop();
  });

  it('stop() ends a long replay at its next read, and a loop without a state store still predicts', async () => {
    const s = setup();
    s.history.append(rows(T, T + HOURS * 3600));
    const loop = s.loop({ states: false });
    const pass = loop.pass();
    await loop.stop();
    await pass;
    // The first read of rows (after the one that finds where they begin) ran before stop() was seen; nothing after it.
    expect(s.reads.map((q) => q.limit ?? 'rows')).toEqual([1, 'rows']);
    expect(loop.view().fedThroughSeconds).toBeNull();
    const other = s.loop({ states: false });
    await other.pass();
    expect(other.view().shards).toHaveLength(3);
    expect(s.states.list()).toEqual([]);
    await other.stop();
  });
});
