/**
 * `shardform backtest --trace DIR [--resource cpu|memory|read|write] [--models a,b,...]
 *  [--horizon 15m] [--quantile 0.95] [--warmup 7d] [--per-series] [--json]`:
 * strictly online backtest, figures per model pooled over series (and per series on request).
 */
import type { Command } from 'commander';
import { DEFAULT_INTERVAL_SECONDS } from '../../predictor/demand-model';
import type { BacktestReport } from '../../predictor/backtest-suite';
import { SUITE_MODEL_NAMES, type SuiteModelName } from '../../predictor/model-registry';
import { RESOURCE_NAMES, sampleCount, type ResourceName } from '../../predictor/series';
import { formatDuration } from '../../contracts/quantities';
import { ShardformError, showValue } from '../../errors';
import type { Io } from '../output';
import { table } from '../output';
import { invalidFlag } from './invalid-flag';
import { checkHorizonOnGrid, parseDurationFlag, parseIntervalFlag, parseQuantileFlag } from './predictor-flags';

interface BacktestFlags {
  trace: string;
  resource: string;
  models: string;
  horizon: string;
  quantile: string;
  interval: string;
  warmup: string;
  perSeries?: boolean;
  json?: boolean;
}

function parseModels(value: string): SuiteModelName[] {
  const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
  for (const name of names) {
    if (!(SUITE_MODEL_NAMES as readonly string[]).includes(name)) throw invalidFlag('--models', name, `a model name (${SUITE_MODEL_NAMES.join(', ')})`);
  }
  if (names.length === 0) throw invalidFlag('--models', value, 'a comma-separated list of model names');
  return [...new Set(names)] as SuiteModelName[];
}

function figuresRows(models: BacktestReport['models']): string[][] {
  const vpa = models.vpa;
  const ratio = (value: number, base: number | undefined) => (base === undefined || base === 0 ? '-' : `${(value / base).toFixed(2)}x`);
  return Object.entries(models).map(([name, f]) => [
    name,
    `${(f.violation * 100).toFixed(2)}%`,
    f.slack.toFixed(3),
    f.pinball.toFixed(4),
    String(f.points),
    ratio(f.violation, vpa?.violation),
    ratio(f.slack, vpa?.slack),
  ]);
}

export function formatBacktestTable(report: BacktestReport): string {
  const header = ['MODEL', 'VIOLATION', 'SLACK', 'PINBALL', 'POINTS', 'VIOL/VPA', 'SLACK/VPA'];
  const lines = [
    `${report.resource}: peak over ${report.horizon_seconds} s at q=${report.quantile}, ${report.series} series, pooled`,
    table(header, figuresRows(report.models)),
  ];
  for (const s of report.per_series ?? []) lines.push('', `${s.application_id} (${s.source})`, table(header, figuresRows(s.models)));
  return lines.join('\n');
}

export function registerBacktestCommand(program: Command, io: Io): void {
  program
    .command('backtest')
    .description('strictly online backtest of the models on traces: violation rate, slack, pinball loss')
    .requiredOption('--trace <path>', 'a trace file or a directory of them')
    .option('--resource <name>', `resource to evaluate (${RESOURCE_NAMES.join('|')})`, 'cpu')
    .option('--models <names>', 'comma-separated models', SUITE_MODEL_NAMES.join(','))
    .option('--horizon <duration>', 'peak horizon', '15m')
    .option('--quantile <q>', 'quantile', '0.95')
    .option('--interval <duration>', 'sampling grid', '5m')
    .option('--warmup <duration>', 'history before scoring starts', '7d')
    .option('--per-series', 'also print each series')
    .option('--json', 'print one JSON object')
    .action((flags: BacktestFlags) => {
      if (!(RESOURCE_NAMES as readonly string[]).includes(flags.resource)) throw invalidFlag('--resource', flags.resource, `one of ${RESOURCE_NAMES.join(', ')}`);
      const models = parseModels(flags.models);
      const options = {
        resource: flags.resource as ResourceName,
        horizonSeconds: parseDurationFlag('--horizon', flags.horizon),
        quantile: parseQuantileFlag('--quantile', flags.quantile),
        warmupSeconds: parseDurationFlag('--warmup', flags.warmup),
      };
      const intervalSeconds = flags.interval === undefined ? DEFAULT_INTERVAL_SECONDS : parseIntervalFlag(flags.interval);
      checkHorizonOnGrid(options.horizonSeconds, intervalSeconds, flags);
      // The trace readers and the progress bar load with the command that uses them (the agent's process has no use for them).
      const { loadTrace } = require('../../traces/trace-loader') as typeof import('../../traces/trace-loader');
      const { startProgress } = require('./progress') as typeof import('./progress');
      const { runBacktestSuite } = require('../../predictor/backtest-suite') as typeof import('../../predictor/backtest-suite');
      const series = loadTrace(flags.trace, intervalSeconds);
      const progress = startProgress(series.length, `backtest ${options.resource}`);
      const { report } = runBacktestSuite(series, models, options, flags.perSeries === true, (done) => progress.update(done));
      progress.stop();
      // No point scored gives 0 % violation for every model: a perfect-looking report of nothing.
      if (Object.values(report.models).every((figures) => figures.points === 0)) {
        const longest = Math.max(...series.map((s) => (sampleCount(s) - 1) * s.intervalSeconds));
        throw new ShardformError(
          'INVALID_ARGUMENT',
          '--warmup',
          flags.warmup,
          `--warmup: ${showValue(flags.warmup)} leaves nothing to score: no point of ${options.resource} in ${flags.trace} has that much history before it and a measured peak over the next ${flags.horizon} ` +
            `(the longest series spans ${formatDuration(longest)}); use a shorter --warmup, a longer trace, or a --resource the trace measures`,
        );
      }
      io.out(flags.json ? JSON.stringify(report) : formatBacktestTable(report));
    });
}
