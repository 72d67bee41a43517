/**
 * Pure parsers for the interface file formats of Documentation/admin-guide/cgroup-v2.rst
 * ("Interface Files": flat keyed, nested keyed, single value) and the v1 formats of
 * Documentation/admin-guide/cgroup-v1/{blkio-controller,memory}.rst. They take the file text
 * and return numbers; the caller names the file in errors.
 */
import type { PressureStall } from './driver';

/** Thrown by parsers; the driver turns it into a CGROUP_PARSE_FAILED naming shard and file. */
export class ParseError extends Error {
  constructor(readonly expected: string) {
    super(expected);
  }
}

function toNumber(text: string, expected: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) throw new ParseError(expected);
  return n;
}

/** A single number, e.g. `memory.current` or `cpuacct.usage`. */
export function parseSingle(text: string): number {
  return toNumber(text.trim(), 'one number');
}

/** A number or the word `max` (v2 single-value files such as memory.max); `max` → null. */
export function parseNumberOrMax(text: string): number | null {
  const t = text.trim();
  return t === 'max' ? null : toNumber(t, 'a number or "max"');
}

/** Flat keyed: `key value` per line (cpu.stat, memory.events, memory.oom_control, cgroup.events). */
export function parseFlatKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    const [key, value, extra] = t.split(/\s+/);
    if (key === undefined || value === undefined || extra !== undefined) throw new ParseError('"key value" lines');
    out.set(key, toNumber(value, '"key value" lines with numeric values'));
  }
  return out;
}

/** Nested keyed: `MAJ:MIN key=value key=value` per line (io.stat, io.max); `max` → Infinity. */
export function parseNestedKeyed(text: string): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const line of text.split('\n')) {
    const [device, ...pairs] = line.trim().split(/\s+/);
    if (device === undefined || device === '') continue;
    const fields = new Map<string, number>();
    for (const pair of pairs) {
      const [key, value] = pair.split('=');
      if (key === undefined || value === undefined) throw new ParseError('"MAJ:MIN key=value ..." lines');
      fields.set(key, value === 'max' ? Infinity : toNumber(value, '"MAJ:MIN key=value ..." lines'));
    }
    out.set(device, fields);
  }
  return out;
}

/**
 * v1 blkio per-device lines `MAJ:MIN Read 10` ... `MAJ:MIN Total 15`, then `Total 15`
 * (blkio.throttle.io_serviced / io_service_bytes). Returns read and write summed over devices.
 * Scans the text in place (the sampler's hot path): no split, no regex, no array per line.
 */
export function parseBlkioRecursive(text: string): { read: number; write: number; devices: number } {
  let read = 0;
  let write = 0;
  let devices = 0; // one Read line per device
  for (let start = 0; start < text.length; ) {
    const end = lineEnd(text, start);
    // Three fields "MAJ:MIN Op N"; the closing "Total N" has two and is skipped.
    const first = text.indexOf(' ', start);
    if (first >= 0 && first < end) {
      const second = text.indexOf(' ', first + 1);
      if (second >= 0 && second < end) {
        const op = text.slice(first + 1, second);
        if (op === 'Read') {
          read += toNumber(text.slice(second + 1, end), '"MAJ:MIN Op N" lines');
          devices += 1;
        } else if (op === 'Write') write += toNumber(text.slice(second + 1, end), '"MAJ:MIN Op N" lines');
      }
    }
    start = end + 1;
  }
  return { read, write, devices };
}

/** Index of the newline ending the line that starts at `start` (or the text's length). */
function lineEnd(text: string, start: number): number {
  const end = text.indexOf('\n', start);
  return end < 0 ? text.length : end;
}

/**
 * One key of a flat keyed file (cpu.stat, memory.events, memory.oom_control), or undefined
 * when the file has no such line. Finds the line by its key instead of building a map of
 * every line, so a usage pass parses only what it reports.
 */
export function flatKeyedValue(text: string, key: string): number | undefined {
  for (let at = text.indexOf(key); at >= 0; at = text.indexOf(key, at + 1)) {
    const after = at + key.length;
    if ((at === 0 || text.charCodeAt(at - 1) === 10) && text.charCodeAt(after) === 32) {
      return toNumber(text.slice(after + 1, lineEnd(text, after)), '"key value" lines with numeric values');
    }
  }
  return undefined;
}

