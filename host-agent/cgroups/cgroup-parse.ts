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
 */
export function parseBlkioRecursive(text: string): { read: number; write: number } {
  let read = 0;
  let write = 0;
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 3) continue; // the closing `Total N` line, blank lines
    const [, op, value] = parts as [string, string, string];
    if (op === 'Read') read += toNumber(value, '"MAJ:MIN Op N" lines');
    else if (op === 'Write') write += toNumber(value, '"MAJ:MIN Op N" lines');
  }
  return { read, write };
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
 */
export function parsePressure(text: string): PressureStall {
  const lines = new Map<string, Map<string, number>>();
  for (const line of text.split('\n')) {
    const [kind, ...pairs] = line.trim().split(/\s+/);
    if (kind !== 'some' && kind !== 'full') continue;
    const fields = new Map<string, number>();
    for (const pair of pairs) {
      const [key, value] = pair.split('=');
      if (key !== undefined && value !== undefined) fields.set(key, toNumber(value, 'PSI "some avg10=... total=..." lines'));
    }
    lines.set(kind, fields);
  }
  const some = lines.get('some');
  const someAvg10 = some?.get('avg10');
  const someAvg60 = some?.get('avg60');
  const someTotal = some?.get('total');
  if (someAvg10 === undefined || someAvg60 === undefined || someTotal === undefined) {
    throw new ParseError('a PSI "some avg10=... avg60=... avg300=... total=..." line');
  }
  const stall: PressureStall = { someAvg10, someAvg60, someTotalMicros: someTotal };
  const full = lines.get('full');
  const fullAvg10 = full?.get('avg10');
  const fullTotal = full?.get('total');
  if (fullAvg10 !== undefined) stall.fullAvg10 = fullAvg10;
  if (fullTotal !== undefined) stall.fullTotalMicros = fullTotal;
  return stall;
}

/** Pids from cgroup.procs, one per line. */
export function parsePids(text: string): number[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => toNumber(l, 'one pid per line'));
}
