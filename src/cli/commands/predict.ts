/**
 * `shardform predict (--trace FILE|DIR | --history FILE | --agent URL [--token-file F]) [--app ID]
 * [--horizon 15m] [--quantile 0.95] [--interval 5m] [--min-history 1d] [--json]`: demand vectors
 * from a trace, from an agent's metric history file (read-only, predict-history.ts), or as a
 * running agent serves them (`GET /v1/predictions`, under its plan's predictor settings).
 */
import type { Command } from 'commander';
import { checkPredictionsReply, type PredictionsReply } from '../../contracts/agent-replies';
import type { DemandVector } from '../../contracts/demand-vector';
import { formatDuration } from '../../contracts/quantities';
import { checkId, ShardformError, showValue } from '../../errors';
import { DEFAULT_PREDICTOR_SETTINGS, predictSeries, type PredictorSettings } from '../../predictor/application-predictor';
import { EXIT_FAILURE } from '../exit-codes';
import { ExitWith } from '../main';
import type { Io } from '../output';
import { table } from '../output';
import { AgentRequestError, agentClient, call } from './agent-client';
import { invalidFlag } from './invalid-flag';
import { checkHorizonOnGrid, parseDurationFlag, parseIntervalFlag, parseQuantileFlag } from './predictor-flags';

interface PredictFlags {
  trace?: string;
  history?: string;
  agent?: string;
  tokenFile?: string;
  app?: string;
  horizon: string;
  quantile: string;
  interval: string;
  minHistory: string;
  json?: boolean;
}

/** What every source gives: vectors, who got none and why, and the lines that say what the vectors are. */
interface Prediction {
  readonly vectors: DemandVector[];
  readonly unpredicted: readonly { id: string; reason: string }[];
  readonly notes: readonly string[];
  /** Said on stderr even with --json (the vectors are stale). */
  readonly warning?: string;
}

/** The predictor settings flags: an agent predicts under its plan's, so they are refused with --agent. */
const SETTINGS_FLAGS = [
  ['horizon', '--horizon'],
  ['quantile', '--quantile'],
  ['interval', '--interval'],
  ['minHistory', '--min-history'],
] as const;

const iso = (seconds: number) => new Date(seconds * 1000).toISOString().replace(/\.000Z$/, 'Z');

function settingsFrom(flags: PredictFlags): PredictorSettings {
  const settings = {
    ...DEFAULT_PREDICTOR_SETTINGS,
    horizonSeconds: parseDurationFlag('--horizon', flags.horizon),
    quantile: parseQuantileFlag('--quantile', flags.quantile),
    intervalSeconds: parseIntervalFlag(flags.interval),
    minHistorySeconds: parseDurationFlag('--min-history', flags.minHistory),
  };
  checkHorizonOnGrid(settings.horizonSeconds, settings.intervalSeconds, flags);
  return settings;
}

function fromTrace(path: string, settings: PredictorSettings, app: string | undefined, horizon: string): Prediction {
  // Loaded with the source that uses them (the agent's process has no use for trace readers or progress bars).
  const { loadTrace } = require('../../traces/trace-loader') as typeof import('../../traces/trace-loader');
  const { startProgress } = require('./progress') as typeof import('./progress');
  let series = loadTrace(path, settings.intervalSeconds);
  // One vector per application: the same one in two files of a directory gave two vectors of one id, no telling which is which.
  const seen = new Map<string, string>();
  for (const s of series) {
    const id = s.shardId ?? s.applicationId;
    const other = seen.get(id);
    if (other !== undefined)
      throw new ShardformError('INVALID_TRACE', '--trace', path, `--trace: ${showValue(path)} has application ${showValue(id)} in both ${other} and ${s.source}; merge its rows into one file, or give --trace one file`);
    seen.set(id, s.source);
  }
  if (app !== undefined) {
    series = series.filter((s) => s.applicationId === app);
    if (series.length === 0) throw invalidFlag('--app', app, `an application in ${path}`);
  }
  const progress = startProgress(series.length, 'predict');
  const vectors: DemandVector[] = [];
  const unpredicted: { id: string; reason: string }[] = [];
  series.forEach((s, i) => {
    const vector = predictSeries(s, settings);
    if (vector === null) unpredicted.push({ id: s.shardId ?? s.applicationId, reason: 'its cpu or memory was never measured and no allocation is known' });
    else vectors.push(vector);
    progress.update(i + 1);
  });
  progress.stop();
  return { vectors, unpredicted, notes: [`peak over the next ${horizon} at q=${settings.quantile}; io ops of Bitbrains traces are estimated from KB/s at 4 KiB per operation`] };
}

async function fromHistory(path: string, settings: PredictorSettings, app: string | undefined, horizon: string): Promise<Prediction> {
  const { forecastFromHistory } = require('./predict-history') as typeof import('./predict-history');
  const forecast = await forecastFromHistory(path, settings, app);
  return {
    vectors: [...forecast.shards, ...forecast.applications],
    unpredicted: forecast.unpredicted,
    notes: [`peak over the next ${horizon} at q=${settings.quantile}, fed through the grid point of ${iso(forecast.fedThroughSeconds)}; a history holds no allocations, so no %`],
  };
}

