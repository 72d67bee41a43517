/**
 * Loads a trace FILE or every `*.csv` in a DIR (sorted by name), telling the format from the
 * header line: Bitbrains GWA-T-12 or the generic CSV. The side effect (reading files) stays here.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ShardformError } from '../errors';
import type { ApplicationSeries } from '../predictor/series';
import { BITBRAINS_HEADER_PREFIX, parseBitbrains } from './bitbrains-reader';
import { GENERIC_HEADER, parseGenericCsv } from './generic-csv-reader';
import { traceError } from './trace-error';

function unreadable(path: string, error: unknown): ShardformError {
  return new ShardformError('UNREADABLE_FILE', path, path, `${path}: cannot read trace (${(error as Error).message})`);
}

export function parseTrace(text: string, file: string, intervalSeconds: number): ApplicationSeries[] {
  const firstLine = text.slice(0, text.indexOf('\n') >= 0 ? text.indexOf('\n') : text.length).trim();
  if (firstLine.startsWith(BITBRAINS_HEADER_PREFIX)) return [parseBitbrains(text, file, intervalSeconds)];
  if (firstLine.startsWith('timestamp,')) return parseGenericCsv(text, file, intervalSeconds);
  throw traceError(file, 1, 'header', firstLine, `a Bitbrains header ("${BITBRAINS_HEADER_PREFIX} ...") or the generic header "${GENERIC_HEADER}"`);
}

/** The trace files a path names: itself, or the `*.csv` files of a directory. */
export function traceFiles(path: string): string[] {
  let stat;
  try {
    stat = statSync(path);
  } catch (error) {
    throw unreadable(path, error);
  }
  if (!stat.isDirectory()) return [path];
  const files = readdirSync(path)
    .filter((name) => name.toLowerCase().endsWith('.csv'))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
    .map((name) => join(path, name));
  if (files.length === 0) throw new ShardformError('UNREADABLE_FILE', path, path, `${path}: directory holds no *.csv trace files`);
  return files;
}

export function loadTraceFile(file: string, intervalSeconds: number): ApplicationSeries[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw unreadable(file, error);
  }
  return parseTrace(text, file, intervalSeconds);
}

export function loadTrace(path: string, intervalSeconds: number): ApplicationSeries[] {
  return traceFiles(path).flatMap((file) => loadTraceFile(file, intervalSeconds));
}
