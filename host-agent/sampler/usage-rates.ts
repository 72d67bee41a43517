/**
 * Turns two readings of a shard's cumulative kernel counters into one MetricSample of rates
 * and gauges. Pure: the readings carry their own timestamps (passed in by the sampler's clock).
 *
 * Counter resets (the cgroup was recreated, a counter wrapped) follow Prometheus' rate():
 * a counter that went down restarted from zero, so the increase over the interval is the new
 * value itself. The io counters are sums over devices: when the set of devices changed (one
 * detached), a sum that went down lost that device's share, and reading it as a reset would give
 * one interval the whole history as its rate; such an interval counts only what went up.
 */
import type { ShardLimits, ShardUsage } from '../cgroups/driver';
import type { MetricSample } from '../../src/store/metric-history';

export interface UsageReading {
  readonly atSeconds: number;
  readonly usage: ShardUsage;
}

/** The CFS period the kernel uses unless told otherwise (Documentation/scheduler/sched-bwc.rst). */
export const DEFAULT_CPU_PERIOD_MICROS = 100_000;

/** Increase of a cumulative counter, treating a decrease as a reset (Prometheus rate() semantics). */
export function counterIncrease(previous: number, current: number): number {
  return current >= previous ? current - previous : current;
}

/**
 * The sample for the interval (previous.atSeconds, current.atSeconds]; undefined when the
 * interval is empty or runs backwards (a clock step), since no rate can be told from it.
 */
export function usageSample(
  shard: { shardId: string; applicationId: string; limits: ShardLimits },
  previous: UsageReading,
  current: UsageReading,
): MetricSample | undefined {
  const seconds = current.atSeconds - previous.atSeconds;
  if (!(seconds > 0)) return undefined;
  const a = previous.usage;
  const b = current.usage;
  const rate = (before: number, after: number) => counterIncrease(before, after) / seconds;
  const devicesChanged = a.ioDevices !== undefined && b.ioDevices !== undefined && a.ioDevices !== b.ioDevices;
  const ioRate = devicesChanged ? (before: number, after: number) => Math.max(0, after - before) / seconds : rate;
  // Periods that elapsed in the interval; throttled periods over that is the share of
  // scheduling periods in which the shard hit its quota.
  const periods = seconds / ((shard.limits.cpuPeriodMicros ?? DEFAULT_CPU_PERIOD_MICROS) / 1e6);
  const throttled = counterIncrease(a.cpuThrottledPeriods, b.cpuThrottledPeriods);
  const sample: { -readonly [K in keyof MetricSample]: MetricSample[K] } = {
    atSeconds: current.atSeconds,
    shardId: shard.shardId,
    applicationId: shard.applicationId,
    cpuCores: rate(a.cpuUsageSeconds, b.cpuUsageSeconds),
    cpuThrottledRatio: Math.min(1, throttled / periods),
    memoryBytes: b.memoryCurrentBytes,
    readOps: ioRate(a.ioReadOps, b.ioReadOps),
    writeOps: ioRate(a.ioWriteOps, b.ioWriteOps),
    readBytesPerSecond: ioRate(a.ioReadBytes, b.ioReadBytes),
    writeBytesPerSecond: ioRate(a.ioWriteBytes, b.ioWriteBytes),
  };
  // Assigned rather than spread in: one object per sample, no temporaries (one per shard per interval).
  if (b.pressure.cpu) sample.cpuPressure = b.pressure.cpu.someAvg10;
  if (b.pressure.memory) sample.memoryPressure = b.pressure.memory.someAvg10;
  if (b.pressure.io) sample.ioPressure = b.pressure.io.someAvg10;
  return sample;
}
