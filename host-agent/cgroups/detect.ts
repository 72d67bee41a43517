import type { CgroupDialect } from './cgroup-dialect';
import type { CgroupDriver } from './driver';
import { hybridDialect } from './hybrid-dialect';
import { DEFAULT_CGROUP_ROOT, probeCgroupLayout, type CgroupProbe } from './probe';
import { ShardCgroupDriver, type ShardCgroupDriverOptions } from './shard-cgroup-driver';
import { v1Dialect } from './v1-dialect';
import { v2Dialect } from './v2-dialect';

/** The dialect for a probed layout: the one place the layout is switched on. */
export function dialectFor(probe: CgroupProbe): CgroupDialect {
  switch (probe.layout) {
    case 'v2':
      return v2Dialect(probe.mounts.unified as string);
    case 'v1':
      return v1Dialect(probe.mounts, { memsw: probe.memsw });
    case 'hybrid':
      return hybridDialect(probe.mounts, { memsw: probe.memsw });
  }
}

/**
 * A driver together with what was probed (so the agent can log the layout once), the list
 * of files its usage() reads (the benchmark's bare reader reads the same) and how many of them
 * it holds open.
 */
export type DetectedCgroupDriver = CgroupDriver & Pick<ShardCgroupDriver, 'probe' | 'usageFiles' | 'openFiles'>;

/** The driver for an already probed layout (tests use it to drive a hybrid host's v1 controllers as plain v1). */
export function createCgroupDriver(probe: CgroupProbe, opts: ShardCgroupDriverOptions): DetectedCgroupDriver {
  return new ShardCgroupDriver(dialectFor(probe), probe, opts);
}

/** Probes the cgroup layout under `root` once and returns the matching driver. */
export function detectCgroupDriver(opts: ShardCgroupDriverOptions): DetectedCgroupDriver {
  return createCgroupDriver(probeCgroupLayout(opts.root ?? DEFAULT_CGROUP_ROOT), opts);
}
