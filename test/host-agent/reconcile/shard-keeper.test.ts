import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { REMOVED_SHARD_LOGS_KEPT } from '../../../host-agent/runner/shard-logs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';
import { ShardKeeper } from '../../../host-agent/reconcile/shard-keeper';
import { MemoryEventSink } from '../../../host-agent/shard-event';
import { HostAgentError, memoryInUse } from '../../../host-agent/errors';
import { ShardRecordStore } from '../../../host-agent/runner/shard-record';
import { FakeDriver, FakeLauncher, waitFor } from '../fakes';

describe('ShardKeeper (fake driver and launcher)', () => {
  let dir: string;
  let driver: FakeDriver;
  let launcher: FakeLauncher;
  let sink: MemoryEventSink;
  const keepers: ShardKeeper[] = [];
  const desired = (shardId: string, over: Partial<DesiredShard> = {}): DesiredShard => ({
    shardId,
    applicationId: 'web',
    limits: { cpuCores: 0.5, memoryBytes: 64 * 2 ** 20 },
    command: ['/bin/sleep', '1000'],
    env: {},
    stateDirectory: join(dir, 'app-state'),
    ...over,
  });
  const keeper = (backoff = { baseSeconds: 0.01, ceilingSeconds: 0.04, resetAfterSeconds: 60 }, pollIntervalMs = 20) => {
    const k = new ShardKeeper({ driver, sink, stateDirectory: join(dir, 'agent'), launcher, probe: launcher, backoff, pollIntervalMs, graceSeconds: 0 });
    keepers.push(k);
    return k;
  };

  /** Crashes the shard's run `times` times (exit 3), waiting for each restart. */
  const crashAndRestart = async (shardId: string, times: number) => {
    for (let i = 0; i < times; i += 1) {
      const pid = launcher.latest(shardId)!.pid;
      launcher.exit(pid, { exitCode: 3, signal: null });
      await waitFor(() => launcher.latest(shardId)!.pid !== pid, `restart ${i + 1}`);
    }
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'keeper-'));
    driver = new FakeDriver();
    launcher = new FakeLauncher(driver);
    sink = new MemoryEventSink();
  });
  afterEach(async () => {
    await Promise.all(keepers.splice(0).map((k) => k.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates, limits and starts desired shards, and a second apply changes nothing', async () => {
    const k = keeper();
    await k.start();
    const first = await k.apply([desired('web-0')]);
    expect(first).toEqual({
      actions: [
        { kind: 'create', shardId: 'web-0', ok: true },
        { kind: 'set-limits', shardId: 'web-0', ok: true },
        { kind: 'start', shardId: 'web-0', ok: true },
      ],
      converged: true,
    });
    expect(driver.cgroups.get('web-0')?.limits).toEqual({ cpuCores: 0.5, memoryBytes: 64 * 2 ** 20 });
    expect(k.status()).toMatchObject([{ shardId: 'web-0', state: 'running', pid: 1000, restarts: 0, adopted: false }]);
    expect(launcher.requests[0]).toMatchObject({
      command: ['/bin/sleep', '1000'],
      workingDirectory: join(dir, 'app-state', 'web-0'),
      env: { SHARDFORM_SHARD_ID: 'web-0', SHARDFORM_STATE_DIR: join(dir, 'app-state', 'web-0') },
    });
    expect(await k.apply([desired('web-0')])).toEqual({ actions: [], converged: true });
    expect(launcher.runs).toHaveLength(1);
  });

  it('reports a failed action, leaves the rest of that shard for the next pass, and converges then', async () => {
    const k = keeper();
    await k.start();
    driver.failNext.set('setLimits:web-0', 1);
    const first = await k.apply([desired('web-0'), desired('web-1')]);
    expect(first.converged).toBe(false);
    expect(first.actions.filter((a) => a.shardId === 'web-0')).toEqual([
      { kind: 'create', shardId: 'web-0', ok: true },
      { kind: 'set-limits', shardId: 'web-0', ok: false, error: 'setLimits(web-0): injected failure' },
    ]);
    expect(first.actions.filter((a) => a.shardId === 'web-1').every((a) => a.ok)).toBe(true);
    expect(sink.ofType('failed', 'web-0')[0]?.detail).toEqual({ action: 'set-limits', message: 'setLimits(web-0): injected failure' });
    const second = await k.apply([desired('web-0'), desired('web-1')]);
    expect(second).toEqual({
      actions: [
        { kind: 'set-limits', shardId: 'web-0', ok: true },
        { kind: 'start', shardId: 'web-0', ok: true },
      ],
      converged: true,
    });
  });

  it('retries a start that failed to spawn on the next pass', async () => {
    const k = keeper();
    await k.start();
    launcher.failNext = 1;
    expect((await k.apply([desired('web-0')])).actions.at(-1)).toEqual({ kind: 'start', shardId: 'web-0', ok: false, error: 'spawn failed (injected)' });
    expect(k.status()[0]?.state).toBe('stopped');
    expect((await k.apply([desired('web-0')])).actions).toEqual([{ kind: 'start', shardId: 'web-0', ok: true }]);
  });

  it('retries a start that failed before the spawn (state directory not creatable) on the next pass, not counting it as running', async () => {
    const k = keeper();
    await k.start();
    writeFileSync(join(dir, 'not-a-dir'), '');
    const bad = desired('web-0', { stateDirectory: join(dir, 'not-a-dir') });
    const first = await k.apply([bad]);
    expect(first.actions.at(-1)).toMatchObject({ kind: 'start', shardId: 'web-0', ok: false });
    expect(k.status()[0]?.state).toBe('stopped');
    // Same plan, next pass: the start is planned (and fails) again, the host is not reported converged.
    const second = await k.apply([bad]);
    expect(second).toMatchObject({ actions: [{ kind: 'start', shardId: 'web-0', ok: false }], converged: false });
    expect(launcher.runs).toHaveLength(0);
  });

  it('restarts a crashed workload with back-off, counts restarts and enters crash-loop at the ceiling', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    await crashAndRestart('web-0', 3);
    expect(sink.ofType('restarting', 'web-0').map((e) => e.detail)).toEqual([
      { attempt: 1, delaySeconds: 0.01 },
      { attempt: 2, delaySeconds: 0.02 },
    ]);
    expect(sink.ofType('crash-loop', 'web-0').map((e) => e.detail)).toEqual([{ attempt: 3, delaySeconds: 0.04 }]);
    expect(sink.ofType('exited', 'web-0')[0]?.detail).toMatchObject({ exitCode: 3, signal: null, statusKnown: true, oomKilled: false });
    await waitFor(() => k.status()[0]?.state === 'running', 'running again');
    expect(k.status()[0]).toMatchObject({ restarts: 3, lastExit: { exitCode: 3, signal: null, oomKilled: false } });
  });

  it('starts the back-off over for a replaced workload: the failures of the old command do not count against the new one', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    await crashAndRestart('web-0', 3);
    expect(sink.ofType('crash-loop', 'web-0')).toHaveLength(1);
    // The operator fixes the command; the new one crashes once.
    expect((await k.apply([desired('web-0', { command: ['/bin/sleep', '2000'] })])).actions).toEqual([{ kind: 'replace', shardId: 'web-0', ok: true }]);
    launcher.exit(launcher.latest('web-0')!.pid, { exitCode: 1, signal: null });
    // Its restart decision is emitted after the exit is recorded: waited for, not the exit alone.
    await waitFor(() => sink.ofType('restarting', 'web-0').length === 3, 'the new run\'s restart decided');
    expect(sink.ofType('restarting', 'web-0').at(-1)?.detail).toEqual({ attempt: 1, delaySeconds: 0.01 });
    expect(sink.ofType('crash-loop', 'web-0')).toHaveLength(1);
  });

  it('replaces a workload with one that needs less memory: the smaller limit is written between the stop and the new start', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    // As the driver does (MEMORY_IN_USE): a memory limit below what the running workload uses is refused.
    const setLimits = driver.setLimits.bind(driver);
    jest.spyOn(driver, 'setLimits').mockImplementation(async (shardId, limits) => {
      const inUse = (await driver.pids(shardId)).length > 0 ? 48 * 2 ** 20 : 0;
      if (typeof limits.memoryBytes === 'number' && limits.memoryBytes < inUse) throw memoryInUse(shardId, 'memory.current', limits.memoryBytes, inUse);
      await setLimits(shardId, limits);
    });
    const smaller = desired('web-0', { command: ['/bin/sleep', '2000'], limits: { cpuCores: 0.5, memoryBytes: 32 * 2 ** 20 } });
    const first = await k.apply([smaller]);
    const second = await k.apply([smaller]);
    expect({ first: first.converged, second: second.converged }).toEqual({ first: true, second: true });
    expect(launcher.requests.at(-1)?.command).toEqual(['/bin/sleep', '2000']);
    expect(driver.cgroups.get('web-0')?.limits.memoryBytes).toBe(32 * 2 ** 20);
    expect(k.status()[0]).toMatchObject({ state: 'running', limits: { memoryBytes: 32 * 2 ** 20 } });
  });

  it('shows crash-loop and the next restart time in status while it waits at the ceiling', async () => {
    const now = new Date('2026-11-25T05:00:00.000Z');
    const k = new ShardKeeper({ driver, sink, stateDirectory: join(dir, 'agent'), launcher, probe: launcher, clock: () => now, backoff: { baseSeconds: 30, ceilingSeconds: 30, resetAfterSeconds: 60 }, graceSeconds: 0 });
    keepers.push(k);
    await k.start();
    await k.apply([desired('web-0')]);
    launcher.exit(1000, { exitCode: 1, signal: null });
    await waitFor(() => k.status()[0]?.state !== 'running', 'exit noticed');
    expect(k.status()[0]).toMatchObject({ state: 'crash-loop', nextRestartAt: '2026-11-25T05:00:30.000Z', lastExit: { exitCode: 1, at: '2026-11-25T05:00:00.000Z' } });
    expect(k.status()[0]?.pid).toBeUndefined();
    // a shard waiting in back-off that leaves the plan is stopped and removed, and never restarted
    expect((await k.apply([])).actions.map((a) => a.kind)).toEqual(['stop', 'remove']);
    expect(launcher.runs).toHaveLength(1);
  });

  it('reports an OOM kill when the cgroup OOM counter rose during the run', async () => {
    // No periodic check during this test: a tick between raising the counter and the exit would
    // (rightly) report the kill as stillRunning; this test is about the exit path reading it.
    const k = keeper(undefined, 3_600_000);
    await k.start();
    await k.apply([desired('web-0')]);
    driver.cgroups.get('web-0')!.oomKills = 1;
    launcher.exit(launcher.latest('web-0')!.pid, { exitCode: null, signal: 'SIGKILL' });
    await waitFor(() => sink.ofType('exited', 'web-0').length > 0, 'exit');
    expect(sink.ofType('oom-killed', 'web-0').map((e) => e.detail)).toEqual([{ oomKills: 1, newKills: 1, memoryBytes: 64 * 2 ** 20, stillRunning: false }]);
    expect(sink.ofType('exited', 'web-0')[0]?.detail).toMatchObject({ signal: 'SIGKILL', oomKilled: true });
  });

  it('takes the OOM counter from a recent sampler reading instead of reading it on the tick', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    const reads = jest.spyOn(driver, 'oomKills');
    // The sampler saw one kill that the driver (deliberately) does not show: the tick reports it.
    k.noteOomKills('web-0', 1, Date.now() / 1000);
    await waitFor(() => sink.ofType('oom-killed', 'web-0').length > 0, 'the sampled OOM kill');
    expect(sink.ofType('oom-killed', 'web-0')[0]?.detail).toMatchObject({ oomKills: 1, newKills: 1, stillRunning: true });
    expect(reads).not.toHaveBeenCalled();
    expect(k.status()[0]?.state).toBe('running');
  });

  it('reads the OOM counter itself once the sampled one is older than its ticks allow, or predates the run', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    const reads = jest.spyOn(driver, 'oomKills');
    // 5 ticks of 20 ms is the allowed age; a reading from a minute ago is not used.
    k.noteOomKills('web-0', 0, Date.now() / 1000 - 60);
    await waitFor(() => reads.mock.calls.length > 0, 'a tick reading the counter');
    driver.cgroups.get('web-0')!.oomKills = 2;
    await waitFor(() => sink.ofType('oom-killed', 'web-0').length > 0, 'the OOM kill read by the tick');
    expect(sink.ofType('oom-killed', 'web-0')[0]?.detail).toMatchObject({ oomKills: 2, stillRunning: true });
  });

  it('reports a check of the tick that fails as a failed event naming the shard, rather than dropping it', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    // The OOM kill the tick reports cannot be recorded (the state directory's disk is full).
    const save = jest.spyOn(ShardRecordStore.prototype, 'save').mockRejectedValueOnce(new Error('ENOSPC: no space left on device'));
    k.noteOomKills('web-0', 1, Date.now() / 1000);
    await waitFor(() => save.mock.calls.length > 0, 'the tick recording the OOM kill');
    await waitFor(() => sink.ofType('failed', 'web-0').length > 0, 'a failed event');
    save.mockRestore();
    // The supervisor reports the record it could not save itself (recordOrReport) and goes on.
    expect(sink.ofType('failed', 'web-0')[0]).toMatchObject({ applicationId: 'web', detail: { action: 'record', what: 'oom-killed', message: 'ENOSPC: no space left on device' } });
  });

  it('restarts a workload whose exit cannot be recorded (disk full), saying so, rather than leaving it running with no process', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    const first = launcher.runs[0]!.pid;
    const save = jest.spyOn(ShardRecordStore.prototype, 'save').mockRejectedValueOnce(new Error('ENOSPC: no space left on device'));
    launcher.exit(first);
    await waitFor(() => launcher.runs.length === 2, 'the restart');
    save.mockRestore();
    expect(sink.ofType('failed', 'web-0')[0]).toMatchObject({ detail: { action: 'record', what: 'exited', message: 'ENOSPC: no space left on device' } });
    expect(sink.ofType('restarting', 'web-0')).toHaveLength(1);
    await waitFor(() => k.status()[0]?.state === 'running' && k.status()[0]?.pid === launcher.runs[1]!.pid, 'the new run supervised');
  });

  it('stops a shard the plan removed even when its stop cannot be recorded first (disk full), saying so', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    const save = jest.spyOn(ShardRecordStore.prototype, 'save').mockImplementation(async function (record) {
      if (record.stopping) throw new Error('ENOSPC: no space left on device');
    });
    try {
      const report = await k.apply([]);
      expect(report.actions.every((a) => a.ok)).toBe(true);
    } finally {
      save.mockRestore();
    }
    expect(driver.cgroups.has('web-0')).toBe(false);
    expect(k.status()).toEqual([]);
    expect(sink.ofType('failed', 'web-0')[0]).toMatchObject({ detail: { action: 'record', what: 'stopping', message: 'ENOSPC: no space left on device' } });
  });

  it('supervises a run whose pid cannot be recorded (disk full): its exit is still restarted', async () => {
    const k = keeper();
    await k.start();
    // The saves of a start: the definition, the cleared run, then the new run's pid, which fails.
    const original = ShardRecordStore.prototype.save;
    const save = jest.spyOn(ShardRecordStore.prototype, 'save').mockImplementation(async function (this: ShardRecordStore, record) {
      if (record.pid !== undefined) throw new Error('ENOSPC: no space left on device');
      return original.call(this, record);
    });
    await k.apply([desired('web-0')]);
    save.mockRestore();
    expect(launcher.runs).toHaveLength(1);
    expect(sink.ofType('failed', 'web-0')[0]?.detail).toMatchObject({ message: 'ENOSPC: no space left on device' });
    launcher.exit(launcher.runs[0]!.pid, { exitCode: 3, signal: null });
    await waitFor(() => launcher.runs.length === 2, 'the restart of the run that exited');
    expect(sink.ofType('exited', 'web-0')).toHaveLength(1);
  });

  it('checks idle logs less and less often (at most every 5th tick), counted in ticks', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    const stdout = join(dir, 'agent', 'logs', 'web-0', 'stdout.log');
    const fs = require('node:fs') as typeof import('node:fs');
    const stats = jest.spyOn(fs, 'statSync');
    const ticks = jest.spyOn(driver, 'oomKills'); // one read per tick of a running shard without a sampled counter
    await waitFor(() => ticks.mock.calls.length >= 25, '25 ticks');
    const checks = stats.mock.calls.filter(([path]) => path === stdout).length;
    stats.mockRestore();
    // Gaps of 1, 2, 4, 5, 5, ... ticks: about 7 checks in 25 ticks (one tick either way at the edges).
    expect(checks).toBeGreaterThanOrEqual(4);
    expect(checks).toBeLessThanOrEqual(9);
  });

  it('has the driver forget a shard it removed, cgroup or not, once the shard has left its status', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0'), desired('web-1')]);
    driver.cgroups.delete('web-1');
    const forget = jest.spyOn(driver, 'forget').mockImplementation((id) => {
      expect(k.status().map((s) => s.shardId)).not.toContain(id);
      driver.forgotten.push(id);
    });
    await k.apply([]);
    expect(driver.forgotten.sort()).toEqual(['web-0', 'web-1']);
    forget.mockRestore();
  });

  it('keeps the logs of the shards it removed, only the most recently written few of them', async () => {
    const k = keeper();
    await k.start();
    const ids = Array.from({ length: REMOVED_SHARD_LOGS_KEPT + 3 }, (_, i) => `web-${i}`);
    await k.apply(ids.map((id) => desired(id)));
    const logRoot = join(dir, 'agent', 'logs');
    ids.forEach((id, i) => {
      mkdirSync(join(logRoot, id), { recursive: true });
      writeFileSync(join(logRoot, id, 'stdout.log'), id);
      const at = Date.now() / 1000 - 1000 + i; // web-0 written longest ago
      utimesSync(join(logRoot, id, 'stdout.log'), at, at);
    });
    await k.apply([desired('web-0')]);
    // The still-present shard keeps its logs however old; of those removed, the newest stay.
    expect(readdirSync(logRoot).sort()).toEqual(['web-0', ...ids.slice(-REMOVED_SHARD_LOGS_KEPT)].sort());
  });

  it('keeps the logs of a shard that comes back in the pass that removes another, however old they are', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    const logRoot = join(dir, 'agent', 'logs');
    // web-back ran here before and is the oldest of the shards gone; the others fill the kept ones.
    const gone = ['web-back', ...Array.from({ length: REMOVED_SHARD_LOGS_KEPT - 1 }, (_, i) => `gone-${i}`)];
    gone.forEach((id, i) => {
      mkdirSync(join(logRoot, id), { recursive: true });
      writeFileSync(join(logRoot, id, 'stdout.log'), id);
      const at = Date.now() / 1000 - 1000 + i;
      utimesSync(join(logRoot, id, 'stdout.log'), at, at);
    });
    mkdirSync(join(logRoot, 'web-0'), { recursive: true });
    writeFileSync(join(logRoot, 'web-0', 'stdout.log'), 'web-0');
    // The pass removes web-0 and brings web-back again, side by side: web-back's cgroup is
    // still being made when web-0's removal is done.
    const create = driver.create.bind(driver);
    jest.spyOn(driver, 'create').mockImplementation(async (shardId) => {
      if (shardId === 'web-back') {
        await waitFor(() => sink.ofType('removed', 'web-0').length > 0, 'web-0 removed');
        await new Promise((r) => setTimeout(r, 100));
      }
      return create(shardId);
    });
    const report = await k.apply([desired('web-back')]);
    expect(report.converged).toBe(true);
    expect(k.status()).toMatchObject([{ shardId: 'web-back', state: 'running' }]);
    // web-back runs here again: its logs stay, and the 16 gone (web-0 now among them) keep theirs.
    expect(readdirSync(logRoot).sort()).toEqual(['web-0', ...gone].sort());
  });

  it('still supervises a shard desired again after its removal failed: a crash of the new run is restarted', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    driver.failNext.set('remove', 1);
    expect((await k.apply([])).actions).toEqual([
      { kind: 'stop', shardId: 'web-0', ok: true },
      { kind: 'remove', shardId: 'web-0', ok: false, error: 'remove(web-0): injected failure' },
    ]);
    // The plan wants it back (a plan reverted, an undrain): started, and supervised as any run.
    expect((await k.apply([desired('web-0')])).actions).toEqual([{ kind: 'start', shardId: 'web-0', ok: true }]);
    const pid = launcher.latest('web-0')!.pid;
    launcher.exit(pid, { exitCode: 3, signal: null });
    await waitFor(() => launcher.latest('web-0')!.pid !== pid, 'the crashed run restarted');
    expect(sink.ofType('exited', 'web-0')).toHaveLength(1);
  });

  it('resizes in place: same pid, limits written, resized event', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    await k.resize('web-0', { cpuCores: 1 });
    expect(k.status()[0]).toMatchObject({ pid: 1000, limits: { cpuCores: 1, memoryBytes: 64 * 2 ** 20 } });
    expect(driver.cgroups.get('web-0')?.limits.cpuCores).toBe(1);
    expect((await k.apply([desired('web-0', { limits: { cpuCores: 2, memoryBytes: 64 * 2 ** 20 } })])).actions).toEqual([{ kind: 'set-limits', shardId: 'web-0', ok: true }]);
    expect(k.status()[0]?.pid).toBe(1000);
    expect(sink.ofType('resized', 'web-0')).toHaveLength(2);
    await expect(k.resize('nope-0', { cpuCores: 1 })).rejects.toMatchObject({ code: 'SHARD_UNKNOWN', field: 'shardId', value: 'nope-0' });
  });

  it('stops and removes shards no longer desired, and replaces a shard whose command changed', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0'), desired('web-1')]);
    const report = await k.apply([desired('web-1', { command: ['/bin/sleep', '5'] })]);
    expect(report.actions).toEqual([
      { kind: 'stop', shardId: 'web-0', ok: true },
      { kind: 'remove', shardId: 'web-0', ok: true },
      { kind: 'replace', shardId: 'web-1', ok: true },
    ]);
    expect(driver.cgroups.has('web-0')).toBe(false);
    expect(launcher.latest('web-1')?.pid).toBe(1002);
    expect(k.status().map((s) => s.shardId)).toEqual(['web-1']);
    // no restart of the stopped run
    expect(sink.ofType('restarting')).toEqual([]);
  });

  it('a new keeper adopts recorded runs with the same pid and restarts runs that ended while no keeper watched', async () => {
    const k1 = keeper();
    await k1.start();
    await k1.apply([desired('web-0'), desired('web-1')]);
    await k1.close();
    launcher.exit(launcher.latest('web-1')!.pid); // dies while no agent runs
    const k2 = keeper();
    const report = await k2.start();
    expect(report.actions).toEqual([
      { kind: 'adopt', shardId: 'web-0', ok: true },
      { kind: 'restart', shardId: 'web-1', ok: true },
    ]);
    const web0 = launcher.latest('web-0')!.pid;
    expect(k2.status()[0]).toMatchObject({ shardId: 'web-0', state: 'running', pid: web0, adopted: true });
    expect(sink.ofType('adopted', 'web-0')[0]?.detail).toMatchObject({ pid: web0, sameRun: true });
    expect(sink.ofType('exited', 'web-1')[0]?.detail).toMatchObject({ exitCode: null, signal: null, statusKnown: false });
    // Restarts wait for the first reconcile (next tests); it keeps web-1 here.
    expect(await k2.apply([desired('web-0'), desired('web-1')])).toEqual({ actions: [], converged: true });
    await waitFor(() => k2.status()[1]?.state === 'running', 'web-1 restarted');
    expect(k2.status()[1]?.restarts).toBe(1);
    // the adopted run is watched by polling: its end is noticed and it is restarted
    launcher.exit(web0);
    await waitFor(() => (k2.status()[0]?.pid ?? 0) > 1001, 'web-0 restarted after its adopted run ended');
    expect(await k2.apply([desired('web-0'), desired('web-1')])).toEqual({ actions: [], converged: true });
  });

  describe('at start, restarts wait for the first reconcile to decide', () => {
    const fast = { baseSeconds: 0.001, ceilingSeconds: 0.004, resetAfterSeconds: 60 };
    /** Long enough for a 1 ms back-off timer and the fake launch behind it, many times over (a margin, not a measurement). */
    const longerThanTheBackoff = () => new Promise((r) => setTimeout(r, 150));

    /** A first keeper ran web-0 and web-1; web-1's run ends while no keeper watches; a new keeper starts. */
    async function restartedAgent() {
      const k1 = keeper(fast);
      await k1.start();
      await k1.apply([desired('web-0'), desired('web-1')]);
      await k1.close();
      launcher.exit(launcher.latest('web-1')!.pid);
      const k2 = keeper(fast);
      await k2.start();
      return k2;
    }

    it('a run that ended while no keeper watched is reported, and not restarted before the first reconcile', async () => {
      const k = await restartedAgent();
      expect(sink.ofType('restarting', 'web-1')).toHaveLength(1);
      await longerThanTheBackoff();
      expect(launcher.runs.filter((r) => r.shardId === 'web-1')).toHaveLength(1);
      expect(k.status().find((x) => x.shardId === 'web-1')).toMatchObject({ state: 'backoff', nextRestartAt: expect.any(String) });
      await k.apply([desired('web-0'), desired('web-1')]);
      await waitFor(() => launcher.runs.filter((r) => r.shardId === 'web-1').length === 2, 'web-1 restarted once the reconcile kept it');
      await longerThanTheBackoff();
      expect(launcher.runs.filter((r) => r.shardId === 'web-1')).toHaveLength(2); // once, not twice
    });

    it('a shard the first reconcile does not want here (the plan moved it) is never started again', async () => {
      const k = await restartedAgent();
      await longerThanTheBackoff();
      const report = await k.apply([desired('web-0')]);
      expect(report.actions).toEqual([
        { kind: 'stop', shardId: 'web-1', ok: true },
        { kind: 'remove', shardId: 'web-1', ok: true },
      ]);
      await longerThanTheBackoff();
      expect(launcher.runs.filter((r) => r.shardId === 'web-1')).toHaveLength(1);
      expect(sink.ofType('started', 'web-1')).toHaveLength(1);
    });

    it('a first reconcile that reads no desired set (the host claim lapsed) still lets the keeper restart, as every later such pass does', async () => {
      const k = await restartedAgent();
      // The agent's read of the desired shards answers undefined while its host claim is not held:
      // "start and stop nothing from the plan until it is held again (the keeper still restarts
      // what crashes here)". Deferred for good, web-1 stayed down for as long as the claim did.
      expect(await k.apply(async () => undefined)).toEqual({ actions: [], converged: false });
      await waitFor(() => launcher.runs.filter((r) => r.shardId === 'web-1').length === 2, 'web-1 restarted');
      await longerThanTheBackoff();
      expect(launcher.runs.filter((r) => r.shardId === 'web-1')).toHaveLength(2);
    });

    it('a first reconcile whose read fails (the store away) still lets the keeper restart', async () => {
      const k = await restartedAgent();
      await expect(k.apply(async () => Promise.reject(new Error('store unreachable')))).rejects.toThrow('store unreachable');
      await waitFor(() => launcher.runs.filter((r) => r.shardId === 'web-1').length === 2, 'web-1 restarted');
    });

    it('an adopted run that ends before the first reconcile waits for it too', async () => {
      const k = await restartedAgent();
      launcher.exit(launcher.latest('web-0')!.pid);
      await waitFor(() => k.status().find((x) => x.shardId === 'web-0')?.state === 'backoff', 'the adopted run\'s end noticed');
      await longerThanTheBackoff();
      expect(launcher.runs.filter((r) => r.shardId === 'web-0')).toHaveLength(1);
      await k.apply([desired('web-1')]);
      await longerThanTheBackoff();
      expect(launcher.runs.filter((r) => r.shardId === 'web-0')).toHaveLength(1);
      expect(driver.cgroups.has('web-0')).toBe(false);
    });
  });

  it('a new keeper resumes a shard waiting in back-off without reporting its exit again or losing its exit status', async () => {
    const slow = { baseSeconds: 60, ceilingSeconds: 300, resetAfterSeconds: 600 };
    const k1 = keeper(slow);
    await k1.start();
    await k1.apply([desired('web-0')]);
    launcher.exit(launcher.latest('web-0')!.pid, { exitCode: 3, signal: null });
    await waitFor(() => k1.status()[0]?.state === 'backoff', 'web-0 in back-off');
    await k1.close();
    expect(sink.ofType('exited', 'web-0')).toHaveLength(1);

    const k2 = keeper(slow);
    await k2.start();
    // The exit was reported once, by the keeper that saw it; the new one neither repeats it nor
    // overwrites the known exit code with "unknown", nor counts a second failure.
    expect(sink.ofType('exited', 'web-0')).toHaveLength(1);
    expect(k2.status()[0]).toMatchObject({ state: 'backoff', lastExit: { exitCode: 3, signal: null } });
    expect(sink.ofType('restarting', 'web-0').at(-1)?.detail).toMatchObject({ attempt: 1 });
    expect(launcher.runs).toHaveLength(1);
  });

  it('a new keeper leaves a shard stopped on purpose stopped, even one that crashed before (its back-off ended with the stop)', async () => {
    const k1 = keeper();
    await k1.start();
    await k1.apply([desired('web-0')]);
    await crashAndRestart('web-0', 1); // one failure counted, and the shard runs again
    driver.failNext.set('remove:web-0', 1); // stopped, but its cgroup stays (or the agent goes away before the removal)
    expect((await k1.apply([])).actions).toEqual([
      { kind: 'stop', shardId: 'web-0', ok: true },
      { kind: 'remove', shardId: 'web-0', ok: false, error: 'remove(web-0): injected failure' },
    ]);
    await k1.close();
    const runs = launcher.runs.length;

    const k2 = keeper();
    expect((await k2.start()).actions).toEqual([]);
    expect(k2.status()[0]).toMatchObject({ shardId: 'web-0', state: 'stopped' });
    // No restart of its own: the plan that removed it decides (here: remove it).
    expect(await k2.apply([])).toEqual({ actions: [{ kind: 'remove', shardId: 'web-0', ok: true }], converged: true });
    expect(launcher.runs).toHaveLength(runs);
  });

  it('a new keeper finishes a stop its predecessor was killed in, after the signal: the exit is the stop done, not a crash to restart', async () => {
    const slow = { baseSeconds: 60, ceilingSeconds: 300, resetAfterSeconds: 600 };
    const k1 = keeper(slow);
    await k1.start();
    await k1.apply([desired('web-0')]);
    // "SIGKILL" of the agent once the workload is signalled (it exits at once), before the record
    // drops the pid: a new keeper reads the records as they are then.
    let afterCrash: ShardKeeper | undefined;
    const killAll = driver.killAll.bind(driver);
    driver.killAll = async (shardId, signal) => {
      await killAll(shardId, signal);
      driver.killAll = killAll;
      afterCrash = keeper(slow);
      await afterCrash.start();
      throw new Error('the agent is gone');
    };
    await k1.apply([]);
    expect(afterCrash!.status()).toMatchObject([{ shardId: 'web-0', state: 'stopped', restarts: 0 }]);
    expect(sink.ofType('exited', 'web-0')).toEqual([]);
    expect(sink.ofType('restarting', 'web-0')).toEqual([]);
    expect(sink.ofType('stopped', 'web-0').at(-1)?.detail).toMatchObject({ reason: 'interrupted-stop' });
    expect(await afterCrash!.apply([])).toEqual({ actions: [{ kind: 'remove', shardId: 'web-0', ok: true }], converged: true });
    expect(launcher.runs).toHaveLength(1);
  });

  it('a new keeper finishes a stop its predecessor was killed in during the grace, rather than adopting the run it was stopping', async () => {
    const k1 = new ShardKeeper({ driver, sink, stateDirectory: join(dir, 'agent'), launcher, probe: launcher, pollIntervalMs: 20, graceSeconds: 10 });
    await k1.start();
    await k1.apply([desired('web-0')]);
    const pid = launcher.latest('web-0')!.pid;
    // Killed right after the SIGTERM, which the workload ignores (a PID-namespace init without a handler).
    let afterCrash: ShardKeeper | undefined;
    const killAll = driver.killAll.bind(driver);
    driver.killAll = async (shardId, signal) => {
      await killAll(shardId, signal);
      driver.killAll = killAll;
      afterCrash = keeper();
      await afterCrash.start();
      throw new Error('the agent is gone');
    };
    await k1.apply([]);
    await k1.close();
    expect(afterCrash!.status()).toMatchObject([{ shardId: 'web-0', state: 'stopped' }]);
    expect(launcher.alivePids.has(pid)).toBe(false);
    expect(sink.ofType('adopted', 'web-0')).toEqual([]);
    expect(sink.ofType('stopped', 'web-0').at(-1)?.detail).toMatchObject({ reason: 'interrupted-stop' });
    expect(launcher.runs).toHaveLength(1);
  });

  it('a new keeper takes a record it cannot use (JSON, but not a shard record) for no record: the other shards are adopted and passes go on', async () => {
    const k1 = keeper();
    await k1.start();
    await k1.apply([desired('web-0'), desired('web-1')]);
    await k1.close();
    // Right version and id, no definition (hand-edited, or written by another build).
    writeFileSync(join(dir, 'agent', 'shards', 'web-1.json'), JSON.stringify({ version: 1, shardId: 'web-1', restarts: 0 }));
    const k2 = keeper();
    expect((await k2.start()).actions).toEqual([{ kind: 'adopt', shardId: 'web-0', ok: true }]);
    const pass = await k2.apply([desired('web-0'), desired('web-1')]);
    expect(pass.converged).toBe(true);
    expect(k2.status().map((s) => [s.shardId, s.state])).toEqual([
      ['web-0', 'running'],
      ['web-1', 'running'],
    ]);
  });

  it('stops the shards a plan removed side by side: each waits out its own grace, not the others\' in turn', async () => {
    const k = new ShardKeeper({ driver, sink, stateDirectory: join(dir, 'agent'), launcher, probe: launcher, pollIntervalMs: 20, graceSeconds: 0.2 });
    keepers.push(k);
    await k.start();
    await k.apply([desired('web-0'), desired('web-1'), desired('web-2')]);
    // The fake workloads ignore SIGTERM (a PID-namespace init without a handler): each stop lasts its whole grace.
    const signals: string[] = [];
    const kill = driver.onKill!;
    driver.onKill = (shardId, signal) => {
      signals.push(`${signal} ${shardId}`);
      kill(shardId, signal);
    };
    const report = await k.apply([]);
    expect(report.converged).toBe(true);
    // One after another, web-0 was SIGKILLed before web-1 got its SIGTERM.
    const firstKill = signals.findIndex((s) => s.startsWith('SIGKILL'));
    expect(signals.slice(0, firstKill).sort()).toEqual(['SIGTERM web-0', 'SIGTERM web-1', 'SIGTERM web-2']);
    // The report keeps the shards' order.
    expect(report.actions.map((a) => `${a.kind} ${a.shardId}`)).toEqual(['stop web-0', 'remove web-0', 'stop web-1', 'remove web-1', 'stop web-2', 'remove web-2']);
  });

  it('hands a shard over: release stops supervision, apply leaves it alone, adopt resumes it, discard removes it', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    expect(await k.release('web-0')).toEqual({ pid: 1000 });
    launcher.exit(1000, { exitCode: null, signal: 'SIGKILL' }); // migration killed the source on purpose
    expect(await k.apply([])).toEqual({ actions: [], converged: true });
    expect(await k.apply([desired('web-0')])).toEqual({ actions: [], converged: true });
    expect(k.status()[0]?.state).toBe('held');
    await expect(k.resize('web-0', { cpuCores: 1 })).rejects.toBeInstanceOf(HostAgentError);
    await expect(k.adopt('web-0')).rejects.toMatchObject({ code: 'SHARD_NOT_RUNNING' });
    expect((await k.drain()).actions).toEqual([{ kind: 'drain', shardId: 'web-0', ok: false, error: expect.stringContaining('held by migration') }]);
    await k.discard('web-0');
    expect(driver.cgroups.has('web-0')).toBe(false);
    expect(k.status()).toEqual([]);
    expect(sink.ofType('restarting')).toEqual([]);
  });

  /** The driver's thaws and kills, in order (`withPids`: how many pids a thaw found). */
  function recordThawsAndKills(withPids = false): string[] {
    const order: string[] = [];
    const thaw = driver.thaw.bind(driver);
    driver.thaw = async (id) => (order.push(withPids ? `thaw, ${driver.cgroups.get(id)!.pids.length} pids` : 'thaw'), thaw(id));
    const onKill = driver.onKill;
    driver.onKill = (id, signal) => (order.push(`kill ${signal}`), onKill?.(id, signal));
    return order;
  }

  it('discards a frozen shard (a released migration source) by killing it while frozen, never thawing it first', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    await k.release('web-0');
    await driver.freeze('web-0');
    const order = recordThawsAndKills();
    await k.discard('web-0');
    // The driver's killAll thaws after signalling where its freezer needs it; the supervisor's own thaw comes once it is empty.
    expect(order).toEqual(['kill SIGKILL', 'thaw']);
    expect(driver.cgroups.has('web-0')).toBe(false);
  });

  it('replaces a frozen shard without grace: killed while frozen, then thawed empty, so the new run does not start frozen', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    await driver.freeze('web-0');
    const order = recordThawsAndKills(true);
    await k.apply([desired('web-0', { command: ['/bin/other'] })]);
    expect(order).toEqual(['kill SIGKILL', 'thaw, 0 pids']);
    expect(driver.cgroups.get('web-0')?.frozen).toBe(false);
    expect(k.status()[0]).toMatchObject({ state: 'running' });
  });

  it('a graceful stop of a frozen shard thaws it first, so the workload can handle SIGTERM', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    await driver.freeze('web-0');
    const order = recordThawsAndKills();
    const graceful = new ShardKeeper({ driver, sink, stateDirectory: join(dir, 'agent'), launcher, probe: launcher, pollIntervalMs: 20, graceSeconds: 1 });
    keepers.push(graceful);
    await k.close();
    await graceful.start();
    await graceful.apply([]);
    expect(order.slice(0, 2)).toEqual(['thaw', 'kill SIGTERM']);
  });

  it('prepares an incoming shard held and empty, then adopts what was restored into it', async () => {
    const k = keeper();
    await k.start();
    const incoming = await k.prepareIncoming(desired('web-3'));
    expect(incoming).toEqual({ procsFiles: ['/fake/web-3/cgroup.procs'], paths: { unified: '/fake/web-3' } });
    expect(driver.cgroups.get('web-3')?.limits).toEqual({ cpuCores: 0.5, memoryBytes: 64 * 2 ** 20 });
    expect(await k.apply([desired('web-3')])).toEqual({ actions: [], converged: true });
    expect(launcher.runs).toHaveLength(0);
    // "criu restore" puts a process into the cgroup
    driver.cgroups.get('web-3')!.pids.push(4242);
    launcher.alivePids.set(4242, 99);
    // an agent restart in between keeps it held
    await k.close();
    const k2 = keeper();
    await k2.start();
    expect(k2.status()[0]?.state).toBe('held');
    expect(await k2.adopt('web-3')).toMatchObject({ state: 'running', pid: 4242, adopted: true });
    expect(await k2.apply([desired('web-3')])).toEqual({ actions: [], converged: true });
    await expect(k2.prepareIncoming(desired('web-3'))).rejects.toMatchObject({ code: 'SHARD_EXISTS' });
  });

  it('restart strategy, destination: starts the incoming shard kept held, so reconcile leaves it alone until adopt', async () => {
    const k = keeper();
    await k.start();
    await k.prepareIncoming(desired('web-4'));
    const started = await k.startHeld('web-4', desired('web-4'), { keepHeld: true });
    expect(started).toMatchObject({ state: 'held', pid: 1000 });
    // Not yet committed: this host's assignment does not have the shard, and the run must survive that.
    expect(await k.apply([])).toEqual({ actions: [], converged: true });
    expect(launcher.runs.filter((r) => r.shardId === 'web-4')).toHaveLength(1);
    expect(driver.cgroups.get('web-4')?.pids).toEqual([1000]);
    expect(await k.adopt('web-4')).toMatchObject({ state: 'running', pid: 1000, adopted: true });
  });

  it('restart strategy, destination: an agent killed while the held run starts finds it held, not a run to supervise', async () => {
    const k = keeper();
    await k.start();
    await k.prepareIncoming(desired('web-5'));
    // "SIGKILL" as the workload is launched: a new keeper reads the records as they are then.
    let afterCrash: ShardKeeper | undefined;
    const launch = launcher.launch.bind(launcher);
    launcher.launch = async (request) => {
      const run = await launch(request);
      afterCrash = keeper();
      await afterCrash.start();
      return run;
    };
    await k.startHeld('web-5', desired('web-5'), { keepHeld: true });
    launcher.launch = launch;
    expect(afterCrash!.status()).toMatchObject([{ shardId: 'web-5', state: 'held' }]);
    // Not committed: reconcile leaves the held copy alone (the source's abort or commit decides).
    expect(await afterCrash!.apply([])).toEqual({ actions: [], converged: true });
  });

  it('drains: stops every shard and removes every cgroup, including leftovers without a record', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0'), desired('web-1')]);
    await driver.create('stray-0');
    const report = await k.drain({ graceSeconds: 0 });
    expect(report).toEqual({
      actions: ['stray-0', 'web-0', 'web-1'].map((shardId) => ({ kind: 'drain', shardId, ok: true })),
      converged: true,
    });
    expect(driver.cgroups.size).toBe(0);
    expect(k.status()).toEqual([]);
    expect(sink.ofType('restarting')).toEqual([]);
  });

  it('takes over a cgroup found without a record when it is desired (crash between mkdir and the first record)', async () => {
    await driver.create('web-0');
    const k = keeper();
    await k.start();
    expect((await k.apply([desired('web-0')])).actions).toEqual([
      { kind: 'set-limits', shardId: 'web-0', ok: true },
      { kind: 'start', shardId: 'web-0', ok: true },
    ]);
    expect(k.status()[0]).toMatchObject({ state: 'running', pid: 1000 });
  });

  it('reads exit 1 with a risen OOM counter as SIGKILL (util-linux 2.38 unshare cannot re-raise it), and plain exit 1 as exit 1', async () => {
    const k = keeper();
    await k.start();
    await k.apply([desired('web-0')]);
    driver.cgroups.get('web-0')!.oomKills = 1;
    launcher.exit(1000, { exitCode: 1, signal: null });
    await waitFor(() => sink.ofType('exited', 'web-0').length === 1, 'first exit');
    expect(sink.ofType('exited', 'web-0')[0]?.detail).toMatchObject({ exitCode: null, signal: 'SIGKILL', signalInferred: true, oomKilled: true });
    await waitFor(() => launcher.runs.length === 2, 'restart');
    launcher.exit(1001, { exitCode: 1, signal: null });
    await waitFor(() => sink.ofType('exited', 'web-0').length === 2, 'second exit');
    expect(sink.ofType('exited', 'web-0')[1]?.detail).toMatchObject({ exitCode: 1, signal: null, oomKilled: false });
    expect(sink.ofType('exited', 'web-0')[1]?.detail).not.toHaveProperty('signalInferred');
  });
});
