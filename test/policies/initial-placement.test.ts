import { placeShards, shardIdFor, shardsForHost } from '../../policies/initial-placement';
import { discoveredPool, examplePlan } from '../helpers/plan-fixture';

const GiB = 2 ** 30;

describe('initial placement', () => {
  it('spreads shards across the least loaded hosts, deterministically', () => {
    const plan = examplePlan();
    const placement = placeShards(plan);
    expect(placement.unplaced).toEqual([]);
    expect(placement.assignments.map((a) => [a.shardId, a.hostId])).toEqual([
      ['web-0', 'host-a'],
      ['web-1', 'host-b'],
    ]);
    expect(placeShards(examplePlan())).toEqual(placement);
    expect(placement.assignments[0].limits).toEqual({ cpuCores: 0.5, memoryBytes: GiB, readIops: 0, writeIops: 0 });
  });

  it('packs onto as few hosts as possible under a cost-aware placement policy, keeping headroom', () => {
    const plan = examplePlan((p) => {
      p.applications[0].shards = { min: 1, initial: 3, max: 8 };
      p.policies = [{ kind: 'cost-aware-placement', id: 'cheap', applications: [], headroom: 0.25, minSavingsPerHourUsd: 0 }];
    });
    // 2 cores with 25 % headroom leaves 1.5 cores: three 0.5-core shards fit on host-a.
    expect(placeShards(plan).assignments.map((a) => a.hostId)).toEqual(['host-a', 'host-a', 'host-a']);
  });

  it('never puts two shards of a hard anti-affinity rule in one domain, and reports what does not fit', () => {
    const plan = examplePlan((p) => {
      p.applications[0].shards = { min: 1, initial: 3, max: 4 };
      p.policies = [{ kind: 'anti-affinity', id: 'apart', applications: ['web'], scope: 'host', mode: 'hard', weight: 100 }];
    });
    const placement = placeShards(plan);
    expect(placement.assignments.map((a) => a.hostId)).toEqual(['host-a', 'host-b']);
    expect(placement.unplaced).toEqual([{ shardId: 'web-2', applicationId: 'web', reason: "hard anti-affinity 'apart' leaves no free host domain" }]);
  });

  it('keeps shards of a hard affinity rule in one domain', () => {
    const plan = examplePlan((p) => {
      p.applications.push({ ...p.applications[0], id: 'db', shards: { min: 1, initial: 1, max: 1 } });
      p.policies = [{ kind: 'affinity', id: 'together', applications: ['web', 'db'], scope: 'host', mode: 'hard', weight: 100 }];
    });
    const hosts = new Set(placeShards(plan).assignments.map((a) => a.hostId));
    expect(hosts.size).toBe(1);
  });

  it('respects capacity: a shard that fits nowhere is unplaced with the reason', () => {
    const plan = examplePlan((p) => {
      p.applications[0].granularity.memoryBytes = 6 * GiB;
      p.applications[0].shards = { min: 1, initial: 3, max: 3 };
    });
    const placement = placeShards(plan);
    expect(placement.assignments).toHaveLength(2);
    expect(placement.unplaced[0]).toEqual({ shardId: 'web-2', applicationId: 'web', reason: `no host in pool 'local' has 0.5 cores + ${6 * GiB} bytes free` });
  });

  it('leaves every shard of a pool that lists no hosts (AWS) unplaced, saying why rather than blaming capacity', () => {
    const placement = placeShards(examplePlan((p) => (p.pools = [discoveredPool('local')])));
    expect(placement.assignments).toEqual([]);
    const reason = "pool 'local' lists no hosts in the plan: an AWS pool's hosts are discovered at run time, and placement uses only listed hosts";
    expect(placement.unplaced).toEqual([
      { shardId: 'web-0', applicationId: 'web', reason },
      { shardId: 'web-1', applicationId: 'web', reason },
    ]);
  });

  it('gives each host its own shards', () => {
    expect(shardsForHost(examplePlan(), 'host-b').map((a) => a.shardId)).toEqual(['web-1']);
    expect(shardsForHost(examplePlan(), 'host-z')).toEqual([]);
  });

  it("does not depend on the machine's locale: every agent must compute the same placement", () => {
    const plan = examplePlan((p) => {
      p.pools[0].hosts = [
        { ...p.pools[0].hosts[0], id: 'zz-host' },
        { ...p.pools[0].hosts[0], id: 'aa-host' },
      ];
      p.applications[0].shards = { min: 1, initial: 1, max: 1 };
    });
    const placed = placeShards(plan).assignments.map((a) => a.hostId);
    // A Danish collation (LANG=da_DK.UTF-8) sorts "aa" after "z"; reversing localeCompare stands in for it.
    const localeCompare = jest.spyOn(String.prototype, 'localeCompare').mockImplementation(function (this: string, other: string) {
      return this < other ? 1 : this > other ? -1 : 0;
    });
    try {
      expect(placeShards(plan).assignments.map((a) => a.hostId)).toEqual(placed);
    } finally {
      localeCompare.mockRestore();
    }
    expect(placed).toEqual(['aa-host']);
  });

  it('makes valid, unique shard ids from long application ids', () => {
    const long = 'a'.repeat(63);
    const id = shardIdFor(long, 12);
    expect(id).toMatch(/^[a-z0-9][a-z0-9-]{0,62}$/);
    expect(id.endsWith('-12')).toBe(true);
    expect(shardIdFor(`${'a'.repeat(62)}b`, 12)).not.toBe(id);
  });
});
