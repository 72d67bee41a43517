/**
 * Checks on a plan that a JSON Schema cannot express: references, uniqueness, shard counts
 * and whether the declared shards can fit their pool. The construct library runs the same
 * capacity rules at synth time (with construct paths), so the rules live here once.
 */
import type { FieldError } from '../errors';
import { horizonProblem } from './prediction-grid';
import { formatBytes, formatDuration } from './quantities';
import { AGENT_ENV_NAMES, AGENT_ENV_RULE, MAX_SHARD_MEMORY_BYTES, SHARD_MEMORY_RULE, type Application, type Capacity, type Plan, type Pool } from './plan-schema';

/** The capacities of the hosts an application can be placed on (static hosts, or the discovered host shape). */
export function eligibleHostCapacities(pool: Pick<Pool, 'hosts' | 'hostCapacity' | 'discovery'>): Capacity[] {
  if (pool.hosts.length > 0) return pool.hosts.map((host) => host.capacity);
  if (pool.hostCapacity && pool.discovery) return new Array(pool.discovery.maxHosts).fill(pool.hostCapacity);
  return pool.hostCapacity ? [pool.hostCapacity] : [];
}

export function hostCount(pool: Pick<Pool, 'hosts' | 'discovery'>): number {
  return pool.hosts.length > 0 ? pool.hosts.length : (pool.discovery?.maxHosts ?? 0);
}

/**
 * Where a host's agent listens, as `host:port` with the plan's agent port filled in, or
 * undefined when the address is not one an agent can serve (host-agent/api/listen.ts): a name or
 * IPv4, or an IPv6 in brackets, with an optional port from 1 to 65535.
 */
export function agentEndpoint(address: string, defaultPort: number): string | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+))(?::([0-9]{1,5}))?$/.exec(address);
  if (!match) return undefined;
  const port = match[3] === undefined ? defaultPort : Number(match[3]);
  if (port < 1 || port > 65535) return undefined;
  return match[1] !== undefined ? `[${match[1].toLowerCase()}]:${port}` : `${match[2]!.toLowerCase()}:${port}`;
}

type Resource = 'cpuCores' | 'memoryBytes' | 'readIops' | 'writeIops';
const RESOURCES: readonly Resource[] = ['cpuCores', 'memoryBytes', 'readIops', 'writeIops'];
const show = (resource: Resource, amount: number) =>
  resource === 'cpuCores' ? `${amount} cores` : resource === 'memoryBytes' ? formatBytes(amount) : `${amount} IOPS`;
const words: Record<Resource, string> = { cpuCores: 'cpu', memoryBytes: 'memory', readIops: 'read IOPS', writeIops: 'write IOPS' };

/** A shard's limits: granularity x units. */
export function shardLimits(app: Pick<Application, 'granularity' | 'shardUnits'>): Capacity {
  const g = app.granularity;
  return {
    cpuCores: Math.round(g.cpuCores * app.shardUnits * 1000) / 1000,
    memoryBytes: g.memoryBytes * app.shardUnits,
    readIops: g.readIops * app.shardUnits,
    writeIops: g.writeIops * app.shardUnits,
  };
}

/**
 * "granularity larger than the smallest eligible host": one quantum must fit on every host
 * of the pool, or placement would silently avoid some hosts. Returns a message or undefined.
 */
export function granularityProblem(app: Pick<Application, 'id' | 'granularity'>, pool: Pool): string | undefined {
  const capacities = eligibleHostCapacities(pool);
  if (capacities.length === 0) return undefined;
  for (const resource of RESOURCES) {
    const want = app.granularity[resource];
    // IOPS of 0 on a host means "not limited", so it cannot be exceeded.
    const limited = capacities.filter((c) => !(resource !== 'cpuCores' && resource !== 'memoryBytes' && c[resource] === 0));
    if (limited.length === 0) continue;
    const smallest = Math.min(...limited.map((c) => c[resource]));
    if (want > smallest) {
      return (
        `${words[resource]} ${show(resource, want)} exceeds the smallest host in pool '${pool.id}' (${show(resource, smallest)}); ` +
        `use at most ${show(resource, smallest)} or move ${app.id} to another pool`
      );
    }
  }
  return undefined;
}

/**
 * "a shard larger than every host": a shard's limits (granularity x shardUnits) must fit on one
 * host of the pool, or no shard of the application can ever run (even with shards.min 0).
 * Returns a message or undefined.
 */
