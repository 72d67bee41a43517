/**
 * In-memory stand-ins for the agent's kernel side and stores, for fast unit tests of the
 * services side (API, sampler, daemon wiring). Each records what it was asked so tests can
 * assert that bad input never reached it.
 */
import type { CgroupDriver, ShardLimits, ShardUsage } from '../../host-agent/cgroups/driver';
import type { DesiredShard } from '../../host-agent/reconcile/desired-shard';
import type { DesiredShardsRead, ReconcileReport, ShardManager } from '../../host-agent/reconcile/shard-manager';
import type { ShardStatus } from '../../host-agent/runner/shard-status';
import type { MetricHistory, MetricQuery, MetricRetention, MetricSample } from '../../src/store/metric-history';
import type { KeyValue, Store, TxnCompare, TxnOp, TxnResult } from '../../src/store/store';

export function usage(partial: Partial<ShardUsage> = {}): ShardUsage {
  return {
    cpuUsageSeconds: 0,
    cpuThrottledSeconds: 0,
    cpuThrottledPeriods: 0,
    memoryCurrentBytes: 0,
    ioReadOps: 0,
    ioWriteOps: 0,
    ioReadBytes: 0,
    ioWriteBytes: 0,
    oomKills: 0,
    pressure: {},
    ...partial,
  };
}

/** A driver whose usage readings are set by the test; every call is recorded. */
export class FakeDriver implements Pick<CgroupDriver, 'layout' | 'usage' | 'list' | 'forget' | 'close'> {
  readonly layout = 'hybrid' as const;
  readonly calls: { method: string; shardId?: string }[] = [];
  readonly readings = new Map<string, ShardUsage>();
  failing = new Set<string>();

  async usage(shardId: string): Promise<ShardUsage> {
    this.calls.push({ method: 'usage', shardId });
    if (this.failing.has(shardId)) throw new Error(`ENOENT: no cgroup for ${shardId}`);
    return this.readings.get(shardId) ?? usage();
  }

  async list(): Promise<string[]> {
    this.calls.push({ method: 'list' });
    return [...this.readings.keys()];
  }

  forget(shardId: string): void {
    this.calls.push({ method: 'forget', shardId });
  }

  close(): void {
    this.calls.push({ method: 'close' });
  }
}

/** A shard manager that "runs" whatever it is told to (no processes); records every call. */
export class FakeShardManager implements ShardManager {
  readonly calls: { method: string; args: unknown[] }[] = [];
  private readonly shards = new Map<string, ShardStatus>();
  applyError: Error | undefined;

  seed(shardId: string, applicationId: string, limits: ShardLimits, extra: Partial<ShardStatus> = {}): void {
    this.shards.set(shardId, { shardId, applicationId, state: 'running', pid: 1000 + this.shards.size, restarts: 0, adopted: false, frozen: false, limits, ...extra });
  }

  async start(): Promise<ReconcileReport> {
    this.calls.push({ method: 'start', args: [] });
    return { actions: [], converged: true };
  }

  async apply(wanted: readonly DesiredShard[] | DesiredShardsRead): Promise<ReconcileReport> {
    const desired = typeof wanted === 'function' ? await wanted() : wanted;
    if (!desired) return { actions: [], converged: false };
    this.calls.push({ method: 'apply', args: [desired] });
    if (this.applyError) throw this.applyError;
    const actions: { kind: string; shardId: string; ok: boolean }[] = [];
    const want = new Set(desired.map((d) => d.shardId));
    for (const id of [...this.shards.keys()])
      if (!want.has(id)) {
        this.shards.delete(id);
        actions.push({ kind: 'remove', shardId: id, ok: true });
      }
    for (const d of desired) {
      const existing = this.shards.get(d.shardId);
      if (!existing) {
        this.seed(d.shardId, d.applicationId, d.limits);
        actions.push({ kind: 'start', shardId: d.shardId, ok: true });
      } else if (JSON.stringify(existing.limits) !== JSON.stringify(d.limits)) {
        this.shards.set(d.shardId, { ...existing, limits: d.limits });
        actions.push({ kind: 'resize', shardId: d.shardId, ok: true });
      }
    }
    return { actions, converged: true };
  }

