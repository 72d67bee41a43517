/**
 * cgroup v1 (Documentation/admin-guide/cgroup-v1/): one hierarchy per controller. CPU
 * bandwidth in cpu.cfs_quota_us/cfs_period_us (scheduler/sched-bwc.rst), usage in
 * cpuacct.usage; memory.limit_in_bytes (cgroup-v1/memory.rst); blkio.throttle.*
 * (cgroup-v1/blkio-controller.rst); the freezer controller (cgroup-v1/freezer-subsystem.rst).
 * v1 has no per-cgroup PSI.
 */
import type { CgroupWrite, ShardFileReader } from './cgroup-files';
import { readParsed, readParsedOptional } from './cgroup-files';
import { flatKeyedValue, parseBlkioRecursive, parseDeviceRules, parseSingle } from './cgroup-parse';
import type { CgroupDialect, Hierarchy } from './cgroup-dialect';
import type { ShardLimits, ShardUsage } from './driver';
import { v1Freezer } from './freezers';
import type { CheckedLimits } from './limits-check';

/** The v1 controllers a shard lives in (the freezer only where it freezes through v1). */
export const V1_CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'blkio'] as const;

export interface V1Features {
  /**
   * memory.memsw.* present (CONFIG_MEMCG_SWAP with swap accounting on). When it is, the
   * memory limit also caps memory+swap, so a shard cannot grow past its limit by swapping
   * and is OOM-killed at the same size it would be on v2 without swap.
   */
  readonly memsw: boolean;
}

/**
 * memory.limit_in_bytes reads back as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB
 * pages) when unlimited; any value past 2^53 is "no limit" for a shard.
 */
function limitOrNull(bytes: number): number | null {
  return bytes > Number.MAX_SAFE_INTEGER ? null : bytes;
}

export function v1LimitWrites(limits: CheckedLimits, features: V1Features): CgroupWrite[] {
  const writes: CgroupWrite[] = [];
  // Memory first: it is the one limit the kernel refuses for what the shard holds (EBUSY below
  // usage, MEMORY_IN_USE), and refused before any other write, the refusal changes nothing. After
  // the cpu writes it left a new quota in the kernel that no record or assignment knew of.
  if (limits.memoryBytes !== undefined) {
    const value = String(limits.memoryBytes ?? -1);
    if (features.memsw) {
      // memory.rst 2.4: memsw.limit_in_bytes must stay >= limit_in_bytes (EINVAL otherwise), and
      // a limit below what the group holds is refused with EBUSY once reclaim fails. Lowering
      // needs limit then memsw, raising memsw then limit. The limit is written first; only when
      // the kernel refuses it with EINVAL (raising past memsw) is memsw raised and the limit
      // written again. A refused lowering thus changes neither file. (Lifting memsw to -1 first
      // made one order fit both, but left memory+swap unlimited when the limit then failed.)
      const memsw = { hierarchy: 'memory', file: 'memory.memsw.limit_in_bytes', value };
      if (limits.memoryBytes === null) {
        writes.push(memsw, { hierarchy: 'memory', file: 'memory.limit_in_bytes', value });
      } else {
        writes.push({ hierarchy: 'memory', file: 'memory.limit_in_bytes', value, retryAfter: [memsw] }, memsw);
      }
    } else {
      writes.push({ hierarchy: 'memory', file: 'memory.limit_in_bytes', value });
    }
  }
  if (limits.cpu) {
    // Period first, so the quota is never read against a stale period; -1 = no limit (sched-bwc.rst).
    writes.push({ hierarchy: 'cpu', file: 'cpu.cfs_period_us', value: String(limits.cpu.periodMicros) });
    writes.push({ hierarchy: 'cpu', file: 'cpu.cfs_quota_us', value: String(limits.cpu.quotaMicros ?? -1) });
  }
  if (limits.io) {
    // blkio-controller.rst: "echo "8:16  10" > blkio.throttle.read_iops_device"; 0 removes the rule.
    if (limits.io.readIops !== undefined) {
      writes.push({ hierarchy: 'blkio', file: 'blkio.throttle.read_iops_device', value: `${limits.io.device} ${limits.io.readIops}` });
    }
    if (limits.io.writeIops !== undefined) {
      writes.push({ hierarchy: 'blkio', file: 'blkio.throttle.write_iops_device', value: `${limits.io.device} ${limits.io.writeIops}` });
    }
  }
  return writes;
}

