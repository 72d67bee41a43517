import { silentLogger } from '../../../host-agent/log';
import { AgentMetrics } from '../../../host-agent/metrics/agent-metrics';
import { Sampler, type SampledShard } from '../../../host-agent/sampler/sampler';
import { FakeDriver, MemoryHistory, usage } from '../../helpers/agent-fakes';

describe('Sampler', () => {
  const shards: SampledShard[] = [
    { shardId: 'web-0', applicationId: 'web', limits: { cpuCores: 1 }, restarts: 0 },
    { shardId: 'web-1', applicationId: 'web', limits: { cpuCores: 1 }, restarts: 3 },
  ];
  let driver: FakeDriver;
  let history: MemoryHistory;
  let metrics: AgentMetrics;
  let current: SampledShard[];
  let sampler: Sampler;
  beforeEach(() => {
    driver = new FakeDriver();
    history = new MemoryHistory();
    metrics = new AgentMetrics({ processMetrics: false });
    current = [...shards];
    let tick = 0;
    sampler = new Sampler({ driver, history, shards: () => current, metrics, logger: silentLogger(), monotonic: () => (tick += 0.002), compactEverySeconds: 60 });
  });

  it('primes on the first pass and appends one rate sample per shard from the second, at the injected time', async () => {
    driver.readings.set('web-0', usage({ cpuUsageSeconds: 100 }));
    driver.readings.set('web-1', usage({ cpuUsageSeconds: 50 }));
    expect((await sampler.sampleOnce(1000)).samples).toEqual([]);
    driver.readings.set('web-0', usage({ cpuUsageSeconds: 102.5, memoryCurrentBytes: 10 }));
    driver.readings.set('web-1', usage({ cpuUsageSeconds: 50.5 }));
    const pass = await sampler.sampleOnce(1005);
    expect(pass.samples.map((s) => [s.shardId, s.atSeconds, s.cpuCores])).toEqual([
      ['web-0', 1005, 0.5],
      ['web-1', 1005, 0.1],
    ]);
    expect(history.samples).toHaveLength(2);
  });

  it('publishes the kernel counters to /metrics and forgets shards that left', async () => {
    driver.readings.set('web-0', usage({ cpuUsageSeconds: 7, oomKills: 1 }));
    await sampler.sampleOnce(1000);
    let text = await metrics.text();
    expect(text).toContain('shardform_shard_cpu_usage_seconds_total{shard_id="web-0",application_id="web"} 7');
    expect(text).toContain('shardform_shard_oom_kills_total{shard_id="web-0",application_id="web"} 1');
    expect(text).toContain('shardform_shard_restarts_total{shard_id="web-1",application_id="web"} 3');
    expect(text).toMatch(/shardform_sample_duration_seconds_count 1/);
    current = [shards[0]];
    await sampler.sampleOnce(1001);
    text = await metrics.text();
    expect(text).not.toContain('shard_id="web-1"');
  });

  it('tells onReading every reading it took, with its time (how the keeper gets the OOM counter)', async () => {
    const seen: [string, number, number][] = [];
    const told = new Sampler({ driver, history, shards: () => current, logger: silentLogger(), onReading: (id, u, at) => seen.push([id, u.oomKills, at]) });
    driver.readings.set('web-0', usage({ oomKills: 2 }));
    driver.failing.add('web-1');
    await told.sampleOnce(1000);
    await told.sampleOnce(1001);
    expect(seen).toEqual([
      ['web-0', 2, 1000],
      ['web-0', 2, 1001],
    ]);
  });

  it('skips a shard whose usage cannot be read, counts it, and keeps sampling the others', async () => {
    driver.failing.add('web-1');
    await sampler.sampleOnce(1000);
    const pass = await sampler.sampleOnce(1001);
    expect(pass.failed).toEqual([{ shardId: 'web-1', message: 'ENOENT: no cgroup for web-1' }]);
    expect(pass.samples.map((s) => s.shardId)).toEqual(['web-0']);
    expect(await metrics.text()).toContain('shardform_sample_errors_total 2');
  });

  it('restarts the rate of a shard that left and came back instead of spanning the gap', async () => {
    driver.readings.set('web-0', usage({ cpuUsageSeconds: 10 }));
    await sampler.sampleOnce(1000);
    current = [];
    await sampler.sampleOnce(1001);
    current = [shards[0]];
    driver.readings.set('web-0', usage({ cpuUsageSeconds: 0.2 }));
    expect((await sampler.sampleOnce(2000)).samples).toEqual([]);
  });

  it('compacts the history with the plan retention at most every compactEverySeconds', async () => {
    const retention = { rawRetentionSeconds: 3600, historyRetentionSeconds: 86400 };
    await sampler.sampleOnce(1000, retention);
    await sampler.sampleOnce(1030, retention);
    await sampler.sampleOnce(1060, retention);
    expect(history.compactions).toEqual([
      { nowSeconds: 1000, retention },
      { nowSeconds: 1060, retention },
    ]);
  });

  it('goes on compacting after the clock steps back instead of waiting until it passes the last compaction again', async () => {
    const retention = { rawRetentionSeconds: 3600, historyRetentionSeconds: 86400 };
    await sampler.sampleOnce(100_000, retention);
    // The clock was a day ahead and is corrected (NTP step after boot, a bad RTC).
    await sampler.sampleOnce(100_000 - 86400, retention);
    await sampler.sampleOnce(100_000 - 86400 + 30, retention);
    await sampler.sampleOnce(100_000 - 86400 + 60, retention);
    expect(history.compactions.map((c) => c.nowSeconds)).toEqual([100_000, 100_000 - 86400, 100_000 - 86400 + 60]);
  });
});
