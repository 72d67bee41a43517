/**
 * The one interface every cgroup layout implements (after containerd/cgroups, which keeps
 * `cgroup1/` and `cgroup2/` behind a mode probe): the layout is probed once at start-up
 * (`detectCgroupDriver`, in detect.ts) and the rest of the agent never asks "v1 or v2?".
 *
 * Everything an agent creates lives under `<ownerPrefix>/<hostId>/<shardId>` in each
 * hierarchy, so several agents (one per network-namespace test host) can share one machine.
 * Shard ids are checked against ID_PATTERN before they form a path.
 */

export type CgroupLayout = 'v2' | 'v1' | 'hybrid';

/**
 * Limits as data: an undefined field means "leave alone" (containerd/cgroups style). Each
 * driver turns a ShardLimits into `{ file, value }` writes applied by one function.
 */
export interface ShardLimits {
  /** CPU bandwidth in cores (0.5 = half a core); `null` removes the limit ("max" / -1). */
  cpuCores?: number | null;
  /** CFS period in microseconds (1000..1000000); default 100000. Only together with cpuCores (the quota is cores x period). */
  cpuPeriodMicros?: number;
  /** Hard memory limit in bytes, RAM and swap together (see docs/cgroups.md); `null` removes the limit. */
  memoryBytes?: number | null;
  /** IOPS limits on one block device; a missing readIops/writeIops is left alone, 0 removes it. */
  io?: { device: string /* "major:minor" */; readIops?: number; writeIops?: number };
}

/** Pressure stall information (kernel Documentation/accounting/psi.rst), one resource. */
export interface PressureStall {
  someAvg10: number;
  someAvg60: number;
  someTotalMicros: number;
  fullAvg10?: number;
  fullTotalMicros?: number;
}

/** Cumulative counters and current gauges of one shard, read in one go. */
export interface ShardUsage {
  cpuUsageSeconds: number;
  cpuThrottledSeconds: number;
  cpuThrottledPeriods: number;
  memoryCurrentBytes: number;
  /** High-water mark, where the kernel keeps one (v1 max_usage_in_bytes, v2 memory.peak). */
  memoryPeakBytes?: number;
  ioReadOps: number;
  ioWriteOps: number;
  ioReadBytes: number;
  ioWriteBytes: number;
  /**
   * How many devices the io counters above are summed over (io.stat lines, blkio devices): a
   * device that leaves takes its share out of the sums, which must not be read as a reset.
   */
  ioDevices?: number;
  /** Processes killed by the OOM killer in this cgroup since it was created. */
  oomKills: number;
  /** PSI, where the kernel offers it (v2, or the unified hierarchy of a hybrid host). */
  pressure: { cpu?: PressureStall; memory?: PressureStall; io?: PressureStall };
}

export interface CgroupDriver {
  readonly layout: CgroupLayout;
  /** The `shardform/<hostId>` directory name, relative to each hierarchy's mount point. */
  readonly hostRoot: string;

  /** Creates the shard's cgroup in every hierarchy (and the parents, enabling controllers on the way down). Idempotent. */
  create(shardId: string): Promise<void>;
  /** Removes the shard's cgroup everywhere; the cgroup must have no processes left (SHARD_BUSY otherwise). Idempotent. */
  remove(shardId: string): Promise<void>;
  exists(shardId: string): Promise<boolean>;
  /** Shard ids that have a cgroup under this host's root (only names that are valid ids). */
  list(): Promise<string[]>;

  setLimits(shardId: string, limits: ShardLimits): Promise<void>;
  /** Limits as the kernel reports them (cpuCores/memoryBytes `null` when unlimited). */
  readLimits(shardId: string): Promise<ShardLimits>;

  freeze(shardId: string): Promise<void>;
  thaw(shardId: string): Promise<void>;
  isFrozen(shardId: string): Promise<boolean>;

  /**
   * Signals every process of the shard (default SIGKILL). For SIGKILL it resolves once the
   * shard is empty (bounded wait, SHARD_BUSY otherwise); a missing shard is a no-op.
   */
  killAll(shardId: string, signal?: NodeJS.Signals): Promise<void>;
  /** Pids (in the agent's pid namespace) of every process in the shard. */
  pids(shardId: string): Promise<number[]>;

  usage(shardId: string): Promise<ShardUsage>;
  /**
   * ShardUsage.oomKills alone, from its one file (v2 memory.events, v1 memory.oom_control):
   * what the supervisor checks every tick, without reading the other nine usage files.
   */
  oomKills(shardId: string): Promise<number>;

  /**
   * Closes whatever the driver keeps open for the shard (usage() and oomKills() keep its
   * interface files open to re-read them); the next read opens them again. remove() does this
   * itself; call it when a shard stops being this agent's to read without being removed.
   */
  forget(shardId: string): void;
  /** forget() for every shard (agent shutdown). */
  close(): void;

  /**
   * The cgroup.procs files (one per hierarchy) a process must join: the runner's shim
   * writes its own pid into each before it execs; CRIU restore needs them too.
   */
  procsFiles(shardId: string): string[];
  /** Per-hierarchy cgroup directory of the shard, keyed by controller name or 'unified'. */
  paths(shardId: string): Record<string, string>;
}

export interface DetectOptions {
  /** Where cgroup hierarchies are mounted; default /sys/fs/cgroup (a fixture tree in unit tests). */
  root?: string;
  hostId: string;
  /** Top directory every agent on this machine shares; default 'shardform'. */
  ownerPrefix?: string;
}
