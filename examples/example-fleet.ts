/**
 * The applications and policies both examples declare (main.ts on local hosts, examples/aws on
 * EC2), so the two stay the same fleet by construction.
 */
import {
  Affinity,
  AntiAffinity,
  CostAwarePlacement,
  MigrationStrategy,
  PlacementScope,
  ProactiveMigration,
  ShardedApplication,
  type HostPool,
  type ShardFleet,
} from '../constructs';

export interface ExampleApplications {
  readonly web: ShardedApplication;
  readonly cache: ShardedApplication;
  readonly worker: ShardedApplication;
}

export function declareExampleFleet(fleet: ShardFleet, pool: HostPool): ExampleApplications {
  // A small web server: many small shards, checkpointed with pre-copy (its memory is mostly cold).
  const web = new ShardedApplication(fleet, 'web', {
    pool,
    command: ['/usr/bin/python3', '-m', 'http.server', '--bind', '127.0.0.1', '0'],
    granularity: { cpu: '250m', memory: '256MiB' },
    shards: { min: 1, initial: 2, max: 6 },
    migration: MigrationStrategy.checkpoint({ preCopy: true, timeout: '2m' }),
    env: { PYTHONUNBUFFERED: '1' },
    labels: { tier: 'frontend' },
  });
  // A cache that sits next to web: bigger memory quantum, two units per shard.
  const cache = new ShardedApplication(fleet, 'cache', {
    pool,
    command: ['/bin/sleep', 'infinity'],
    granularity: { cpu: '500m', memory: '512MiB' },
    shardUnits: 2,
    shards: { min: 1, initial: 1, max: 2 },
    migration: MigrationStrategy.checkpoint({ timeout: '5m' }),
    labels: { tier: 'cache' },
  });
  // A batch worker with I/O limits that is cheaper to restart than to checkpoint.
  const worker = new ShardedApplication(fleet, 'worker', {
    pool,
    command: ['/bin/sleep', 'infinity'],
    granularity: { cpu: 1, memory: '1GiB', readIops: 200, writeIops: 100 },
    shards: { min: 0, initial: 1, max: 3 },
    migration: MigrationStrategy.restart({ timeout: '1m' }),
    stateDirectory: '/var/lib/shardform/apps/worker',
    labels: { tier: 'batch' },
  });

  new ProactiveMigration(fleet, 'hot', { applications: [web, cache], threshold: 0.8, horizon: '15m', quantile: 0.95, cooldown: '10m' });
  new CostAwarePlacement(fleet, 'cheap-batch', { applications: [worker], headroom: 0.1, minSavingsPerHour: 0.01 });
  new Affinity(fleet, 'cache-near-web', { applications: [web, cache], scope: 'host', mode: 'soft', weight: 60 });
  // Hard: two web shards never share a host, so losing one host never takes all of web down.
  new AntiAffinity(fleet, 'spread-web', { applications: [web], scope: PlacementScope.host(), mode: 'hard' });
  return { web, cache, worker };
}
