/**
 * In-memory stand-ins for the keeper's adapters (cgroup driver, launcher, process probe), so the
 * keeper's logic is unit-tested without root. The real ones are exercised by
 * test/integration/runner.test.ts on the kernel.
 */
import type { CgroupDriver, ShardLimits, ShardUsage } from '../../host-agent/cgroups/driver';
import { usage } from '../helpers/agent-fakes';
import type { ProcessProbe } from '../../host-agent/runner/process-probe';
import type { LaunchRequest, LaunchedRun, RunExit, WorkloadLauncher } from '../../host-agent/runner/workload-launcher';

interface FakeCgroup {
  limits: ShardLimits;
  pids: number[];
  frozen: boolean;
  oomKills: number;
}

export class FakeDriver implements CgroupDriver {
  readonly layout = 'v2' as const;
  readonly hostRoot = 'shardform/test-host';
  readonly cgroups = new Map<string, FakeCgroup>();
  /** Method name, or `method:shardId` for one shard's calls -> how many next calls throw. */
  readonly failNext = new Map<string, number>();

  private maybeFail(method: string, shardId: string): void {
    // One shard's key first: a pass converges shards side by side, so "the next call" may be any shard's.
    for (const key of [`${method}:${shardId}`, method]) {
      const n = this.failNext.get(key) ?? 0;
      if (n > 0) {
        this.failNext.set(key, n - 1);
        throw new Error(`${method}(${shardId}): injected failure`);
      }
    }
  }
  private get(shardId: string): FakeCgroup {
    const c = this.cgroups.get(shardId);
    if (!c) throw new Error(`no cgroup ${shardId}`);
    return c;
  }
  async create(shardId: string) {
    this.maybeFail('create', shardId);
    if (!this.cgroups.has(shardId)) this.cgroups.set(shardId, { limits: {}, pids: [], frozen: false, oomKills: 0 });
  }
  async remove(shardId: string) {
    this.maybeFail('remove', shardId);
    if (this.cgroups.get(shardId)?.pids.length) throw new Error(`cgroup ${shardId} is busy`);
    this.cgroups.delete(shardId);
  }
  async exists(shardId: string) {
    return this.cgroups.has(shardId);
  }
  async list() {
    return [...this.cgroups.keys()].sort();
  }
  async setLimits(shardId: string, limits: ShardLimits) {
    this.maybeFail('setLimits', shardId);
    Object.assign(this.get(shardId).limits, limits);
  }
  async readLimits(shardId: string) {
    return { ...this.get(shardId).limits };
  }
  async freeze(shardId: string) {
    this.get(shardId).frozen = true;
  }
  async thaw(shardId: string) {
    this.get(shardId).frozen = false;
  }
  async isFrozen(shardId: string) {
    return this.get(shardId).frozen;
  }
  /** Set by the fake launcher so that killing a cgroup ends its run. */
  onKill?: (shardId: string, signal: NodeJS.Signals) => void;
  async killAll(shardId: string, signal: NodeJS.Signals = 'SIGKILL') {
    this.onKill?.(shardId, signal);
  }
  async pids(shardId: string) {
    return [...(this.cgroups.get(shardId)?.pids ?? [])];
  }
  async usage(shardId: string): Promise<ShardUsage> {
    return usage({ oomKills: this.get(shardId).oomKills });
  }
  async oomKills(shardId: string): Promise<number> {
    return this.get(shardId).oomKills;
  }
  /** Shard ids forget() was called with, in order. */
  readonly forgotten: string[] = [];
  forget(shardId: string): void {
    this.forgotten.push(shardId);
  }
  closed = false;
  close(): void {
    this.closed = true;
  }
  procsFiles(shardId: string) {
    return [`/fake/${shardId}/cgroup.procs`];
  }
  paths(shardId: string) {
    return { unified: `/fake/${shardId}` };
  }
}

interface FakeRun {
  shardId: string;
  pid: number;
  resolve(exit: RunExit): void;
  detached: boolean;
}

/** Starts pretend workloads: each gets a fresh pid in its fake cgroup; tests end them with `exit`. */
export class FakeLauncher implements WorkloadLauncher, ProcessProbe {
  private nextPid = 1000;
  readonly runs: FakeRun[] = [];
  readonly requests: LaunchRequest[] = [];
  /** Pids alive (pid -> start time). */
  readonly alivePids = new Map<number, number>();
  failNext = 0;

  constructor(private readonly driver: FakeDriver) {
    driver.onKill = (shardId, signal) => {
      if (signal !== 'SIGKILL') return; // like a PID-namespace init without a SIGTERM handler
      for (const run of this.runs.filter((r) => r.shardId === shardId && this.alivePids.has(r.pid))) this.exit(run.pid, { exitCode: null, signal: 'SIGKILL' });
    };
  }

  async launch(request: LaunchRequest): Promise<LaunchedRun> {
    this.requests.push(request);
    if (this.failNext > 0) {
      this.failNext -= 1;
      throw new Error('spawn failed (injected)');
    }
    const pid = this.nextPid++;
    let resolve!: (exit: RunExit) => void;
    const exit = new Promise<RunExit>((r) => (resolve = r));
    const run: FakeRun = { shardId: request.shardId, pid, resolve, detached: false };
    this.runs.push(run);
    this.alivePids.set(pid, pid * 10);
    this.driver.cgroups.get(request.shardId)?.pids.push(pid);
    return { pid, startTime: pid * 10, exit, detach: () => (run.detached = true) };
  }

  /** Ends a run as the kernel would: the process leaves its cgroup and its parent sees the status. */
  exit(pid: number, status: RunExit = { exitCode: 1, signal: null }): void {
    const run = this.runs.find((r) => r.pid === pid);
    if (!run) throw new Error(`no run ${pid}`);
    this.alivePids.delete(pid);
    const c = this.driver.cgroups.get(run.shardId);
    if (c) c.pids = c.pids.filter((p) => p !== pid);
    run.resolve(status);
  }

  latest(shardId: string): FakeRun | undefined {
    return [...this.runs].reverse().find((r) => r.shardId === shardId);
  }

  async findMain(pids: readonly number[]) {
    const pid = pids.find((p) => this.alivePids.has(p));
    return pid === undefined ? undefined : { pid, startTime: this.alivePids.get(pid)! };
  }
  async alive(pid: number, startTime: number) {
    return this.alivePids.get(pid) === startTime;
  }
}

/** Polls `condition` until it holds; fails after `timeoutMs` (a bound, never a timing assertion). */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
