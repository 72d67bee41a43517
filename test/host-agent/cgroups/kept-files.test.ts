/**
 * The driver keeps each shard's usage files open and re-reads them with a pread at offset 0
 * (cgroup-files.ts, KeptShardFileReader). On fixture trees of every layout: what stays open,
 * that re-reads see new values, that removal (by the driver or behind its back) closes
 * everything and reads as SHARD_NOT_FOUND, and the descriptor budget. Descriptors are counted
 * in /proc/self/fd, not through the driver's own bookkeeping.
 */
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CgroupLayout, DetectedCgroupDriver } from '../../../host-agent/cgroups';
import { fixtureDriver, fixtureTree, openFilesUnder, UNIFIED_CORE_FILES, V1_SHARD_FILES, V2_SHARD_FILES, type Fixture } from './fixture-tree';

const REL = 'shardform/host-a/api-1';

/** Per layout: how to fill a shard's files, and the file that holds the OOM counter and cpu usage. */
const LAYOUTS: Record<CgroupLayout, { fill(fx: Fixture): void; oomFile: [string, string]; cpuFile: [string, string, (seconds: number) => string] }> = {
  v2: {
    fill: (fx) => fx.files('', REL, V2_SHARD_FILES),
    oomFile: ['', 'memory.events'],
    cpuFile: ['', 'cpu.stat', (s) => `usage_usec ${s * 1e6}\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n`],
  },
  v1: {
    fill: (fx) => {
      for (const [controller, files] of Object.entries(V1_SHARD_FILES)) fx.files(controller, REL, files);
    },
    oomFile: ['memory', 'memory.oom_control'],
    cpuFile: ['cpuacct', 'cpuacct.usage', (s) => `${s * 1e9}\n`],
  },
  hybrid: {
    fill: (fx) => {
      for (const [controller, files] of Object.entries(V1_SHARD_FILES)) if (controller !== 'freezer') fx.files(controller, REL, files);
      fx.files('unified', REL, UNIFIED_CORE_FILES);
    },
    oomFile: ['memory', 'memory.oom_control'],
    cpuFile: ['cpuacct', 'cpuacct.usage', (s) => `${s * 1e9}\n`],
  },
};