export function shardSizeProblem(app: Pick<Application, 'id' | 'granularity' | 'shardUnits'>, pool: Pool): string | undefined {
  const capacities = eligibleHostCapacities(pool);
  if (capacities.length === 0) return undefined;
  const limits = shardLimits(app);
  if (capacities.some((host) => fitsHost(host, limits))) return undefined;
  return (
    `one shard (${app.shardUnits} x granularity = ${show('cpuCores', limits.cpuCores)} + ${formatBytes(limits.memoryBytes)}) ` +
    `fits no host of pool '${pool.id}'; lower shardUnits or move ${app.id} to a pool with larger hosts`
  );
}

/**
 * A shard's memory limit (granularity x shardUnits) past what an agent can set: the schema bounds
 * the granularity, not the product. Returns a message or undefined.
 */
export function shardMemoryProblem(app: Pick<Application, 'granularity' | 'shardUnits'>): string | undefined {
  const memoryBytes = shardLimits(app).memoryBytes;
  if (memoryBytes <= MAX_SHARD_MEMORY_BYTES) return undefined;
  return `one shard (${app.shardUnits} x granularity = ${memoryBytes} bytes of memory) is not a memory limit an agent can set; ${SHARD_MEMORY_RULE}; lower shardUnits`;
}

/** IOPS of 0 on a host mean "not limited", so they cannot run out. */
function fitsHost(host: Capacity, need: Capacity): boolean {
  return RESOURCES.every((r) => ((r === 'readIops' || r === 'writeIops') && host[r] === 0 ? true : need[r] <= host[r] + 1e-9));
}

/**
 * "minimum shards that cannot fit the pool's total capacity": sums every application of the
 * pool at its minimum shard count (bin packing per host, first-fit decreasing) and reports the
 * application that no longer fits. Returns a message per application that does not fit.
 */
export function minimumShardsProblems(apps: readonly Application[], pool: Pool, count: 'min' | 'initial' = 'min'): Map<string, string> {
  const problems = new Map<string, string>();
  const free = eligibleHostCapacities(pool).map((c) => ({ ...c }));
  if (free.length === 0) return problems;
  const demands = apps
    .filter((app) => app.pool === pool.id)
    .flatMap((app) => Array.from({ length: app.shards[count] }, () => ({ app, limits: shardLimits(app) })))
    .sort((a, b) => b.limits.memoryBytes - a.limits.memoryBytes || b.limits.cpuCores - a.limits.cpuCores);
  const unplaced = new Map<string, number>();
  for (const { app, limits } of demands) {
    const host = free.find((candidate) => fitsHost(candidate, limits));
    if (!host) {
      unplaced.set(app.id, (unplaced.get(app.id) ?? 0) + 1);
      continue;
    }
    for (const r of RESOURCES) if (!((r === 'readIops' || r === 'writeIops') && host[r] === 0)) host[r] -= limits[r];
  }
  const total = eligibleHostCapacities(pool).reduce(
    (sum, c) => ({ cpuCores: sum.cpuCores + c.cpuCores, memoryBytes: sum.memoryBytes + c.memoryBytes }),
    { cpuCores: 0, memoryBytes: 0 },
  );
  for (const [appId, missing] of unplaced) {
    const app = apps.find((a) => a.id === appId)!;
    problems.set(
      appId,
      `${app.shards[count]} shards of ${show('cpuCores', shardLimits(app).cpuCores)} + ${formatBytes(shardLimits(app).memoryBytes)} ` +
        `do not fit pool '${pool.id}' (${Math.round(total.cpuCores * 1000) / 1000} cores, ${formatBytes(total.memoryBytes)} across ` +
        `${hostCount(pool)} hosts, shared with the pool's other applications${count === 'initial' ? ' at their initial counts' : ''}): ${missing} cannot be placed; ` +
        `lower shards.${count} to ${app.shards[count] - missing} or add capacity`,
    );
  }
  return problems;
}

/**
 * "hard anti-affinity that needs more hosts than exist": every minimum shard of the rule needs
 * its own domain (host, pool or label value), and an application's shards only ever run in its
 * own pool, so domains are counted over the pools of the governed applications, and each
 * application's shards must fit the domains of its own pool.
 */
export function antiAffinityProblem(governed: readonly Application[], pools: readonly Pool[], scope: string): string | undefined {
  const needed = governed.reduce((n, a) => n + a.shards.min, 0);
  const used = pools.filter((pool) => governed.some((app) => app.pool === pool.id));
  const domains = countScopeDomains(used, scope);
  if (needed > domains) {
    return (
      `hard anti-affinity with scope '${scope}' needs ${needed} separate domains for the minimum shards of its applications, ` +
      `but only ${domains} exist; add hosts, lower shards.min or make the rule soft`
    );
  }
  // Applications in several pools: the total can fit while one application's own pool is too small.
  for (const app of governed) {
    const own = countScopeDomains(pools.filter((pool) => pool.id === app.pool), scope);
    if (app.shards.min > own) {
      return (
        `hard anti-affinity with scope '${scope}' needs ${app.shards.min} separate domains for the minimum shards of '${app.id}', ` +
        `but its pool '${app.pool}' has only ${own}; add hosts, lower shards.min or make the rule soft`
      );
    }
  }
  return undefined;
}

