/**
 * Puts irregular samples onto the interval grid: each sample goes to its nearest grid point
 * (round(t / interval)), and a grid point holding several samples takes their mean per field (the
 * same reading a sampler at that interval would have given for rates). A grid point without any
 * sample stays NaN: gaps stay gaps, never zero load. Missing fields of a sample (NaN) do not count.
 * A series spans at most MAX_GRID_POINTS grid points: memory and model work grow with the span, not
 * with the rows, so one wrong timestamp (0, a sentinel, a typo) would otherwise cost gigabytes and
 * minutes; it is refused naming its line.
 */
import { MAX_GRID_POINTS } from '../contracts/prediction-grid';
import type { Allocation, ApplicationSeries } from '../predictor/series';
import { traceError } from './trace-error';

export interface RawSample {
  readonly atSeconds: number;
  readonly cpuCores: number;
  readonly memoryBytes: number;
  readonly readOps: number;
  readonly writeOps: number;
  readonly rxBytesPerSecond?: number;
  readonly txBytesPerSecond?: number;
  /** Line of the trace file the sample came from, for messages. */
  readonly line?: number;
}

const FIELDS = ['cpuCores', 'memoryBytes', 'readOps', 'writeOps', 'rxBytesPerSecond', 'txBytesPerSecond'] as const;

export function resampleToGrid(
  applicationId: string,
  samples: readonly RawSample[],
  intervalSeconds: number,
  source: string,
  extra: { shardId?: string; allocation?: Allocation; /** The trace's name of the time column, for messages. */ timestampField?: string } = {},
): ApplicationSeries {
  const sorted = [...samples].sort((a, b) => a.atSeconds - b.atSeconds);
  const firstStep = sorted.length > 0 ? Math.round(sorted[0].atSeconds / intervalSeconds) : 0;
  const lastStep = sorted.length > 0 ? Math.round(sorted[sorted.length - 1].atSeconds / intervalSeconds) : -1;
  const n = lastStep - firstStep + 1;
  if (n > MAX_GRID_POINTS) {
    // Name the end farther from its neighbour: the odd one out.
    const first = sorted[0];
    const last = sorted[sorted.length - 1];
    const odd = sorted[1].atSeconds - first.atSeconds >= last.atSeconds - sorted[sorted.length - 2].atSeconds ? first : last;
    throw traceError(
      source,
      odd.line ?? 0,
      extra.timestampField ?? 'timestamp',
      odd.atSeconds,
      `within ${MAX_GRID_POINTS} steps of ${intervalSeconds} s of the other samples of ${applicationId} (they span ${first.atSeconds} to ${last.atSeconds} s); check for a wrong timestamp, or use a coarser --interval`,
    );
  }
  const hasNetwork = sorted.some((s) => s.rxBytesPerSecond !== undefined || s.txBytesPerSecond !== undefined);
  const sums = FIELDS.map(() => new Float64Array(n));
  const counts = FIELDS.map(() => new Uint32Array(n));
  for (const sample of sorted) {
    const i = Math.round(sample.atSeconds / intervalSeconds) - firstStep;
    FIELDS.forEach((field, f) => {
      const v = sample[field];
      if (v !== undefined && v === v) {
        sums[f][i] += v;
        counts[f][i] += 1;
      }
    });
  }
  const column = (f: number) => sums[f].map((sum, i) => (counts[f][i] > 0 ? sum / counts[f][i] : NaN));
  return {
    applicationId,
    ...(extra.shardId !== undefined ? { shardId: extra.shardId } : {}),
    startSeconds: firstStep * intervalSeconds,
    intervalSeconds,
    cpuCores: column(0),
    memoryBytes: column(1),
    readOps: column(2),
    writeOps: column(3),
    ...(hasNetwork ? { rxBytesPerSecond: column(4), txBytesPerSecond: column(5) } : {}),
    ...(extra.allocation !== undefined ? { allocation: extra.allocation } : {}),
    source,
  };
}
