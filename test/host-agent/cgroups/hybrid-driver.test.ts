import { join } from 'node:path';
import { detectCgroupDriver, type DetectedCgroupDriver } from '../../../host-agent/cgroups';
import { fixtureDriver, fixtureTree, UNIFIED_CORE_FILES, V1_SHARD_FILES, type Fixture } from './fixture-tree';

const REL = 'shardform/host-a/api-1';

describe('hybrid cgroup driver (fixture tree): v1 controllers, unified for freeze, kill and PSI', () => {
  let fx: Fixture;
  let driver: DetectedCgroupDriver;

  beforeEach(async () => {
    fx = fixtureTree('hybrid');
    driver = fixtureDriver(fx);
    await driver.create('api-1');
    for (const [controller, files] of Object.entries(V1_SHARD_FILES)) if (controller !== 'freezer') fx.files(controller, REL, files);
    fx.files('unified', REL, UNIFIED_CORE_FILES);
  });
  afterEach(() => {
    driver.close();
    fx.cleanup();
  });

  const file = (hierarchy: string, name: string): string => fx.read(join(fx.root, hierarchy, REL, name));

  it('is chosen when v1 controllers and <root>/unified are both mounted, and needs no v1 freezer', () => {
    expect(driver.layout).toBe('hybrid');
    expect(Object.keys(driver.paths('api-1')).sort()).toEqual(['blkio', 'cpu', 'cpuacct', 'memory', 'unified']);
    expect(driver.procsFiles('api-1')).toContain(join(fx.root, 'unified', REL, 'cgroup.procs'));
    // No controllers can be enabled in a hybrid unified tree: subtree_control is left alone.
    expect(fx.read(join(fx.root, 'unified', 'cgroup.subtree_control'))).toBe('');
  });

  it('writes limits to the v1 controllers', async () => {
    await driver.setLimits('api-1', { cpuCores: 0.5, memoryBytes: 64 * 2 ** 20 });
    expect(file('cpu', 'cpu.cfs_quota_us')).toBe('50000');
    expect(file('memory', 'memory.limit_in_bytes')).toBe('67108864');
    expect(file('memory', 'memory.memsw.limit_in_bytes')).toBe('67108864');
  });

  it('freezes through the unified cgroup.freeze', async () => {
    fx.files('unified', REL, { 'cgroup.events': 'populated 1\nfrozen 1\n' });
    await driver.freeze('api-1');
    expect(file('unified', 'cgroup.freeze')).toBe('1');
    expect(await driver.isFrozen('api-1')).toBe(true);
  });

  it('kills through the unified cgroup.kill and lists pids from the unified cgroup.procs', async () => {
    fx.files('unified', REL, { 'cgroup.procs': '42\n' });
    expect(await driver.pids('api-1')).toEqual([42]);
    fx.files('unified', REL, { 'cgroup.procs': '' });
    await driver.killAll('api-1');
    expect(file('unified', 'cgroup.kill')).toBe('1');
  });

  it('reads v1 counters and PSI from the unified directory', async () => {
    fx.files('cpuacct', REL, { 'cpuacct.usage': '1000000000\n' });
    fx.files('unified', REL, { 'io.pressure': 'some avg10=2.00 avg60=1.00 avg300=0.50 total=999\nfull avg10=1.00 avg60=0.50 avg300=0.25 total=555\n' });
    const usage = await driver.usage('api-1');
    expect(usage.cpuUsageSeconds).toBe(1);
    expect(usage.pressure.io).toEqual({ someAvg10: 2, someAvg60: 1, someTotalMicros: 999, fullAvg10: 1, fullTotalMicros: 555 });
    expect(usage.pressure.cpu?.someTotalMicros).toBe(0);
  });

  it('reads the OOM-kill counter from the v1 memory controller', async () => {
    fx.files('memory', REL, { 'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n' });
    expect(await driver.oomKills('api-1')).toBe(2);
  });

  it('removes the shard from every hierarchy, and lists nothing afterwards', async () => {
    const empty = fixtureTree('hybrid');
    try {
      const d = detectCgroupDriver({ root: empty.root, hostId: 'host-a' });
      await d.create('api-2');
      expect(await d.list()).toEqual(['api-2']);
      await d.remove('api-2');
      expect(empty.snapshot().filter((p) => p.includes('api-2'))).toEqual([]);
      expect(await d.list()).toEqual([]);
    } finally {
      empty.cleanup();
    }
  });
});