/**
 * "hard affinity that cannot hold": with scope host or pool every placed shard of the rule
 * shares one host (pool), so the governed applications must be in one pool, and with scope host
 * their initial shards must fit one host together. Label scopes may span pools and are not judged.
 */
export function affinityProblem(governed: readonly Application[], pools: readonly Pool[], scope: string): string | undefined {
  const placed = governed.filter((app) => app.shards.initial > 0);
  if (scope !== 'host' && scope !== 'pool') return undefined;
  const poolIds = [...new Set(placed.map((app) => app.pool))].sort();
  if (poolIds.length > 1) {
    return (
      `hard affinity with scope '${scope}' keeps every shard of ${placed.map((a) => `'${a.id}'`).join(', ')} in one ${scope}, ` +
      `but they run in pools ${poolIds.map((id) => `'${id}'`).join(', ')}; put them in one pool, use a label scope or make the rule soft`
    );
  }
  if (scope === 'host' && poolIds.length === 1) {
    const pool = pools.find((p) => p.id === poolIds[0]);
    const capacities = pool ? eligibleHostCapacities(pool) : [];
    const need: Capacity = { cpuCores: 0, memoryBytes: 0, readIops: 0, writeIops: 0 };
    for (const app of placed) for (const r of RESOURCES) need[r] += shardLimits(app)[r] * app.shards.initial;
    need.cpuCores = Math.round(need.cpuCores * 1000) / 1000;
    if (capacities.length > 0 && !capacities.some((host) => fitsHost(host, need))) {
      return (
        `hard affinity with scope 'host' puts the initial shards of ${placed.map((a) => `'${a.id}'`).join(', ')} on one host ` +
        `(${show('cpuCores', need.cpuCores)} + ${formatBytes(need.memoryBytes)}), larger than any host of pool '${poolIds[0]}'; ` +
        `lower shards.initial, use larger hosts or make the rule soft`
      );
    }
  }
  return undefined;
}

function countScopeDomains(pools: readonly Pool[], scope: string): number {
  if (scope === 'pool') return pools.length;
  if (scope === 'host') return pools.reduce((n, p) => n + hostCount(p), 0);
  const key = scope.slice('label:'.length);
  const values = new Set<string>();
  for (const pool of pools) {
    for (const host of pool.hosts) {
      const value = host.labels[key] ?? pool.labels[key];
      if (value !== undefined) values.add(value);
    }
    if (pool.hosts.length === 0 && pool.labels[key] !== undefined) values.add(pool.labels[key]);
  }
  return values.size;
}

