/**
 * Initial placement: which host runs each shard of a plan before any prediction exists.
 * Every agent computes the same answer from the same plan (pure, deterministic, stable order),
 * so a fleet needs no coordinator to start; the coordinator later moves shards from here.
 *
 * Rules, in order: the application's pool; capacity (a shard's limits must fit what is left on
 * the host); hard anti-affinity (no two governed shards in one scope domain); hard affinity
 * (governed shards share a domain once one is placed). Among the hosts left, soft rules add
 * their weight as a penalty, and the score prefers spreading (least loaded) — or packing
 * (most loaded that still leaves `headroom`) when a cost-aware placement policy governs the
 * application, so fewer, cheaper hosts are used.
 */
import { shardLimits } from '../src/contracts/plan-checks';
import type { Application, Capacity, Host, Plan, Policy, Pool } from '../src/contracts/plan-schema';
import { sha256Hex } from '../src/contracts/canonical-json';

export interface ShardAssignment {
  readonly shardId: string;
  readonly applicationId: string;
  readonly index: number;
  readonly hostId: string;
  readonly limits: Capacity;
}

export interface Placement {
  readonly assignments: readonly ShardAssignment[];
  /** Shards that could not be placed, with the reason (capacity or a hard rule). */
  readonly unplaced: readonly { shardId: string; applicationId: string; reason: string }[];
}

/** Shard ids are `<application>-<index>`; long application ids are shortened with a hash so ids stay valid and unique. */
export function shardIdFor(applicationId: string, index: number): string {
  const suffix = `-${index}`;
  if (applicationId.length + suffix.length <= 63) return `${applicationId}${suffix}`;
  const hash = sha256Hex(applicationId).slice(0, 6);
  return `${applicationId.slice(0, 63 - suffix.length - hash.length - 1)}-${hash}${suffix}`;
}

interface HostState {
  readonly host: Host;
  readonly pool: Pool;
  readonly free: Capacity;
}

const RESOURCES = ['cpuCores', 'memoryBytes', 'readIops', 'writeIops'] as const;

function fits(state: HostState, need: Capacity, headroom: number): boolean {
  return RESOURCES.every((r) => {
    const capacity = state.host.capacity[r];
    // IOPS 0 on a host means "not limited": nothing to run out of.
    if ((r === 'readIops' || r === 'writeIops') && capacity === 0) return true;
    return need[r] <= state.free[r] - capacity * headroom + 1e-9;
  });
}

/** Fraction of the host's cpu+memory in use, the load measure for spread/pack scoring. */
function load(state: HostState): number {
  const c = state.host.capacity;
  return 1 - (state.free.cpuCores / c.cpuCores + state.free.memoryBytes / c.memoryBytes) / 2;
}

function domainOf(state: HostState, scope: string): string {
  if (scope === 'host') return `host:${state.host.id}`;
  if (scope === 'pool') return `pool:${state.pool.id}`;
  const key = scope.slice('label:'.length);
  return `label:${state.host.labels[key] ?? state.pool.labels[key] ?? `(none:${state.host.id})`}`;
}

/**
 * Code-unit order, never `localeCompare`: the collation of the machine's locale would make agents
 * disagree (with LANG=da_DK.UTF-8, "aa-1" sorts after "zz-1"), and every agent must compute the
 * same placement from the same plan.
 */
const byId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

const governs = (policy: Policy, app: Application) => policy.applications.length === 0 || policy.applications.includes(app.id);

export function placeShards(plan: Plan): Placement {
  const hosts: HostState[] = [...plan.pools]
    .sort((a, b) => byId(a.id, b.id))
    .flatMap((pool) => [...pool.hosts].sort((a, b) => byId(a.id, b.id)).map((host) => ({ host, pool, free: { ...host.capacity } })));
  const assignments: ShardAssignment[] = [];
  const unplaced: { shardId: string; applicationId: string; reason: string }[] = [];
  /** policy id -> domains already holding one of its shards */
  const occupied = new Map<string, Set<string>>();
  const rules = plan.policies.filter((p): p is Extract<Policy, { kind: 'affinity' | 'anti-affinity' }> => p.kind === 'affinity' || p.kind === 'anti-affinity');

  // Largest shards first (first-fit decreasing packs better); ties by id for determinism.
  const apps = [...plan.applications].sort((a, b) => shardLimits(b).memoryBytes - shardLimits(a).memoryBytes || byId(a.id, b.id));
  for (const app of apps) {
    const limits = shardLimits(app);
    const costPolicy = plan.policies.find((p) => p.kind === 'cost-aware-placement' && governs(p, app));
    const headroom = costPolicy?.kind === 'cost-aware-placement' ? costPolicy.headroom : 0;
    const appRules = rules.filter((rule) => governs(rule, app));
    for (let index = 0; index < app.shards.initial; index += 1) {
      const shardId = shardIdFor(app.id, index);
      // A pool that lists no hosts is an AWS pool (static ones need one): blaming capacity there
      // would send the reader looking for a host that is too small rather than for no host at all.
      let reason = hosts.some((state) => state.pool.id === app.pool)
        ? `no host in pool '${app.pool}' has ${limits.cpuCores} cores + ${limits.memoryBytes} bytes free`
        : `pool '${app.pool}' lists no hosts in the plan: an AWS pool's hosts are discovered at run time, and placement uses only listed hosts`;
      const candidates = hosts.filter((state) => state.pool.id === app.pool && fits(state, limits, headroom)).filter((state) => {
        for (const rule of appRules.filter((r) => r.mode === 'hard')) {
          const taken = occupied.get(rule.id);
          const domain = domainOf(state, rule.scope);
          if (rule.kind === 'anti-affinity' && taken?.has(domain)) {
            reason = `hard anti-affinity '${rule.id}' leaves no free ${rule.scope} domain`;
            return false;
          }
          if (rule.kind === 'affinity' && taken && taken.size > 0 && !taken.has(domain)) {
            reason = `hard affinity '${rule.id}' needs the ${rule.scope} domain already used, which has no room`;
            return false;
          }
        }
        return true;
      });
      if (candidates.length === 0) {
        unplaced.push({ shardId, applicationId: app.id, reason });
        continue;
      }
      const score = (state: HostState) => {
        let penalty = 0;
        for (const rule of appRules.filter((r) => r.mode === 'soft')) {
          const taken = occupied.get(rule.id);
          const domain = domainOf(state, rule.scope);
          if (rule.kind === 'anti-affinity' && taken?.has(domain)) penalty += rule.weight;
          if (rule.kind === 'affinity' && taken && taken.size > 0 && !taken.has(domain)) penalty += rule.weight;
        }
        const cost = costPolicy ? state.pool.costPerHourUsd : 0;
        return penalty * 1000 + cost * 100 + (costPolicy ? -load(state) : load(state));
      };
      const best = candidates.reduce((a, b) => (score(b) < score(a) - 1e-12 ? b : a));
      for (const r of RESOURCES) best.free[r] -= limits[r];
      for (const rule of appRules) {
        if (!occupied.has(rule.id)) occupied.set(rule.id, new Set());
        occupied.get(rule.id)!.add(domainOf(best, rule.scope));
      }
      assignments.push({ shardId, applicationId: app.id, index, hostId: best.host.id, limits });
    }
  }
  assignments.sort((a, b) => byId(a.shardId, b.shardId));
  return { assignments, unplaced };
}

/** The shards one host should run according to the initial placement. */
export function shardsForHost(plan: Plan, hostId: string): ShardAssignment[] {
  return placeShards(plan).assignments.filter((a) => a.hostId === hostId);
}
