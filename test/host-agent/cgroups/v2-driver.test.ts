import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DetectedCgroupDriver } from '../../../host-agent/cgroups';
import { ShardCgroupDriver } from '../../../host-agent/cgroups/shard-cgroup-driver';
import { dialectFor } from '../../../host-agent/cgroups/detect';
import { probeCgroupLayout } from '../../../host-agent/cgroups/probe';
import { v2LimitWrites } from '../../../host-agent/cgroups/v2-dialect';
import { checkLimits } from '../../../host-agent/cgroups/limits-check';
import { fixtureDriver, fixtureTree, openFilesUnder, V2_SHARD_FILES, type Fixture } from './fixture-tree';

const SHARD = 'shardform/host-a/web-1';

describe('cgroup v2 driver (fixture tree)', () => {
  let fx: Fixture;
  let driver: DetectedCgroupDriver;

  beforeEach(() => {
    fx = fixtureTree('v2');
    driver = fixtureDriver(fx);
  });
  afterEach(() => {
    driver.close();
    fx.cleanup();
  });

  /** Creates the shard and fills it with what the kernel would put there. */
  async function created(extra: Record<string, string> = {}): Promise<string> {
    await driver.create('web-1');
    fx.files('', SHARD, { ...V2_SHARD_FILES, ...extra });
    return join(fx.root, SHARD);
  }

  it('is chosen when cgroup.controllers sits at the root', () => {
    expect(driver.layout).toBe('v2');
    expect(driver.hostRoot).toBe('shardform/host-a');
    expect(driver.paths('web-1')).toEqual({ unified: join(fx.root, SHARD) });
    expect(driver.procsFiles('web-1')).toEqual([join(fx.root, SHARD, 'cgroup.procs')]);
  });

  it('enables cpu, memory and io in subtree_control on the way down, only where offered and missing', async () => {
    fx.files('', 'shardform', { 'cgroup.controllers': 'cpu io memory pids\n', 'cgroup.subtree_control': 'cpu\n' });
    fx.files('', 'shardform/host-a', { 'cgroup.controllers': 'cpu memory\n', 'cgroup.subtree_control': 'cpu memory\n' });
    await driver.create('web-1');
    expect(fx.read(join(fx.root, 'cgroup.subtree_control'))).toBe('+cpu +memory +io');
    expect(fx.read(join(fx.root, 'shardform/cgroup.subtree_control'))).toBe('+memory +io');
    // Nothing missing at host-a: the file is not rewritten.
    expect(fx.read(join(fx.root, 'shardform/host-a/cgroup.subtree_control'))).toBe('cpu memory\n');
    expect(existsSync(join(fx.root, SHARD))).toBe(true);
    await driver.create('web-1'); // idempotent
  });

  it.each([
    [{ cpuCores: 0.5 }, [['cpu.max', '50000 100000']]],
    [{ cpuCores: 2, cpuPeriodMicros: 250_000 }, [['cpu.max', '500000 250000']]],
    [{ cpuCores: null }, [['cpu.max', 'max 100000']]],
    [{ memoryBytes: 64 * 2 ** 20 }, [['memory.max', '67108864'], ['memory.swap.max', '0']]],
    [{ memoryBytes: null }, [['memory.max', 'max'], ['memory.swap.max', 'max']]],
    [{ io: { device: '254:0', readIops: 100, writeIops: 0 } }, [['io.max', '254:0 riops=100 wiops=max']]],
    [{ io: { device: '8:16', writeIops: 30 } }, [['io.max', '8:16 wiops=30']]],
    [{ io: { device: '8:16' } }, []],
    [{}, []],
  ] as const)('turns %j into writes %j', (limits, expected) => {
    const writes = v2LimitWrites(checkLimits('web-1', limits));
    expect(writes.map((w) => [w.file, w.value])).toEqual(expected);
    expect(writes.every((w) => w.hierarchy === 'unified')).toBe(true);
  });

  it('applies limits to the shard files and leaves undefined fields alone', async () => {
    const dir = await created();
    await driver.setLimits('web-1', { cpuCores: 1.5, memoryBytes: 2 ** 30, io: { device: '254:0', readIops: 500 } });
    expect(fx.read(join(dir, 'cpu.max'))).toBe('150000 100000');
    expect(fx.read(join(dir, 'memory.max'))).toBe('1073741824');
    expect(fx.read(join(dir, 'io.max'))).toBe('254:0 riops=500');
    await driver.setLimits('web-1', { memoryBytes: null });
    expect(fx.read(join(dir, 'memory.max'))).toBe('max');
    expect(fx.read(join(dir, 'cpu.max'))).toBe('150000 100000');
  });

  it('refuses a memory limit below the working set (usage less inactive file cache) and writes nothing: v2 would OOM-kill where v1 says EBUSY', async () => {
    const MiB = 2 ** 20;
    // 300 MiB in use, 120 MiB of it inactive file cache the kernel reclaims first: 180 MiB cannot be taken back.
    const dir = await created({ 'memory.max': String(512 * MiB), 'memory.current': String(300 * MiB), 'memory.stat': `anon ${170 * MiB}\nfile ${130 * MiB}\nactive_file ${10 * MiB}\ninactive_file ${120 * MiB}\n` });
    const refused = driver.setLimits('web-1', { cpuCores: 1, memoryBytes: 128 * MiB });
    await expect(refused).rejects.toMatchObject({ code: 'MEMORY_IN_USE', shardId: 'web-1', field: join(dir, 'memory.current'), value: 128 * MiB });
    await expect(refused).rejects.toThrow(`shard web-1: a memory limit of ${128 * MiB} bytes is below what it uses: the shard uses ${180 * MiB} bytes that cannot be reclaimed`);
    expect(fx.read(join(dir, 'memory.max'))).toBe(String(512 * MiB));
    expect(fx.read(join(dir, 'cpu.max'))).toBe('max 100000\n');
    // Down to the working set is the kernel's to reclaim: written.
    await driver.setLimits('web-1', { memoryBytes: 180 * MiB });
    expect(fx.read(join(dir, 'memory.max'))).toBe(String(180 * MiB));
  });

  it('denies a memory-limited shard swap where the kernel accounts swap, and skips that write where it does not', async () => {
    const dir = await created({ 'memory.swap.max': 'max\n' });
    await driver.setLimits('web-1', { memoryBytes: 2 ** 30 });
    expect(fx.read(join(dir, 'memory.swap.max'))).toBe('0');
    await driver.setLimits('web-1', { memoryBytes: null });
    expect(fx.read(join(dir, 'memory.swap.max'))).toBe('max');
    rmSync(join(dir, 'memory.swap.max'));
    await driver.setLimits('web-1', { memoryBytes: 2 ** 29 });
    expect(fx.read(join(dir, 'memory.max'))).toBe('536870912');
    expect(existsSync(join(dir, 'memory.swap.max'))).toBe(false);
  });

  it('reads limits as the kernel reports them', async () => {
    await created({
      'cpu.max': '25000 50000\n',
      'memory.max': '536870912\n',
      'io.max': '8:0 rbps=max wbps=max riops=max wiops=max\n254:0 rbps=max wbps=max riops=300 wiops=max\n',
    });
    expect(await driver.readLimits('web-1')).toEqual({
      cpuCores: 0.5,
      cpuPeriodMicros: 50000,
      memoryBytes: 536870912,
      io: { device: '254:0', readIops: 300, writeIops: 0 },
    });
    fx.files('', SHARD, { 'cpu.max': 'max 100000\n', 'memory.max': 'max\n', 'io.max': '' });
    expect(await driver.readLimits('web-1')).toEqual({ cpuCores: null, cpuPeriodMicros: 100000, memoryBytes: null });
  });

  it('reads usage, oom kills and PSI from cpu.stat, memory.*, io.stat and *.pressure', async () => {
    await created({
      'cpu.stat': 'usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 40\nnr_throttled 12\nthrottled_usec 750000\n',
      'memory.current': '10485760\n',
      'memory.peak': '20971520\n',
      'memory.events': 'low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n',
      'io.stat': '254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=100 wbytes=0 rios=3 wios=0 dbytes=0 dios=0\n',
      'cpu.pressure': 'some avg10=1.50 avg60=0.75 avg300=0.10 total=123456\nfull avg10=0.50 avg60=0.25 avg300=0.00 total=6543\n',
      'memory.pressure': 'some avg10=0.00 avg60=0.00 avg300=0.00 total=7\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=3\n',
    });
    expect(await driver.usage('web-1')).toEqual({
      cpuUsageSeconds: 2.5,
      cpuThrottledSeconds: 0.75,
      cpuThrottledPeriods: 12,
      memoryCurrentBytes: 10485760,
      memoryPeakBytes: 20971520,
      ioReadOps: 4,
      ioWriteOps: 2,
      ioDevices: 2,
      ioReadBytes: 4196,
      ioWriteBytes: 8192,
      oomKills: 2,
      pressure: {
        cpu: { someAvg10: 1.5, someAvg60: 0.75, someTotalMicros: 123456, fullAvg10: 0.5, fullTotalMicros: 6543 },
        memory: { someAvg10: 0, someAvg60: 0, someTotalMicros: 7, fullAvg10: 0, fullTotalMicros: 3 },
        io: { someAvg10: 0, someAvg60: 0, someTotalMicros: 0, fullAvg10: 0, fullTotalMicros: 0 },
      },
    });
  });

  it('reads the OOM-kill counter alone from memory.events, the same number usage() reports', async () => {
    await created({ 'memory.events': 'low 0\nhigh 0\nmax 9\noom 4\noom_kill 3\noom_group_kill 1\n' });
    expect(await driver.oomKills('web-1')).toBe(3);
    expect((await driver.usage('web-1')).oomKills).toBe(3);
  });

  it('reads only memory.events for the OOM-kill counter (cpu.stat and the rest may be unreadable)', async () => {
    const dir = await created({ 'memory.events': 'oom_kill 5\n' });
    for (const name of ['cpu.stat', 'memory.current', 'io.stat', 'cpu.pressure']) rmSync(join(dir, name));
    expect(await driver.oomKills('web-1')).toBe(5);
  });

  it('fails usage() and the OOM-kill read with SHARD_NOT_FOUND once the shard is removed, keeping no file open', async () => {
    const dir = await created();
    expect((await driver.usage('web-1')).oomKills).toBe(0);
    expect(openFilesUnder(fx.root)).toHaveLength((await driver.usageFiles('web-1')).length);
    rmSync(dir, { recursive: true });
    await expect(driver.usage('web-1')).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND', shardId: 'web-1' });
    await expect(driver.oomKills('web-1')).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND', shardId: 'web-1' });
    expect(openFilesUnder(fx.root)).toEqual([]);
  });

  it('fails the OOM-kill read with SHARD_NOT_FOUND for a shard without a cgroup, and names memory.events when it does not parse', async () => {
    await expect(driver.oomKills('gone-1')).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND', shardId: 'gone-1' });
    const dir = await created({ 'memory.events': 'oom_kill many\n' });
    await expect(driver.oomKills('web-1')).rejects.toMatchObject({ code: 'CGROUP_PARSE_FAILED', field: join(dir, 'memory.events'), value: 'oom_kill many' });
  });

  it('leaves out what an older kernel lacks: memory.peak (before 5.19), PSI files (psi=0)', async () => {
    const dir = await created();
    for (const f of ['memory.peak', 'cpu.pressure', 'memory.pressure', 'io.pressure']) rmSync(join(dir, f));
    const usage = await driver.usage('web-1');
    expect(usage.memoryPeakBytes).toBeUndefined();
    expect(usage.pressure).toEqual({});
  });

  it('freezes through cgroup.freeze and waits until cgroup.events says frozen 1', async () => {
    const dir = await created({ 'cgroup.events': 'populated 1\nfrozen 1\n' });
    await driver.freeze('web-1');
    expect(fx.read(join(dir, 'cgroup.freeze'))).toBe('1');
    expect(await driver.isFrozen('web-1')).toBe(true);
  });

  it('fails with FREEZE_TIMEOUT naming the shard and cgroup.events when the kernel never reports frozen, and withdraws the freeze request', async () => {
    const dir = await created();
    const impatient = new ShardCgroupDriver(dialectFor(probeCgroupLayout(fx.root)), driver.probe, { root: fx.root, hostId: 'host-a', freezeTimeoutMs: 30 });
    await expect(impatient.freeze('web-1')).rejects.toMatchObject({
      code: 'FREEZE_TIMEOUT',
      shardId: 'web-1',
      field: join(fx.root, SHARD, 'cgroup.events'),
      message: `shard web-1: ${join(fx.root, SHARD, 'cgroup.events')} still reads "populated 0, frozen 0", not yet frozen; the freeze request was withdrawn, so the shard runs on; a task may be in uninterruptible sleep (retry, or kill the shard)`,
    });
    // Not left asking the kernel to freeze a shard the caller was told is not frozen.
    expect(fx.read(join(dir, 'cgroup.freeze'))).toBe('0');
  });

  it('kills through cgroup.kill when the kernel has it', async () => {
    const dir = await created({ 'cgroup.kill': '' });
    await driver.killAll('web-1');
    expect(fx.read(join(dir, 'cgroup.kill'))).toBe('1');
  });

  it('signals each pid when there is no cgroup.kill, or for signals other than SIGKILL', async () => {
    const child = spawn('sleep', ['30']);
    const exited = new Promise<string | null>((resolve) => child.on('exit', (_c, s) => resolve(s)));
    await created({ 'cgroup.procs': `${child.pid}\n` });
    await driver.killAll('web-1', 'SIGTERM');
    expect(await exited).toBe('SIGTERM');
  });

  it('reports SHARD_BUSY with the pids when processes outlive SIGKILL (bounded wait)', async () => {
    const child = spawn('sleep', ['30']);
    await new Promise<void>((resolve) => child.on('spawn', () => resolve()));
    await created({ 'cgroup.procs': `${child.pid}\n` }); // a fixture's procs file never empties
    const quick = new ShardCgroupDriver(dialectFor(probeCgroupLayout(fx.root)), driver.probe, { root: fx.root, hostId: 'host-a', killTimeoutMs: 30 });
    await expect(quick.killAll('web-1')).rejects.toMatchObject({ code: 'SHARD_BUSY', shardId: 'web-1', value: [child.pid] });
    expect(child.signalCode ?? (await new Promise((r) => child.on('exit', (_c, s) => r(s))))).toBe('SIGKILL');
  });

  it('lists pids from cgroup.procs', async () => {
    await created({ 'cgroup.procs': '101\n202\n' });
    expect(await driver.pids('web-1')).toEqual([101, 202]);
  });
});
