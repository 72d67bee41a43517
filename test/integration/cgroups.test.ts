/**
 * The cgroup driver on the real kernel of this machine (hybrid on our CI and development
 * hosts, v2 on most production hosts): whatever detectCgroupDriver finds is what is tested.
 * Every shard lives under a unique ownerPrefix, removed in afterAll even after a failure.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, realpathSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { bareReaderFor, createCgroupDriver, probeCgroupLayout, type CgroupProbe, type DetectedCgroupDriver } from '../../host-agent/cgroups';
import { HostAgentError } from '../../host-agent/errors';
import { ShardformError } from '../../src/errors';
import { eventually, favourCpu, removeOwnerTree, spawnInShard, uniqueOwnerPrefix } from '../helpers/cgroup-sandbox';
import { openFilesUnder } from '../helpers/open-files';
import { describePrivileged, missingPrerequisite, requireCgroups, requireCommand, type Prerequisite } from '../helpers/privileged';

const PYTHON = '/usr/bin/python3';
const NEEDS: Prerequisite[] = [requireCgroups, requireCommand(PYTHON, 'apt-get install python3')];

/** The host's own layout, and, on a hybrid host, its v1 controllers driven as a plain v1 host. */
const hostProbe = missingPrerequisite(NEEDS) === undefined ? probeCgroupLayout() : undefined;

driverSuite('cgroup driver on the real kernel (detected layout)', (probe) => probe);
if (hostProbe?.layout === 'hybrid' && hostProbe.mounts.freezer !== undefined) {
  // A hybrid host has every v1 controller, the freezer included: the v1 dialect (freezer.state,
  // signalling each pid) runs here on the real kernel too.
  driverSuite('cgroup driver on the real kernel (v1 controllers alone)', (probe) => ({ ...probe, layout: 'v1' }));
}

