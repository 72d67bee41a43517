/**
 * Supervises one shard's workload: starts it, notices when it ends (the child's exit event when
 * this agent started it; bounded polling of /proc when it was adopted), reports OOM kills,
 * restarts with back-off, stops it (SIGTERM, grace, SIGKILL) and caps its logs. Every operation
 * on one shard runs through one queue, so a restart timer, a reconcile pass and a migration
 * hand-over never interleave on the same shard. Decisions come from restart-backoff.ts (pure);
 * the side effects go through the injected driver, launcher and process probe.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CgroupDriver } from '../cgroups/driver';
import type { DesiredShard } from '../reconcile/desired-shard';
import type { ShardEventSink, ShardEventType } from '../shard-event';
import type { BackoffPolicy } from './restart-backoff';
import { nextRestart } from './restart-backoff';
import type { ShardRecord, ShardRecordStore } from './shard-record';
import { capShardLogs, nextLogCheckTicks, shardLogPaths, type ShardLogPaths } from './shard-logs';
import type { ShardExit, ShardRunState, ShardStatus } from './shard-status';
import type { LaunchedRun, RunExit, WorkloadLauncher } from './workload-launcher';
import type { ProcessProbe } from './process-probe';

export interface SupervisorDeps {
  readonly driver: CgroupDriver;
  readonly launcher: WorkloadLauncher;
  readonly probe: ProcessProbe;
  readonly records: ShardRecordStore;
  readonly sink: ShardEventSink;
  readonly clock: () => Date;
  readonly backoff: BackoffPolicy;
  readonly logRoot: string;
  readonly logMaxBytes: number;
  /** The most ticks an idle shard's logs go unchecked (nextLogCheckTicks). */
  readonly idleLogCheckTicks: number;
  /** How old the sampler's OOM counter (noteOomKills) may be to stand in for the tick's own read. */
  readonly sampledOomMaxAgeMs: number;
  /**
   * Whether a restart may be armed now. False from the keeper's start until its first reconcile:
   * the shard may no longer belong here (the plan moved it, a migration holds it), so a restart
   * decided meanwhile waits (releaseDeferredRestart) for that reconcile to keep or stop it.
   * @default always
   */
  readonly restartsAllowed?: () => boolean;
}

