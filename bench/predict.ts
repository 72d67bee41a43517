/**
 * `npm run bench:predict`: the predictor against the VPA baseline on every trace of
 * ../shared/traces/bitbrains-rnd-2013-07 (or BENCH_TRACES=DIR), cpu and memory, q = 0.95,
 * horizon 15 min, 7-day warm-up, strictly online. Prints each model beside vpa (ratios), the
 * goal check, the update throughput on one core, and one JSON line with the figures.
 * Nothing is tuned here: the same code as `shardform backtest`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { formatBacktestTable } from '../src/cli/commands/backtest';
import { AutoSelector } from '../src/predictor/auto-selector';
import { DEFAULT_WARMUP_SECONDS } from '../src/predictor/backtest';
import { runBacktestSuite, SUITE_MODEL_NAMES, type BacktestReport } from '../src/predictor/backtest-suite';
import type { DemandModel, ModelOptions } from '../src/predictor/demand-model';
import { resampleFleets, type ResampledFleets } from '../src/predictor/fleet-resampling';
import { hindsightBound } from '../src/predictor/hindsight-bound';
import { createModel, MODEL_NAMES } from '../src/predictor/model-registry';
import { timeAt, valuesOf, type ApplicationSeries } from '../src/predictor/series';
import { loadTrace } from '../src/traces/trace-loader';

const QUANTILE = 0.95;
const HORIZON_SECONDS = 900;
const INTERVAL_SECONDS = 300;

function traceDir(): string {
  if (process.env.BENCH_TRACES) return process.env.BENCH_TRACES;
  const candidates = [join(__dirname, '..', '..', 'shared', 'traces', 'bitbrains-rnd-2013-07'), join(__dirname, '..', '..', '..', 'shared', 'traces', 'bitbrains-rnd-2013-07')];
  const found = candidates.find((dir) => existsSync(dir));
  if (found === undefined) throw new Error(`no traces at ${candidates.join(' or ')}; set BENCH_TRACES=DIR`);
  return found;
}

/** Updates per second of one model kind over every series (updates only, the agent's per-sample work). */
function throughput(series: readonly ApplicationSeries[], make: (options: ModelOptions) => DemandModel): number {
  let updates = 0;
  const started = performance.now();
  for (const s of series) {
    const model = make({ resource: 'cpu', intervalSeconds: s.intervalSeconds, horizonSeconds: HORIZON_SECONDS });
    const values = valuesOf(s, 'cpu');
    for (let i = 0; i < values.length; i++) model.update({ atSeconds: timeAt(s, i), value: values[i] });
    updates += values.length;
  }
  return updates / ((performance.now() - started) / 1000);
}

function goal(report: BacktestReport): { met: boolean; text: string } {
  const vpa = report.models.vpa;
  const auto = report.models.auto;
  const slackReduction = 1 - auto.slack / vpa.slack;
  const met = auto.violation <= vpa.violation && slackReduction >= 0.25;
  return {
    met,
    text:
      `goal (${report.resource}): auto violation ${(auto.violation * 100).toFixed(2)}% <= vpa ${(vpa.violation * 100).toFixed(2)}%: ${auto.violation <= vpa.violation ? 'yes' : 'NO'}; ` +
      `slack ${(slackReduction * 100).toFixed(1)}% lower than vpa (goal >= 25%): ${slackReduction >= 0.25 ? 'yes' : 'NO'}`,
  };
}

