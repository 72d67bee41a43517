/**
 * The generic trace format, for anything that is not Bitbrains (docs/predictor.md):
 *
 *   timestamp,application_id,cpu_cores,memory_bytes,read_ops,write_ops
 *   1700000000,web,0.25,536870912,12,3
 *   2023-11-14T22:18:20Z,web,0.30,,10,2
 *
 * - timestamp: Unix seconds or RFC 3339 with its offset (`Z`, `+02:00`: never the machine's local
 *   time); rows may be irregular and in any order;
 * - application_id: an id (`^[a-z0-9][a-z0-9-]{0,62}$`); one file may hold several applications;
 * - cpu_cores (cores), memory_bytes (bytes), read_ops / write_ops (operations per second):
 *   non-negative numbers, or empty for "not measured" (missing, not zero).
 * Each application is resampled onto the interval grid (nearest grid point, mean per point).
 */
import { ID_PATTERN } from '../errors';
import type { ApplicationSeries } from '../predictor/series';
import { resampleToGrid, type RawSample } from './resample';
import { checkUnixSeconds, parseDecimal, traceError } from './trace-error';

export const GENERIC_COLUMNS = ['timestamp', 'application_id', 'cpu_cores', 'memory_bytes', 'read_ops', 'write_ops'] as const;
export const GENERIC_HEADER = GENERIC_COLUMNS.join(',');

/** RFC 3339 requires the offset (`Z` or `+hh:mm`); without one, Date.parse would read the machine's local time. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

/** Date.parse rolls an impossible date over (`2023-02-31` is March 3rd, `T24:00:00` the next day): refused instead. */
function onCalendar(text: string): boolean {
  const [year, month, day, hour] = text.slice(0, 13).split(/[-T]/i).map(Number);
  return month >= 1 && month <= 12 && day >= 1 && day <= new Date(Date.UTC(year, month, 0)).getUTCDate() && hour <= 23;
}

function parseTimestamp(text: string, file: string, line: number): number {
  const seconds = /^\d+(\.\d+)?$/.test(text) ? Number(text) : RFC3339.test(text) && onCalendar(text) ? Date.parse(text) / 1000 : NaN;
  if (!(seconds >= 0)) throw traceError(file, line, 'timestamp', text, 'Unix seconds or an RFC 3339 date-time with its offset (e.g. 2023-11-14T22:18:20Z), from 1970 on');
  return checkUnixSeconds(seconds, file, line, 'timestamp', text);
}

function parseMeasure(text: string, field: string, file: string, line: number): number {
  if (text === '') return NaN;
  const value = parseDecimal(text);
  if (!Number.isFinite(value) || value < 0) throw traceError(file, line, field, text, 'a non-negative number (or empty for not measured)');
  return value;
}

export function parseGenericCsv(text: string, file: string, intervalSeconds: number): ApplicationSeries[] {
  const lines = text.split(/\r?\n/);
  const header = lines[0].trim().split(',').map((h) => h.trim());
  GENERIC_COLUMNS.forEach((name, i) => {
    if (header[i] !== name) throw traceError(file, 1, `column ${i + 1}`, header[i] ?? '', `"${name}" (the header must be ${GENERIC_HEADER})`);
  });
  const byApplication = new Map<string, RawSample[]>();
  for (let l = 1; l < lines.length; l++) {
    const line = lines[l];
    if (line.trim() === '') continue;
    const cells = line.split(',').map((c) => c.trim());
    if (cells.length !== GENERIC_COLUMNS.length) throw traceError(file, l + 1, 'row', line, `a row of ${GENERIC_COLUMNS.length} comma-separated fields (it has ${cells.length})`);
    const applicationId = cells[1];
    if (!ID_PATTERN.test(applicationId)) throw traceError(file, l + 1, 'application_id', applicationId, "an id of 1-63 characters of a-z, 0-9 and '-'");
    const sample: RawSample = {
      atSeconds: parseTimestamp(cells[0], file, l + 1),
      cpuCores: parseMeasure(cells[2], 'cpu_cores', file, l + 1),
      memoryBytes: parseMeasure(cells[3], 'memory_bytes', file, l + 1),
      readOps: parseMeasure(cells[4], 'read_ops', file, l + 1),
      writeOps: parseMeasure(cells[5], 'write_ops', file, l + 1),
      line: l + 1,
    };
    let samples = byApplication.get(applicationId);
    if (samples === undefined) byApplication.set(applicationId, (samples = []));
    samples.push(sample);
  }
  if (byApplication.size === 0) throw traceError(file, 2, 'row', '', 'at least one data row');
  return [...byApplication].map(([applicationId, samples]) => resampleToGrid(applicationId, samples, intervalSeconds, file));
}
