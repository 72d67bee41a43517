import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentMetrics } from '../../../host-agent/metrics/agent-metrics';
import { usage } from '../../helpers/agent-fakes';

describe('AgentMetrics', () => {
  it('exposes shard usage, limits, throttling and pressure with units in the names', async () => {
    const metrics = new AgentMetrics({ processMetrics: false });
    const stall = { someAvg10: 25, someAvg60: 1, someTotalMicros: 2_500_000, fullAvg10: 0, fullTotalMicros: 500_000 };
    metrics.observeShard({
      shardId: 'db-0',
      applicationId: 'db',
      usage: usage({ cpuUsageSeconds: 12, cpuThrottledSeconds: 1.5, memoryCurrentBytes: 1024, memoryPeakBytes: 2048, pressure: { memory: stall } }),
      limits: { cpuCores: 0.5, memoryBytes: 4096 },
      restarts: 0,
    });
    const text = await metrics.text();
    const labels = '{shard_id="db-0",application_id="db"}';
    for (const line of [
      `shardform_shard_cpu_limit_cores${labels} 0.5`,
      `shardform_shard_memory_limit_bytes${labels} 4096`,
      `shardform_shard_memory_bytes${labels} 1024`,
      `shardform_shard_memory_peak_bytes${labels} 2048`,
      `shardform_shard_cpu_throttled_seconds_total${labels} 1.5`,
      'shardform_shard_pressure_stalled_seconds_total{shard_id="db-0",application_id="db",resource="memory",kind="some"} 2.5',
      'shardform_shard_pressure_stalled_seconds_total{shard_id="db-0",application_id="db",resource="memory",kind="full"} 0.5',
      'shardform_shard_pressure_some_avg10_ratio{shard_id="db-0",application_id="db",resource="memory"} 0.25',
      '# TYPE shardform_shard_cpu_usage_seconds_total counter',
    ])
      expect(text).toContain(line);
  });

  it('leaves out the limit of an unlimited shard instead of reporting 0', async () => {
    const metrics = new AgentMetrics({ processMetrics: false });
    metrics.observeShard({ shardId: 'a-0', applicationId: 'a', usage: usage(), limits: { cpuCores: null, memoryBytes: null }, restarts: 0 });
    const text = await metrics.text();
    expect(text).not.toContain('shardform_shard_cpu_limit_cores{');
    expect(text).not.toContain('shardform_shard_memory_limit_bytes{');
  });

  it('drops the predicted demand of a shard that left with its usage, not only at the next forecast pass', async () => {
    const metrics = new AgentMetrics({ processMetrics: false });
    const vector = (shardId: string) => ({
      timestamp: '2026-11-25T00:15:00Z',
      application_id: 'web',
      shard_id: shardId,
      resources: { cpu: { cores: 0.5 }, memory: { gb: 1 }, io: { read_ops: 0, write_ops: 0 } },
    });
    for (const shardId of ['web-0', 'web-1']) metrics.observeShard({ shardId, applicationId: 'web', usage: usage(), limits: {}, restarts: 0 });
    metrics.observePredictions([vector('web-0'), vector('web-1')]);
    metrics.retainShards(['web-0']);
    const text = await metrics.text();
    expect(text).toContain('shardform_shard_predicted_cpu_cores{shard_id="web-0",application_id="web"} 0.5');
    expect(text).not.toContain('shard_id="web-1"');
  });

  it('reports the plan generation and the agent\'s own process metrics', async () => {
    const metrics = new AgentMetrics();
    expect(await metrics.text()).toContain('shardform_plan_generation 0');
    metrics.setPlan({ fleet: 'f', generation: 7, digest: 'sha256:ab' });
    const text = await metrics.text();
    expect(text).toContain('shardform_plan_generation 7');
    expect(text).toContain('shardform_plan_info{fleet="f",digest="sha256:ab"} 1');
    const { version } = JSON.parse(readFileSync(join(__dirname, '../../../package.json'), 'utf8')) as { version: string };
    expect(text).toContain(`shardform_build_info{version="${version}",node="${process.versions.node}"} 1`);
    expect(text).toContain('process_cpu_seconds_total');
    expect(text).toContain('process_resident_memory_bytes');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
  });
});
