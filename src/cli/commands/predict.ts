/** `shardform predict --trace FILE|DIR [--app ID] [--horizon 15m] [--quantile 0.95] [--interval 5m] [--json]`. */
import type { Command } from 'commander';
import type { DemandVector } from '../../contracts/demand-vector';
import { checkId } from '../../errors';
import { DEFAULT_PREDICTOR_SETTINGS, predictSeries } from '../../predictor/application-predictor';
import { loadTrace } from '../../traces/trace-loader';
import type { Io } from '../output';
import { table } from '../output';
import { invalidFlag } from './invalid-flag';
import { checkHorizonOnGrid, parseDurationFlag, parseIntervalFlag, parseQuantileFlag } from './predictor-flags';
import { startProgress } from './progress';

interface PredictFlags {
  trace: string;
  app?: string;
  horizon: string;
  quantile: string;
  interval: string;
  minHistory: string;
  json?: boolean;
}

export function registerPredictCommand(program: Command, io: Io): void {
  program
    .command('predict')
    .description('print demand vectors for the end of a trace (per application / shard)')
    .requiredOption('--trace <path>', 'a trace file or a directory of them (Bitbrains GWA-T-12 or generic CSV)')
    .option('--app <id>', 'only this application')
    .option('--horizon <duration>', 'predict the peak over this horizon', '15m')
    .option('--quantile <q>', 'quantile of the peak', '0.95')
    .option('--interval <duration>', 'sampling grid', '5m')
    .option('--min-history <duration>', 'history below which the cold-start prior answers', '1d')
    .option('--json', 'print a JSON array of vectors')
    .action((flags: PredictFlags) => {
      const settings = {
        ...DEFAULT_PREDICTOR_SETTINGS,
        horizonSeconds: parseDurationFlag('--horizon', flags.horizon),
        quantile: parseQuantileFlag('--quantile', flags.quantile),
        intervalSeconds: parseIntervalFlag(flags.interval),
        minHistorySeconds: parseDurationFlag('--min-history', flags.minHistory),
      };
      checkHorizonOnGrid(settings.horizonSeconds, settings.intervalSeconds, flags);
      const app = flags.app === undefined ? undefined : checkId('--app', flags.app);
      let series = loadTrace(flags.trace, settings.intervalSeconds);
      if (app !== undefined) {
        series = series.filter((s) => s.applicationId === app);
        if (series.length === 0) throw invalidFlag('--app', app, `an application in ${flags.trace}`);
      }
      const progress = startProgress(series.length, 'predict');
      const vectors: DemandVector[] = [];
      const unpredicted: string[] = [];
      series.forEach((s, i) => {
        const vector = predictSeries(s, settings);
        if (vector === null) unpredicted.push(s.shardId ?? s.applicationId);
        else vectors.push(vector);
        progress.update(i + 1);
      });
      progress.stop();
      for (const id of unpredicted) io.err(`${id}: no demand vector: its cpu or memory was never measured and no allocation is known`);
      if (flags.json) {
        io.out(JSON.stringify(vectors, null, 2));
        return;
      }
      const pct = (p?: number) => (p === undefined ? '-' : `${p}%`);
      io.out(
        table(
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
        ),
      );
      io.out(`peak over the next ${flags.horizon} at q=${settings.quantile}; io ops of Bitbrains traces are estimated from KB/s at 4 KiB per operation`);
    });
}
