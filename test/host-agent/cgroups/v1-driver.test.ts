import { promises as fsPromises, rmSync } from 'node:fs';
import { join } from 'node:path';
import { detectCgroupDriver, type DetectedCgroupDriver } from '../../../host-agent/cgroups';
import { checkLimits } from '../../../host-agent/cgroups/limits-check';
import { v1LimitWrites } from '../../../host-agent/cgroups/v1-dialect';
import { fixtureDriver, fixtureTree, openFilesUnder, V1_SHARD_FILES, type Fixture } from './fixture-tree';

const REL = 'shardform/host-a/db-1';

describe('cgroup v1 driver (fixture tree)', () => {
  let fx: Fixture;
  let driver: DetectedCgroupDriver;

  beforeEach(() => {
    fx = fixtureTree('v1');
    driver = fixtureDriver(fx);
  });
  afterEach(() => {
    driver.close();
    fx.cleanup();
  });

  async function created(extra: Record<string, Record<string, string>> = {}): Promise<void> {
    await driver.create('db-1');
    for (const [controller, files] of Object.entries(V1_SHARD_FILES)) fx.files(controller, REL, { ...files, ...extra[controller] });
  }
  const file = (controller: string, name: string): string => fx.read(join(fx.root, controller, REL, name));

  it('is chosen when only v1 controllers are mounted, with a directory per controller', async () => {
    expect(driver.layout).toBe('v1');
    expect(driver.probe.memsw).toBe(true);
    expect(Object.keys(driver.paths('db-1')).sort()).toEqual(['blkio', 'cpu', 'cpuacct', 'freezer', 'memory']);
    await driver.create('db-1');
    for (const dir of Object.values(driver.paths('db-1'))) expect(fx.snapshot()).toContain(`${dir.slice(fx.root.length + 1)}/`);
    expect(await driver.list()).toEqual(['db-1']);
  });

  it.each([
    [{ cpuCores: 0.5 }, [['cpu.cfs_period_us', '100000'], ['cpu.cfs_quota_us', '50000']]],
    [{ cpuCores: null }, [['cpu.cfs_period_us', '100000'], ['cpu.cfs_quota_us', '-1']]],
    [{ io: { device: '254:0', readIops: 100, writeIops: 0 } }, [['blkio.throttle.read_iops_device', '254:0 100'], ['blkio.throttle.write_iops_device', '254:0 0']]],
    [{}, []],
  ] as const)('turns %j into writes %j', (limits, expected) => {
    const writes = v1LimitWrites(checkLimits('db-1', limits), { memsw: true });
    expect(writes.map((w) => [w.file, w.value])).toEqual(expected);
  });

  it('caps memory+swap at the memory limit: limit first (memsw raised and the limit retried only on EINVAL), then memsw; never lifted to -1 on the way', () => {
    const writes = (bytes: number | null, memsw: boolean): string[][] =>
      v1LimitWrites(checkLimits('db-1', { memoryBytes: bytes }), { memsw }).map((w) => [w.file, w.value]);
    expect(writes(64 * 2 ** 20, true)).toEqual([
      ['memory.limit_in_bytes', '67108864'],
      ['memory.memsw.limit_in_bytes', '67108864'],
    ]);
    const [limit] = v1LimitWrites(checkLimits('db-1', { memoryBytes: 64 * 2 ** 20 }), { memsw: true });
    expect(limit?.retryAfter?.map((w) => [w.file, w.value])).toEqual([['memory.memsw.limit_in_bytes', '67108864']]);
    expect(writes(null, true)).toEqual([
      ['memory.memsw.limit_in_bytes', '-1'],
      ['memory.limit_in_bytes', '-1'],
    ]);
    expect(writes(64 * 2 ** 20, false)).toEqual([['memory.limit_in_bytes', '67108864']]);
  });

  it('applies limits to the controller files', async () => {
    await created();
    await driver.setLimits('db-1', { cpuCores: 1.25, memoryBytes: 2 ** 30, io: { device: '8:0', writeIops: 40 } });
    expect(file('cpu', 'cpu.cfs_quota_us')).toBe('125000');
    expect(file('cpu', 'cpu.cfs_period_us')).toBe('100000');
    expect(file('memory', 'memory.limit_in_bytes')).toBe('1073741824');
    expect(file('memory', 'memory.memsw.limit_in_bytes')).toBe('1073741824');
    expect(file('blkio', 'blkio.throttle.write_iops_device')).toBe('8:0 40');
    expect(file('blkio', 'blkio.throttle.read_iops_device')).toBe('');
  });

  it('reads limits back, treating quota -1 and PAGE_COUNTER_MAX bytes as no limit', async () => {
    await created();
    expect(await driver.readLimits('db-1')).toEqual({ cpuCores: null, cpuPeriodMicros: 100000, memoryBytes: null });
    await created({
      cpu: { 'cpu.cfs_quota_us': '150000\n', 'cpu.cfs_period_us': '100000\n' },
      memory: { 'memory.limit_in_bytes': '67108864\n' },
      blkio: { 'blkio.throttle.read_iops_device': '254:0 100\n', 'blkio.throttle.write_iops_device': '254:0 50\n' },
    });
    expect(await driver.readLimits('db-1')).toEqual({
      cpuCores: 1.5,
      cpuPeriodMicros: 100000,
      memoryBytes: 67108864,
      io: { device: '254:0', readIops: 100, writeIops: 50 },
    });
  });

  it('reads usage from cpuacct.usage (ns), cpu.stat, memory.* and blkio.throttle.*, with no PSI', async () => {
    await created({
      cpuacct: { 'cpuacct.usage': '3500000000\n' },
      cpu: { 'cpu.stat': 'nr_periods 50\nnr_throttled 7\nthrottled_time 250000000\nnr_bursts 0\nburst_time 0\n' },
      memory: {
        'memory.usage_in_bytes': '4194304\n',
        'memory.max_usage_in_bytes': '8388608\n',
        'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 1\n',
      },
      blkio: {
        'blkio.throttle.io_serviced': '254:0 Read 10\n254:0 Write 5\n254:0 Sync 15\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 15\n8:0 Read 1\n8:0 Write 0\nTotal 16\n',
        'blkio.throttle.io_service_bytes': '254:0 Read 40960\n254:0 Write 20480\n254:0 Total 61440\nTotal 61440\n',
      },
    });
    expect(await driver.usage('db-1')).toEqual({
      cpuUsageSeconds: 3.5,
      cpuThrottledSeconds: 0.25,
      cpuThrottledPeriods: 7,
      memoryCurrentBytes: 4194304,
      memoryPeakBytes: 8388608,
      ioReadOps: 11,
      ioWriteOps: 5,
      ioDevices: 2,
      ioReadBytes: 40960,
      ioWriteBytes: 20480,
      oomKills: 1,
      pressure: {},
    });
  });

  it('reads the OOM-kill counter alone from memory.oom_control, 0 on kernels before 4.13 that lack the line', async () => {
    await created({ memory: { 'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 4\n' } });
    expect(await driver.oomKills('db-1')).toBe(4);
    expect((await driver.usage('db-1')).oomKills).toBe(4);
    fx.files('memory', REL, { 'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\n' });
    expect(await driver.oomKills('db-1')).toBe(0);
  });

  it('fails the OOM-kill read with SHARD_NOT_FOUND once the shard is removed', async () => {
    await created();
    expect(await driver.oomKills('db-1')).toBe(0);
    for (const dir of new Set(Object.values(driver.paths('db-1')))) rmSync(dir, { recursive: true });
    await expect(driver.oomKills('db-1')).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND', shardId: 'db-1' });
    // The kept memory.oom_control was closed when its read failed (kernfs: ENODEV).
    expect(openFilesUnder(fx.root)).toEqual([]);
  });

  it('freezes through freezer.state', async () => {
    await created();
    await driver.freeze('db-1');
    expect(file('freezer', 'freezer.state')).toBe('FROZEN');
    expect(await driver.isFrozen('db-1')).toBe(true);
    await driver.thaw('db-1');
    expect(file('freezer', 'freezer.state')).toBe('THAWED');
  });

  it('counts pids from the memory hierarchy', async () => {
    await created({ memory: { 'cgroup.procs': '7\n8\n' } });
    expect(await driver.pids('db-1')).toEqual([7, 8]);
  });

  it('writes one cgroup.procs per distinct directory when cpu and cpuacct are co-mounted', async () => {
    const co = fixtureTree('v1', { coMountCpu: true });
    try {
      const d = detectCgroupDriver({ root: co.root, hostId: 'host-a' });
      await d.create('db-1');
      const files = d.procsFiles('db-1');
      expect(files.filter((f) => f.includes('cpu,cpuacct'))).toHaveLength(1);
      expect(files).toHaveLength(4);
      await d.remove('db-1');
      expect(await d.exists('db-1')).toBe(false);
    } finally {
      co.cleanup();
    }
  });

  it('leaves memsw alone where swap accounting is off', async () => {
    const nosw = fixtureTree('v1', { memsw: false });
    try {
      expect(detectCgroupDriver({ root: nosw.root, hostId: 'host-a' }).probe.memsw).toBe(false);
    } finally {
      nosw.cleanup();
    }
  });

  it('refuses a memory limit the kernel will not take (EBUSY) as MEMORY_IN_USE and leaves the other limits as they were', async () => {
    await created({ cpu: { 'cpu.cfs_quota_us': '50000' }, memory: { 'memory.limit_in_bytes': String(512 * 2 ** 20) } });
    // memory.rst 2.4: a limit below what the group holds is refused with EBUSY once reclaim fails.
    const real = fsPromises.open;
    const open = jest.spyOn(fsPromises, 'open').mockImplementation(async (path, ...rest) => {
      if (String(path).endsWith('/memory.limit_in_bytes') && rest[0] !== undefined && rest[0] !== 'r') throw Object.assign(new Error('EBUSY: resource busy or locked, write'), { code: 'EBUSY' });
      return real(path, ...(rest as [number]));
    });
    try {
      const refused = driver.setLimits('db-1', { cpuCores: 2, memoryBytes: 64 * 2 ** 20 });
      await expect(refused).rejects.toMatchObject({ code: 'MEMORY_IN_USE', shardId: 'db-1' });
    } finally {
      open.mockRestore();
    }
    expect(file('memory', 'memory.limit_in_bytes')).toBe(String(512 * 2 ** 20));
    expect(file('cpu', 'cpu.cfs_quota_us')).toBe('50000');
  });

  it('refuses a lowering that memory+swap will not take (swapped-out pages) as MEMORY_IN_USE and puts the memory limit back', async () => {
    await created({ memory: { 'memory.limit_in_bytes': String(512 * 2 ** 20), 'memory.memsw.limit_in_bytes': String(512 * 2 ** 20) } });
    const real = fsPromises.open;
    const open = jest.spyOn(fsPromises, 'open').mockImplementation(async (path, ...rest) => {
      if (String(path).endsWith('/memory.memsw.limit_in_bytes') && rest[0] !== undefined && rest[0] !== 'r') throw Object.assign(new Error('EBUSY: resource busy or locked, write'), { code: 'EBUSY' });
      return real(path, ...(rest as [number]));
    });
    try {
      await expect(driver.setLimits('db-1', { memoryBytes: 64 * 2 ** 20 })).rejects.toMatchObject({ code: 'MEMORY_IN_USE', shardId: 'db-1', value: 64 * 2 ** 20 });
    } finally {
      open.mockRestore();
    }
    expect(file('memory', 'memory.limit_in_bytes')).toBe(String(512 * 2 ** 20));
    expect(file('memory', 'memory.memsw.limit_in_bytes')).toBe(String(512 * 2 ** 20));
  });
});
