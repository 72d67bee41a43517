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

export interface CheckpointTarget {
  /** The shard's PID-namespace init, when it has one. */
  readonly rootPid?: number;
  /** The directory given to CRIU as `--freeze-cgroup`. */
  readonly freezeCgroup?: string;
}

/** Pids (ascending) of CRIU dump / pre-dump processes whose target is `target`; `procRoot` for tests. */
export async function criuCheckpointing(target: CheckpointTarget, procRoot = '/proc'): Promise<number[]> {
  if (target.rootPid === undefined && target.freezeCgroup === undefined) return [];
  const entries = await readdir(procRoot).catch(() => [] as string[]);
  const found: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(join(procRoot, entry, 'cmdline'), 'utf8').catch(() => '');
    if (cmdline !== '' && checkpoints(cmdline.split('\0'), target)) found.push(Number(entry));
  }
  return found.sort((a, b) => a - b);
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