/** Every semantic problem of a schema-valid plan (the digest is checked by the loader). */
export function semanticPlanErrors(plan: Plan): FieldError[] {
  const errors: FieldError[] = [];
  const duplicates = (what: string, items: { id: string; field: string }[]) => {
    const seen = new Map<string, string>();
    for (const item of items) {
      const first = seen.get(item.id);
      if (first) errors.push({ field: item.field, message: `duplicate ${what} id (first used at ${first})`, value: item.id });
      else seen.set(item.id, item.field);
    }
  };
  duplicates('pool', plan.pools.map((p, i) => ({ id: p.id, field: `pools[${i}].id` })));
  duplicates('host', plan.pools.flatMap((p, i) => p.hosts.map((h, j) => ({ id: h.id, field: `pools[${i}].hosts[${j}].id` }))));
  duplicates('application', plan.applications.map((a, i) => ({ id: a.id, field: `applications[${i}].id` })));
  duplicates('policy', plan.policies.map((p, i) => ({ id: p.id, field: `policies[${i}].id` })));

  // Two hosts at one address would be two agents on one socket: the second cannot start.
  const endpoints = new Map<string, string>();
  plan.pools.forEach((pool, i) =>
    pool.hosts.forEach((host, j) => {
      const field = `pools[${i}].hosts[${j}].address`;
      const endpoint = agentEndpoint(host.address, plan.agent.port);
      if (endpoint === undefined) {
        errors.push({ field, message: 'is not an agent address; use a host name or IP (IPv6 in brackets) with an optional :port from 1 to 65535', value: host.address });
        return;
      }
      const first = endpoints.get(endpoint);
      if (first) errors.push({ field, message: `duplicate agent address ${endpoint} (first used at ${first})`, value: host.address });
      else endpoints.set(endpoint, field);
    }),
  );

  plan.pools.forEach((pool, i) => {
    if (pool.kind === 'static' && pool.hosts.length === 0)
      errors.push({ field: `pools[${i}].hosts`, message: 'a static pool needs at least one host' });
    if (pool.kind === 'aws') {
      if (!pool.discovery) errors.push({ field: `pools[${i}].discovery`, message: 'an aws pool needs a discovery hint' });
      if (!pool.hostCapacity) errors.push({ field: `pools[${i}].hostCapacity`, message: 'an aws pool needs the capacity of one host' });
      const d = pool.discovery;
      if (d && !(d.minHosts <= d.desiredHosts && d.desiredHosts <= d.maxHosts))
        errors.push({ field: `pools[${i}].discovery`, message: 'needs minHosts <= desiredHosts <= maxHosts', value: [d.minHosts, d.desiredHosts, d.maxHosts] });
    }
  });

  const poolsById = new Map(plan.pools.map((p) => [p.id, p]));
  const appIds = new Set(plan.applications.map((a) => a.id));
  plan.applications.forEach((app, i) => {
    const pool = poolsById.get(app.pool);
    if (!pool) {
      errors.push({ field: `applications[${i}].pool`, message: `unknown pool; known pools: ${[...poolsById.keys()].join(', ')}`, value: app.pool });
      return;
    }
    for (const name of Object.keys(app.env)) if (AGENT_ENV_NAMES.includes(name)) errors.push({ field: `applications[${i}].env.${name}`, message: AGENT_ENV_RULE });
    const { min, initial, max } = app.shards;
    if (!(min <= initial && initial <= max))
      errors.push({ field: `applications[${i}].shards`, message: 'needs min <= initial <= max', value: app.shards });
    const granularity = granularityProblem(app, pool);
    if (granularity) errors.push({ field: `applications[${i}].granularity`, message: granularity });
    const memory = shardMemoryProblem(app);
    if (memory) errors.push({ field: `applications[${i}].shardUnits`, message: memory, value: app.shardUnits });
    const shard = granularity || memory ? undefined : shardSizeProblem(app, pool);
    if (shard) errors.push({ field: `applications[${i}].shardUnits`, message: shard, value: app.shardUnits });
  });
  for (const pool of plan.pools) {
    // Initial shards are what every agent places at start (policies/initial-placement.ts); the
    // minimum is a subset, so an application is reported for one of the two.
    const minimum = minimumShardsProblems(plan.applications, pool);
    const initial = minimumShardsProblems(plan.applications, pool, 'initial');
    for (const [appId, message] of minimum) {
      errors.push({ field: `applications[${plan.applications.findIndex((a) => a.id === appId)}].shards.min`, message });
    }
    for (const [appId, message] of initial) {
      if (!minimum.has(appId)) errors.push({ field: `applications[${plan.applications.findIndex((a) => a.id === appId)}].shards.initial`, message });
    }
  }

  plan.policies.forEach((policy, i) => {
    policy.applications.forEach((appId, j) => {
      if (!appIds.has(appId))
        errors.push({ field: `policies[${i}].applications[${j}]`, message: 'unknown application', value: appId });
    });
    if ((policy.kind === 'anti-affinity' || policy.kind === 'affinity') && policy.mode === 'hard') {
      const governed = plan.applications.filter((a) => policy.applications.length === 0 || policy.applications.includes(a.id));
      const problem = (policy.kind === 'anti-affinity' ? antiAffinityProblem : affinityProblem)(governed, plan.pools, policy.scope);
      if (problem) errors.push({ field: `policies[${i}].scope`, message: problem, value: policy.scope });
    }
  });

  // Every horizon is predicted on the predictor's grid, so each must fit it (prediction-grid.ts).
  const grid = `predictor.intervalSeconds (${formatDuration(plan.predictor.intervalSeconds)})`;
  const horizons = [
    { field: 'predictor.horizonSeconds', seconds: plan.predictor.horizonSeconds },
    ...plan.policies.flatMap((policy, i) => (policy.kind === 'proactive-migration' ? [{ field: `policies[${i}].horizonSeconds`, seconds: policy.horizonSeconds }] : [])),
  ];
  for (const { field, seconds } of horizons) {
    const problem = horizonProblem(seconds, plan.predictor.intervalSeconds, grid);
    if (problem) errors.push({ field, message: `must be ${problem}`, value: seconds });
  }

  const s = plan.security;
  if (s.auth === 'token' && !s.tokenFile && !s.tokenEnv)
    errors.push({ field: 'security.tokenFile', message: 'token auth needs tokenFile or tokenEnv (where agents read the fleet token)' });
  if (s.auth === 'mtls' && !s.tls) errors.push({ field: 'security.tls', message: 'mtls auth needs caFile, certFile and keyFile' });
  return errors;
}
