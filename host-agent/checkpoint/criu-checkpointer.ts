/**
 * The thin CRIU adapter: dump, pre-dump and restore of one process tree whose root is the
 * init of its own PID namespace (how the runner starts every shard: shim + `unshare --pid
 * --fork`). No decisions here: the migration state machine decides what to call and when.
 *
 * What CRIU needs that is easy to get wrong (see docs, `criu --help`):
 * - The root must be the session leader of its tree (start it with `setsid` inside the pid
 *   namespace); CRIU refuses "a session leader outside of its pid namespace".
 * - `--freeze-cgroup <freezer dir>` freezes the whole tree atomically (no race with fork).
 *   When the cgroup is already frozen by the agent, CRIU dumps it as it is.
 * - `--leave-stopped` leaves the tasks ptrace-stopped (state T) after the dump: to resume the
 *   source after an abort, thaw the cgroup AND send SIGCONT (see resumeStopped).
 * - Pre-copy needs kernel dirty-page tracking (CONFIG_MEM_SOFT_DIRTY): without it
 *   `criu pre-dump --track-mem` is refused and plain pre-dump hits BUG at criu/mem.c:45, so
 *   preDump throws PRECOPY_UNSUPPORTED unless `criu check --feature mem_dirty_track` passes.
 * - Restore uses `--manage-cgroups=ignore` and is spawned from a shim that has already joined
 *   the destination shard's cgroups (every hierarchy of a hybrid host: v1 controllers and the
 *   unified one), so restored tasks inherit the destination cgroups, not the dumped paths.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { mkdir, readFile, realpath, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { freeBytesUnder } from '../migration/image-space';
import { parseProcStat } from '../runner/proc-info';
import { CheckpointError } from './checkpoint-error';
import { hasParentImage, lazyRestorableImage, type LazyImage } from './lazy-image';
import { pageSize } from './process-memory';
import { criuCommandLine, type CriuInstallation } from './criu';
import { CRIU_TIME_LIMIT_ENV } from './criu-at-work';
import { listImageFiles } from './image-manifest';
import { memoryImageBytes, memoryMoveLimitMs } from './memory-move-time';
import { inCgroups, JOIN_FAILED_EXIT } from './join-cgroups';
import { FILLED_MARK, GUARD_KILLED, startLazyFillGuard, type LazyFillGuard } from './lazy-fill-guard';

export interface CheckpointerOptions {
  /**
   * Kill criu if one invocation takes longer than this, whatever the memory it moves; default
   * 120 s. A run that moves more memory than this covers gets longer (memory-move-time.ts).
   */
  timeoutMs?: number;
  /** criu log verbosity 0-4; default 4 (logs are the only way to debug a failed restore). */
  verbosity?: number;
  /** Free bytes of the file system under a directory (statfs; a test passes its own). */
  freeBytes?: (dir: string) => number | undefined;
  /**
   * Restore memory lazily: `criu lazy-pages` beside `criu restore --lazy-pages`, so the tree
   * runs as soon as its process state is back while its private memory is filled behind it from
   * the local image (userfaultfd). `auto` does so where `criu check --feature uffd-noncoop`
   * passes; default `off` (eager: every page copied in before the tree runs).
   */
  lazyPages?: 'auto' | 'off';
}

/** What a restore made. */
export interface RestoredTree {
  /** Host pid of the restored PID-namespace init. */
  readonly pid: number;
  /**
   * How long the tree ran before all of its memory was in: the lazy fill that followed the
   * restore (0 for an eager one). The restore resolves only once the fill is complete.
   */
  readonly lazyPagesMs: number;
  /** Why a lazy restore was wanted but this one was eager (no lazy image of a pre-copy chain, or the daemon did not come up). */
  readonly lazyPagesSkipped?: string;
}

/** Below this much free space under an image directory, a CRIU failure that says nothing is put down to the disk. */
const NEARLY_FULL_BYTES = 2 ** 20;