function driverSuite(name: string, layoutOf: (probe: CgroupProbe) => CgroupProbe): void {
  describePrivileged(name, NEEDS, () => {
    const ownerPrefix = uniqueOwnerPrefix();
    let driver: DetectedCgroupDriver;
    const children: ChildProcess[] = [];
    let scratch: string;

    beforeAll(() => {
      driver = createCgroupDriver(layoutOf(hostProbe ?? probeCgroupLayout()), { hostId: 'host-a', ownerPrefix });
      scratch = mkdtempSync(join(tmpdir(), 'shardform-cgroups-'));
      // eslint-disable-next-line no-console
      console.log(`cgroup layout: ${driver.layout} (${JSON.stringify(driver.probe.mounts)}, memsw ${driver.probe.memsw})`);
    });

    afterAll(async () => {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(scratch, { recursive: true, force: true });
      if (driver) await removeOwnerTree(Object.values(driver.probe.mounts), ownerPrefix);
    });

    function start(shardId: string, script: string): ChildProcess {
      const child = spawnInShard(driver, shardId, script);
      children.push(child);
      return child;
    }

    async function joined(shardId: string, pid: number | undefined): Promise<void> {
      expect(await eventually(async () => (await driver.pids(shardId)).includes(pid ?? -1))).toBe(true);
    }

    /** Cores used over `seconds`, from the shard's own cumulative CPU counter. */
    async function coresUsed(shardId: string, seconds: number): Promise<number> {
      const u0 = (await driver.usage(shardId)).cpuUsageSeconds;
      const t0 = process.hrtime.bigint();
      await sleep(seconds * 1000);
      const u1 = (await driver.usage(shardId)).cpuUsageSeconds;
      const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
      return (u1 - u0) / elapsed;
    }

    it('creates a shard in every hierarchy, sets and reads back limits, and removes it', async () => {
      await driver.create('basic');
      await driver.create('basic'); // idempotent
      expect(await driver.exists('basic')).toBe(true);
      expect(await driver.list()).toEqual(['basic']);
      for (const dir of Object.values(driver.paths('basic'))) expect(existsSync(join(dir, 'cgroup.procs'))).toBe(true);

      await driver.setLimits('basic', { cpuCores: 0.25, cpuPeriodMicros: 50_000, memoryBytes: 96 * 2 ** 20 });
      expect(await driver.readLimits('basic')).toMatchObject({ cpuCores: 0.25, cpuPeriodMicros: 50_000, memoryBytes: 96 * 2 ** 20 });
      // Lowering then raising the memory limit both work (v1 memsw ordering).
      await driver.setLimits('basic', { memoryBytes: 32 * 2 ** 20 });
      await driver.setLimits('basic', { memoryBytes: 128 * 2 ** 20 });
      await driver.setLimits('basic', { cpuCores: null, memoryBytes: null });
      expect(await driver.readLimits('basic')).toMatchObject({ cpuCores: null, memoryBytes: null });

      await driver.remove('basic');
      await driver.remove('basic'); // idempotent
      expect(await driver.exists('basic')).toBe(false);
      for (const dir of Object.values(driver.paths('basic'))) expect(existsSync(dir)).toBe(false);
    });

    it('limits IOPS on a named block device and reads the rule back', async () => {
      const { device } = diskUnder(process.cwd());
      await driver.create('iops');
      await driver.setLimits('iops', { io: { device, readIops: 200, writeIops: 100 } });
      expect((await driver.readLimits('iops')).io).toEqual({ device, readIops: 200, writeIops: 100 });
      await driver.setLimits('iops', { io: { device, readIops: 0 } });
      expect((await driver.readLimits('iops')).io).toEqual({ device, readIops: 0, writeIops: 100 });
      await driver.remove('iops');
    });

    it('holds direct reads to 50 IOPS on the disk, counted in the shard io counters and io pressure', async () => {
      const { device, dir } = diskUnder(process.cwd());
      const file = join(dir, `.shardform-iops-${process.pid}`);
      writeFileSync(file, randomBytes(4 * 2 ** 20));
      try {
        await driver.create('reader');
        await driver.setLimits('reader', { io: { device, readIops: 50 } });
        // O_DIRECT: every 4 KiB block is one request to the disk, none served from the page cache.
        const child = start('reader', `exec dd if='${file}' of=/dev/null bs=4096 count=1024 iflag=direct status=none`);
        await joined('reader', child.pid);
        await sleep(500); // past blk-throttle's first slice
        const u0 = await driver.usage('reader');
        const t0 = process.hrtime.bigint();
        await sleep(2000);
        const u1 = await driver.usage('reader');
        const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
        const iops = (u1.ioReadOps - u0.ioReadOps) / elapsed;
        expect(iops).toBeGreaterThan(25);
        expect(iops).toBeLessThan(60);
        expect(u1.ioReadBytes - u0.ioReadBytes).toBeGreaterThanOrEqual(4096 * (u1.ioReadOps - u0.ioReadOps));
        if (driver.layout !== 'v1') expect(u1.pressure.io!.someTotalMicros).toBeGreaterThan(u0.pressure.io!.someTotalMicros);
        await driver.killAll('reader');
        await driver.remove('reader');
      } finally {
        rmSync(file, { force: true });
      }
    }, 30_000);

    it('holds a CPU burner to 0.5 core, then lets the same process use 1 core after an in-place resize', async () => {
      await driver.create('burner');
      favourCpu(Object.values(driver.probe.mounts), ownerPrefix);
      await driver.setLimits('burner', { cpuCores: 0.5 });
      const child = start('burner', 'while :; do :; done');
      await joined('burner', child.pid);

      const half = await coresUsed('burner', 5);
      expect(half).toBeGreaterThan(0.4);
      expect(half).toBeLessThan(0.6);
      const throttled = await driver.usage('burner');
      expect(throttled.cpuThrottledPeriods).toBeGreaterThan(0);
      expect(throttled.cpuThrottledSeconds).toBeGreaterThan(0);

      await driver.setLimits('burner', { cpuCores: 1 });
      const one = await coresUsed('burner', 5);
      expect(one).toBeGreaterThan(half + 0.3);
      expect(one).toBeLessThan(1.1);
      // Same process, never restarted.
      expect(child.exitCode).toBeNull();
      expect(await driver.pids('burner')).toEqual([child.pid]);

      await driver.killAll('burner');
      expect(await driver.pids('burner')).toEqual([]);
      await driver.remove('burner');
    }, 60_000);

    it('freezes a shard (its counter stops) and thaws it (the counter moves again)', async () => {
      const counter = join(scratch, 'counter');
      await driver.create('freezer');
      // `1<>` overwrites in place instead of truncating: with `>` the file is empty between the
      // truncate and the write, and on a loaded machine the shell is mostly preempted in between
      // (reproduced with two busy loops beside the test: 4 failures in 5 runs).
      const child = start('freezer', `i=0; while :; do i=$((i+1)); echo $i 1<> '${counter}'; done`);
      await joined('freezer', child.pid);
      const read = (): string => (existsSync(counter) ? readFileSync(counter, 'utf8') : '');
      expect(await eventually(() => read() !== '')).toBe(true);

      await driver.freeze('freezer');
      expect(await driver.isFrozen('freezer')).toBe(true);
      const atFreeze = read();
      await sleep(500);
      expect(read()).toBe(atFreeze);

      await driver.thaw('freezer');
      expect(await driver.isFrozen('freezer')).toBe(false);
      expect(await eventually(() => read() !== atFreeze)).toBe(true);

      // A frozen shard can still be killed (v1 needs a thaw for SIGKILL to act; the driver does it).
      await driver.freeze('freezer');
      await driver.killAll('freezer');
      expect(await driver.pids('freezer')).toEqual([]);
      await driver.thaw('freezer');
      await driver.remove('freezer');
    }, 30_000);

    it('OOM-kills a process that allocates 128 MiB in a 64 MiB shard and counts the kill', async () => {
      await driver.create('oom');
      await driver.setLimits('oom', { memoryBytes: 64 * 2 ** 20 });
      const before = (await driver.usage('oom')).oomKills;
      const child = start('oom', `exec ${PYTHON} -c "import time; x = b'x' * (128 << 20); time.sleep(30)"`);
      const exit = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
      expect(exit).toBe('SIGKILL');
      const after = await driver.usage('oom');
      expect(after.oomKills).toBeGreaterThan(before);
      expect(after.memoryPeakBytes ?? 0).toBeGreaterThan(32 * 2 ** 20);
      expect(after.memoryPeakBytes ?? Infinity).toBeLessThanOrEqual(64 * 2 ** 20);
      await driver.remove('oom');
    }, 30_000);

    it('a memory limit below what the shard holds is refused on every layout (v1: the kernel\'s EBUSY; v2: the driver, before memory.max would OOM-kill) and leaves the old limit in force, memory+swap included', async () => {
      await driver.create('shrink');
      await driver.setLimits('shrink', { memoryBytes: 128 * 2 ** 20 });
      const child = start('shrink', `exec ${PYTHON} -c "import sys, time; x = bytearray(64 << 20); print(1, flush=True); time.sleep(60)"`);
      await joined('shrink', child.pid);
      expect(await eventually(async () => (await driver.usage('shrink')).memoryCurrentBytes > 60 * 2 ** 20)).toBe(true);
      const memsw = (): string | undefined => {
        const path = join(driver.paths('shrink').memory ?? '/nonexistent', 'memory.memsw.limit_in_bytes');
        return existsSync(path) ? readFileSync(path, 'utf8').trim() : undefined;
      };
      await expect(driver.setLimits('shrink', { memoryBytes: 16 * 2 ** 20 })).rejects.toMatchObject({ code: 'MEMORY_IN_USE', shardId: 'shrink', value: 16 * 2 ** 20 });
      expect((await driver.readLimits('shrink')).memoryBytes).toBe(128 * 2 ** 20);
      expect(child.exitCode).toBeNull();
      expect((await driver.usage('shrink')).oomKills).toBe(0);
      // memory+swap must still be capped where the kernel accounts swap, not lifted to "no limit".
      if (driver.probe.memsw) expect(memsw()).toBe(String(128 * 2 ** 20));
      // Raising still works, in both files.
      await driver.setLimits('shrink', { memoryBytes: 256 * 2 ** 20 });
      expect((await driver.readLimits('shrink')).memoryBytes).toBe(256 * 2 ** 20);
      if (driver.probe.memsw) expect(memsw()).toBe(String(256 * 2 ** 20));
      await driver.killAll('shrink');
      await driver.remove('shrink');
    }, 30_000);

    it('reads PSI for cpu, memory and io from the shard where the kernel has a unified hierarchy', async () => {
      await driver.create('psi');
      const { pressure } = await driver.usage('psi');
      if (driver.layout === 'v1') {
        expect(pressure).toEqual({});
      } else {
        for (const resource of ['cpu', 'memory', 'io'] as const) {
          const stall = pressure[resource];
          expect(stall).toBeDefined();
          expect(Number.isFinite(stall?.someTotalMicros)).toBe(true);
          expect(stall?.someAvg10).toBeGreaterThanOrEqual(0);
        }
      }
      // The benchmark's bare reader reads the same files from the kernel.
      const reader = await bareReaderFor(driver, ['psi']);
      expect(reader.paths).toEqual(await driver.usageFiles('psi'));
      expect(reader.readAll()).toBeGreaterThan(0);
      await driver.remove('psi');
    });

    it('re-reads every usage file through a descriptor kept open: a pread at offset 0 shows what a fresh open/read shows, through work, an OOM kill and limit changes', async () => {
      const { dir } = diskUnder(process.cwd());
      const data = join(dir, `.shardform-kept-${process.pid}`);
      writeFileSync(data, randomBytes(2 ** 20));
      await driver.create('kept');
      await driver.setLimits('kept', { cpuCores: 0.2, memoryBytes: 48 * 2 ** 20 });
      const files = await driver.usageFiles('kept');
      const fds = files.map((file) => openSync(file, 'r'));
      const buffer = Buffer.alloc(64 * 1024);
      const pread = (fd: number): string => buffer.toString('latin1', 0, readSync(fd, buffer, 0, buffer.length, 0));
      /** PSI averages move on their own (every 2 s), so a fresh read is compared with kept reads on either side of it. */
      const agreesWithFreshReads = () =>
        files.forEach((file, i) => {
          const before = pread(fds[i]!);
          const fresh = readFileSync(file, 'latin1');
          const after = pread(fds[i]!);
          expect({ file, fresh: [before, after].includes(fresh) ? 'same' : { before, fresh, after } }).toEqual({ file, fresh: 'same' });
        });
      try {
        const first = fds.map(pread);
        agreesWithFreshReads();
        // CPU under a 0.2-core quota (throttled), direct disk reads, then memory past the limit (OOM kill).
        const child = start(
          'kept',
          `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; dd if='${data}' of=/dev/null bs=4096 iflag=direct status=none; exec ${PYTHON} -c "x = b'x' * (96 << 20)"`,
        );
        await new Promise((resolve) => child.on('exit', resolve));
        agreesWithFreshReads();
        const moved = files.filter((_, i) => pread(fds[i]!) !== first[i]).map((file) => basename(file));
        const expected = driver.layout === 'v2' ? ['cpu.stat', 'memory.peak', 'memory.events', 'io.stat'] : ['cpu.stat', 'cpuacct.usage', 'memory.max_usage_in_bytes', 'memory.oom_control', 'blkio.throttle.io_serviced', 'blkio.throttle.io_service_bytes'];
        expect(moved).toEqual(expect.arrayContaining(expected));
        expect((await driver.usage('kept')).oomKills).toBe(1);

        await driver.setLimits('kept', { cpuCores: null, memoryBytes: null });
        agreesWithFreshReads();
        await driver.setLimits('kept', { cpuCores: 1, memoryBytes: 32 * 2 ** 20 });
        agreesWithFreshReads();

        // Removed behind the driver's back: every kept descriptor fails with ENODEV, the driver's
        // next reading says SHARD_NOT_FOUND and closes what it kept; nothing of the shard stays open.
        const dirs = [...new Set(Object.values(driver.paths('kept')))];
        expect(openFilesUnder(dirs)).toHaveLength(files.length * 2); // the test's descriptors and the driver's
        for (const d of dirs) rmdirSync(d);
        for (const fd of fds) expect(() => readSync(fd, buffer, 0, buffer.length, 0)).toThrow(expect.objectContaining({ code: 'ENODEV' }));
        await expect(driver.usage('kept')).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND', shardId: 'kept' });
        expect(openFilesUnder(dirs)).toHaveLength(files.length);
        await expect(driver.oomKills('kept')).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND', shardId: 'kept' });
        expect(openFilesUnder(dirs)).toHaveLength(files.length);

        // Created again under the same name: read afresh, not through the dead descriptors.
        await driver.create('kept');
        expect((await driver.usage('kept')).oomKills).toBe(0);
        expect(openFilesUnder(dirs)).toHaveLength(files.length * 2);
        await driver.remove('kept');
      } finally {
        for (const fd of fds) closeSync(fd);
        rmSync(data, { force: true });
      }
      expect(openFilesUnder([...new Set(Object.values(driver.paths('kept')))])).toEqual([]);
    }, 30_000);

    it('refuses to remove a shard that still has a process, then removes it once killAll emptied it', async () => {
      await driver.create('busy');
      const child = start('busy', 'sleep 30');
      await joined('busy', child.pid);
      await expect(driver.remove('busy')).rejects.toMatchObject({ code: 'SHARD_BUSY', shardId: 'busy' });
      await driver.killAll('busy');
      await driver.remove('busy');
      expect(await driver.exists('busy')).toBe(false);
    });

    it('never lets a shard id like ../../etc reach the filesystem', async () => {
      const before = await driver.list();
      for (const bad of ['../../etc', '..', 'a/b', 'UPPER', '']) {
        await expect(driver.create(bad)).rejects.toBeInstanceOf(ShardformError);
        await expect(driver.remove(bad)).rejects.toMatchObject({ code: 'INVALID_ID', field: 'shardId', value: bad });
      }
      expect(await driver.list()).toEqual(before);
      await expect(driver.setLimits('no-such-shard', { cpuCores: 1 })).rejects.toBeInstanceOf(HostAgentError);
    });
  });
}

/**
 * The whole disk (major:minor, as blk-throttle wants it) holding `dir`, found through
 * /sys/dev/block; a partition is walked up to its disk. Fails, rather than skips, where `dir`
 * is not on a block device (tmpfs, overlay): the IOPS tests need a real disk.
 */
function diskUnder(dir: string): { device: string; dir: string } {
  const dev = statSync(dir).dev;
  // glibc's major()/minor() encoding of dev_t.
  const major = ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  const sys = `/sys/dev/block/${major}:${minor}`;
  if (!existsSync(sys)) throw new Error(`${dir} is not on a block device (dev ${major}:${minor}); run the suite from a disk-backed checkout`);
  const disk = existsSync(join(sys, 'partition')) ? readFileSync(join(realpathSync(sys), '..', 'dev'), 'utf8').trim() : `${major}:${minor}`;
  return { device: disk, dir };
}
