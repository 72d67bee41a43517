/**
 * ShardKeeper: the kernel side of the agent (ShardManager) and migration's hand-over point
 * (ShardHandover). It executes what planReconcile (pure) decides, one ShardSupervisor per shard,
 * and a tick that polls adopted runs, OOM counters and log sizes. All state it needs after a
 * restart is in the cgroups themselves plus one record per shard under
 * `<stateDirectory>/shards/`; logs are under `<stateDirectory>/logs/<shardId>/`.
 */
import { join } from 'node:path';
import type { CgroupDriver, ShardLimits } from '../cgroups/driver';
import { invalidOption, shardExists, shardHeld, shardUnknown, shardNotRunning } from '../errors';
import type { ProcessProbe } from '../runner/process-probe';
import { ProcProbe } from '../runner/process-probe';
import type { BackoffPolicy } from '../runner/restart-backoff';
import { DEFAULT_BACKOFF, checkBackoffPolicy } from '../runner/restart-backoff';
import { SHARD_RECORD_VERSION, ShardRecordStore } from '../runner/shard-record';
import { pruneRemovedShardLogs } from '../runner/shard-logs';
import type { ShardStatus } from '../runner/shard-status';
import { ShardSupervisor } from '../runner/shard-supervisor';
import type { WorkloadLauncher } from '../runner/workload-launcher';
import { UnshareLauncher } from '../runner/workload-launcher';
import type { ShardEventSink } from '../shard-event';
import type { DesiredShard } from './desired-shard';
import type { ObservedShard, ReconcileAction } from './reconcile-plan';
import { planReconcile, workloadSpec } from './reconcile-plan';
import type { IncomingShard, RestartHandover, ShardHandover } from './shard-handover';
import type { DesiredShardsRead, ReconcileReport, ShardManager } from './shard-manager';

/** Shards a reconcile pass converges at once (systemd and the kubelet stop units and pods in parallel too). */
export const RECONCILE_PARALLEL = 16;

/** Runs `work` over `items`, at most `limit` at a time; results in the items' order. */
async function inBatches<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export interface ShardKeeperOptions {
  readonly driver: CgroupDriver;
  readonly sink: ShardEventSink;
  /** The agent's state directory: records in `shards/`, logs in `logs/`. */
  readonly stateDirectory: string;
  /** @default DEFAULT_BACKOFF (1 s doubling to 300 s, reset after 600 s up) */
  readonly backoff?: BackoffPolicy;
  /** How often adopted runs, OOM counters and log sizes are checked. @default 1000 */
  readonly pollIntervalMs?: number;
  /**
   * The longest a shard's logs go unchecked while they do not change: checks back off from every
   * tick to this many ticks (shard-logs.ts nextLogCheckTicks), and return to every tick once a
   * log grows. @default 5
   */
  readonly idleLogCheckTicks?: number;
  /**
   * How many ticks old the sampler's OOM counter (noteOomKills) may be and still stand in for the
   * tick's own read of it. @default 5
   */
  readonly sampledOomMaxAgeTicks?: number;
  /** Cap of each of a shard's stdout/stderr files (copy-truncate beyond it). @default 10 MiB */
  readonly logMaxBytes?: number;
  /** SIGTERM-to-SIGKILL grace when a shard is stopped by reconcile or drain. @default 10 */
  readonly graceSeconds?: number;
  readonly launcher?: WorkloadLauncher;
  readonly probe?: ProcessProbe;
  /** Event timestamps and back-off deadlines. @default () => new Date() */
  readonly clock?: () => Date;
}

type Action = ReconcileReport['actions'][number];