export interface DumpTarget {
  /** Host pid of the PID-namespace init of the shard's workload. */
  readonly rootPid: number;
  /** The freezer cgroup directory of the shard (v1 freezer, or the v2 cgroup dir). */
  readonly freezeCgroup?: string;
  /** The shard's memory as estimated before the dump: its time limit grows with it (memory-move-time.ts). */
  readonly memoryBytes?: number;
  /** Time left before the migration's own time limit: no dump is given longer, beyond the floor. */
  readonly untilDeadlineMs?: number;
}

export interface RestoreTarget {
  /** cgroup.procs files of the destination shard, one per hierarchy (CgroupDriver.procsFiles). */
  readonly procsFiles: readonly string[];
  /**
   * Regular files the dumped processes held open, restored onto other files: each open `fd`
   * (the caller's, closed by it) is handed to CRIU as `--inherit-fd` for every descriptor that
   * had `dumpedPath` open (the shard's log files, from the source's paths to this host's).
   * CRIU neither looks for nor size-checks a file it is handed.
   */
  readonly files?: readonly { readonly dumpedPath: string; readonly fd: number }[];
  /** Time left before the migration's own time limit: no restore (nor its lazy fill) is given longer, beyond the floor. */
  readonly untilDeadlineMs?: number;
}

export interface CriuRun {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly output: string;
  /** Set when the agent killed it at its time limit (this many ms), not CRIU's own failure. */
  readonly killedAtLimitMs?: number;
}

/**
 * The CPU the dump ran on is written into the image (cpuinfo.img) and the restore checks that
 * this CPU has its instruction set. Without it CRIU checks only the FPU state, and a workload
 * whose libraries chose instructions the destination lacks (a newer instance type's) restores,
 * then dies of SIGILL after the commit, its memory lost; with it the restore fails and the
 * migration aborts with the source still there.
 */
const CPU_CHECK = ['--cpu-cap=fpu,ins'];

/** How long the guard of a lazy fill waits, once the daemon ended, for the agent to say the fill was complete. */
const LAZY_FILL_GRACE_MS = 2_000;

/**
 * How long one CRIU run may take before the agent kills it (default of `timeoutMs`), when it
 * moves little memory; the floor of memoryMoveLimitMs for those that move more.
 */
export const CRIU_TIMEOUT_MS = 120_000;

export class CriuCheckpointer {
  private readonly timeoutMs: number;
  private readonly verbosity: number;
  private readonly freeBytes: (dir: string) => number | undefined;
  private readonly lazyPages: 'auto' | 'off';
  /** Asked once: whether this kernel lets `criu lazy-pages` serve another process's faults. */
  private lazyPagesSupport?: Promise<boolean>;

  constructor(
    readonly criu: CriuInstallation,
    opts: CheckpointerOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? CRIU_TIMEOUT_MS;
    this.verbosity = opts.verbosity ?? 4;
    this.freeBytes = opts.freeBytes ?? freeBytesUnder;
    this.lazyPages = opts.lazyPages ?? 'off';
  }

  /** `criu check`: passes when the kernel offers what a basic dump/restore needs. */
  async check(): Promise<{ ok: boolean; output: string }> {
    const run = await this.run(['check']);
    return { ok: run.exitCode === 0, output: run.output.trim() };
  }