function readV1Limits(files: ShardFileReader): ShardLimits {
  const quota = readParsed(files, 'cpu', 'cpu.cfs_quota_us', parseSingle);
  const period = readParsed(files, 'cpu', 'cpu.cfs_period_us', parseSingle);
  const limits: ShardLimits = {
    cpuCores: quota < 0 ? null : quota / period,
    cpuPeriodMicros: period,
    memoryBytes: limitOrNull(readParsed(files, 'memory', 'memory.limit_in_bytes', parseSingle)),
  };
  const reads = readParsedOptional(files, 'blkio', 'blkio.throttle.read_iops_device', parseDeviceRules) ?? new Map<string, number>();
  const writes = readParsedOptional(files, 'blkio', 'blkio.throttle.write_iops_device', parseDeviceRules) ?? new Map<string, number>();
  const device = [...reads.keys(), ...writes.keys()][0];
  if (device !== undefined) limits.io = { device, readIops: reads.get(device) ?? 0, writeIops: writes.get(device) ?? 0 };
  return limits;
}

const oomKillOf = (text: string): number => flatKeyedValue(text, 'oom_kill') ?? 0;

/**
 * memory.oom_control is in every memcg v1 (cgroup-v1/memory.rst 10. OOM Control); its oom_kill
 * line came in Linux 4.13, so 0 before. Read as required: a shard whose memory cgroup is gone
 * is SHARD_NOT_FOUND, not "no OOM kills".
 */
function readV1OomKills(files: ShardFileReader): number {
  return readParsed(files, 'memory', 'memory.oom_control', oomKillOf);
}

const NO_IO = { read: 0, write: 0, devices: 0 } as const;

function readV1Usage(files: ShardFileReader): ShardUsage {
  // cpu.stat (sched-bwc.rst): nr_periods, nr_throttled, throttled_time in nanoseconds.
  const cpu = readParsed(files, 'cpu', 'cpu.stat', (text) => ({
    throttledNanos: flatKeyedValue(text, 'throttled_time') ?? 0,
    throttledPeriods: flatKeyedValue(text, 'nr_throttled') ?? 0,
  }));
  const serviced = readParsedOptional(files, 'blkio', 'blkio.throttle.io_serviced', parseBlkioRecursive) ?? NO_IO;
  const bytes = readParsedOptional(files, 'blkio', 'blkio.throttle.io_service_bytes', parseBlkioRecursive) ?? NO_IO;
  const oomKills = readV1OomKills(files);
  return {
    // cpuacct.usage: total CPU time in nanoseconds (cgroup-v1/cpuacct.rst).
    cpuUsageSeconds: readParsed(files, 'cpuacct', 'cpuacct.usage', parseSingle) / 1e9,
    cpuThrottledSeconds: cpu.throttledNanos / 1e9,
    cpuThrottledPeriods: cpu.throttledPeriods,
    memoryCurrentBytes: readParsed(files, 'memory', 'memory.usage_in_bytes', parseSingle),
    memoryPeakBytes: readParsed(files, 'memory', 'memory.max_usage_in_bytes', parseSingle),
    ioReadOps: serviced.read,
    ioWriteOps: serviced.write,
    ioReadBytes: bytes.read,
    ioWriteBytes: bytes.write,
    ioDevices: serviced.devices,
    oomKills,
    pressure: {},
  };
}

export function v1Hierarchies(mounts: Readonly<Record<string, string>>, controllers: readonly string[]): Hierarchy[] {
  return controllers.map((key) => {
    const mount = mounts[key];
    if (mount === undefined) throw new Error(`v1 hierarchy ${key} was not probed`);
    return { key, mount, delegates: [] };
  });
}

/** The v1 parts a hybrid dialect reuses: limits and usage. */
export function v1LimitsAndUsage(features: V1Features): Pick<CgroupDialect, 'limitWrites' | 'readLimits' | 'usage' | 'oomKills'> {
  return {
    limitWrites: (limits) => v1LimitWrites(limits, features),
    readLimits: readV1Limits,
    usage: readV1Usage,
    oomKills: readV1OomKills,
  };
}

export function v1Dialect(mounts: Readonly<Record<string, string>>, features: V1Features): CgroupDialect {
  return {
    layout: 'v1',
    hierarchies: v1Hierarchies(mounts, [...V1_CONTROLLERS, 'freezer']),
    primary: 'memory',
    ...v1LimitsAndUsage(features),
    freezer: v1Freezer('freezer'),
  };
}
