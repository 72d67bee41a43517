import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';
import { limitsApplied, planReconcile, workloadSpec, type ObservedShard } from '../../../host-agent/reconcile/reconcile-plan';

const desired = (shardId: string, over: Partial<DesiredShard> = {}): DesiredShard => ({
  shardId,
  applicationId: 'web',
  limits: { cpuCores: 0.5, memoryBytes: 64 * 2 ** 20 },
  command: ['/bin/sleep', '1000'],
  env: { A: '1' },
  stateDirectory: '/var/lib/web',
  ...over,
});

const observed = (shardId: string, over: Partial<ObservedShard> = {}): ObservedShard => ({
  shardId,
  cgroup: true,
  run: 'running',
  appliedLimits: { cpuCores: 0.5, memoryBytes: 64 * 2 ** 20 },
  spec: workloadSpec(desired(shardId)),
  ...over,
});

const kinds = (plan: ReturnType<typeof planReconcile>) => plan.map((steps) => steps.map((s) => `${s.kind}:${s.shardId}`));

describe('planReconcile', () => {
  it('creates, limits and starts a shard the host does not have', () => {
    expect(kinds(planReconcile([desired('web-0')], []))).toEqual([['create:web-0', 'set-limits:web-0', 'start:web-0']]);
  });

  it('does nothing when the host already matches (idempotent)', () => {
    expect(planReconcile([desired('web-0')], [observed('web-0')])).toEqual([]);
  });

  it('resizes in place (set-limits only, no restart) when only limits changed', () => {
    const plan = planReconcile([desired('web-0', { limits: { cpuCores: 1, memoryBytes: 64 * 2 ** 20 } })], [observed('web-0')]);
    expect(plan).toEqual([[{ kind: 'set-limits', shardId: 'web-0', limits: { cpuCores: 1, memoryBytes: 64 * 2 ** 20 } }]]);
  });

  it('replaces the workload when its command or env changed', () => {
    expect(kinds(planReconcile([desired('web-0', { command: ['/bin/sleep', '5'] })], [observed('web-0')]))).toEqual([['replace:web-0']]);
    expect(kinds(planReconcile([desired('web-0', { env: { A: '2' } })], [observed('web-0')]))).toEqual([['replace:web-0']]);
    expect(planReconcile([desired('web-0', { env: { A: '1' } })], [observed('web-0', { spec: { ...workloadSpec(desired('web-0')), env: { A: '1' } } })])).toEqual([]);
  });

  it('writes the new limits of a replaced workload inside the replace (after the old run stopped), not before it', () => {
    const limits = { cpuCores: 0.5, memoryBytes: 32 * 2 ** 20 };
    const want = desired('web-0', { command: ['/bin/sleep', '5'], limits });
    expect(planReconcile([want], [observed('web-0')])).toEqual([[{ kind: 'replace', shardId: 'web-0', desired: want, limits }]]);
  });

  it('stops and removes shards that are no longer desired, including leftover cgroups with no record', () => {
    const plan = planReconcile([], [observed('web-0'), observed('old-1', { run: 'none', spec: undefined, appliedLimits: undefined })]);
    expect(kinds(plan)).toEqual([['remove:old-1'], ['stop:web-0', 'remove:web-0']]);
  });

  it('stops a shard waiting in back-off that is no longer desired', () => {
    expect(kinds(planReconcile([], [observed('web-0', { run: 'waiting' })]))).toEqual([['stop:web-0', 'remove:web-0']]);
  });

  it('leaves a shard in back-off to the supervisor when it is still desired', () => {
    expect(planReconcile([desired('web-0')], [observed('web-0', { run: 'waiting' })])).toEqual([]);
  });

  it('starts a desired shard whose cgroup exists but whose workload is gone', () => {
    expect(kinds(planReconcile([desired('web-0')], [observed('web-0', { run: 'none' })]))).toEqual([['start:web-0']]);
  });

  it('retries everything after a partial failure: a cgroup that was created but never limited or started', () => {
    const plan = planReconcile([desired('web-0')], [observed('web-0', { run: 'none', appliedLimits: undefined, spec: undefined })]);
    expect(kinds(plan)).toEqual([['set-limits:web-0', 'start:web-0']]);
  });

  it('never touches a shard held by migration, desired or not', () => {
    expect(planReconcile([desired('web-0')], [observed('web-0', { run: 'held', cgroup: true })])).toEqual([]);
    expect(planReconcile([], [observed('web-0', { run: 'held' })])).toEqual([]);
  });

  it('orders shards by id so passes are reproducible', () => {
    expect(kinds(planReconcile([desired('b-0'), desired('a-0')], [])).map((s) => s[0])).toEqual(['create:a-0', 'create:b-0']);
  });
});

describe('limitsApplied', () => {
  it('compares only the fields the desired limits set', () => {
    expect(limitsApplied({ memoryBytes: 10 }, { memoryBytes: 10, cpuCores: 2 })).toBe(true);
    expect(limitsApplied({ cpuCores: null }, { cpuCores: 2 })).toBe(false);
    expect(limitsApplied({ io: { device: '8:0', readIops: 5 } }, { io: { device: '8:0', readIops: 5, writeIops: 1 } })).toBe(true);
    expect(limitsApplied({ io: { device: '8:0', readIops: 5 } }, { io: { device: '8:16', readIops: 5 } })).toBe(false);
    expect(limitsApplied({ memoryBytes: 10 }, undefined)).toBe(false);
  });
});