  /** Whether pre-copy can work here: the kernel tracks dirty pages (soft-dirty). */
  async supportsPreCopy(): Promise<{ ok: boolean; reason?: string }> {
    const run = await this.run(['check', '--feature', 'mem_dirty_track']);
    if (run.exitCode === 0) return { ok: true };
    const line = run.output
      .split('\n')
      .find((l) => /dirty/i.test(l))
      ?.replace(/^\s*(Warn|Error)\s*\([^)]*\):\s*/, '')
      .trim();
    return { ok: false, reason: `kernel has no dirty-page tracking (CONFIG_MEM_SOFT_DIRTY)${line ? `: ${line}` : ''}` };
  }

  /**
   * One pre-copy round while the shard keeps running: writes the pages into `dir`, relative
   * to the previous round's directory when there is one (only pages dirtied since then).
   */
  async preDump(target: DumpTarget, dir: string, prevDir?: string): Promise<void> {
    const support = await this.supportsPreCopy();
    if (!support.ok) throw new CheckpointError('PRECOPY_UNSUPPORTED', `pre-copy is not possible on this host: ${support.reason}`);
    await mkdir(dir, { recursive: true });
    await this.runOrThrow('pre-dump', dir, { limitMs: this.limitFor(target.memoryBytes, target.untilDeadlineMs) }, [
      'pre-dump',
      '-t', String(target.rootPid),
      '-D', dir,
      '--track-mem',
      ...(prevDir ? ['--prev-images-dir', relative(dir, prevDir)] : []),
      ...(target.freezeCgroup ? ['--freeze-cgroup', target.freezeCgroup] : []),
    ]);
  }

  /**
   * The final dump: the tree is left stopped (not killed) so an abort can resume it. With a
   * previous pre-dump directory only pages dirtied since then are written.
   */
  async dump(target: DumpTarget, dir: string, prevDir?: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    await this.runOrThrow('dump', dir, { limitMs: this.limitFor(target.memoryBytes, target.untilDeadlineMs) }, [
      'dump',
      '-t', String(target.rootPid),
      '-D', dir,
      '--leave-stopped',
      ...CPU_CHECK,
      ...(prevDir ? ['--prev-images-dir', relative(dir, prevDir), '--track-mem'] : []),
      ...(target.freezeCgroup ? ['--freeze-cgroup', target.freezeCgroup] : []),
    ]);
  }

  /** The time limit of a CRIU run that moves `memoryBytes` (the floor alone for none), cut at the migration's deadline. */
  private limitFor(memoryBytes: number | undefined, untilDeadlineMs: number | undefined): number {
    return memoryMoveLimitMs({ memoryBytes, floorMs: this.timeoutMs, untilDeadlineMs });
  }

  /** Whether restores here are lazy (`lazyPages: 'auto'` and the kernel has non-cooperative userfaultfd). */
  usesLazyPages(): Promise<boolean> {
    if (this.lazyPages === 'off') return Promise.resolve(false);
    this.lazyPagesSupport ??= this.run(['check', '--feature', 'uffd-noncoop']).then(
      (run) => run.exitCode === 0,
      () => false,
    );
    return this.lazyPagesSupport;
  }

  /**
   * Restores the image in `dir` detached, inside the destination cgroups; resolves to the new
   * root pid once the tree runs with all of its memory in.
   *
   * Lazily where this host can: the tree runs once its process state is back (tens of ms),
   * while `criu lazy-pages` copies its private memory in from the local image, each page on its
   * first touch or in the background, whichever comes first. The restore resolves only when the
   * daemon has put in the last page, so a migration commits only a complete copy. A daemon that
   * fails or is killed before that leaves pages it never filled, which the kernel would then
   * hand out as zeros: the tree is killed at once and the restore fails, and the migration
   * aborts with the source's stopped copy intact.
   */
  async restore(dir: string, target: RestoreTarget): Promise<RestoredTree> {
    const asked = performance.now();
    const pidFile = join(dir, 'restored.pid');
    const files = target.files ?? [];
    // Handed over as the child's fds 3, 4, ...; CRIU names a regular file by its path relative
    // to the root, without the leading slash.
    const inherit = files.flatMap((file, i) => ['--inherit-fd', `fd[${3 + i}]:${file.dumpedPath.replace(/^\/+/, '')}`]);
    const criuArgs = [
      'restore',
      '-D', dir,
      '--restore-detached',
      '--pidfile', pidFile,
      '--manage-cgroups=ignore',
      ...CPU_CHECK,
      ...inherit,
    ];
    // Every run of this restore (CRIU's, the lazy-pages daemon's, the guard's watch) may take as
    // long as copying the image's memory may: its pages files are on disk already, their sizes known.
    // The deadline is where it stands when each run starts: a CRIU run after a daemon that took
    // its whole limit to fail would otherwise get the whole share again, past the deadline.
    const memoryBytes = await imageMemoryBytes(dir);
    const limitNow = () => this.limitFor(memoryBytes, target.untilDeadlineMs === undefined ? undefined : target.untilDeadlineMs - (performance.now() - asked));
    const eagerly = async (lazyPagesSkipped?: string): Promise<RestoredTree> => ({ ...(await this.restoreEagerly(dir, criuArgs, pidFile, target, limitNow())), ...(lazyPagesSkipped ? { lazyPagesSkipped } : {}) });
    if (!(await this.usesLazyPages())) return eagerly();
    // A chain of pre-copy images cannot be restored lazily as it is (lazy-image.ts): beside it
    // goes one that can, made without copying the memory; the chain itself stays as it was.
    let lazyDir = dir;
    if (hasParentImage(dir)) {
      const made = await lazyImageOf(dir);
      if ('reason' in made) return eagerly(made.reason);
      lazyDir = made.dir;
    }
    const lazyPidFile = join(lazyDir, 'restored.pid');
    // What an earlier attempt here left would confuse the guard (and CRIU will not overwrite a pid
    // file), or an operator reading what the guard did.
    for (const name of [lazyPidFile, join(lazyDir, FILLED_MARK), join(lazyDir, GUARD_KILLED)]) await rm(name, { force: true });
    // One limit for the daemon and the guard that watches it: they start together.
    const limitMs = limitNow();
    const daemon = this.startLazyPagesDaemon(lazyDir, limitMs);
    // The guard needs only the daemon's pid: it starts while the daemon gets ready (each takes
    // 10-35 ms here, all of it downtime), and is ended before any eager fallback, which writes
    // its pid file where the guard looks.
    const guarding: Promise<{ guard: LazyFillGuard } | { failed: string }> =
      daemon.pid === undefined
        ? Promise.resolve({ failed: 'criu lazy-pages did not start' })
        : startLazyFillGuard({ daemonPid: daemon.pid, dir: lazyDir, procsFiles: target.procsFiles, graceMs: LAZY_FILL_GRACE_MS, maxWatchMs: limitMs }).then(
            (guard) => ({ guard }),
            (error: unknown) => ({ failed: (error as Error).message }),
          );
    const [ready, guarded] = await Promise.all([daemon.ready, guarding]);
    if (!ready.ok || 'failed' in guarded) {
      daemon.stop();
      if ('guard' in guarded) guarded.guard.stop();
      return eagerly(!ready.ok ? ready.reason : (guarded as { failed: string }).failed);
    }
    const { guard } = guarded;
    const lazyArgs = criuArgs.map((arg) => (arg === dir ? lazyDir : arg === pidFile ? lazyPidFile : arg));
    let pid: number;
    let running: number;
    try {
      await this.runOrThrow('restore', lazyDir, { limitMs: limitNow(), joinProcsFiles: target.procsFiles, extraFds: files.map((file) => file.fd) }, [...lazyArgs, '--lazy-pages']);
      running = performance.now();
      pid = await readRestoredPid(lazyPidFile);
    } catch (error) {
      // The tree first: once the daemon is gone, pages it had not put in read as zeros.
      await killLeftRunning(lazyPidFile);
      daemon.stop();
      guard.stop();
      throw error;
    }
    const filled = await daemon.exited;
    if (filled.exitCode !== 0) {
      killQuietly(pid);
      guard.stop();
      const log = join(lazyDir, 'criu-lazy-pages.log');
      const why = (await lastErrors(log)) || (filled.signal ? `signal ${filled.signal}` : `exit ${filled.exitCode}`);
      throw new CheckpointError('CRIU_FAILED', `criu lazy-pages stopped before the restored tree's memory was all in (${why}); the restored tree ${pid} was killed; log: ${log}`, log);
    }
    try {
      await guard.filled();
    } catch (error) {
      // The guard killed the complete copy (or will): fail the same way.
      killQuietly(pid);
      guard.stop();
      throw new CheckpointError('CRIU_FAILED', `the restored tree ${pid} was killed: ${(error as Error).message}`);
    }
    const lazyPagesMs = Math.round(performance.now() - running);
    await this.failIfGone(pid, lazyDir);
    return { pid, lazyPagesMs };
  }

  private async restoreEagerly(dir: string, criuArgs: string[], pidFile: string, target: RestoreTarget, limitMs: number): Promise<RestoredTree> {
    // An earlier attempt's (a retried restore): CRIU would refuse to write over it, and its pid is not this tree's to kill.
    await rm(pidFile, { force: true });
    try {
      await this.runOrThrow('restore', dir, { limitMs, joinProcsFiles: target.procsFiles, extraFds: (target.files ?? []).map((file) => file.fd) }, criuArgs);
    } catch (error) {
      await killLeftRunning(pidFile);
      throw error;
    }
    const pid = await readRestoredPid(pidFile);
    await this.failIfGone(pid, dir);
    return { pid, lazyPagesMs: 0 };
  }

  /**
   * A restored tree that died at once (an instruction or a library this host lacks) fails the
   * restore, so the migration aborts and the source's stopped copy runs on, instead of a commit
   * that kills that copy and leaves reconcile to start the shard afresh here. It costs one read
   * of /proc; a crash after this point is the destination's to restart.
   */
  private async failIfGone(pid: number, dir: string): Promise<void> {
    if (await restoredProcessGone(pid)) {
      throw new CheckpointError('CRIU_FAILED', `criu restore succeeded, but the restored process ${pid} had already exited; log: ${join(dir, 'criu-restore.log')}`, join(dir, 'criu-restore.log'));
    }
  }

  /**
   * Starts `criu lazy-pages` on `dir`; `ready` resolves once it listens for the restore
   * (`--status-fd`). Not ready (it exited, or said nothing within `limitMs`): `ok: false` with
   * why, the daemon stopped, and the restore goes on eagerly — nothing was restored yet.
   *
   * The daemon runs in a session of its own, so an agent that stops mid-fill (a signal to its
   * process group) does not take it along: the restored tree would then read zeros where its
   * memory was not in yet. A service manager that kills the agent's whole cgroup does take it
   * along, which the fill's guard answers (lazy-fill-guard.ts). The fill ends by itself, bounded
   * by the restore's `limitMs`. It stays in the agent's cgroup, not the shard's: its buffer can be as
   * large as the shard's largest mapping, on top of the shard's own memory.
   */
  private startLazyPagesDaemon(dir: string, limitMs: number): { pid: number | undefined; ready: Promise<{ ok: true } | { ok: false; reason: string }>; exited: Promise<CriuRun>; stop: () => void } {
    const command = criuCommandLine(this.criu, ['lazy-pages', '-D', dir, '--status-fd', '3', '-o', join(dir, 'criu-lazy-pages.log'), `-v${this.verbosity}`]);
    const { child, exited: launched } = this.launch(command.file, command.args, ['ignore', 'ignore', 'pipe', 'pipe'], true, limitMs);
    const exited = launched.then((run) => ('spawnError' in run ? { exitCode: null, signal: null, output: run.spawnError.message } : run));
    const stop = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const ready = new Promise<{ ok: true } | { ok: false; reason: string }>((resolve) => {
      // CRIU writes one NUL and closes the descriptor once it accepts the restore's connection.
      const status = child.stdio[3] as NodeJS.ReadableStream | null;
      let listening = false;
      status?.on('data', (chunk: Buffer) => {
        if (!listening && chunk.includes(0)) {
          listening = true;
          resolve({ ok: true });
        }
      });
      status?.on('error', () => undefined);
      status?.on('end', () => {
        if (!listening) stop();
      });
      void exited.then(async (run) => {
        if (listening) return;
        resolve({ ok: false, reason: `criu lazy-pages did not start (${(await lastErrors(join(dir, 'criu-lazy-pages.log'))) || run.output.trim() || (run.signal ? `signal ${run.signal}` : `exit ${run.exitCode}`)})` });
      });
    });
    return { pid: child.pid, ready, exited, stop };
  }

  private async runOrThrow(action: string, dir: string, opts: { limitMs: number; joinProcsFiles?: readonly string[]; extraFds?: readonly number[] }, args: string[]): Promise<void> {
    const logFile = join(dir, `criu-${action}.log`);
    const run = await this.run([...args, '-o', logFile, `-v${this.verbosity}`], opts.joinProcsFiles, opts.extraFds, opts.limitMs);
    if (run.exitCode === 0) return;
    if (run.killedAtLimitMs !== undefined) {
      throw new CheckpointError('CRIU_FAILED', `criu ${action} was killed (signal SIGKILL) at its time limit of ${run.killedAtLimitMs / 1000} s (what moving its memory may take, at least ${Math.round(this.timeoutMs / 1000)} s, cut at the migration's own time limit: memory-move-time.ts); log: ${logFile}`, logFile);
    }
    const why = run.exitCode === JOIN_FAILED_EXIT ? 'could not join the destination cgroups' : await lastErrors(logFile);
    if (/session leader of .* is outside of its pid namespace/.test(why)) {
      throw new CheckpointError(
        'SESSION_OUTSIDE_NAMESPACE',
        `criu ${action} refused: the workload's session leader is outside its PID namespace; start it as \`unshare --pid --fork -- setsid -- argv\` so the namespace init leads its own session (${why}); log: ${logFile}`,
        logFile,
      );
    }
    throw new CheckpointError(
      'CRIU_FAILED',
      `criu ${action} failed (${run.signal ? `signal ${run.signal}` : `exit ${run.exitCode}`}): ${why || run.output.trim() || `no output${this.fullDiskHint(dir)}`}; log: ${logFile}`,
      logFile,
    );
  }

  /**
   * CRIU that cannot write its log says nothing at all (a full disk under the images, seen in the
   * crash campaign: "exit 1: no output", and an empty log): name the disk when it is nearly full.
   */
  private fullDiskHint(dir: string): string {
    const free = this.freeBytes(dir);
    // Free space for unprivileged writers (statfs bavail): CRIU, as root, may still have had the reserve.
    return free !== undefined && free < NEARLY_FULL_BYTES ? ` (the file system under ${dir} has ${free} bytes free: CRIU may not have been able to write its log there)` : '';
  }

  /**
   * Spawns criu (through the join-cgroups shim when procs files are given) and collects its
   * output; `extraFds` become the child's fds 3, 4, ... (the shim's exec keeps them).
   */
  run(args: readonly string[], joinProcsFiles: readonly string[] = [], extraFds: readonly number[] = [], limitMs = this.timeoutMs): Promise<CriuRun> {
    const command = criuCommandLine(this.criu, args);
    const [file, argv] = inCgroups(joinProcsFiles, command.file, command.args);
    // stdin is /dev/null: restored tasks must not inherit a pipe to the agent.
    return this.launch(file, argv, ['ignore', 'pipe', 'pipe', ...extraFds], false, limitMs).exited.then((run) => {
      if ('spawnError' in run) throw new CheckpointError('CRIU_NOT_FOUND', `cannot run ${file}: ${run.spawnError.message}`);
      return run;
    });
  }

  /**
   * Spawns one CRIU process, killed if it runs longer than `limitMs`; `exited` resolves once it
   * ended, with what it wrote on stdout and stderr (where piped), or with why it could not start.
   * The limit goes into its environment too: this agent's timer dies with it, and a later agent
   * that finds the CRIU still at work kills it only once this one would have (criu-at-work.ts).
   */
  private launch(file: string, argv: readonly string[], stdio: StdioOptions, detached: boolean, limitMs: number): { child: ChildProcess; exited: Promise<CriuRun | { spawnError: Error }> } {
    const child = spawn(file, argv, { stdio, detached, env: { ...process.env, [CRIU_TIME_LIMIT_ENV]: String(limitMs) } });
    let output = '';
    const keep = (chunk: Buffer) => {
      if (output.length < 64_000) output += chunk.toString('utf8');
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let killedAtLimit = false;
    const timer = setTimeout(() => {
      killedAtLimit = child.exitCode === null && child.signalCode === null;
      child.kill('SIGKILL');
    }, limitMs);
    const exited = new Promise<CriuRun | { spawnError: Error }>((resolve) => {
      child.on('error', (spawnError) => {
        clearTimeout(timer);
        resolve({ spawnError });
      });
      child.on('close', (exitCode, signal) => {
        clearTimeout(timer);
        resolve({ exitCode, signal, output, ...(killedAtLimit ? { killedAtLimitMs: limitMs } : {}) });
      });
    });
    return { child, exited };
  }
}

