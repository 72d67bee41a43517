import type { CgroupDriver, DetectOptions } from './driver';

/** Probes the cgroup layout under `root` once and returns the matching driver. */
export function detectCgroupDriver(opts: DetectOptions): CgroupDriver {
  throw new Error(`detectCgroupDriver(${opts.root ?? '/sys/fs/cgroup'}): not implemented yet`);
}