function main(): void {
  const dir = traceDir();
  const series = loadTrace(dir, INTERVAL_SECONDS);
  console.log(`bench:predict — ${series.length} series from ${dir}, q=${QUANTILE}, horizon ${HORIZON_SECONDS} s, warm-up 7 d\n`);
  const reports: Record<string, BacktestReport> = {};
  const goals: string[] = [];
  const resampled: Record<string, ResampledFleets> = {};
  let allMet = true;
  for (const resource of ['cpu', 'memory'] as const) {
    const { report, results } = runBacktestSuite(series, SUITE_MODEL_NAMES, { resource, horizonSeconds: HORIZON_SECONDS, quantile: QUANTILE, warmupSeconds: DEFAULT_WARMUP_SECONDS });
    reports[resource] = report;
    console.log(formatBacktestTable(report));
    // Yardstick (looks ahead, never a candidate): the least slack of one constant per window known in hindsight, each VM's budget min(1 - q, vpa's rate).
    const budgets = results.map((r) => {
      const vpa = r.metrics.get('vpa');
      return vpa && vpa.points > 0 ? Math.min(1 - QUANTILE, vpa.violations / vpa.points) : 1 - QUANTILE;
    });
    const vpaSlack = report.models.vpa.slack;
    for (const [label, windowSeconds] of [['1 day', 86400], ['6 h', 6 * 3600]] as const) {
      const bound = hindsightBound(series, budgets, { resource, horizonSeconds: HORIZON_SECONDS, warmupSeconds: DEFAULT_WARMUP_SECONDS, windowSeconds });
      console.log(
        `hindsight bound, one constant per ${label} known in advance, budgets min(1-q, vpa's rate): violation ${(bound.violation * 100).toFixed(2)}%, slack ${bound.slack.toFixed(3)} (${(bound.slack / vpaSlack).toFixed(2)}x vpa)`,
      );
    }
    const fleets = resampleFleets(results, 'auto', 'vpa', 0.75);
    resampled[resource] = fleets;
    const pct = (share: number) => `${(share * 100).toFixed(1)} %`;
    console.log(
      `resampled fleets (${fleets.fleets.toLocaleString('en')} of ${results.length} VMs drawn with replacement): auto's violation <= vpa's in ${pct(fleets.noLessSafe)}, slack >= 25 % lower in ${pct(fleets.slackMet)}, both in ${pct(fleets.bothMet)}`,
    );
    console.log();
    const g = goal(report);
    goals.push(g.text);
    allMet &&= g.met;
  }
  for (const line of goals) console.log(line);

  const perModel: Record<string, number> = {};
  for (const name of MODEL_NAMES) perModel[name] = Math.round(throughput(series, (o) => createModel(name, o)));
  perModel.auto = Math.round(throughput(series, (o) => new AutoSelector(o, MODEL_NAMES.map((n) => createModel(n, o)), QUANTILE)));
  const slowestModel = Math.min(...MODEL_NAMES.map((n) => perModel[n]));
  console.log(`\nthroughput on one core (model updates/s, cpu series): ${Object.entries(perModel).map(([n, v]) => `${n} ${v.toLocaleString('en')}`).join(', ')}`);
  console.log(`slowest single model ${slowestModel.toLocaleString('en')} updates/s (goal >= 200,000): ${slowestModel >= 200_000 ? 'yes' : 'NO'}; auto runs every model and scores every (model, level) pair per sample`);
  console.log(`overall goal met: ${allMet && slowestModel >= 200_000 ? 'yes' : 'NO'}`);

  const figures = (r: BacktestReport) => Object.fromEntries(Object.entries(r.models).map(([n, f]) => [n, { violation: round(f.violation), slack: round(f.slack), pinball: round(f.pinball), points: f.points }]));
  console.log(
    JSON.stringify({
      bench: 'predict',
      series: series.length,
      quantile: QUANTILE,
      horizon_seconds: HORIZON_SECONDS,
      cpu: figures(reports.cpu),
      memory: figures(reports.memory),
      resampled_fleets: Object.fromEntries(
        Object.entries(resampled).map(([resource, f]) => [resource, { fleets: f.fleets, no_less_safe: round(f.noLessSafe), slack_met: round(f.slackMet), both_met: round(f.bothMet) }]),
      ),
      updates_per_second: slowestModel,
      updates_per_second_by_model: perModel,
      goal_met: allMet && slowestModel >= 200_000,
    }),
  );
}

function round(value: number): number {
  return Math.round(value * 1e5) / 1e5;
}

main();