export class ShardKeeper implements ShardManager, ShardHandover, RestartHandover {
  private readonly supervisors = new Map<string, ShardSupervisor>();
  private readonly records: ShardRecordStore;
  private readonly deps: ConstructorParameters<typeof ShardSupervisor>[0];
  private readonly pollIntervalMs: number;
  private readonly graceSeconds: number;
  private ticker?: NodeJS.Timeout;
  private ticking = false;
  /**
   * Set by the first apply, whatever it read or did. Until then restarts are decided (back-off, events)
   * but not armed: at agent start the runs that ended while it was away, or waited in back-off,
   * may belong elsewhere now (the plan moved them, a migration's recovery is about to resume or
   * discard them), and a restart firing before the first reconcile started a shard that the
   * reconcile then stopped. The first reconcile decides: it stops what is not desired, and the
   * restarts of what is are armed for what is left of their back-off.
   */
  private reconciled = false;
  /** Serialises keeper-wide operations (start, apply, drain, hand-over) with each other. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ShardKeeperOptions) {
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
    if (!(this.pollIntervalMs >= 10)) throw invalidOption('pollIntervalMs', options.pollIntervalMs, 'use at least 10 milliseconds');
    this.graceSeconds = options.graceSeconds ?? 10;
    if (!(this.graceSeconds >= 0)) throw invalidOption('graceSeconds', options.graceSeconds, 'use 0 or more seconds');
    const logMaxBytes = options.logMaxBytes ?? 10 * 2 ** 20;
    if (!(logMaxBytes >= 1024)) throw invalidOption('logMaxBytes', options.logMaxBytes, 'use at least 1024 bytes');
    const idleLogCheckTicks = options.idleLogCheckTicks ?? 5;
    if (!(Number.isInteger(idleLogCheckTicks) && idleLogCheckTicks >= 1)) throw invalidOption('idleLogCheckTicks', options.idleLogCheckTicks, 'use a whole number of ticks, at least 1');
    const sampledOomMaxAgeTicks = options.sampledOomMaxAgeTicks ?? 5;
    if (!(sampledOomMaxAgeTicks >= 0)) throw invalidOption('sampledOomMaxAgeTicks', options.sampledOomMaxAgeTicks, 'use 0 or more ticks (0: the tick always reads the counter itself)');
    this.records = new ShardRecordStore(join(options.stateDirectory, 'shards'));
    this.deps = {
      driver: options.driver,
      launcher: options.launcher ?? new UnshareLauncher(),
      probe: options.probe ?? new ProcProbe(),
      records: this.records,
      sink: options.sink,
      clock: options.clock ?? (() => new Date()),
      backoff: checkBackoffPolicy(options.backoff ?? DEFAULT_BACKOFF),
      logRoot: join(options.stateDirectory, 'logs'),
      logMaxBytes,
      idleLogCheckTicks,
      sampledOomMaxAgeMs: sampledOomMaxAgeTicks * this.pollIntervalMs,
      restartsAllowed: () => this.reconciled,
    };
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private get driver(): CgroupDriver {
    return this.deps.driver;
  }

  private newSupervisor(desired: DesiredShard, held: boolean): ShardSupervisor {
    const s = new ShardSupervisor(this.deps, { version: SHARD_RECORD_VERSION, shardId: desired.shardId, desired, restarts: 0, consecutiveFailures: 0, oomKillsSeen: 0, held });
    this.supervisors.set(desired.shardId, s);
    return s;
  }

  start(): Promise<ReconcileReport> {
    return this.exclusive(async () => {
      const actions: Action[] = [];
      const cgroups = new Set(await this.driver.list());
      const interrupted: ShardSupervisor[] = [];
      for (const record of await this.records.loadAll()) {
        if (this.supervisors.has(record.shardId)) continue;
        const s = new ShardSupervisor(this.deps, record);
        this.supervisors.set(record.shardId, s);
        if (record.held || !cgroups.has(record.shardId)) continue; // held: migration's; no cgroup: apply decides
        if (record.stopping) {
          interrupted.push(s);
          continue;
        }
        await s.exclusive(async () => {
          try {
            const main = await this.deps.probe.findMain(await this.driver.pids(record.shardId));
            if (main) {
              await s.adoptRun(main.pid, main.startTime, { reason: 'agent-start' });
              actions.push({ kind: 'adopt', shardId: record.shardId, ok: true });
            } else if (record.pid !== undefined) {
              await s.runEndedWhileAway();
              actions.push({ kind: 'restart', shardId: record.shardId, ok: true });
            } else if (record.consecutiveFailures > 0) {
              // No run recorded: the last one's end was already reported, and the shard waited in
              // back-off when the agent went away. Reporting it again would count it twice.
              s.resumeBackoff();
              actions.push({ kind: 'restart', shardId: record.shardId, ok: true });
            }
            // Neither: no run was ever recorded here (never started, or stopped); apply decides.
          } catch (e) {
            actions.push(this.failed(s, 'adopt', e));
          }
        });
      }
      // The agent went away in the middle of a stop (reconcile, replace, drain): the stop is
      // finished (SIGTERM again, grace, SIGKILL; at once when the run has ended), not adopted nor
      // restarted, and apply decides the rest. Side by side, like a pass: graces do not add up.
      const finished = await inBatches(interrupted, RECONCILE_PARALLEL, async (s): Promise<Action> => {
        try {
          await s.exclusive(() => s.stop(this.graceSeconds));
          s.emit('stopped', { reason: 'interrupted-stop' });
          return { kind: 'stop', shardId: s.shardId, ok: true };
        } catch (e) {
          return this.failed(s, 'stop', e);
        }
      });
      actions.push(...finished);
      this.startTicker();
      return { actions, converged: actions.every((a) => a.ok) };
    });
  }

  private startTicker(): void {
    if (this.ticker) return;
    this.ticker = setInterval(() => void this.tick(), this.pollIntervalMs);
    this.ticker.unref();
  }

  /**
   * One round of checks; skipped while the previous one still runs. Only shards whose tick()
   * finds something to do get a check in their queue: an idle shard costs a few comparisons.
   */
  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const due: Promise<unknown>[] = [];
      // A check that fails (a record that cannot be saved) is reported, naming the shard; the next tick checks again.
      for (const s of this.supervisors.values()) if (s.tick()) due.push(s.exclusive(() => s.check()).catch((e) => this.failed(s, 'check', e)));
      await Promise.all(due);
    } finally {
      this.ticking = false;
    }
  }

  apply(wanted: readonly DesiredShard[] | DesiredShardsRead): Promise<ReconcileReport> {
    return this.exclusive(async () => {
      try {
        return await this.applyPass(wanted);
      } finally {
        // The first pass ends the wait however it went. One that read no desired set (the host
        // claim lapsed: the agent acts on nothing from the plan) or failed to read it (the store
        // away) leaves restarts to the keeper, as every later such pass does; kept waiting, a
        // shard that crashed here stayed down for as long as the claim or the store did.
        this.endRestartWait();
      }
    });
  }

  /** Arms the restarts decided before the first pass (reconciled), for what is left of their back-off. */
  private endRestartWait(): void {
    if (this.reconciled) return;
    this.reconciled = true;
    for (const s of this.supervisors.values()) s.releaseDeferredRestart();
  }

  private async applyPass(wanted: readonly DesiredShard[] | DesiredShardsRead): Promise<ReconcileReport> {
    const desired = typeof wanted === 'function' ? await wanted() : wanted;
    if (!desired) return { actions: [], converged: false };
    const observed = await this.observe();
    // Shards converge side by side (up to RECONCILE_PARALLEL at a time), each through its own
    // steps in order: one after another, a plan that removed ten shards whose workloads wait
    // out the stop's grace held every start, resize and hand-over behind them for 10 x 10 s.
    // The report keeps the plan's order (shards by id).
    const groups = planReconcile(desired, observed);
    const results = await inBatches(groups, RECONCILE_PARALLEL, async (steps) => {
      const done: Action[] = [];
      for (const step of steps) {
        const result = await this.execute(step, desired);
        done.push(result);
        if (!result.ok) break; // later steps of this shard depend on this one; next pass retries
      }
      return done;
    });
    const actions = results.flat();
    // Before the logs are pruned: the restarts of what the pass kept are armed at once.
    this.endRestartWait();
    if (actions.some((a) => a.kind === 'remove' && a.ok)) await this.pruneLogs();
    return { actions, converged: actions.every((a) => a.ok) };
  }

  private async observe(): Promise<ObservedShard[]> {
    const cgroups = new Set(await this.driver.list());
    const observed: ObservedShard[] = [];
    for (const [shardId, s] of this.supervisors) {
      const r = s.record;
      observed.push({ shardId, cgroup: cgroups.has(shardId), run: s.runKind(), appliedLimits: r.appliedLimits, spec: workloadSpec(r.desired) });
    }
    // cgroups under our root that no record describes (a crash between create and the first record)
    for (const shardId of cgroups) if (!this.supervisors.has(shardId)) observed.push({ shardId, cgroup: true, run: 'none' });
    return observed;
  }

  private async execute(step: ReconcileAction, desired: readonly DesiredShard[]): Promise<Action> {
    const id = step.shardId;
    let s = this.supervisors.get(id);
    try {
      switch (step.kind) {
        case 'create':
          await this.driver.create(id);
          s = s ?? this.newSupervisor(step.desired, false);
          await s.update({ desired: step.desired, appliedLimits: undefined });
          s.emit('created');
          break;
        case 'set-limits': {
          // A cgroup found without a record (crash between mkdir and the first record) gets one now.
          const want = desired.find((d) => d.shardId === id);
          if (!s && want) s = this.newSupervisor(want, false);
          if (!s) throw shardUnknown(id);
          await this.writeLimits(s, step.limits);
          break;
        }
        case 'start': {
          const sup = s ?? this.newSupervisor(step.desired, false);
          await sup.exclusive(() => sup.startRun(step.desired));
          break;
        }
        case 'replace': {
          if (!s) throw shardUnknown(id);
          const sup = s;
          await sup.exclusive(async () => {
            await sup.stop(this.graceSeconds);
            sup.emit('stopped', { reason: 'replaced' });
            // Stopped, the shard holds no more than what the old run left behind: a smaller memory limit fits now.
            if (step.limits) await this.writeLimits(sup, step.limits);
            // A new workload: the old one's failures say nothing about it (Kubernetes keys its
            // back-off by the container's spec too), so its first crash restarts after the base delay.
            await sup.update({ consecutiveFailures: 0 });
            await sup.startRun(step.desired);
          });
          break;
        }
        case 'stop':
          if (s) {
            const sup = s;
            await sup.exclusive(() => sup.stop(this.graceSeconds));
            sup.emit('stopped', { reason: 'not-desired' });
          }
          break;
        case 'remove':
          await this.removeShard(id);
          break;
      }
      return { kind: step.kind, shardId: id, ok: true };
    } catch (e) {
      return this.failed(s, step.kind, e, id);
    }
  }

  /** Writes `limits` to the shard's cgroup and records them as applied (a change of applied ones is a resize). */
  private async writeLimits(s: ShardSupervisor, limits: ShardLimits): Promise<void> {
    const had = s.record.appliedLimits !== undefined;
    await this.driver.setLimits(s.shardId, limits);
    await s.update({ appliedLimits: limits, desired: { ...s.record.desired, limits } });
    if (had) s.emit('resized', { limits });
  }

  /** Kills what is left, removes the cgroup, forgets the record. */
  private async removeShard(shardId: string): Promise<void> {
    const s = this.supervisors.get(shardId) ?? this.newSupervisor(orphan(shardId), false);
    await s.exclusive(async () => {
      await s.killLeftovers();
      const existed = await this.driver.exists(shardId);
      if (existed) await this.driver.remove(shardId);
      await this.records.delete(shardId);
      // Closed only once it is gone: a removal that fails leaves the shard to the next pass, which
      // may start it again (the plan wants it back) and needs it supervised (restarts, exits).
      s.close();
      this.supervisors.delete(shardId);
      // Last, once no sampler pass or API request can ask for it any more (they read the shards
      // in status()): whatever a reading opened while the removal was under way is closed too.
      this.driver.forget(shardId);
      if (existed) s.emit('removed');
    });
  }

  /**
   * Logs of shards gone from here stay for reading, among the newest few; older ones go, or every
   * shard id that ever ran here would keep its logs on this disk for good. Called once the whole
   * pass (apply, discard, drain) is done, in the keeper's turn: during a pass, a shard brought
   * back beside a removal has no supervisor yet while its cgroup is made, and its logs (the very
   * files its new run appends to) read as those of a shard gone.
   */
  private async pruneLogs(): Promise<void> {
    await pruneRemovedShardLogs(this.deps.logRoot, new Set(this.supervisors.keys())).catch((error: unknown) => this.failed(undefined, 'prune-logs', error));
  }

  private failed(s: ShardSupervisor | undefined, action: string, e: unknown, shardId = s?.shardId ?? ''): Action {
    const message = e instanceof Error ? e.message : String(e);
    this.options.sink.emit({
      type: 'failed',
      shardId,
      applicationId: s?.record.desired.applicationId ?? '',
      at: this.deps.clock().toISOString(),
      detail: { action, message, ...(e && typeof e === 'object' && 'code' in e ? { code: (e as { code: unknown }).code } : {}) },
    });
    return { kind: action, shardId, ok: false, error: message };
  }

  private known(shardId: string): ShardSupervisor {
    const s = this.supervisors.get(shardId);
    if (!s) throw shardUnknown(shardId);
    return s;
  }

  private notHeld(shardId: string, action: string): ShardSupervisor {
    const s = this.known(shardId);
    if (s.state === 'held') throw shardHeld(shardId, action);
    return s;
  }

  resize(shardId: string, limits: ShardLimits): Promise<void> {
    return this.exclusive(async () => {
      const s = this.notHeld(shardId, 'resize');
      await s.exclusive(async () => {
        await this.driver.setLimits(shardId, limits);
        const merged = { ...(s.record.appliedLimits ?? {}), ...limits };
        await s.update({ appliedLimits: merged, desired: { ...s.record.desired, limits: merged } });
        s.emit('resized', { limits });
      });
    });
  }

  freeze(shardId: string): Promise<void> {
    return this.exclusive(async () => {
      const s = this.notHeld(shardId, 'freeze');
      await s.exclusive(async () => {
        await this.driver.freeze(shardId);
        s.setFrozen(true);
        s.emit('frozen');
      });
    });
  }

  thaw(shardId: string): Promise<void> {
    return this.exclusive(async () => {
      const s = this.notHeld(shardId, 'thaw');
      await s.exclusive(async () => {
        await this.driver.thaw(shardId);
        s.setFrozen(false);
        s.emit('thawed');
      });
    });
  }

  drain(opts: { graceSeconds?: number } = {}): Promise<ReconcileReport> {
    const grace = opts.graceSeconds ?? this.graceSeconds;
    return this.exclusive(async () => {
      const ids = new Set([...this.supervisors.keys(), ...(await this.driver.list())]);
      // A keeper never started (the local drain: no agent runs) knows its shards by their records
      // only; each gets a supervisor here, to be stopped cleanly, and none is adopted or restarted.
      // Started first, it scheduled restarts (1 s at least) of runs that had ended, which came due
      // before the drain's turn when finding the shards took longer: launched, then drained.
      for (const record of await this.records.loadAll()) {
        if (this.supervisors.has(record.shardId)) continue;
        this.supervisors.set(record.shardId, new ShardSupervisor(this.deps, record));
        ids.add(record.shardId);
      }
      // In parallel: the grace periods run concurrently rather than adding up.
      const results = await Promise.all(
        [...ids].sort().map(async (shardId): Promise<Action[]> => {
          const s = this.supervisors.get(shardId);
          if (s?.state === 'held') return [this.failed(s, 'drain', shardHeld(shardId, 'drain'))];
          try {
            if (s) {
              await s.exclusive(() => s.stop(grace));
              s.emit('stopped', { reason: 'drain' });
            }
            await this.removeShard(shardId);
            return [{ kind: 'drain', shardId, ok: true }];
          } catch (e) {
            return [this.failed(s, 'drain', e, shardId)];
          }
        }),
      );
      const actions = results.flat();
      if (actions.some((a) => a.ok)) await this.pruneLogs();
      return { actions, converged: actions.every((a) => a.ok) };
    });
  }

  /**
   * The sampler's reading of a shard's OOM counter (Sampler onReading). The tick checks each
   * running shard for OOM kills; with a recent sampled counter it need not read the file again,
   * which at a 1 s sampling interval spares one cgroup read per shard per tick.
   */
  noteOomKills(shardId: string, oomKills: number, atSeconds: number): void {
    this.supervisors.get(shardId)?.noteOomKills(oomKills, atSeconds * 1000);
  }

  status(): ShardStatus[] {
    return [...this.supervisors.values()].map((s) => s.status()).sort((a, b) => a.shardId.localeCompare(b.shardId));
  }

  async close(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    // Each shard's in-flight operation (an exit being recorded, a restart) finishes first, so
    // nothing writes under the state directory once close() has resolved.
    await this.exclusive(async () => {
      await Promise.all([...this.supervisors.values()].map((s) => s.exclusive(async () => s.close())));
    });
  }

  prepareIncoming(desired: DesiredShard): Promise<IncomingShard> {
    return this.exclusive(async () => {
      const id = desired.shardId;
      const existing = this.supervisors.get(id);
      if (existing && existing.state !== 'held') throw shardExists(id);
      const s = existing ?? this.newSupervisor(desired, true);
      await s.exclusive(async () => {
        await s.hold();
        await this.driver.create(id);
        await this.driver.setLimits(id, desired.limits);
        await s.update({ desired, appliedLimits: desired.limits, held: true });
        s.emit('created', { reason: 'incoming-migration' });
      });
      return { procsFiles: this.driver.procsFiles(id), paths: this.driver.paths(id) };
    });
  }

  release(shardId: string): Promise<{ pid?: number }> {
    return this.exclusive(async () => {
      const s = this.known(shardId);
      return s.exclusive(async () => {
        const pid = s.state === 'running' ? s.record.pid : undefined;
        await s.hold();
        return pid === undefined ? {} : { pid };
      });
    });
  }

  adopt(shardId: string, desired?: DesiredShard): Promise<ShardStatus> {
    return this.exclusive(async () => {
      const s = this.supervisors.get(shardId) ?? (desired ? this.newSupervisor(desired, true) : undefined);
      if (!s) throw shardUnknown(shardId);
      return s.exclusive(async () => {
        if (desired) await s.update({ desired });
        const main = await this.deps.probe.findMain(await this.driver.pids(shardId));
        if (!main) throw shardNotRunning(shardId, 'no process whose innermost NSpid is 1 in its cgroup');
        await s.adoptRun(main.pid, main.startTime, { reason: 'handover' });
        return s.status();
      });
    });
  }

  /** Restart strategy, source: stops the held shard's workload (SIGTERM, grace, SIGKILL); cgroup and hold stay. */
  stopHeld(shardId: string): Promise<void> {
    return this.exclusive(async () => {
      const s = this.known(shardId);
      await s.exclusive(async () => {
        await s.stop(this.graceSeconds);
        await s.hold();
        s.emit('stopped', { reason: 'restart-migration' });
      });
    });
  }

  /** Restart strategy: a new run of a held shard in its cgroup, supervised from now on (ShardHandover docs). */
  startHeld(shardId: string, desired?: DesiredShard, opts: { keepHeld?: boolean } = {}): Promise<ShardStatus> {
    return this.exclusive(async () => {
      const s = this.supervisors.get(shardId) ?? (desired ? this.newSupervisor(desired, true) : undefined);
      if (!s) throw shardUnknown(shardId);
      return s.exclusive(async () => {
        // Kept held, the record says so before the run starts: an agent killed meanwhile must not
        // find an uncommitted copy unheld (it would adopt and supervise it).
        await s.update({ held: opts.keepHeld === true, ...(desired ? { desired } : {}) });
        await s.startRun(desired);
        // In the same turn of the keeper's queue: no reconcile pass sees the run unheld.
        if (opts.keepHeld) await s.hold();
        return s.status();
      });
    });
  }

  discard(shardId: string): Promise<void> {
    return this.exclusive(async () => {
      const s = this.supervisors.get(shardId);
      if (!s && !(await this.driver.exists(shardId))) {
        await this.records.delete(shardId);
        return;
      }
      if (s) {
        await s.exclusive(() => s.stop(0));
        s.emit('stopped', { reason: 'discarded' });
      }
      await this.removeShard(shardId);
      await this.pruneLogs();
    });
  }
}

/** A placeholder definition for a cgroup found without a record; it is only ever removed. */
function orphan(shardId: string): DesiredShard {
  return { shardId, applicationId: '', limits: {}, command: ['/bin/true'], env: {}, stateDirectory: '/nonexistent' };
}
