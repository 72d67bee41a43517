import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkLimits } from '../../../host-agent/cgroups/limits-check';
import { probeCgroupLayout } from '../../../host-agent/cgroups/probe';
import { flatKeyedValue, parseBlkioRecursive, parseFlatKeyed, parseIoStatTotals, parseNestedKeyed, parsePressure } from '../../../host-agent/cgroups/cgroup-parse';
import { fixtureTree } from './fixture-tree';

describe('probeCgroupLayout', () => {
  it.each(['v2', 'v1', 'hybrid'] as const)('recognises a %s tree', (layout) => {
    const fx = fixtureTree(layout);
    try {
      expect(probeCgroupLayout(fx.root).layout).toBe(layout);
    } finally {
      fx.cleanup();
    }
  });

  it('names the v1 controllers that are missing', () => {
    const fx = fixtureTree('v1', { omit: ['blkio', 'freezer'] });
    try {
      expect(() => probeCgroupLayout(fx.root)).toThrow(
        expect.objectContaining({ code: 'UNSUPPORTED_CGROUP_LAYOUT', field: fx.root, message: expect.stringContaining('v1 controllers blkio, freezer not mounted') }),
      );
    } finally {
      fx.cleanup();
    }
  });

  it('refuses a directory with no cgroup hierarchy at all', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shardform-nocg-'));
    try {
      expect(() => probeCgroupLayout(dir)).toThrow(
        `${dir}: neither cgroup2 (cgroup.controllers) nor v1 controller mounts found; mount cgroup2 at ${dir} (or the v1 cpu, cpuacct, memory, blkio and freezer controllers under it)`,
      );
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});

describe('checkLimits', () => {
  it('derives the CFS quota from cores and period', () => {
    expect(checkLimits('s', { cpuCores: 0.5 })).toEqual({ cpu: { quotaMicros: 50000, periodMicros: 100000 } });
    expect(checkLimits('s', { cpuCores: 3, cpuPeriodMicros: 10000 })).toEqual({ cpu: { quotaMicros: 30000, periodMicros: 10000 } });
    expect(checkLimits('s', { cpuCores: null })).toEqual({ cpu: { quotaMicros: null, periodMicros: 100000 } });
    expect(checkLimits('s', {})).toEqual({});
  });

  it.each([
    [{ cpuCores: 0 }, 'cpuCores', 'shard s: limits.cpuCores 0 is invalid; use a positive number of cores (0.5 = half a core), or null for no limit'],
    [{ cpuCores: Number.NaN }, 'cpuCores', 'shard s: limits.cpuCores NaN is invalid; use a positive number of cores (0.5 = half a core), or null for no limit'],
    [{ cpuCores: 0.005 }, 'cpuCores', "shard s: limits.cpuCores 0.005 is invalid; the quota 500us per 100000us period is below the kernel's 1000us minimum; use at least 0.01 cores"],
    // sched-bwc: quota above max_cfs_runtime (2^44-1 us) is EINVAL; on v1 the period was already written by then.
    [{ cpuCores: 2e9, cpuPeriodMicros: 10000 }, 'cpuCores', "shard s: limits.cpuCores 2000000000 is invalid; a quota above the kernel's maximum of 17592186044415us per period; use at most 1759218604 cores with a 10000us period"],
    [{ cpuCores: 1e300 }, 'cpuCores', "shard s: limits.cpuCores 1e+300 is invalid; a quota above the kernel's maximum of 17592186044415us per period; use at most 175921860 cores with a 100000us period"],
    [{ cpuCores: 1, cpuPeriodMicros: 500 }, 'cpuPeriodMicros', 'shard s: limits.cpuPeriodMicros 500 is invalid; use a whole number of microseconds from 1000 to 1000000'],
    [{ cpuPeriodMicros: 50000 }, 'cpuPeriodMicros', 'shard s: limits.cpuPeriodMicros 50000 is invalid; give cpuCores with it (the quota is derived from cores x period)'],
    [{ memoryBytes: 1.5 }, 'memoryBytes', 'shard s: limits.memoryBytes 1.5 is invalid; use a whole number of bytes from 4096 (one 4KiB page: the kernel rounds a memory limit down to whole pages, so less is a limit of 0 and the shard is OOM-killed at its first allocation) to 9007199254740991 (2^53-1: past it a JSON number no longer counts bytes exactly), or null for no limit'],
    // The start path agrees with the resize route and the plan: one page at least.
    [{ memoryBytes: 1 }, 'memoryBytes', 'shard s: limits.memoryBytes 1 is invalid; use a whole number of bytes from 4096 (one 4KiB page: the kernel rounds a memory limit down to whole pages, so less is a limit of 0 and the shard is OOM-killed at its first allocation) to 9007199254740991 (2^53-1: past it a JSON number no longer counts bytes exactly), or null for no limit'],
    [{ memoryBytes: 2 ** 53 }, 'memoryBytes', 'shard s: limits.memoryBytes 9007199254740992 is invalid; use a whole number of bytes from 4096 (one 4KiB page: the kernel rounds a memory limit down to whole pages, so less is a limit of 0 and the shard is OOM-killed at its first allocation) to 9007199254740991 (2^53-1: past it a JSON number no longer counts bytes exactly), or null for no limit'],
    [{ io: { device: '../sda' } }, 'io.device', 'shard s: limits.io.device "../sda" is invalid; name a block device as "major:minor", e.g. "254:0" (see /proc/partitions)'],
    [{ io: { device: '8:0\n9:0 riops=1' } }, 'io.device', 'shard s: limits.io.device "8:0\\n9:0 riops=1" is invalid; name a block device as "major:minor", e.g. "254:0" (see /proc/partitions)'],
    [{ io: { device: '8:0', writeIops: -1 } }, 'io.writeIops', 'shard s: limits.io.writeIops -1 is invalid; use a whole number of operations per second, or 0 for no limit'],
  ])('refuses %j naming %s', (limits, field, message) => {
    expect(() => checkLimits('s', limits)).toThrow(expect.objectContaining({ code: 'INVALID_LIMITS', shardId: 's', field: field, message }));
  });
});

describe('cgroup file parsers', () => {
  it('parses PSI with and without a full line', () => {
    expect(parsePressure('some avg10=0.10 avg60=0.20 avg300=0.30 total=40\n')).toEqual({ someAvg10: 0.1, someAvg60: 0.2, someTotalMicros: 40 });
    expect(() => parsePressure('full avg10=0.10 avg60=0.20 avg300=0.30 total=40\n')).toThrow('a PSI "some avg10=... avg60=... avg300=... total=..." line');
  });

  it('parses nested keyed files with max as Infinity', () => {
    expect(parseNestedKeyed('8:0 rbps=max riops=20\n')).toEqual(new Map([['8:0', new Map([['rbps', Infinity], ['riops', 20]])]]));
  });

  it('sums v1 blkio reads and writes over devices, skipping Sync/Async/Total', () => {
    expect(parseBlkioRecursive('8:0 Read 1\n8:0 Write 2\n8:0 Sync 3\n8:0 Total 3\n9:0 Read 4\nTotal 7\n')).toEqual({ read: 5, write: 2, devices: 2 });
  });

  it('parses PSI whatever the order of its lines and fields', () => {
    expect(parsePressure('full avg10=0.50 avg60=0.25 avg300=0.00 total=6\nsome avg60=0.75 avg10=1.50 total=12 avg300=0.10')).toEqual({
      someAvg10: 1.5,
      someAvg60: 0.75,
      someTotalMicros: 12,
      fullAvg10: 0.5,
      fullTotalMicros: 6,
    });
    expect(() => parsePressure('some avg10=x avg60=0 avg300=0 total=0\n')).toThrow('PSI "some avg10=... total=..." lines');
  });

  it('finds one flat keyed value by its whole key, not by a key it prefixes', () => {
    const oomControl = 'oom_kill_disable 1\nunder_oom 0\noom_kill 7\n';
    expect(flatKeyedValue(oomControl, 'oom_kill')).toBe(7);
    expect(flatKeyedValue('oom_kill_disable 1\nunder_oom 0\n', 'oom_kill')).toBeUndefined();
    expect(flatKeyedValue('nr_periods 3\nnr_throttled 2', 'nr_throttled')).toBe(2);
    expect(() => flatKeyedValue('usage_usec ten\n', 'usage_usec')).toThrow('"key value" lines with numeric values');
  });

  it('sums io.stat counters over devices, ignoring the discard and other keys', () => {
    const text = '254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=9 dios=9\n8:0 rbytes=100 wbytes=0 rios=3 wios=0 dbytes=0 dios=0\n';
    expect(parseIoStatTotals(text)).toEqual({ rbytes: 4196, wbytes: 8192, rios: 4, wios: 2, devices: 2 });
    expect(parseIoStatTotals(text.trimEnd())).toMatchObject({ devices: 2 }); // no newline after the last line
    expect(parseIoStatTotals('')).toEqual({ rbytes: 0, wbytes: 0, rios: 0, wios: 0, devices: 0 });
    expect(() => parseIoStatTotals('8:0 rios=x\n')).toThrow('"MAJ:MIN key=value ..." lines');
  });

  it('refuses flat keyed lines that are not "key number"', () => {
    expect(() => parseFlatKeyed('usage_usec ten\n')).toThrow('"key value" lines with numeric values');
    expect(() => parseFlatKeyed('a 1 2\n')).toThrow('"key value" lines');
  });
});