async function fromAgent(flags: PredictFlags, app: string | undefined, io: Io): Promise<Prediction> {
  let reply: PredictionsReply;
  try {
    // The agent keeps one application's vectors itself; filtered here too, as for the other sources.
    reply = await call(agentClient(flags), 'GET', app === undefined ? '/v1/predictions' : `/v1/predictions?application=${app}`, checkPredictionsReply);
  } catch (error) {
    if (!(error instanceof AgentRequestError)) throw error;
    io.err(`error: ${error.message}`);
    throw new ExitWith(EXIT_FAILURE);
  }
  let vectors: DemandVector[] = [...reply.shards, ...reply.applications];
  if (app !== undefined) {
    vectors = vectors.filter((v) => v.application_id === app);
    if (vectors.length === 0) throw invalidFlag('--app', app, `an application host ${reply.hostId}'s agent has a demand vector for`);
  }
  const s = reply.settings;
  const settings =
    s === null
      ? 'no predictor settings yet (no prediction pass so far, or the plan\'s cannot be used: see the agent\'s log)'
      : `peak over the next ${formatDuration(s.horizonSeconds)} at q=${s.quantile}, model ${s.model}, interval ${formatDuration(s.intervalSeconds)}, min history ${formatDuration(s.minHistorySeconds)}`;
  const fed = reply.fedThroughSeconds === null ? 'nothing fed yet' : `fed through the grid point of ${iso(reply.fedThroughSeconds)}`;
  const catchingUp = 'the agent is still replaying its history: vectors may be missing or behind';
  return {
    vectors,
    unpredicted: [],
    notes: [`host ${reply.hostId}: ${settings}; ${fed}`, ...(reply.catchingUp ? [catchingUp] : [])],
    ...(reply.catchingUp ? { warning: catchingUp } : {}),
  };
}

function render(vectors: readonly DemandVector[]): string {
  const pct = (p?: number) => (p === undefined ? '-' : `${p}%`);
  return table(
    ['APPLICATION', 'AT', 'CPU CORES', 'CPU %', 'MEMORY GB', 'MEM %', 'READ OPS', 'WRITE OPS', 'MODEL', 'CONFIDENCE'],
    vectors.map((v) => [
      v.shard_id ?? v.application_id,
      v.timestamp,
      String(v.resources.cpu.cores),
      pct(v.resources.cpu.percentage),
      String(v.resources.memory.gb),
      pct(v.resources.memory.percentage),
      String(v.resources.io?.read_ops ?? '-'),
      String(v.resources.io?.write_ops ?? '-'),
      v.model ?? '-',
      String(v.confidence ?? '-'),
    ]),
  );
}

export function registerPredictCommand(program: Command, io: Io): void {
  program
    .command('predict')
    .description(
      'print demand vectors (per shard and application) at the end of a trace, of an agent\'s metric history, or as a running agent predicts them; give exactly one of --trace, --history, --agent',
    )
    .option('--trace <path>', 'a trace file or a directory of them (Bitbrains GWA-T-12 or generic CSV)')
    .option('--history <file>', 'an agent\'s metric history, <state-dir>/metrics.db (opened read-only; the agent may be running)')
    .option('--agent <url>', 'a running agent\'s API URL: its own forecast, under its plan\'s predictor settings')
    .option('--token-file <file>', 'with --agent: file holding the fleet token (default: $SHARDFORM_TOKEN)')
    .option('--app <id>', 'only this application')
    .option('--horizon <duration>', 'predict the peak over this horizon (not with --agent)', '15m')
    .option('--quantile <q>', 'quantile of the peak (not with --agent)', '0.95')
    .option('--interval <duration>', 'sampling grid (not with --agent)', '5m')
    .option('--min-history <duration>', 'history below which the cold-start prior answers (not with --agent)', '1d')
    .option('--json', 'print a JSON array of demand vectors')
    .action(async (flags: PredictFlags, command: Command) => {
      const given = (['trace', 'history', 'agent'] as const).filter((key) => flags[key] !== undefined).map((key) => `--${key}`);
      if (given.length !== 1)
        throw new ShardformError(
          'INVALID_ARGUMENT',
          given[0] ?? '--trace',
          undefined,
          `--trace / --history / --agent: give exactly one (${given.length === 0 ? 'none given' : `got ${given.join(' and ')}`}): a trace file or directory, an agent's metrics.db, or a running agent's URL`,
        );
      const app = flags.app === undefined ? undefined : checkId('--app', flags.app);
      let prediction: Prediction;
      if (flags.agent !== undefined) {
        for (const [key, flag] of SETTINGS_FLAGS) {
          if (command.getOptionValueSource(key) === 'cli')
            throw new ShardformError('INVALID_ARGUMENT', flag, flags[key], `${flag}: ${showValue(flags[key])} cannot be given with --agent: the agent predicts under its plan's predictor settings (its answer shows them)`);
        }
        prediction = await fromAgent(flags, app, io);
      } else {
        if (flags.tokenFile !== undefined) throw new ShardformError('INVALID_ARGUMENT', '--token-file', flags.tokenFile, `--token-file: ${showValue(flags.tokenFile)} is for --agent only`);
        const settings = settingsFrom(flags);
        prediction = flags.trace !== undefined ? fromTrace(flags.trace, settings, app, flags.horizon) : await fromHistory(flags.history as string, settings, app, flags.horizon);
      }
      for (const { id, reason } of prediction.unpredicted) io.err(`${id}: no demand vector: ${reason}`);
      if (flags.json) {
        if (prediction.warning) io.err(`warning: ${prediction.warning}`);
        io.out(JSON.stringify(prediction.vectors, null, 2));
        return;
      }
      io.out([render(prediction.vectors), ...prediction.notes].join('\n'));
    });
}