describe.each(Object.keys(LAYOUTS) as CgroupLayout[])('kept usage files (%s fixture tree)', (layout) => {
  const { fill, oomFile, cpuFile } = LAYOUTS[layout];
  let fx: Fixture;
  let driver: DetectedCgroupDriver;
  const make = (opts: { maxOpenFiles?: number } = {}) => fixtureDriver(fx, opts);
  const file = (hierarchy: string, name: string) => join(fx.root, hierarchy, REL, name);
  const open = () => openFilesUnder(fx.root);
  const oomText = (kills: number) =>
    layout === 'v2' ? `low 0\nhigh 0\nmax 0\noom 1\noom_kill ${kills}\noom_group_kill 0\n` : `oom_kill_disable 0\nunder_oom 0\noom_kill ${kills}\n`;
  /** Deletes the shard's directories and everything in them, behind the driver's back. */
  const removeBehindItsBack = () => {
    for (const dir of new Set(Object.values(driver.paths('api-1')))) rmSync(dir, { recursive: true, force: true });
  };

  beforeEach(async () => {
    fx = fixtureTree(layout);
    driver = make();
    await driver.create('api-1');
    fill(fx);
  });
  afterEach(() => {
    driver.close();
    fx.cleanup();
  });

  it('keeps every file usage() read open, and re-reads the same descriptors for new values', async () => {
    expect(open()).toEqual([]);
    expect((await driver.usage('api-1')).cpuUsageSeconds).toBe(0);
    const files = (await driver.usageFiles('api-1')).sort();
    expect(open()).toEqual(files);
    expect(driver.openFiles).toBe(files.length);

    // A write that keeps the file (as the kernel's counters change in place) is seen on the next reading.
    writeFileSync(file(cpuFile[0], cpuFile[1]), cpuFile[2](3));
    writeFileSync(file(oomFile[0], oomFile[1]), oomText(2));
    const again = await driver.usage('api-1');
    expect(again.cpuUsageSeconds).toBe(3);
    expect(again.oomKills).toBe(2);
    expect(open()).toEqual(files);
  });

  it('answers oomKills() from the same kept file', async () => {
    expect(await driver.oomKills('api-1')).toBe(0);
    expect(open()).toEqual([file(oomFile[0], oomFile[1])]);
    writeFileSync(file(oomFile[0], oomFile[1]), oomText(1));
    expect(await driver.oomKills('api-1')).toBe(1);
    await driver.usage('api-1');
    expect(open()).toHaveLength((await driver.usageFiles('api-1')).length);
  });

  it('closes them when the shard is removed through the driver', async () => {
    await driver.usage('api-1');
    expect(open().length).toBeGreaterThan(0);
    // A fixture directory with files in it cannot be rmdir'ed: empty it first, as the kernel's
    // interface files vanish with the cgroup. The descriptors stay open on the deleted files.
    for (const dir of new Set(Object.values(driver.paths('api-1')))) {
      for (const name of readdirSync(dir)) rmSync(join(dir, name));
    }
    expect(open().length).toBeGreaterThan(0);
    await driver.remove('api-1');
    expect(open()).toEqual([]);
    expect(driver.openFiles).toBe(0);
  });

  it('closes them when the shard is forgotten or the driver closed, and opens them again on the next reading', async () => {
    await driver.usage('api-1');
    const files = open();
    driver.forget('api-1');
    expect(open()).toEqual([]);
    await driver.usage('api-1');
    expect(open()).toEqual(files);
    driver.close();
    expect(open()).toEqual([]);
    expect(driver.openFiles).toBe(0);
  });

  it('fails the next reading of a cgroup removed behind its back with SHARD_NOT_FOUND, and keeps nothing open', async () => {
    await driver.usage('api-1');
    removeBehindItsBack();
    await expect(driver.usage('api-1')).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND', shardId: 'api-1' });
    expect(open()).toEqual([]);
    await expect(driver.oomKills('api-1')).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND', shardId: 'api-1' });
    expect(open()).toEqual([]);
    expect(driver.openFiles).toBe(0);
  });

  it('reads a cgroup removed and created again afresh, not through the old descriptors', async () => {
    await driver.usage('api-1');
    removeBehindItsBack();
    await driver.create('api-1');
    fill(fx);
    writeFileSync(file(cpuFile[0], cpuFile[1]), cpuFile[2](7));
    expect((await driver.usage('api-1')).cpuUsageSeconds).toBe(7);
    expect(open()).toEqual((await driver.usageFiles('api-1')).sort());
  });

  it('keeps at most maxOpenFiles open and reads the rest by path', async () => {
    driver.close();
    driver = make({ maxOpenFiles: 2 });
    await driver.usage('api-1');
    expect(open()).toHaveLength(2);
    writeFileSync(file(cpuFile[0], cpuFile[1]), cpuFile[2](5));
    writeFileSync(file(oomFile[0], oomFile[1]), oomText(4));
    const usage = await driver.usage('api-1');
    expect([usage.cpuUsageSeconds, usage.oomKills]).toEqual([5, 4]);
    expect(open()).toHaveLength(2);

    const none = make({ maxOpenFiles: 0 });
    driver.close();
    expect((await none.usage('api-1')).cpuUsageSeconds).toBe(5);
    expect(open()).toEqual([]);
  });
});

describe('kept usage files: optional files', () => {
  it('reads PSI that appears later, and leaves out PSI that is gone (psi=0, cgroup.pressure 0)', async () => {
    const fx = fixtureTree('v2');
    const driver = fixtureDriver(fx);
    try {
      await driver.create('api-1');
      const { 'cpu.pressure': cpu, ...withoutPsi } = V2_SHARD_FILES;
      fx.files('', REL, withoutPsi);
      rmSync(join(fx.root, REL, 'memory.pressure'));
      rmSync(join(fx.root, REL, 'io.pressure'));
      expect((await driver.usage('api-1')).pressure).toEqual({});
      fx.files('', REL, { 'cpu.pressure': cpu as string });
      expect((await driver.usage('api-1')).pressure.cpu).toMatchObject({ someTotalMicros: 0 });
      rmSync(join(fx.root, REL, 'cpu.pressure'));
      expect((await driver.usage('api-1')).pressure).toEqual({});
      expect(openFilesUnder(fx.root).filter((p) => p.endsWith('.pressure'))).toEqual([]);
    } finally {
      driver.close();
      fx.cleanup();
    }
  });
});
