/**
 * `npm run bench:forecast`: what the agent's demand forecast costs (host-agent/prediction/
 * forecast-loop.ts). Builds a metric history in a temporary SQLite file from the Bitbrains VMs
 * as shards (two per application, 30 days at 5 min), then measures, each in the same run:
 * - the baseline: reading that history the way a replay does, at the grid's resolution, in the
 *   same ranges, without any model (what the store alone costs);
 * - a first start with `vpa` only (the baseline model) and with `auto` (four models and the
 *   selection): one pass that replays all history, CPU seconds, the longest event-loop wait, RSS;
 * - a restart with `auto`: the saved state is loaded and only new points are read.
 * Prints the figures and their ratios, then one JSON line
 * {"bench":"forecast","shards":N,"predictors":P,"read_cpu_s":..,"vpa_replay_cpu_s":..,
 *  "auto_replay_cpu_s":..,"auto_max_wait_ms":..,"restart_s":..,"state_bytes_per_predictor":..,
 *  "rss_mb":..}.
 *
 * Flags: --shards 20 (default), --traces DIR (default ../shared/traces/bitbrains-rnd-2013-07).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createLogger, memoryLogDestination } from '../host-agent/log';
import { ForecastLoop } from '../host-agent/prediction/forecast-loop';
import type { Plan } from '../src/contracts/plan-schema';
import type { MetricQuery, MetricSample } from '../src/store/metric-history';
import { openHistoryDatabase, SqliteMetricHistory } from '../src/store/sqlite-metric-history';
import { SqliteModelStates } from '../src/store/sqlite-model-states';
import { loadTrace } from '../src/traces/trace-loader';
import { examplePlan } from '../test/helpers/plan-fixture';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

const SHARDS = Number(flag('shards', '20'));
const TRACES = resolve(flag('traces', join(__dirname, '..', '..', 'shared', 'traces', 'bitbrains-rnd-2013-07')));
if (!Number.isInteger(SHARDS) || SHARDS < 1 || SHARDS > 10000) {
  process.stderr.write(`--shards: ${JSON.stringify(flag('shards', ''))} is not a whole number from 1 to 10000\n`);
  process.exit(2);
}

const cpuSeconds = (from: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(from);
  return (used.user + used.system) / 1e6;
};

async function main() {
  const series = loadTrace(TRACES, 300);
  const dir = mkdtempSync(join(tmpdir(), 'sf-bench-forecast-'));
  try {
    const path = join(dir, 'metrics.db');
    let db = openHistoryDatabase(path);
    let history = new SqliteMetricHistory(db);
    const shards = Array.from({ length: SHARDS }, (_, i) => ({ shardId: `s-${i}`, applicationId: `app-${Math.floor(i / 2)}`, allocation: { cpuCores: 4, memoryBytes: 16e9 } }));
    let end = 0;
    for (const [i, shard] of shards.entries()) {
      const source = series[i % series.length];
      const rows: MetricSample[] = [];
      for (let k = 0; k < source.cpuCores.length; k++) {
        if (!(source.cpuCores[k] >= 0)) continue;
        const atSeconds = source.startSeconds + k * 300;
        rows.push({ atSeconds, shardId: shard.shardId, applicationId: shard.applicationId, cpuCores: source.cpuCores[k], cpuThrottledRatio: 0, memoryBytes: source.memoryBytes[k] || 0, readOps: source.readOps[k] || 0, writeOps: source.writeOps[k] || 0, readBytesPerSecond: 0, writeBytesPerSecond: 0 });
        end = Math.max(end, atSeconds);
      }
      history.append(rows);
    }
    const now = end + 600;
    const planFor = (model: string): Plan =>
      examplePlan((p) => {
        p.agent = { ...p.agent, historyRetentionSeconds: 40 * 86400 };
        p.predictor = { ...p.predictor, model };
      });

    const pass = async (model: string, states?: SqliteModelStates) => {
      const reads: MetricQuery[] = [];
      const loop = new ForecastLoop({
        history: { query: (q) => (reads.push(q), history.query(q)) },
        ...(states ? { states } : {}),
        shards: () => shards,
        plan: () => planFor(model),
        logger: createLogger({ level: 'warn', destination: memoryLogDestination() }),
        clock: () => now,
      });
      let longest = 0;
      let last = performance.now();
      const probe = setInterval(() => {
        const t = performance.now();
        longest = Math.max(longest, t - last - 5);
        last = t;
      }, 5);
      const cpu = process.cpuUsage();
      const wall = performance.now();
      await loop.pass();
      const result = { cpu: cpuSeconds(cpu), wall: (performance.now() - wall) / 1000, longestWaitMs: longest, reads, predictors: loop.view().shards.length + loop.view().applications.length };
      clearInterval(probe);
      await loop.stop();
      return result;
    };

    const vpa = await pass('vpa');
    // The baseline: the same reads, no model.
    const readCpu = process.cpuUsage();
    for (const q of vpa.reads) history.query(q);
    const read = cpuSeconds(readCpu);

    const auto = await pass('auto', new SqliteModelStates(db));
    const rssMb = process.memoryUsage().rss / 1e6;
    db.close();
    const stateBytes = statSync(path).size;
    db = openHistoryDatabase(path);
    history = new SqliteMetricHistory(db);
    const states = new SqliteModelStates(db);
    const predictors = states.list().length;
    const savedBytes = (db.prepare('SELECT SUM(length(state)) AS bytes FROM predictor_state').get() as { bytes: number }).bytes;
    const restart = await pass('auto', states);
    db.close();

    const perPredictorBytes = Math.round(savedBytes / Math.max(1, predictors));
    const out = (line: string) => process.stdout.write(`${line}\n`);
    out(`forecast cost: ${SHARDS} shards (${predictors} predictors), 30 days at 5 min, one first pass each`);
    out(`  baseline: read the history only   ${read.toFixed(1)} s CPU`);
    out(`  first start, vpa only             ${vpa.cpu.toFixed(1)} s CPU   ${(vpa.cpu / read).toFixed(1)}x the read`);
    out(`  first start, auto                 ${auto.cpu.toFixed(1)} s CPU   ${(auto.cpu / read).toFixed(1)}x the read, ${(auto.cpu / vpa.cpu).toFixed(1)}x vpa; longest event-loop wait ${auto.longestWaitMs.toFixed(0)} ms`);
    out(`  restart, auto (saved state)       ${restart.wall.toFixed(2)} s      ${(auto.wall / restart.wall).toFixed(0)}x faster than replaying; longest wait ${restart.longestWaitMs.toFixed(0)} ms`);
    out(`  saved state                       ${(perPredictorBytes / 1e6).toFixed(2)} MB per predictor (gzip'd JSON); metrics.db ${(stateBytes / 1e6).toFixed(0)} MB with the history; RSS ${rssMb.toFixed(0)} MB`);
    out(
      JSON.stringify({
        bench: 'forecast',
        shards: SHARDS,
        predictors,
        read_cpu_s: round(read),
        vpa_replay_cpu_s: round(vpa.cpu),
        auto_replay_cpu_s: round(auto.cpu),
        auto_max_wait_ms: Math.round(auto.longestWaitMs),
        restart_s: round(restart.wall),
        state_bytes_per_predictor: perPredictorBytes,
        rss_mb: Math.round(rssMb),
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(1);
});