  async resize(shardId: string, limits: ShardLimits): Promise<void> {
    this.calls.push({ method: 'resize', args: [shardId, limits] });
    const existing = this.shards.get(shardId);
    if (!existing) throw new Error(`unknown shard ${shardId}`);
    this.shards.set(shardId, { ...existing, limits: { ...existing.limits, ...limits } });
  }

  async freeze(shardId: string): Promise<void> {
    this.calls.push({ method: 'freeze', args: [shardId] });
  }

  async thaw(shardId: string): Promise<void> {
    this.calls.push({ method: 'thaw', args: [shardId] });
  }

  async drain(): Promise<ReconcileReport> {
    this.calls.push({ method: 'drain', args: [] });
    const actions = [...this.shards.keys()].map((shardId) => ({ kind: 'stop', shardId, ok: true }));
    this.shards.clear();
    return { actions, converged: true };
  }

  status(): ShardStatus[] {
    return [...this.shards.values()].sort((a, b) => a.shardId.localeCompare(b.shardId));
  }

  async close(): Promise<void> {
    this.calls.push({ method: 'close', args: [] });
  }
}

/** The key-value part of the Store contract, in memory (revisions as etcd counts them). */
export class MemoryKv implements Pick<Store, 'get' | 'put' | 'delete' | 'list' | 'txn'> {
  private revision = 0;
  readonly data = new Map<string, KeyValue>();

  async get(key: string): Promise<KeyValue | undefined> {
    return this.data.get(key);
  }

  async put(key: string, value: string): Promise<number> {
    this.revision += 1;
    const existing = this.data.get(key);
    this.data.set(key, { key, value, createRevision: existing?.createRevision ?? this.revision, modRevision: this.revision });
    return this.revision;
  }

  async delete(key: string): Promise<boolean> {
    if (!this.data.has(key)) return false;
    this.revision += 1;
    this.data.delete(key);
    return true;
  }

  async list(prefix: string): Promise<KeyValue[]> {
    return [...this.data.values()].filter((kv) => kv.key.startsWith(prefix)).sort((a, b) => a.key.localeCompare(b.key));
  }

  async txn(compares: readonly TxnCompare[], success: readonly TxnOp[], failure: readonly TxnOp[] = []): Promise<TxnResult> {
    const holds = compares.every((c) => ('value' in c ? this.data.get(c.key)?.value === c.value : (this.data.get(c.key)?.modRevision ?? 0) === c.modRevision));
    for (const op of holds ? success : failure) {
      if (op.kind === 'put') await this.put(op.key, op.value);
      else await this.delete(op.key);
    }
    return { succeeded: holds, revision: this.revision };
  }
}

/** Raw samples only; enough to check what the sampler appends and what the API returns. */
export class MemoryHistory implements MetricHistory {
  readonly samples: MetricSample[] = [];
  readonly compactions: { nowSeconds: number; retention: MetricRetention }[] = [];

  append(samples: readonly MetricSample[]): void {
    this.samples.push(...samples);
  }

  query(query: MetricQuery): MetricSample[] {
    return this.samples.filter(
      (s) =>
        (query.shardId === undefined || s.shardId === query.shardId) &&
        (query.applicationId === undefined || s.applicationId === query.applicationId) &&
        s.atSeconds >= query.fromSeconds &&
        s.atSeconds <= query.toSeconds,
    );
  }

  compact(nowSeconds: number, retention: MetricRetention): { folded: number; deleted: number } {
    this.compactions.push({ nowSeconds, retention });
    const before = this.samples.length;
    const keep = this.samples.filter((s) => s.atSeconds >= nowSeconds - retention.rawRetentionSeconds);
    this.samples.splice(0, this.samples.length, ...keep);
    return { folded: 0, deleted: before - keep.length };
  }
}
