/**
 * What differs between cgroup layouts, as data and small strategies. The layout is probed
 * once (probe.ts); a dialect is built for it (v2-dialect.ts, v1-dialect.ts, hybrid-dialect.ts)
 * and ShardCgroupDriver drives any dialect the same way, so no `if (v2)` appears elsewhere
 * (containerd/cgroups keeps cgroup1/ and cgroup2/ apart behind one mode probe likewise).
 */
import type { CgroupWrite, ShardFileReader } from './cgroup-files';
import type { CgroupLayout, ShardLimits, ShardUsage } from './driver';
import type { CheckedLimits } from './limits-check';

/** One hierarchy the shard has a directory in. */
export interface Hierarchy {
  /** 'unified', or the v1 controller name (as in CgroupDriver.paths()). */
  readonly key: string;
  /** Absolute directory the hierarchy is mounted at (symlinks resolved). */
  readonly mount: string;
  /**
   * Controllers to enable in cgroup.subtree_control of every ancestor of the shard, where the
   * ancestor offers them (cgroup-v2.rst "Enabling and Disabling": a controller is usable in a
   * cgroup only if its parent enabled it). Empty for v1 hierarchies.
   */
  readonly delegates: readonly string[];
}

export interface FreezerState {
  readonly state: 'frozen' | 'thawed' | 'changing';
  readonly text: string;
}

/** How a layout freezes a cgroup: one request write, then a state to wait for. */
export interface Freezer {
  readonly hierarchy: string;
  /** The write that asks for the state (cgroup.freeze 1/0, or freezer.state FROZEN/THAWED). */
  request(frozen: boolean): CgroupWrite;
  /** The file the settled state is read from. */
  readonly stateFile: string;
  /** The state now, and the state file's text it was read from (for error messages). */
  state(files: ShardFileReader): FreezerState;
  /**
   * v1 freezer: frozen tasks act on SIGKILL only once thawed (cgroup-v1/freezer-subsystem.rst);
   * v2: "killing a frozen process works" (cgroup-v2.rst, cgroup.freeze).
   */
  readonly killNeedsThaw: boolean;
}

export interface CgroupDialect {
  readonly layout: CgroupLayout;
  readonly hierarchies: readonly Hierarchy[];
  /** The hierarchy whose directories and cgroup.procs answer list(), exists() and pids(). */
  readonly primary: string;
  /** Limits as data: the writes, in order, that make the kernel hold `limits`. Pure. */
  limitWrites(limits: CheckedLimits): CgroupWrite[];
  readLimits(files: ShardFileReader): ShardLimits;
  /** Usage with `pressure` empty: the driver fills it from pressureHierarchy (one object per reading, no copy). */
  usage(files: ShardFileReader): ShardUsage;
  /** The OOM-kill counter alone (one file), for the supervisor's per-tick check. */
  oomKills(files: ShardFileReader): number;
  readonly freezer: Freezer;
  /** Where `<resource>.pressure` files live (the unified hierarchy), when the layout has one. */
  readonly pressureHierarchy?: string;
  /** Where cgroup.kill may live (cgroup v2, kernel 5.14+); signalling each pid otherwise. */
  readonly killHierarchy?: string;
  /**
   * Memory a limit cannot take back without killing (cgroup v2 only): usage less the inactive
   * file cache the kernel reclaims first — the working set, as the kubelet counts it. v2 OOM-kills
   * under a `memory.max` below it, where v1 refuses the limit with EBUSY; the driver refuses such a
   * limit first, so both layouts say no instead of one of them killing the workload.
   */
  memoryInUse?(files: ShardFileReader): { file: string; bytes: number };
}
