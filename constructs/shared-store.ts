/**
 * Whether the hosts an AWS pool brings into a fleet share one store, asked at synth.
 *
 * A migration is journaled in the store, and its destination refuses a prepare its own store did
 * not journal (host-agent/migration/incoming-migrations.ts, since eb4d34c): the commit moves the
 * shard's assignment inside the journal's transaction, so two hosts with stores of their own
 * would commit a shard that then runs nowhere. The embedded store is one file on each host, so
 * EC2 hosts (separate machines by construction) on it can never migrate a shard, and every
 * application has a migration strategy (checkpoint by default) that would then only ever abort.
 * A static pool is not checked: its hosts may be agents of one machine sharing one store file
 * (the local example, the tests), which the plan cannot tell from separate machines.
 */
import { showValue } from '../src/errors';
import type { StoreSettings } from '../src/contracts/plan-schema';
import type { FleetAnalysis } from './plan-compiler';

/** What the check needs to know of the pool: its id and the most hosts it may run. */
export interface MachinePool {
  readonly poolId: string;
  readonly maxHosts: number;
}

/** Host names that reach a different server from every machine: each host would talk to its own. */
const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\]|::1|0\.0\.0\.0|\[::\])$/i;

/**
 * Why the hosts of `pool` would not share the fleet's store while shards may migrate to or
 * from them, with the fix; undefined when they would (etcd reachable from every host), or when
 * nothing could migrate (no application in the plan, or one host in a fleet of one pool).
 */
export function sharedStoreProblem(pool: MachinePool, analysis: Pick<FleetAnalysis, 'plan'>): string | undefined {
  const { plan } = analysis;
  const others = plan.pools.filter((p) => p.id !== pool.poolId).map((p) => `'${p.id}'`);
  if (plan.applications.length === 0 || (pool.maxHosts <= 1 && others.length === 0)) return undefined;
  const machines =
    pool.maxHosts > 1
      ? `pool '${pool.poolId}' runs up to ${pool.maxHosts} EC2 hosts${others.length > 0 ? ` besides the hosts of pool ${others.join(', ')}` : ''}`
      : `pool '${pool.poolId}' runs its EC2 host besides the hosts of pool ${others.join(', ')}`;
  const migrating = plan.applications.map((a) => `${a.id} (${a.migration.strategy})`).join(', ');
  const proactive = plan.policies.filter((p) => p.kind === 'proactive-migration').map((p) => `ProactiveMigration '${p.id}'`);
  const what = `shards of ${migrating}${proactive.length > 0 ? ` can never migrate, and ${proactive.join(', ')} can never act` : ' can never migrate'}`;
  const fix = "set the fleet's store to { kind: 'etcd', endpoints: ['http://<etcd reachable from every host>:2379'] }";
  const store: StoreSettings = plan.store;
  if (store.kind === 'embedded') {
    return (
      `${machines}, and the fleet's store is embedded (${showValue(store.path)}, one file on each host): ` +
      `a destination refuses every migration its own store did not journal, so ${what}; ${fix}`
    );
  }
  const local = store.endpoints.filter((endpoint) => LOOPBACK.test(hostOf(endpoint)));
  if (local.length === store.endpoints.length) {
    return (
      `${machines}, and every etcd endpoint of the fleet's store is on the host itself (${local.map((e) => showValue(e)).join(', ')}): ` +
      `each host would reach an etcd of its own, so ${what}; ${fix}`
    );
  }
  return undefined;
}

function hostOf(endpoint: string): string {
  try {
    return new URL(endpoint).hostname;
  } catch {
    return ''; // ShardFleet refused it already
  }
}
