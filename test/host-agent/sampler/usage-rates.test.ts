import { counterIncrease, usageSample } from '../../../host-agent/sampler/usage-rates';
import { usage } from '../../helpers/agent-fakes';

const shard = { shardId: 'web-0', applicationId: 'web', limits: { cpuCores: 0.5 } };

describe('usage rates', () => {
  it('turns counter increases into per-second rates over the interval', () => {
    const sample = usageSample(
      shard,
      { atSeconds: 100, usage: usage({ cpuUsageSeconds: 10, ioReadOps: 50, ioWriteOps: 10, ioReadBytes: 4096, ioWriteBytes: 0, memoryCurrentBytes: 1 }) },
      { atSeconds: 105, usage: usage({ cpuUsageSeconds: 12.5, ioReadOps: 100, ioWriteOps: 35, ioReadBytes: 4096 + 5 * 8192, ioWriteBytes: 500, memoryCurrentBytes: 777 }) },
    );
    expect(sample).toEqual({
      atSeconds: 105, shardId: 'web-0', applicationId: 'web',
      cpuCores: 0.5, cpuThrottledRatio: 0, memoryBytes: 777,
      readOps: 10, writeOps: 5, readBytesPerSecond: 8192, writeBytesPerSecond: 100,
    });
  });

  it('gives the share of CFS periods that were throttled (100 ms default period)', () => {
    const s = usageSample(shard, { atSeconds: 0, usage: usage({ cpuThrottledPeriods: 7 }) }, { atSeconds: 5, usage: usage({ cpuThrottledPeriods: 32 }) });
    expect(s?.cpuThrottledRatio).toBeCloseTo(25 / 50, 10);
    const custom = usageSample({ ...shard, limits: { cpuCores: 1, cpuPeriodMicros: 1_000_000 } }, { atSeconds: 0, usage: usage() }, { atSeconds: 4, usage: usage({ cpuThrottledPeriods: 100 }) });
    expect(custom?.cpuThrottledRatio).toBe(1);
  });

  it('treats a counter that went down as reset to zero (the increase is the new value)', () => {
    expect(counterIncrease(500, 20)).toBe(20);
    expect(counterIncrease(20, 500)).toBe(480);
    const s = usageSample(shard, { atSeconds: 0, usage: usage({ cpuUsageSeconds: 900, ioReadOps: 10 }) }, { atSeconds: 2, usage: usage({ cpuUsageSeconds: 1, ioReadOps: 4 }) });
    expect(s).toMatchObject({ cpuCores: 0.5, readOps: 2 });
  });

  it('does not read a device leaving the io sums as a reset: that interval counts only what went up', () => {
    // Two devices, 1e9 reads between them; one is detached, the other read 10 more in 2 s.
    const before = usage({ ioReadOps: 1e9, ioReadBytes: 4e12, ioDevices: 2 });
    const after = usage({ ioReadOps: 6e8 + 10, ioReadBytes: 2e12, ioDevices: 1 });
    expect(usageSample(shard, { atSeconds: 0, usage: before }, { atSeconds: 2, usage: after })).toMatchObject({ readOps: 0, readBytesPerSecond: 0 });
    // The same drop with the same devices is a reset (the cgroup was recreated), as before.
    expect(usageSample(shard, { atSeconds: 0, usage: { ...before, ioDevices: 1 } }, { atSeconds: 2, usage: { ...after, ioReadOps: 10 } })).toMatchObject({ readOps: 5 });
  });

  it('gives no sample for an empty or backwards interval', () => {
    expect(usageSample(shard, { atSeconds: 10, usage: usage() }, { atSeconds: 10, usage: usage({ cpuUsageSeconds: 1 }) })).toBeUndefined();
    expect(usageSample(shard, { atSeconds: 10, usage: usage() }, { atSeconds: 9, usage: usage() })).toBeUndefined();
  });

  it('carries PSI some avg10 where the kernel offers it', () => {
    const stall = { someAvg10: 12.5, someAvg60: 1, someTotalMicros: 5 };
    const s = usageSample(shard, { atSeconds: 0, usage: usage() }, { atSeconds: 1, usage: usage({ pressure: { cpu: stall, io: { ...stall, someAvg10: 3 } } }) });
    expect(s).toMatchObject({ cpuPressure: 12.5, ioPressure: 3 });
    expect(s).not.toHaveProperty('memoryPressure');
  });
});