/** The environment every workload gets under the plan's env (which wins on a clash). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class ShardSupervisor {
  private stateValue: ShardRunState;
  private adoptedValue = false;
  private frozenValue = false;
  /** Incremented whenever a run starts, is adopted, stopped or handed over: stale exit callbacks and timers compare it. */
  private token = 0;
  private launched?: LaunchedRun;
  private runStartedAtMs?: number;
  private oomDuringRun = false;
  private timer?: NodeJS.Timeout;
  private nextRestartAt?: Date;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** The shard's log files: fixed for its id, joined once rather than on every tick. */
  private readonly logs: ShardLogPaths;
  /** Ticks until the logs are checked (0: due), the gap that led there, and the bytes last seen (-1: never). */
  private logTicksLeft = 0;
  private logCheckGapTicks = 0;
  private logBytesSeen = -1;
  /** The OOM counter as the sampler last read it, and when (clock ms); NaN until it has. */
  private sampledOomKills = NaN;
  private sampledOomAtMs = NaN;
  /** The token of a restart decided while restarts were not allowed, until released (or cancelled). */
  private deferredRestartToken: number | undefined;

  constructor(
    private readonly deps: SupervisorDeps,
    private recordValue: ShardRecord,
  ) {
    this.stateValue = recordValue.held ? 'held' : 'stopped';
    this.logs = shardLogPaths(deps.logRoot, recordValue.shardId);
  }

  get shardId(): string {
    return this.recordValue.shardId;
  }
  get record(): ShardRecord {
    return this.recordValue;
  }
  get state(): ShardRunState {
    return this.stateValue;
  }

  /** Runs `fn` after every operation queued before it on this shard (one at a time per shard). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** The reconcile diff's view: is a workload alive, waiting for a restart, absent, or held? */
  runKind(): 'running' | 'waiting' | 'none' | 'held' {
    switch (this.stateValue) {
      case 'held':
        return 'held';
      case 'running':
      case 'starting':
        return 'running';
      case 'backoff':
      case 'crash-loop':
        return 'waiting';
      default:
        return 'none';
    }
  }

  status(): ShardStatus {
    const r = this.recordValue;
    const live = this.stateValue === 'running' || this.stateValue === 'held';
    return {
      shardId: r.shardId,
      applicationId: r.desired.applicationId,
      state: this.stateValue,
      ...(live && r.pid !== undefined ? { pid: r.pid } : {}),
      ...(live && r.startedAt !== undefined ? { startedAt: r.startedAt } : {}),
      restarts: r.restarts,
      ...(r.lastExit ? { lastExit: r.lastExit } : {}),
      ...(this.nextRestartAt ? { nextRestartAt: this.nextRestartAt.toISOString() } : {}),
      adopted: this.adoptedValue,
      frozen: this.frozenValue,
      limits: r.appliedLimits ?? r.desired.limits,
    };
  }

  async update(patch: Partial<Omit<ShardRecord, 'version' | 'shardId'>>): Promise<void> {
    this.recordValue = { ...this.recordValue, ...patch };
    await this.deps.records.save(this.recordValue);
  }

  /**
   * Records `patch` where the run has already changed (it ended, was OOM-killed, is restarted)
   * and supervision must go on whatever the disk says: in memory at once, on disk if it can. A
   * save that fails (the state directory's disk full) is a failed event naming the shard, and the
   * next save writes the whole record. Thrown, it left the shard `running` with no process and no
   * restart, and, from an exit or the restart timer, rejected with nobody to catch it.
   */
  private async recordOrReport(patch: Partial<Omit<ShardRecord, 'version' | 'shardId'>>, what: string): Promise<void> {
    try {
      await this.update(patch);
    } catch (e) {
      this.emit('failed', { action: 'record', what, message: (e as Error).message });
    }
  }

  /** Work started from an exit or a timer has no caller to throw to: what still fails becomes a failed event. */
  private reportUnexpected(action: string): (e: unknown) => void {
    return (e) => this.emit('failed', { action, message: (e as Error).message });
  }

  emit(type: ShardEventType, detail: Record<string, unknown> = {}): void {
    this.deps.sink.emit({ type, shardId: this.shardId, applicationId: this.recordValue.desired.applicationId, at: this.deps.clock().toISOString(), detail });
  }

  setFrozen(frozen: boolean): void {
    this.frozenValue = frozen;
  }

  /**
   * Starts a new run of `desired` (or of the recorded definition). Leftover processes in the
   * cgroup (a run whose init died while the agent was away) are killed first, so exactly one
   * run exists. Throws (WORKLOAD_START_FAILED, or the driver's error) when nothing started.
   */
  async startRun(desired?: DesiredShard): Promise<void> {
    if (desired) await this.update({ desired });
    const d = this.recordValue.desired;
    const token = ++this.token;
    this.cancelTimer();
    this.stateValue = 'starting';
    this.adoptedValue = false;
    this.checkLogsSoon();
    const shardState = join(d.stateDirectory, d.shardId);
    let run: LaunchedRun;
    // Everything up to the launch can fail too (leftovers that will not die, a state directory
    // that cannot be made, a record that cannot be saved): the shard must then read 'stopped',
    // not 'starting', or reconcile counts it as running and never plans the start again.
    try {
      await this.killLeftovers();
      await mkdir(shardState, { recursive: true });
      const oomKills = await this.oomKills();
      await this.update({ oomKillsSeen: oomKills ?? this.recordValue.oomKillsSeen, pid: undefined, pidStartTime: undefined, stopping: undefined });
      run = await this.deps.launcher.launch({
        shardId: d.shardId,
        command: d.command,
        env: {
          PATH: DEFAULT_PATH,
          SHARDFORM_SHARD_ID: d.shardId,
          SHARDFORM_APPLICATION_ID: d.applicationId,
          SHARDFORM_STATE_DIR: shardState,
          ...d.env,
        },
        workingDirectory: d.workingDirectory ?? shardState,
        procsFiles: this.deps.driver.procsFiles(d.shardId),
        logs: this.logs,
        pidsInShard: () => this.deps.driver.pids(d.shardId),
      });
    } catch (e) {
      this.stateValue = 'stopped';
      await this.killLeftovers().catch(() => undefined);
      throw e;
    }
    this.launched = run;
    this.runStartedAtMs = this.deps.clock().getTime();
    this.oomDuringRun = false;
    this.stateValue = 'running';
    const startedAt = this.deps.clock().toISOString();
    // The run exists now and its exit must be watched whatever the disk says: a thrown save left
    // it 'running' with no exit handler, so its end was never noticed nor restarted. On disk the
    // record then says no run (saved above), which a restarted agent adopts by the cgroup's pids.
    await this.recordOrReport({ pid: run.pid, pidStartTime: run.startTime, startedAt }, 'started');
    this.emit('started', { pid: run.pid ?? null, restarts: this.recordValue.restarts });
    void run.exit.then((exit) => this.exclusive(() => this.onChildExit(token, exit))).catch(this.reportUnexpected('exit'));
  }

  /** Takes over a live run found in the cgroup (agent restart, or migration's hand-over). */
  async adoptRun(pid: number, startTime: number, detail: Record<string, unknown>): Promise<void> {
    ++this.token;
    this.cancelTimer();
    this.launched = undefined;
    const sameRun = this.recordValue.pid === pid && this.recordValue.pidStartTime === startTime;
    this.runStartedAtMs = sameRun && this.recordValue.startedAt ? Date.parse(this.recordValue.startedAt) : this.deps.clock().getTime();
    this.oomDuringRun = false;
    this.stateValue = 'running';
    this.adoptedValue = true;
    this.checkLogsSoon();
    await this.update({
      pid,
      pidStartTime: startTime,
      held: false,
      stopping: undefined,
      startedAt: sameRun && this.recordValue.startedAt ? this.recordValue.startedAt : this.deps.clock().toISOString(),
    });
    this.frozenValue = await this.deps.driver.isFrozen(this.shardId).catch(() => false);
    this.emit('adopted', { pid, sameRun, ...detail });
  }

  /** The recorded run is gone (found so on agent start): report it and schedule a restart. */
  async runEndedWhileAway(): Promise<void> {
    ++this.token;
    this.runStartedAtMs = this.recordValue.startedAt ? Date.parse(this.recordValue.startedAt) : this.deps.clock().getTime();
    this.stateValue = 'running';
    await this.runEnded(undefined);
  }

  /**
   * Found on agent start with no run recorded but failures counted: the last run ended and was
   * reported (exited, restarting) by the agent before, which then went away while the shard
   * waited in back-off. The wait starts over from now at the same attempt; the exit is not
   * reported again, nor counted again, and lastExit keeps its known status.
   */
  resumeBackoff(): void {
    ++this.token;
    const decision = nextRestart(this.deps.backoff, this.recordValue.consecutiveFailures - 1, 0);
    this.stateValue = decision.crashLoop ? 'crash-loop' : 'backoff';
    this.adoptedValue = false;
    this.scheduleRestart(decision.delaySeconds);
  }

  private async onChildExit(token: number, exit: RunExit): Promise<void> {
    if (token !== this.token || this.closed) return;
    this.launched = undefined;
    const { pid, pidStartTime } = this.recordValue;
    // unshare exits only after its child (the namespace init); if someone killed unshare alone,
    // the workload still runs: keep supervising it by polling, like an adopted run.
    if (pid !== undefined && pidStartTime !== undefined && (await this.deps.probe.alive(pid, pidStartTime))) return;
    await this.runEnded(exit);
  }

  /**
   * The keeper's tick, without I/O: counts the tick for the log schedule and says whether
   * check() has anything to do now. On an idle host most ticks have nothing to do: the logs
   * are not due, a run this agent started reports its exit as an event, and the OOM counter
   * is known from the sampler and unchanged. Such a tick costs the shard no promise, closure
   * or turn in its queue.
   */
  tick(): boolean {
    if (this.closed || this.stateValue === 'held') return false;
    if (this.logTicksLeft > 0) this.logTicksLeft -= 1;
    if (this.logTicksLeft === 0) return true;
    if (this.stateValue !== 'running') return false;
    if (!this.launched) return true; // an adopted run: its liveness is polled
    const sampled = this.recentSampledOomKills();
    return sampled === undefined || sampled > this.recordValue.oomKillsSeen;
  }

  /** The tick's work, in the shard's queue: the log cap when due, an adopted run's liveness, OOM kills while running. */
  async check(): Promise<void> {
    if (this.closed || this.stateValue === 'held') return;
    if (this.logTicksLeft === 0) await this.checkLogs();
    if (this.stateValue !== 'running') return;
    const { pid, pidStartTime } = this.recordValue;
    const token = this.token;
    if (!this.launched && pid !== undefined && pidStartTime !== undefined && !(await this.deps.probe.alive(pid, pidStartTime))) {
      if (token === this.token) await this.runEnded(undefined);
      return;
    }
    const kills = this.recentSampledOomKills() ?? (await this.oomKills());
    if (kills !== undefined && kills > this.recordValue.oomKillsSeen) {
      this.oomDuringRun = true;
      await this.reportOom(kills, true);
    }
  }

  /**
   * The sampler's reading of the OOM counter (ShardKeeper.noteOomKills): the tick uses it instead
   * of reading memory.events / memory.oom_control again, as long as it is recent.
   */
  noteOomKills(kills: number, atMs: number): void {
    this.sampledOomKills = kills;
    this.sampledOomAtMs = atMs;
  }

  /** The sampled counter if at most sampledOomMaxAgeMs old and taken during this run; else undefined (read it). */
  private recentSampledOomKills(): number | undefined {
    const at = this.sampledOomAtMs;
    if (!(this.deps.clock().getTime() - at <= this.deps.sampledOomMaxAgeMs)) return undefined;
    if (this.runStartedAtMs !== undefined && at < this.runStartedAtMs) return undefined;
    return this.sampledOomKills;
  }

  /** Caps the logs, and spaces the next check (in ticks, counted by tick()) by whether they changed. */
  private async checkLogs(): Promise<void> {
    const seen = await capShardLogs(this.logs, this.deps.logMaxBytes).catch(() => undefined);
    const changed = seen === undefined || seen.rotated || seen.bytes !== this.logBytesSeen;
    this.logBytesSeen = seen?.bytes ?? -1;
    this.logCheckGapTicks = nextLogCheckTicks(changed, this.logCheckGapTicks, this.deps.idleLogCheckTicks);
    this.logTicksLeft = this.logCheckGapTicks;
  }

  /** A run starts or is taken over: its logs are checked at the next tick, and then as they change. */
  private checkLogsSoon(): void {
    this.logTicksLeft = 0;
    this.logCheckGapTicks = 0;
  }

  private async reportOom(kills: number, stillRunning: boolean): Promise<void> {
    const newKills = kills - this.recordValue.oomKillsSeen;
    await this.recordOrReport({ oomKillsSeen: kills }, 'oom-killed');
    this.emit('oom-killed', { oomKills: kills, newKills, memoryBytes: this.recordValue.appliedLimits?.memoryBytes ?? null, stillRunning });
  }

  /** `exit` undefined: not our child, the status is unknown. */
  private async runEnded(exit: RunExit | undefined): Promise<void> {
    this.launched = undefined;
    const kills = await this.oomKills();
    if (kills !== undefined && kills > this.recordValue.oomKillsSeen) {
      this.oomDuringRun = true;
      await this.reportOom(kills, false);
    }
    const now = this.deps.clock();
    const runSeconds = Math.max(0, (now.getTime() - (this.runStartedAtMs ?? now.getTime())) / 1000);
    // util-linux 2.38 unshare cannot re-raise SIGKILL (signal(SIGKILL, SIG_DFL) fails with EINVAL,
    // so it prints "sigprocmask unblock failed" and exits 1): an OOM-killed workload shows as
    // exit 1. The OOM killer always sends SIGKILL (mm/oom_kill.c), so with the cgroup's OOM
    // counter risen during the run, exit 1 is read as SIGKILL and marked inferred.
    const inferred = exit !== undefined && this.oomDuringRun && exit.signal === null && exit.exitCode === 1;
    const code = inferred ? null : (exit?.exitCode ?? null);
    const signal = inferred ? 'SIGKILL' : (exit?.signal ?? null);
    const lastExit: ShardExit = { exitCode: code, signal, at: now.toISOString(), oomKilled: this.oomDuringRun };
    this.emit('exited', { exitCode: code, signal, runSeconds, statusKnown: exit !== undefined, ...(inferred ? { signalInferred: true } : {}), oomKilled: this.oomDuringRun });
    const decision = nextRestart(this.deps.backoff, this.recordValue.consecutiveFailures, runSeconds);
    await this.recordOrReport({ lastExit, consecutiveFailures: decision.attempt, pid: undefined, pidStartTime: undefined }, 'exited');
    this.stateValue = decision.crashLoop ? 'crash-loop' : 'backoff';
    this.adoptedValue = false;
    this.emit(decision.crashLoop ? 'crash-loop' : 'restarting', { attempt: decision.attempt, delaySeconds: decision.delaySeconds });
    this.scheduleRestart(decision.delaySeconds);
  }

  private scheduleRestart(delaySeconds: number): void {
    if (this.closed) return;
    this.nextRestartAt = new Date(this.deps.clock().getTime() + delaySeconds * 1000);
    if (this.deps.restartsAllowed && !this.deps.restartsAllowed()) {
      this.deferredRestartToken = this.token;
      return;
    }
    this.armRestart(delaySeconds);
  }

  /**
   * Arms the restart decided while restarts were not allowed (before the keeper's first
   * reconcile), for what is left of its back-off; nothing if that reconcile stopped, replaced
   * or removed the shard meanwhile (it changed the token, or cancelled the restart).
   */
  releaseDeferredRestart(): void {
    const token = this.deferredRestartToken;
    this.deferredRestartToken = undefined;
    if (token === undefined || token !== this.token || this.closed || !this.nextRestartAt) return;
    this.armRestart(Math.max(0, (this.nextRestartAt.getTime() - this.deps.clock().getTime()) / 1000));
  }

  private armRestart(delaySeconds: number): void {
    const token = this.token;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.exclusive(async () => {
        if (token !== this.token || this.closed) return;
        this.nextRestartAt = undefined;
        await this.recordOrReport({ restarts: this.recordValue.restarts + 1 }, 'restarts');
        try {
          await this.startRun();
        } catch (e) {
          // A restart that cannot even start is one more failed run: back off further.
          this.emit('failed', { action: 'restart', message: (e as Error).message });
          this.runStartedAtMs = this.deps.clock().getTime();
          this.stateValue = 'running';
          await this.runEnded({ exitCode: null, signal: null });
        }
      }).catch(this.reportUnexpected('restart'));
    }, delaySeconds * 1000);
    this.timer.unref();
  }

  private cancelTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.deferredRestartToken = undefined;
    this.nextRestartAt = undefined;
  }

  /**
   * Stops the run on purpose: SIGTERM to every process of the shard, up to `graceSeconds` for
   * them to leave, then SIGKILL. A frozen cgroup is thawed first: cgroup v1 frozen tasks do not
   * act on signals until thawed (Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst).
   * A PID-namespace init ignores SIGTERM unless it installed a handler (pid_namespaces(7)), so a
   * workload without one takes the whole grace period and then SIGKILL, which is always delivered
   * from an ancestor namespace.
   */
  async stop(graceSeconds: number): Promise<void> {
    ++this.token;
    this.cancelTimer();
    this.launched?.detach();
    this.launched = undefined;
    this.stateValue = 'stopping';
    // On disk before the first signal: an agent killed from here until the stop is recorded done
    // left a record naming a run, whose end the next agent took for a crash and restarted. A
    // record that cannot be written (disk full) is reported and the stop goes on: a shard the
    // plan removed, a drain or a migration's release must not keep running for a full disk.
    await this.recordOrReport({ stopping: true }, 'stopping');
    const id = this.shardId;
    if (await this.deps.driver.exists(id)) {
      // A graceful stop thaws first, so the workload can run its SIGTERM handler. Without grace
      // (a migrated source released, a discard) a frozen shard is killed while frozen: killAll
      // signals first and thaws after where the freezer needs it, so no instruction of the
      // workload runs in between — the source must not run on beside its restored copy.
      const frozen = this.frozenValue || (await this.deps.driver.isFrozen(id).catch(() => false));
      if (frozen && graceSeconds > 0) await this.deps.driver.thaw(id);
      this.frozenValue = false;
      if ((await this.deps.driver.pids(id)).length > 0) {
        if (graceSeconds > 0) {
          await this.deps.driver.killAll(id, 'SIGTERM');
          await this.waitEmpty(graceSeconds * 1000);
        }
        await this.killLeftovers();
      }
      // Killed while frozen, the cgroup may still be (v2 kills frozen tasks without a thaw); it
      // is empty now, and a next run in it (a replace) must not start frozen.
      if (frozen && graceSeconds <= 0) await this.deps.driver.thaw(id);
    }
    this.stateValue = 'stopped';
    this.adoptedValue = false;
    // No restart is due once stopped on purpose, so no failures are left to back off from: kept,
    // a record with no run and failures counted reads as "waiting in back-off" to a restarted
    // agent (ShardKeeper.start), which then started again a shard reconcile or a drain had stopped.
    await this.update({ pid: undefined, pidStartTime: undefined, consecutiveFailures: 0, stopping: undefined });
  }

  /** SIGKILL whatever is in the cgroup and wait (bounded) until the kernel has emptied it. */
  async killLeftovers(): Promise<void> {
    const id = this.shardId;
    if (!(await this.deps.driver.exists(id))) return;
    if ((await this.deps.driver.pids(id)).length === 0) return;
    await this.deps.driver.killAll(id, 'SIGKILL');
    if (!(await this.waitEmpty(5000))) throw new Error(`shard ${id}: processes still in the cgroup 5 s after SIGKILL`);
  }

  private async waitEmpty(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ((await this.deps.driver.pids(this.shardId)).length === 0) return true;
      if (Date.now() >= deadline) return false;
      await sleep(20);
    }
  }

  /** Migration takes the shard: stop supervising without touching its processes or cgroup. */
  async hold(): Promise<void> {
    ++this.token;
    this.cancelTimer();
    this.launched?.detach();
    this.launched = undefined;
    this.stateValue = 'held';
    this.adoptedValue = false;
    await this.update({ held: true });
  }

  /** Stops supervising (agent shutdown); the workload keeps running. */
  close(): void {
    this.closed = true;
    ++this.token;
    this.cancelTimer();
    this.launched?.detach();
    this.launched = undefined;
  }

  private async oomKills(): Promise<number | undefined> {
    try {
      return await this.deps.driver.oomKills(this.shardId);
    } catch {
      return undefined;
    }
  }
}