/**
 * io.stat (cgroup-v2.rst "IO Interface Files", nested keyed `MAJ:MIN rbytes=.. wbytes=.. rios=..
 * wios=..`): the four counters summed over devices, scanned in place.
 */
export function parseIoStatTotals(text: string): { rbytes: number; wbytes: number; rios: number; wios: number; devices: number } {
  const totals = { rbytes: 0, wbytes: 0, rios: 0, wios: 0, devices: 0 };
  // One line per device.
  for (let start = 0; start < text.length; ) {
    const end = lineEnd(text, start);
    if (end > start) totals.devices += 1;
    start = end + 1;
  }
  for (let eq = text.indexOf('='); eq >= 0; eq = text.indexOf('=', eq + 1)) {
    const keyStart = text.lastIndexOf(' ', eq) + 1;
    const key = text.slice(keyStart, eq);
    if (key !== 'rbytes' && key !== 'wbytes' && key !== 'rios' && key !== 'wios') continue;
    let end = eq + 1;
    while (end < text.length && text.charCodeAt(end) !== 32 && text.charCodeAt(end) !== 10) end++;
    totals[key] += toNumber(text.slice(eq + 1, end), '"MAJ:MIN key=value ..." lines');
  }
  return totals;
}

/** v1 per-device rules `MAJ:MIN N` (blkio.throttle.read_iops_device). */
export function parseDeviceRules(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) continue;
    out.set(parts[0] as string, toNumber(parts[1] as string, '"MAJ:MIN N" lines'));
  }
  return out;
}

/**
 * PSI (Documentation/accounting/psi.rst): `some avg10=0.12 avg60=0.05 avg300=0.01 total=1234`
 * and, except for cpu on kernels before 5.13, a `full` line. `total` is in microseconds.
 * Reads only the fields reported (avg10, avg60, total of `some`; avg10, total of `full`).
 */
export function parsePressure(text: string): PressureStall {
  const some = lineStart(text, 'some ');
  const someEnd = some < 0 ? -1 : lineEnd(text, some);
  const someAvg10 = psiField(text, some, someEnd, 'avg10=');
  const someAvg60 = psiField(text, some, someEnd, 'avg60=');
  const someTotal = psiField(text, some, someEnd, 'total=');
  if (someAvg10 === undefined || someAvg60 === undefined || someTotal === undefined) {
    throw new ParseError('a PSI "some avg10=... avg60=... avg300=... total=..." line');
  }
  const full = lineStart(text, 'full ');
  const fullEnd = full < 0 ? -1 : lineEnd(text, full);
  const fullAvg10 = psiField(text, full, fullEnd, 'avg10=');
  const fullTotal = psiField(text, full, fullEnd, 'total=');
  // One object literal per shape, so a stall is allocated once, fields in a fixed order.
  if (fullAvg10 !== undefined && fullTotal !== undefined) return { someAvg10, someAvg60, someTotalMicros: someTotal, fullAvg10, fullTotalMicros: fullTotal };
  const stall: PressureStall = { someAvg10, someAvg60, someTotalMicros: someTotal };
  if (fullAvg10 !== undefined) stall.fullAvg10 = fullAvg10;
  if (fullTotal !== undefined) stall.fullTotalMicros = fullTotal;
  return stall;
}

/** Index where the line beginning with `prefix` starts, or -1. */
function lineStart(text: string, prefix: string): number {
  for (let at = text.indexOf(prefix); at >= 0; at = text.indexOf(prefix, at + 1)) {
    if (at === 0 || text.charCodeAt(at - 1) === 10) return at;
  }
  return -1;
}

/** The number after `key` (e.g. "avg10=") within the line [start, end); undefined when the line or key is absent. */
function psiField(text: string, start: number, end: number, key: string): number | undefined {
  if (start < 0) return undefined;
  const at = text.indexOf(key, start);
  if (at < 0 || at >= end) return undefined;
  const from = at + key.length;
  let to = text.indexOf(' ', from);
  if (to < 0 || to > end) to = end;
  return toNumber(text.slice(from, to), 'PSI "some avg10=... total=..." lines');
}

/** Pids from cgroup.procs, one per line. */
export function parsePids(text: string): number[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => toNumber(l, 'one pid per line'));
}
