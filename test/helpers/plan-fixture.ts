/** Builds valid plans for tests; each test edits the copy it needs (no copied JSON blobs). */
import { signPlan } from '../../src/contracts/plan';
import { PLAN_API_VERSION, type Plan, type Pool, type UnsignedPlan } from '../../src/contracts/plan-schema';

const GiB = 2 ** 30;

export function unsignedPlan(): UnsignedPlan {
  const capacity = { cpuCores: 2, memoryBytes: 8 * GiB, readIops: 1000, writeIops: 500 };
  return {
    apiVersion: PLAN_API_VERSION,
    fleet: 'test-fleet',
    generation: 1,
    pools: [
      {
        id: 'local',
        kind: 'static',
        costPerHourUsd: 0.1,
        labels: { zone: 'a' },
        hosts: [
          { id: 'host-a', address: '127.0.0.1:7101', capacity, labels: {} },
          { id: 'host-b', address: '127.0.0.1:7102', capacity, labels: { zone: 'b' } },
        ],
      },
    ],
    applications: [
      {
        id: 'web',
        pool: 'local',
        command: ['/bin/sleep', 'infinity'],
        env: { MODE: 'test' },
        stateDirectory: '/var/lib/shardform/web',
        granularity: { cpuCores: 0.5, memoryBytes: GiB, readIops: 0, writeIops: 0 },
        shardUnits: 1,
        shards: { min: 1, initial: 2, max: 4 },
        migration: { strategy: 'checkpoint', timeoutSeconds: 60, preCopy: true },
        labels: {},
      },
    ],
    policies: [
      { kind: 'proactive-migration', id: 'hot', applications: ['web'], threshold: 0.8, horizonSeconds: 900, quantile: 0.95, cooldownSeconds: 600 },
    ],
    predictor: { model: 'auto', horizonSeconds: 900, quantile: 0.95, intervalSeconds: 300, minHistorySeconds: 86400 },
    store: { kind: 'embedded', path: '/var/lib/shardform/store.db' },
    security: { auth: 'token', tokenFile: '/etc/shardform/token' },
    agent: { port: 7100, sampleIntervalSeconds: 5, rawRetentionSeconds: 86400, historyRetentionSeconds: 2592000, stateDirectory: '/var/lib/shardform' },
  };
}

/** A signed, valid plan; `edit` changes the content before signing (so the digest still matches). */
export function examplePlan(edit: (plan: UnsignedPlan) => void = () => {}): Plan {
  const plan = unsignedPlan();
  edit(plan);
  return signPlan(plan);
}

/** An AWS pool as AwsHostPool writes it: no hosts listed, one host's capacity, discovered by tag. */
export function discoveredPool(id: string, fleet = 'test-fleet'): Pool {
  return {
    id,
    kind: 'aws',
    costPerHourUsd: 0.096,
    labels: {},
    hosts: [],
    hostCapacity: { cpuCores: 2, memoryBytes: 8 * GiB, readIops: 0, writeIops: 0 },
    discovery: { provider: 'aws', region: 'eu-west-1', tagKey: 'shardform:pool', tagValue: `${fleet}.${id}`, minHosts: 2, maxHosts: 4, desiredHosts: 2, instanceType: 'm6i.large' },
  };
}
