/**
 * cgroup v2 (Documentation/admin-guide/cgroup-v2.rst): one unified hierarchy, limits in
 * cpu.max, memory.max and io.max, usage in cpu.stat, memory.current/peak/events and io.stat,
 * PSI in <resource>.pressure, freezing via cgroup.freeze.
 */
import type { CgroupWrite, ShardFileReader } from './cgroup-files';
import { readParsed, readParsedOptional } from './cgroup-files';
import { flatKeyedValue, parseIoStatTotals, parseNestedKeyed, parseNumberOrMax, ParseError, parseSingle } from './cgroup-parse';
import type { CgroupDialect } from './cgroup-dialect';
import type { ShardLimits, ShardUsage } from './driver';
import { unifiedFreezer } from './freezers';
import type { CheckedLimits } from './limits-check';

const U = 'unified';

/** Controllers a shard needs: cpu (cpu.max), memory (memory.max), io (io.max). */
export const V2_CONTROLLERS = ['cpu', 'memory', 'io'] as const;

export function v2LimitWrites(limits: CheckedLimits): CgroupWrite[] {
  const writes: CgroupWrite[] = [];
  if (limits.cpu) {
    // cpu.max: "$MAX $PERIOD ... 'max' for $MAX indicates no limit".
    writes.push({ hierarchy: U, file: 'cpu.max', value: `${limits.cpu.quotaMicros ?? 'max'} ${limits.cpu.periodMicros}` });
  }
  if (limits.memoryBytes !== undefined) {
    // memory.max: "the memory usage hard limit ... If a cgroup's memory usage reaches this limit and can't be reduced, the OOM killer is invoked".
    writes.push({ hierarchy: U, file: 'memory.max', value: String(limits.memoryBytes ?? 'max') });
    // memory.max bounds RAM only; swap has its own memory.swap.max. A shard's memory limit
    // bounds its whole footprint on every layout (v1 caps memory+swap with memsw), so a
    // limited shard gets no swap here, and an unlimited one gets it back. Skipped where the
    // kernel has no swap accounting.
    writes.push({ hierarchy: U, file: 'memory.swap.max', value: limits.memoryBytes === null ? 'max' : '0', ifPresent: true });
  }
  if (limits.io) {
    // io.max: "$MAJ:$MIN riops=N wiops=N"; keys not written keep their value; "max" removes a limit.
    const pairs: string[] = [];
    if (limits.io.readIops !== undefined) pairs.push(`riops=${limits.io.readIops === 0 ? 'max' : limits.io.readIops}`);
    if (limits.io.writeIops !== undefined) pairs.push(`wiops=${limits.io.writeIops === 0 ? 'max' : limits.io.writeIops}`);
    if (pairs.length > 0) writes.push({ hierarchy: U, file: 'io.max', value: `${limits.io.device} ${pairs.join(' ')}` });
  }
  return writes;
}

function parseCpuMax(text: string): { quota: number | null; period: number } {
  const [quota, period, extra] = text.trim().split(/\s+/);
  if (quota === undefined || period === undefined || extra !== undefined) throw new ParseError('"$MAX $PERIOD"');
  return { quota: parseNumberOrMax(quota), period: parseSingle(period) };
}

/** The first device in io.max with an IOPS limit (0 = unlimited, as ShardLimits writes it). */
export function ioLimitsFromIoMax(text: string): ShardLimits['io'] {
  for (const [device, fields] of parseNestedKeyed(text)) {
    const r = fields.get('riops') ?? Infinity;
    const w = fields.get('wiops') ?? Infinity;
    if (r !== Infinity || w !== Infinity) {
      return { device, readIops: r === Infinity ? 0 : r, writeIops: w === Infinity ? 0 : w };
    }
  }
  return undefined;
}

function readV2Limits(files: ShardFileReader): ShardLimits {
  const cpu = readParsed(files, U, 'cpu.max', parseCpuMax);
  const limits: ShardLimits = {
    cpuCores: cpu.quota === null ? null : cpu.quota / cpu.period,
    cpuPeriodMicros: cpu.period,
    memoryBytes: readParsed(files, U, 'memory.max', parseNumberOrMax),
  };
  const io = readParsedOptional(files, U, 'io.max', ioLimitsFromIoMax);
  if (io) limits.io = io;
  return limits;
}

/** memory.events oom_kill: "The number of processes belonging to this cgroup killed by any kind of OOM killer." */
const oomKillOf = (text: string): number => flatKeyedValue(text, 'oom_kill') ?? 0;

function readV2OomKills(files: ShardFileReader): number {
  return readParsed(files, U, 'memory.events', oomKillOf);
}

function readV2Usage(files: ShardFileReader): ShardUsage {
  // cpu.stat: usage_usec always; throttled_usec and nr_throttled once the cpu controller is enabled.
  const cpu = readParsed(files, U, 'cpu.stat', (text) => ({
    usageMicros: flatKeyedValue(text, 'usage_usec') ?? 0,
    throttledMicros: flatKeyedValue(text, 'throttled_usec') ?? 0,
    throttledPeriods: flatKeyedValue(text, 'nr_throttled') ?? 0,
  }));
  const oomKills = readV2OomKills(files);
  const io = readParsedOptional(files, U, 'io.stat', parseIoStatTotals);
  const usage: ShardUsage = {
    cpuUsageSeconds: cpu.usageMicros / 1e6,
    cpuThrottledSeconds: cpu.throttledMicros / 1e6,
    cpuThrottledPeriods: cpu.throttledPeriods,
    memoryCurrentBytes: readParsed(files, U, 'memory.current', parseSingle),
    ioReadOps: io?.rios ?? 0,
    ioWriteOps: io?.wios ?? 0,
    ioReadBytes: io?.rbytes ?? 0,
    ioWriteBytes: io?.wbytes ?? 0,
    ioDevices: io?.devices ?? 0,
    oomKills,
    pressure: {},
  };
  // memory.peak exists from Linux 5.19.
  const peak = readParsedOptional(files, U, 'memory.peak', parseSingle);
  if (peak !== undefined) usage.memoryPeakBytes = peak;
  return usage;
}

export function v2Dialect(mount: string): CgroupDialect {
  return {
    layout: 'v2',
    hierarchies: [{ key: U, mount, delegates: V2_CONTROLLERS }],
    primary: U,
    limitWrites: v2LimitWrites,
    readLimits: readV2Limits,
    usage: readV2Usage,
    oomKills: readV2OomKills,
    freezer: unifiedFreezer(U),
    pressureHierarchy: U,
    killHierarchy: U,
    memoryInUse: (files) => {
      const current = readParsed(files, U, 'memory.current', parseSingle);
      const inactiveFile = readParsed(files, U, 'memory.stat', (text) => flatKeyedValue(text, 'inactive_file') ?? 0);
      return { file: files.path(U, 'memory.current'), bytes: Math.max(0, current - inactiveFile) };
    },
  };
}