/**
 * Whether the process CRIU restored is gone: no such pid, or dead (Z, X). A /proc read that
 * fails otherwise (too many open files) says nothing, and a good restore is not failed on it.
 */
async function restoredProcessGone(pid: number): Promise<boolean> {
  try {
    const state = parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'))?.state;
    return state === 'Z' || state === 'X';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ESRCH';
  }
}

/**
 * The memory a restore of `dir` moves: the sizes of its pages files and of its parent images'
 * (a pre-copy chain). A page sent in several rounds counts each time, so the limit errs long.
 * An image that cannot be listed counts as nothing (the floor): CRIU then fails on it anyway.
 */
async function imageMemoryBytes(dir: string): Promise<number> {
  let bytes = 0;
  const seen = new Set<string>();
  // A chain is a handful of rounds (pre-copy-policy.ts: at most 5 and the final); a loop of links is not followed around.
  for (let at: string | undefined = dir; at !== undefined && !seen.has(at); ) {
    seen.add(at);
    bytes += memoryImageBytes(await listImageFiles(at).catch(() => []));
    at = hasParentImage(at) ? await realpath(join(at, 'parent')).catch(() => undefined) : undefined;
  }
  return bytes;
}

/** lazyRestorableImage, with a failure (a malformed image, an I/O error) as the reason to restore eagerly: the chain is intact either way. */
async function lazyImageOf(dir: string): Promise<LazyImage> {
  try {
    return await lazyRestorableImage(dir, pageSize());
  } catch (error) {
    return { reason: `no lazy image could be made beside ${dir}: ${(error as Error).message}` };
  }
}

