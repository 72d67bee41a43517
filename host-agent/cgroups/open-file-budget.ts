/**
 * How many cgroup interface files the driver may keep open for re-reading (cgroup-files.ts,
 * KeptShardFileReader). Each kept file is one descriptor for as long as its shard lives, ~10 per
 * shard on a hybrid host, so the number is bounded by the process's RLIMIT_NOFILE: past the
 * budget a shard's files are read the old way (open, read, close), which costs more CPU but no
 * descriptor.
 *
 * Node raises its soft RLIMIT_NOFILE to the hard limit at start-up (src/node.cc, "Raise the open
 * file descriptor limit"; checked here with `prlimit --nofile=1024:4096 node`, which reports
 * 4096), and offers no setrlimit of its own, so the agent takes the soft limit as it finds it.
 */
import { readFileSync } from 'node:fs';

export class OpenFileBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  /** Takes one descriptor from the budget; false when it is spent. */
  take(): boolean {
    if (this.used >= this.limit) return false;
    this.used += 1;
    return true;
  }

  give(count: number): void {
    this.used = Math.max(0, this.used - count);
  }

  get inUse(): number {
    return this.used;
  }
}

/** The soft "Max open files" of /proc/<pid>/limits (proc(5)): null when unlimited, undefined when not found. */
export function parseOpenFilesSoftLimit(limits: string): number | null | undefined {
  const match = /^Max open files\s+(\S+)/m.exec(limits);
  if (!match) return undefined;
  if (match[1] === 'unlimited') return null;
  const soft = Number(match[1]);
  return Number.isSafeInteger(soft) && soft > 0 ? soft : undefined;
}

/** Without a readable /proc/self/limits, the kernel's usual default soft limit. */
const FALLBACK_SOFT_LIMIT = 1024;
/** An unlimited soft limit still gets a bound: 1 << 20 is the kernel's default fs.nr_open. */
const UNLIMITED_SOFT_LIMIT = 1 << 20;

/**
 * Half the soft limit: the other half stays for what the agent opens besides cgroup files
 * (sockets, SQLite, shard logs while a workload is launched, CRIU images, plan watchers).
 */
export function defaultKeptFileLimit(readLimits: () => string = () => readFileSync('/proc/self/limits', 'latin1')): number {
  let soft: number | null | undefined;
  try {
    soft = parseOpenFilesSoftLimit(readLimits());
  } catch {
    soft = undefined;
  }
  return Math.floor((soft === null ? UNLIMITED_SOFT_LIMIT : (soft ?? FALLBACK_SOFT_LIMIT)) / 2);
}
