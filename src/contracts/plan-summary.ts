/**
 * The numbers `shardform plan show` prints: per-pool capacity, what the applications'
 * initial shards take of it, and what is left unallocated.
 */
import { eligibleHostCapacities, shardLimits } from './plan-checks';
import type { Capacity, Plan, Pool } from './plan-schema';

export interface PoolAllocation {
  readonly pool: Pool;
  readonly hosts: number;
  readonly capacity: Capacity;
  readonly allocated: Capacity;
  readonly unallocated: Capacity;
  readonly shards: number;
}

const zero = (): Capacity => ({ cpuCores: 0, memoryBytes: 0, readIops: 0, writeIops: 0 });
const add = (a: Capacity, b: Capacity, times = 1): Capacity => ({
  cpuCores: Math.round((a.cpuCores + b.cpuCores * times) * 1000) / 1000,
  memoryBytes: a.memoryBytes + b.memoryBytes * times,
  readIops: a.readIops + b.readIops * times,
  writeIops: a.writeIops + b.writeIops * times,
});

export function poolAllocations(plan: Plan): PoolAllocation[] {
  return plan.pools.map((pool) => {
    const capacities = pool.hosts.length > 0 ? pool.hosts.map((h) => h.capacity) : pool.discovery && pool.hostCapacity ? new Array(pool.discovery.desiredHosts).fill(pool.hostCapacity) : eligibleHostCapacities(pool);
    const capacity = capacities.reduce((sum: Capacity, c: Capacity) => add(sum, c), zero());
    const apps = plan.applications.filter((a) => a.pool === pool.id);
    const allocated = apps.reduce((sum, app) => add(sum, shardLimits(app), app.shards.initial), zero());
    return {
      pool,
      hosts: capacities.length,
      capacity,
      allocated,
      unallocated: add(capacity, allocated, -1),
      shards: apps.reduce((n, a) => n + a.shards.initial, 0),
    };
  });
}
