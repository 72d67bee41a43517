/**
 * Reader for the Bitbrains GWA-T-12 trace format (TU Delft Grid Workloads Archive; Shen, van Beek,
 * Iosup, CCGrid 2015), one VM per file, as described in ../shared/traces/SOURCES.md:
 * - header `Timestamp [ms];\tCPU cores;\t...`, fields separated by `;` and a TAB;
 * - the timestamp is Unix SECONDS despite the header;
 * - CPU demand in cores = usage MHz / (capacity MHz / cores);
 * - `Memory usage [KB] = 0` means "not reported": it becomes missing (NaN), not zero;
 * - disk and network are throughputs in KB/s with no operation counts. We take KB as KiB and map
 *   disk throughput to operations at 4 KiB per operation (the page size, the unit the block layer
 *   and most databases issue), i.e. read_ops = read KB/s / 4; network KB/s becomes bytes/s (x1024).
 *   These io ops are an estimate and are labelled so in docs/predictor.md.
 * Monitoring gaps (the ~31 h one on 2013-07-16) stay gaps after resampling onto the grid.
 */
import { basename } from 'node:path';
import type { ApplicationSeries } from '../predictor/series';
import { resampleToGrid, type RawSample } from './resample';
import { checkUnixSeconds, parseDecimal, traceError } from './trace-error';

export const BITBRAINS_HEADER_PREFIX = 'Timestamp [ms];';
const FIELDS = [
  'Timestamp [ms]',
  'CPU cores',
  'CPU capacity provisioned [MHZ]',
  'CPU usage [MHZ]',
  'CPU usage [%]',
  'Memory capacity provisioned [KB]',
  'Memory usage [KB]',
  'Disk read throughput [KB/s]',
  'Disk write throughput [KB/s]',
  'Network received throughput [KB/s]',
  'Network transmitted throughput [KB/s]',
] as const;

export const KIB = 1024;
/** Bytes per estimated disk operation (see the file comment). */
export const BYTES_PER_DISK_OPERATION = 4 * KIB;

/** `1.csv` -> `vm-1`: ids must match the id pattern, and bare numbers say nothing. */
export function bitbrainsApplicationId(file: string): string {
  const stem = basename(file).replace(/\.csv$/i, '').toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+/, '');
  return `vm-${stem}`.slice(0, 63);
}

export function parseBitbrains(text: string, file: string, intervalSeconds: number): ApplicationSeries {
  const lines = text.split(/\r?\n/);
  const header = lines[0].split(/;\s*/).map((h) => h.trim());
  FIELDS.forEach((name, i) => {
    if (header[i] !== name) throw traceError(file, 1, `column ${i + 1}`, header[i] ?? '', `the Bitbrains header field "${name}"`);
  });
  const samples: RawSample[] = [];
  let cpuCoresProvisioned = NaN;
  let memoryBytesProvisioned = NaN;
  for (let l = 1; l < lines.length; l++) {
    const line = lines[l];
    if (line.trim() === '') continue;
    const cells = line.split(';');
    if (cells.length !== FIELDS.length) throw traceError(file, l + 1, 'row', line, `a row of ${FIELDS.length} fields separated by ";" (it has ${cells.length})`);
    const numbers = cells.map((cell, i) => {
      const value = parseDecimal(cell.trim());
      if (cell.trim() === '' || !Number.isFinite(value) || value < 0) throw traceError(file, l + 1, FIELDS[i], cell.trim(), 'a finite non-negative number');
      return value;
    });
    const [atSeconds, cores, capacityMhz, usageMhz, , memoryCapacityKb, memoryUsageKb, readKbps, writeKbps, rxKbps, txKbps] = numbers;
    checkUnixSeconds(atSeconds, file, l + 1, FIELDS[0], cells[0].trim());
    if (!(cores > 0)) throw traceError(file, l + 1, FIELDS[1], cells[1].trim(), 'a positive number of cores');
    if (!(capacityMhz > 0)) throw traceError(file, l + 1, FIELDS[2], cells[2].trim(), 'a positive capacity in MHz');
    cpuCoresProvisioned = cores;
    memoryBytesProvisioned = memoryCapacityKb * KIB;
    samples.push({
      atSeconds,
      cpuCores: usageMhz / (capacityMhz / cores),
      memoryBytes: memoryUsageKb === 0 ? NaN : memoryUsageKb * KIB,
      readOps: (readKbps * KIB) / BYTES_PER_DISK_OPERATION,
      writeOps: (writeKbps * KIB) / BYTES_PER_DISK_OPERATION,
      rxBytesPerSecond: rxKbps * KIB,
      txBytesPerSecond: txKbps * KIB,
      line: l + 1,
    });
  }
  if (samples.length === 0) throw traceError(file, 2, 'row', '', 'at least one data row');
  return resampleToGrid(bitbrainsApplicationId(file), samples, intervalSeconds, file, {
    timestampField: FIELDS[0],
    allocation: {
      cpuCores: cpuCoresProvisioned,
      ...(memoryBytesProvisioned > 0 ? { memoryBytes: memoryBytesProvisioned } : {}),
    },
  });
}
