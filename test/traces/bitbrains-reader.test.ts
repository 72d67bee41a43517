import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ShardformError } from '../../src/errors';
import { parseBitbrains } from '../../src/traces/bitbrains-reader';
import { loadTraceFile } from '../../src/traces/trace-loader';
import { tempDir } from '../helpers/cli';
import { bitbrainsRows, bitbrainsText, BITBRAINS_HEADER } from './trace-fixtures';

const START = 1372629900; // 2013-06-30T22:05:00Z, a multiple of 300 s
const FILE = '/traces/7.csv';

function errorOf(fn: () => unknown): ShardformError {
  try {
    fn();
  } catch (error) {
    return error as ShardformError;
  }
  throw new Error('expected an error');
}

describe('Bitbrains GWA-T-12 reader', () => {
  it('reads timestamps as seconds (despite the [ms] header) onto the 300 s grid', () => {
    const series = parseBitbrains(bitbrainsText(bitbrainsRows(START, 12)), FILE, 300);
    expect(series.startSeconds).toBe(START);
    expect(series.cpuCores.length).toBe(12);
    expect(series.applicationId).toBe('vm-7');
  });

  it('converts CPU MHz to cores: usage / (capacity / cores)', () => {
    const series = parseBitbrains(bitbrainsText(bitbrainsRows(START, 2, new Set(), { cores: 4, capacityMhz: 10400, usageMhz: 3900 })), FILE, 300);
    expect(series.cpuCores[0]).toBeCloseTo(1.5, 12);
    expect(series.allocation).toEqual({ cpuCores: 4, memoryBytes: 8218624 * 1024 });
  });

  it('treats memory usage 0 as not reported (missing), not as zero', () => {
    const rows = bitbrainsRows(START, 3);
    rows[1].memoryKb = 0;
    const series = parseBitbrains(bitbrainsText(rows), FILE, 300);
    expect(series.memoryBytes[0]).toBe(1048576 * 1024);
    expect(series.memoryBytes[1]).toBeNaN();
    expect(series.cpuCores[1]).toBeGreaterThan(0);
  });

  it('keeps a monitoring gap as a gap (NaN), not zero load', () => {
    const gap = new Set(Array.from({ length: 372 }, (_, k) => 10 + k)); // ~31 h
    const series = parseBitbrains(bitbrainsText(bitbrainsRows(START, 400, gap)), FILE, 300);
    expect(series.cpuCores.length).toBe(400);
    expect(series.cpuCores[9]).toBeGreaterThan(0);
    expect(Array.from(series.cpuCores.subarray(10, 382)).every(Number.isNaN)).toBe(true);
    expect(series.cpuCores[382]).toBeGreaterThan(0);
  });

  it('maps disk KB/s to operations at 4 KiB per operation', () => {
    const series = parseBitbrains(bitbrainsText(bitbrainsRows(START, 1, new Set(), { readKbps: 400, writeKbps: 8 })), FILE, 300);
    expect(series.readOps[0]).toBe(100);
    expect(series.writeOps[0]).toBe(2);
    expect(series.rxBytesPerSecond?.[0]).toBe(1024);
  });

  it.each([
    ['a non-numeric CPU usage', (t: string) => t.replace('585.2', 'abc'), 'line 2: field "CPU usage [MHZ]": "abc"'],
    ['a hexadecimal CPU usage', (t: string) => t.replace('585.2', '0x249'), 'line 2: field "CPU usage [MHZ]": "0x249"'],
    ['a negative memory', (t: string) => t.replace('1048576', '-5'), 'line 2: field "Memory usage [KB]": "-5"'],
    ['a missing field', (t: string) => t.replace(/;\t2\n$/, '\n'), 'line 3: field "row"'],
    ['millisecond timestamps', (t: string) => t.replace(String(START - 1), String((START - 1) * 1000)), 'line 2: field "Timestamp [ms]"'],
    ['a wrong header', (t: string) => t.replace('CPU cores', 'CPU count'), 'line 1: field "column 2": "CPU count"'],
    // A monitoring agent's clock before NTP: one row at 0 made a grid of 4.6 million points (a minute per VM).
    ['a timestamp decades from the others', (t: string) => t.replace(String(START - 1), '0'), 'line 2: field "Timestamp [ms]": 0 is not within 1000000 steps of 300 s'],
  ])('refuses %s, naming file, line and field', (_what, corrupt, message) => {
    const text = corrupt(bitbrainsText(bitbrainsRows(START, 2)));
    const error = errorOf(() => parseBitbrains(text, FILE, 300));
    expect(error).toBeInstanceOf(ShardformError);
    expect(error.code).toBe('INVALID_TRACE');
    expect(error.message).toContain(`${FILE}: ${message}`);
  });

  it('tells formats apart by header and refuses an unknown one', () => {
    const dir = tempDir('bitbrains');
    try {
      const file = dir.file('x.csv', 'time,cpu\n1,2\n');
      expect(() => loadTraceFile(file, 300)).toThrow(`${file}: line 1: field "header": "time,cpu"`);
      const good = dir.file('vm1.csv', bitbrainsText(bitbrainsRows(START, 3)));
      expect(loadTraceFile(good, 300)[0].applicationId).toBe('vm-vm1');
      expect(BITBRAINS_HEADER.startsWith('Timestamp [ms];')).toBe(true);
    } finally {
      dir.remove();
    }
  });

  // ../shared/traces beside the checkout (or beside the worktree's parent), or SHARDFORM_TRACES.
  const REAL =
    [process.env.SHARDFORM_TRACES, join(__dirname, '..', '..', '..', 'shared', 'traces'), join(__dirname, '..', '..', '..', '..', 'shared', 'traces')]
      .filter((traces): traces is string => Boolean(traces))
      .map((traces) => join(traces, 'bitbrains-rnd-2013-07', '1.csv'))
      .find((path) => existsSync(path)) ?? 'missing';
  // eslint-disable-next-line no-console
  if (!existsSync(REAL)) console.warn('skipping the real Bitbrains trace test: no ../shared/traces beside this checkout (set SHARDFORM_TRACES=DIR)');
  (existsSync(REAL) ? it : it.skip)('reads the real trace: 30 days on the grid with the 31 h gap of 2013-07-16 missing', () => {
    const [series] = loadTraceFile(REAL, 300);
    const index = (iso: string) => Math.round((Date.parse(iso) / 1000 - series.startSeconds) / 300);
    expect(series.cpuCores.length).toBeGreaterThan(8600);
    expect(series.cpuCores[index('2013-07-17T00:00:00Z')]).toBeNaN();
    expect(series.cpuCores[index('2013-07-10T00:00:00Z')]).toBeGreaterThanOrEqual(0);
  });
});