/** The pid CRIU wrote for the restored root. */
async function readRestoredPid(pidFile: string): Promise<number> {
  const pid = Number.parseInt((await readFile(pidFile, 'utf8')).trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) throw new CheckpointError('CRIU_FAILED', `criu restore wrote no pid to ${pidFile}`);
  return pid;
}

/**
 * After a restore that failed: kills the tree CRIU named in `pidFile`, if it did. CRIU writes that
 * file once every task exists, just before it resumes them, and kills them itself on a failure it
 * sees; but a CRIU killed at its time limit after that point (hung there) may leave them running,
 * while the restore reports a failure and nothing supervises them.
 */
async function killLeftRunning(pidFile: string): Promise<void> {
  const pid = await readRestoredPid(pidFile).catch(() => undefined);
  if (pid !== undefined) killQuietly(pid);
}

/** SIGKILL to a restored PID-namespace init: the kernel then kills everything in its namespace. */
function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** The last few `Error` lines of a CRIU log, for one readable message. */
async function lastErrors(logFile: string): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  const errors = text
    .split('\n')
    .filter((l) => /Error|BUG/.test(l) && !/RLIMIT_NOFILE/.test(l))
    .slice(-3)
    .map((l) => l.replace(/^\([0-9.]+\)\s*/, '').trim());
  return errors.join(' | ');
}
