/**
 * Finds CRIU processes still checkpointing a shard: a `criu dump` or `pre-dump` whose target
 * is the shard's tree (`-t <root pid>`) or its freezer cgroup (`--freeze-cgroup <dir>`).
 *
 * Why: CRIU runs as a child of the agent, and an agent killed outright (SIGKILL, OOM, no
 * supervisor to clean its cgroup) leaves it running. A recovery that resumed the shard
 * meanwhile (thaw, SIGCONT) would lose to it: CRIU finishes the dump and, with
 * `--leave-stopped`, leaves every task stopped, while the keeper counts the shard as running.
 * Measured on this kernel: resumed 10-80 ms into a 256 MiB dump, the dump still completed and
 * left the workload in state T for good.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readProcStat } from '../runner/proc-info';

export interface CheckpointTarget {
  /** The shard's PID-namespace init, when it has one. */
  readonly rootPid?: number;
  /** The directory given to CRIU as `--freeze-cgroup`. */
  readonly freezeCgroup?: string;
}

export interface CriuAtWork {
  readonly pid: number;
  /** How long it has run, when /proc tells (its start time against the uptime). */
  readonly ageSeconds?: number;
  /** Its start time (stat field 22): with the pid, its identity, to re-check before a kill. */
  readonly startTime?: number;
  /**
   * The time limit the agent that started it gave it, from its environment
   * (`CRIU_TIME_LIMIT_ENV`): that agent kills it at this age. Absent from a CRIU started by an
   * agent from before the limit grew with the memory (it had 120 s).
   */
  readonly timeLimitMs?: number;
  /** Its environment could not be read: whether it carries a time limit is unknown. */
  readonly environmentUnreadable?: true;
}

/**
 * Set in the environment of every CRIU the agent runs: the time limit it is killed at, in ms
 * (memory-move-time.ts). The agent's timer dies with the agent, the environment stays with the
 * process, so a later agent (recovery) knows when the one that started it would have killed it.
 */
export const CRIU_TIME_LIMIT_ENV = 'SHARDFORM_CRIU_TIME_LIMIT_MS';

/**
 * Clock ticks per second of /proc/<pid>/stat's start time (USER_HZ): 100 on every architecture
 * Linux runs us on (x86, arm64); node has no sysconf to ask.
 */
const USER_HZ = 100;

/** CRIU dump / pre-dump processes (pids ascending) whose target is `target`; `procRoot` for tests. */
export async function criuCheckpointing(target: CheckpointTarget, procRoot = '/proc'): Promise<CriuAtWork[]> {
  if (target.rootPid === undefined && target.freezeCgroup === undefined) return [];
  const entries = await readdir(procRoot).catch(() => [] as string[]);
  const found: CriuAtWork[] = [];
  let uptime: number | undefined;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(join(procRoot, entry, 'cmdline'), 'utf8').catch(() => '');
    if (cmdline === '' || !checkpoints(cmdline.split('\0'), target)) continue;
    uptime ??= Number.parseFloat(await readFile(join(procRoot, 'uptime'), 'utf8').catch(() => '')); // NaN when unreadable: no age
    const started = (await readProcStat(Number(entry), procRoot))?.startTime;
    const ageSeconds = started !== undefined && Number.isFinite(uptime) ? Math.max(0, uptime - started / USER_HZ) : undefined;
    const environment = await readFile(join(procRoot, entry, 'environ'), 'utf8').catch(() => undefined);
    const timeLimitMs = environment === undefined ? undefined : timeLimitIn(environment);
    found.push({
      pid: Number(entry),
      ...(ageSeconds !== undefined ? { ageSeconds } : {}),
      ...(started !== undefined ? { startTime: started } : {}),
      ...(timeLimitMs !== undefined ? { timeLimitMs } : {}),
      ...(environment === undefined ? { environmentUnreadable: true as const } : {}),
    });
  }
  return found.sort((a, b) => a.pid - b.pid);
}

/**
 * The time limit named in a NUL-separated environment (/proc/<pid>/environ), or undefined when
 * it names none or something that is not a whole number of ms above 0 (not ours to believe).
 */
export function timeLimitIn(environment: string): number | undefined {
  const prefix = `${CRIU_TIME_LIMIT_ENV}=`;
  const value = environment.split('\0').find((entry) => entry.startsWith(prefix))?.slice(prefix.length);
  if (value === undefined || !/^[1-9][0-9]{0,15}$/.test(value)) return undefined;
  const ms = Number(value);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Whether `argv` is CRIU (run directly or through a loader) dumping or pre-dumping `target`. */
export function checkpoints(argv: readonly string[], target: CheckpointTarget): boolean {
  const criu = argv.findIndex((arg) => /(^|\/)criu$/.test(arg));
  if (criu < 0) return false;
  const args = argv.slice(criu + 1);
  if (args[0] !== 'dump' && args[0] !== 'pre-dump') return false;
  const after = (flag: string) => {
    const at = args.indexOf(flag);
    return at >= 0 ? args[at + 1] : undefined;
  };
  return (
    (target.rootPid !== undefined && (after('-t') === String(target.rootPid) || after('--tree') === String(target.rootPid))) ||
    (target.freezeCgroup !== undefined && after('--freeze-cgroup') === target.freezeCgroup)
  );
}
