/**
 * Reading /proc: the thin adapter the runner uses to recognise its workloads. A pid alone is not
 * an identity (pids are reused), so a process is identified by (pid, start time): field 22 of
 * /proc/<pid>/stat, `starttime`, in clock ticks since boot, fixed for the life of a process
 * (proc(5)). The workload's main process is the init of the shard's PID namespace: the process
 * whose innermost `NSpid` (proc(5), /proc/<pid>/status, Linux 4.1+) is 1.
 */
import { readFile } from 'node:fs/promises';

export interface ProcStat {
  readonly pid: number;
  /** One character, proc(5): R, S, D, Z (zombie), T, t, X, I, ... */
  readonly state: string;
  readonly ppid: number;
  /** Clock ticks after boot the process started (stat field 22). */
  readonly startTime: number;
}

/**
 * Parses /proc/<pid>/stat. `comm` (field 2) may itself hold spaces and parentheses, so the
 * fields are split after the LAST ')' (the approach procps takes).
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  // After ')': field 3 (state) is rest[0], field 4 (ppid) rest[1], field 22 (starttime) rest[19].
  const rest = text.slice(close + 1).trim().split(/\s+/);
  const startTime = Number(rest[19]);
  const ppid = Number(rest[1]);
  if (!Number.isInteger(pid) || !Number.isFinite(startTime) || !Number.isInteger(ppid) || rest[0] === undefined) return undefined;
  return { pid, state: rest[0], ppid, startTime };
}

/** The `NSpid:` line of /proc/<pid>/status: the pid in each namespace, outermost first. */
export function parseNsPids(statusText: string): number[] | undefined {
  const line = statusText.split('\n').find((l) => l.startsWith('NSpid:'));
  if (!line) return undefined;
  const pids = line.slice('NSpid:'.length).trim().split(/\s+/).map(Number);
  return pids.every((p) => Number.isInteger(p) && p > 0) ? pids : undefined;
}

/** Undefined when the process does not exist (any more). */
export async function readProcStat(pid: number, procRoot = '/proc'): Promise<ProcStat | undefined> {
  try {
    return parseProcStat(await readFile(`${procRoot}/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

export async function readNsPids(pid: number, procRoot = '/proc'): Promise<number[] | undefined> {
  try {
    return parseNsPids(await readFile(`${procRoot}/${pid}/status`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** True while the very process (pid and start time) lives; a zombie has ended (only its exit status is left). */
export async function isSameProcessAlive(pid: number, startTime: number, procRoot = '/proc'): Promise<boolean> {
  const stat = await readProcStat(pid, procRoot);
  return stat !== undefined && stat.startTime === startTime && stat.state !== 'Z' && stat.state !== 'X';
}

/**
 * The shard's main process among `pids` (the shard cgroup's processes, as the agent sees them):
 * a process whose innermost NSpid is 1, i.e. the init of a PID namespace nested in ours. When a
 * workload nests further namespaces, the outermost such init (fewest NSpid levels) is the
 * shard's; `parentPid`, when known (the process the runner spawned), breaks remaining ties.
 */
export async function findNamespaceInit(pids: readonly number[], parentPid?: number, procRoot = '/proc'): Promise<ProcStat | undefined> {
  const own = (await readNsPids(process.pid, procRoot))?.length ?? 1;
  let best: { stat: ProcStat; depth: number } | undefined;
  for (const pid of pids) {
    const ns = await readNsPids(pid, procRoot);
    if (!ns || ns.length <= own || ns[ns.length - 1] !== 1) continue;
    const stat = await readProcStat(pid, procRoot);
    if (!stat || stat.state === 'Z') continue;
    const better =
      !best || ns.length < best.depth || (ns.length === best.depth && parentPid !== undefined && stat.ppid === parentPid && best.stat.ppid !== parentPid);
    if (better) best = { stat, depth: ns.length };
  }
  return best?.stat;
}
