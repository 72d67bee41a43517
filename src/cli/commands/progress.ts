/** A progress bar for long work: on stderr, and only when stderr is a terminal (never in logs, pipes or tests). */
import { Presets, SingleBar } from 'cli-progress';

export interface Progress {
  update(done: number): void;
  stop(): void;
}

/** `unit` names what `total` counts, e.g. `series` or `grid points`. */
export function startProgress(total: number, label: string, unit = 'series', stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar({ stream, format: `${label} [{bar}] {value}/{total} ${unit} | {duration}s`, hideCursor: true, clearOnComplete: true }, Presets.shades_classic);
  bar.start(total, 0);
  return { update: (done) => bar.update(done), stop: () => bar.stop() };
}
