/**
 * Checks a ShardLimits once, before any driver turns it into writes, and converts cores into
 * the CFS quota/period pair both hierarchies speak. Bad values throw INVALID_LIMITS naming the
 * shard, the field and the value, and nothing is written.
 */
import { invalidLimits } from '../errors';
import { MAX_SHARD_MEMORY_BYTES, MIN_SHARD_MEMORY_BYTES, SHARD_MEMORY_RULE } from '../../src/contracts/plan-schema';
import type { ShardLimits } from './driver';

/** Default CFS period (Documentation/scheduler/sched-bwc.rst: cpu.cfs_period_us defaults to 100ms). */
export const DEFAULT_CPU_PERIOD_MICROS = 100_000;
/** sched-bwc.rst: "The minimum quota allowed for the quota or period is 1ms. There is also an upper bound on the period length of 1s." */
export const MIN_CPU_MICROS = 1_000;
export const MAX_CPU_PERIOD_MICROS = 1_000_000;
/**
 * kernel/sched/core.c max_cfs_runtime: MAX_BW (2^44 - 1, "more than 203 days") microseconds;
 * tg_set_cfs_bandwidth refuses a larger quota with EINVAL, for cpu.max and cpu.cfs_quota_us alike.
 */
export const MAX_CPU_QUOTA_MICROS = 2 ** 44 - 1;

export interface CheckedLimits {
  /** quotaMicros null = unlimited. */
  cpu?: { quotaMicros: number | null; periodMicros: number };
  memoryBytes?: number | null;
  io?: { device: string; readIops?: number; writeIops?: number };
}

const DEVICE = /^[0-9]{1,10}:[0-9]{1,10}$/;

export function checkLimits(shardId: string, limits: ShardLimits): CheckedLimits {
  const out: CheckedLimits = {};
  const { cpuCores, cpuPeriodMicros, memoryBytes, io } = limits;

  if (cpuPeriodMicros !== undefined) {
    if (!Number.isSafeInteger(cpuPeriodMicros) || cpuPeriodMicros < MIN_CPU_MICROS || cpuPeriodMicros > MAX_CPU_PERIOD_MICROS) {
      throw invalidLimits(shardId, 'cpuPeriodMicros', cpuPeriodMicros, `use a whole number of microseconds from ${MIN_CPU_MICROS} to ${MAX_CPU_PERIOD_MICROS}`);
    }
    if (cpuCores === undefined) {
      // The quota is stored in microseconds per period: a new period alone would silently change the core count.
      throw invalidLimits(shardId, 'cpuPeriodMicros', cpuPeriodMicros, 'give cpuCores with it (the quota is derived from cores x period)');
    }
  }
  if (cpuCores !== undefined) {
    const periodMicros = cpuPeriodMicros ?? DEFAULT_CPU_PERIOD_MICROS;
    if (cpuCores === null) {
      out.cpu = { quotaMicros: null, periodMicros };
    } else {
      if (typeof cpuCores !== 'number' || !Number.isFinite(cpuCores) || cpuCores <= 0) {
        throw invalidLimits(shardId, 'cpuCores', cpuCores, 'use a positive number of cores (0.5 = half a core), or null for no limit');
      }
      const quotaMicros = Math.round(cpuCores * periodMicros);
      if (quotaMicros < MIN_CPU_MICROS) {
        throw invalidLimits(shardId, 'cpuCores', cpuCores, `the quota ${quotaMicros}us per ${periodMicros}us period is below the kernel's 1000us minimum; use at least ${MIN_CPU_MICROS / periodMicros} cores`);
      }
      if (quotaMicros > MAX_CPU_QUOTA_MICROS) {
        // Checked here, not left to the kernel: v1 writes the period before the quota, so a refused
        // quota would leave the old quota over the new period, a different core count.
        throw invalidLimits(shardId, 'cpuCores', cpuCores, `a quota above the kernel's maximum of ${MAX_CPU_QUOTA_MICROS}us per period; use at most ${Math.floor(MAX_CPU_QUOTA_MICROS / periodMicros)} cores with a ${periodMicros}us period`);
      }
      out.cpu = { quotaMicros, periodMicros };
    }
  }
  if (memoryBytes !== undefined) {
    if (memoryBytes !== null && (!Number.isSafeInteger(memoryBytes) || memoryBytes < MIN_SHARD_MEMORY_BYTES || memoryBytes > MAX_SHARD_MEMORY_BYTES)) {
      throw invalidLimits(shardId, 'memoryBytes', memoryBytes, `${SHARD_MEMORY_RULE}, or null for no limit`);
    }
    out.memoryBytes = memoryBytes;
  }
  if (io !== undefined) {
    if (typeof io.device !== 'string' || !DEVICE.test(io.device)) {
      throw invalidLimits(shardId, 'io.device', io.device, 'name a block device as "major:minor", e.g. "254:0" (see /proc/partitions)');
    }
    const checked: NonNullable<CheckedLimits['io']> = { device: io.device };
    for (const key of ['readIops', 'writeIops'] as const) {
      const v = io[key];
      if (v === undefined) continue;
      if (!Number.isSafeInteger(v) || v < 0) {
        throw invalidLimits(shardId, `io.${key}`, v, 'use a whole number of operations per second, or 0 for no limit');
      }
      checked[key] = v;
    }
    out.io = checked;
  }
  return out;
}
