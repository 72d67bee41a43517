/**
 * Starting a workload: the one place that creates processes. The application's argv runs
 *
 *   /bin/sh -c SHIM shardform-shim N procs_1 .. procs_N  /usr/bin/unshare --pid --fork -- /usr/bin/setsid --wait -- argv...
 *
 * The shim writes its own pid (`$$`) into every cgroup.procs file of the shard, then execs
 * unshare, so the process is in the shard's cgroups before the application's first instruction
 * and everything it forks inherits them (cgroups(7): "a child created via fork(2) inherits its
 * parent's cgroup memberships"). The argv only ever travels as positional parameters: it is
 * never part of shell text, so no quoting can go wrong. `unshare --pid --fork` (unshare(1))
 * forks the application as PID 1 of a new PID namespace (no mount namespace: CRIU must dump and
 * restore this tree later, and the application sees the host's /proc); unshare waits for it and
 * exits with its status, re-raising a fatal signal, so the agent's child reports the
 * application's exit code or signal exactly. The child is spawned `detached` (setsid(2): a new
 * session and process group, no controlling terminal), with stdio on files, so stopping or
 * killing the agent never signals or blocks the workload.
 * Inside the namespace, setsid(1) makes the application its own session leader: CRIU refuses to
 * dump a tree whose session leader lies outside its PID namespace ("A session leader of X(1) is
 * outside of its pid namespace"), which unshare would otherwise be. The namespace init is not a
 * process-group leader, so setsid calls setsid(2) and execs without forking (`--wait` only
 * matters if it ever had to fork).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { workingDirectoryMissing, workloadStartFailed } from '../errors';
import { findNamespaceInit } from './proc-info';
import type { ShardLogPaths } from './shard-logs';
import { openShardLogs } from './shard-logs';

/** The shim: `$1` is how many procs files follow; then the files; then the command to exec. */
export const SHIM = [
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n - 1)); done',
  'exec "$@"',
].join('\n');

export interface LaunchRequest {
  readonly shardId: string;
  readonly command: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly workingDirectory: string;
  readonly procsFiles: readonly string[];
  readonly logs: ShardLogPaths;
  /** Pids currently in the shard's cgroup (the driver's view), to find the namespace init. */
  readonly pidsInShard: () => Promise<number[]>;
}

export interface RunExit {
  readonly exitCode: number | null;
  readonly signal: string | null;
}

export interface LaunchedRun {
  /** Main pid (PID-namespace init) and its start time; undefined when the run ended before it was seen. */
  readonly pid?: number;
  readonly startTime?: number;
  /** Resolves when the agent's own child (unshare) exits, with the application's status. */
  readonly exit: Promise<RunExit>;
  /** Stops listening to the child so the agent can go away (close()); the workload keeps running. */
  detach(): void;
}

export interface WorkloadLauncher {
  launch(request: LaunchRequest): Promise<LaunchedRun>;
}

export interface UnshareLauncherOptions {
  /** @default '/usr/bin/unshare' (util-linux) */
  readonly unsharePath?: string;
  /** @default '/usr/bin/setsid' (util-linux) */
  readonly setsidPath?: string;
  /** How long to wait for the namespace init to appear in the cgroup. @default 5000 */
  readonly startTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class UnshareLauncher implements WorkloadLauncher {
  private readonly unsharePath: string;
  private readonly setsidPath: string;
  private readonly startTimeoutMs: number;

  constructor(options: UnshareLauncherOptions = {}) {
    this.unsharePath = options.unsharePath ?? '/usr/bin/unshare';
    this.setsidPath = options.setsidPath ?? '/usr/bin/setsid';
    this.startTimeoutMs = options.startTimeoutMs ?? 5000;
  }

  async launch(request: LaunchRequest): Promise<LaunchedRun> {
    const logs = await openShardLogs(request.logs);
    const args = ['-c', SHIM, 'shardform-shim', String(request.procsFiles.length), ...request.procsFiles];
    args.push(this.unsharePath, '--pid', '--fork', '--', this.setsidPath, '--wait', '--', ...request.command);
    let child;
    try {
      child = spawn('/bin/sh', args, {
        cwd: request.workingDirectory,
        env: { ...request.env },
        detached: true,
        stdio: ['ignore', logs.stdout, logs.stderr],
      });
    } catch (e) {
      await logs.close();
      throw workloadStartFailed(request.shardId, request.command, (e as Error).message);
    }
    // Listen before awaiting anything: 'spawn', 'error' and 'exit' may fire on the next tick.
    const started = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    let exited = false;
    const exit = new Promise<RunExit>((resolve) => {
      child.once('exit', (code, signal) => {
        exited = true;
        resolve({ exitCode: code, signal });
      });
    });
    // Handled from here on: a spawn failure (missing cwd, EAGAIN) rejects `started` on the next
    // tick, while logs.close() below is still awaited, and an unhandled rejection ends the agent
    // (Node's default --unhandled-rejections=throw), taking every shard's supervision with it.
    const startFailure = started.then(
      () => undefined,
      (e: unknown) => e as NodeJS.ErrnoException,
    );
    // The child has its own copies of the fds now; the agent keeps none.
    await logs.close();
    const e = await startFailure;
    if (e !== undefined) {
      // Node reports a missing cwd as "spawn /bin/sh ENOENT" (the chdir in the child fails).
      if (e.code === 'ENOENT' && !existsSync(request.workingDirectory)) {
        throw workingDirectoryMissing(request.shardId, request.command, request.workingDirectory);
      }
      throw workloadStartFailed(request.shardId, request.command, e.message);
    }
    // The agent must not wait for the workload when it exits itself.
    child.unref();
    const detach = () => {
      child.removeAllListeners();
    };
    const deadline = Date.now() + this.startTimeoutMs;
    // Bounded wait: the namespace init appears as soon as unshare has forked (microseconds).
    while (!exited && Date.now() < deadline) {
      const main = await findNamespaceInit(await request.pidsInShard(), child.pid);
      if (main) return { pid: main.pid, startTime: main.startTime, exit, detach };
      await sleep(10);
    }
    if (exited) return { exit, detach };
    child.kill('SIGKILL');
    throw workloadStartFailed(request.shardId, request.command, `no PID-namespace init appeared in the shard's cgroup within ${this.startTimeoutMs} ms`);
  }
}
