/**
 * The plan compiler: walks a fleet's construct tree at synth and renders the plan. Everything
 * is sorted by id, so the same code gives the same plan bytes and digest whatever the order
 * constructs and hosts were declared in. Validations ask the same analysis their questions, so
 * what is validated is exactly what is written.
 */
import type { IConstruct } from 'constructs';
import type { FieldError } from '../src/errors';
import { minimumShardsProblems } from '../src/contracts/plan-checks';
import {
  PLAN_API_VERSION,
  type AgentSettings,
  type Application,
  type Policy,
  type Pool,
  type PredictorSettings,
  type SecuritySettings,
  type StoreSettings,
  type UnsignedPlan,
} from '../src/contracts/plan-schema';
import { HostPool } from './host-pool';
import { ShardPolicy } from './shard-policy';
import { ShardedApplication } from './sharded-application';

/** The fleet-wide part of the plan, parsed by ShardFleet. */
export interface FleetSettings {
  readonly fleet: string;
  readonly generation: number;
  readonly predictor: PredictorSettings;
  readonly store: StoreSettings;
  readonly security: SecuritySettings;
  readonly agent: AgentSettings;
}

export interface FleetAnalysis {
  /** The unsigned plan; applications that are unbound or bound elsewhere are left out (see `referenceProblems`). */
  readonly plan: UnsignedPlan;
  readonly pools: readonly HostPool[];
  readonly applications: readonly ShardedApplication[];
  readonly policies: readonly ShardPolicy[];
  /** The plan's pool of a pool construct. */
  planPool(pool: HostPool): Pool;
  /** application id -> why its minimum shards do not fit its pool (plan-checks' rule). */
  readonly minimumShards: ReadonlyMap<string, string>;
  /** application id -> why its initial shards do not fit its pool, when its minimum does. */
  readonly initialShards: ReadonlyMap<string, string>;
  /** References the plan cannot express (unbound applications, another fleet's objects). */
  readonly referenceProblems: readonly FieldError[];
}

const byId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function analyzeFleet(fleet: IConstruct, settings: FleetSettings): FleetAnalysis {
  const members = fleet.node.findAll();
  const pools = members.filter((c): c is HostPool => c instanceof HostPool).sort((a, b) => byId(a.poolId, b.poolId));
  const applications = members.filter((c): c is ShardedApplication => c instanceof ShardedApplication).sort((a, b) => byId(a.applicationId, b.applicationId));
  const policies = members.filter((c): c is ShardPolicy => c instanceof ShardPolicy).sort((a, b) => byId(a.policyId, b.policyId));

  const planPools = new Map<HostPool, Pool>(pools.map((pool) => [pool, pool.toPlanPool()]));
  const referenceProblems: FieldError[] = [];
  const planApplications: Application[] = [];
  const inPlan = new Set<ShardedApplication>();
  for (const application of applications) {
    const pool = application.resolvePool(pools);
    if (!pool) {
      referenceProblems.push({ field: application.node.path, message: `not bound to a pool of fleet '${settings.fleet}'` });
      continue;
    }
    inPlan.add(application);
    planApplications.push(application.toPlanApplication(pool.poolId));
  }
  const planPolicies: Policy[] = policies.map((policy) => {
    const governed = policy.applications;
    for (const application of governed) {
      if (!inPlan.has(application)) referenceProblems.push({ field: policy.node.path, message: `governs ${application.node.path}, which is not an application of this fleet's plan` });
    }
    const ids = governed.filter((a) => inPlan.has(a)).map((a) => a.applicationId);
    return policy.toPlanPolicy([...new Set(ids)].sort(byId));
  });

  const plan: UnsignedPlan = {
    apiVersion: PLAN_API_VERSION,
    fleet: settings.fleet,
    generation: settings.generation,
    pools: pools.map((pool) => planPools.get(pool)!),
    applications: planApplications,
    policies: planPolicies,
    predictor: { ...settings.predictor },
    store: settings.store,
    security: settings.security,
    agent: { ...settings.agent },
  };

  const minimumShards = new Map<string, string>();
  const initialShards = new Map<string, string>();
  for (const pool of plan.pools) {
    for (const [id, message] of minimumShardsProblems(plan.applications, pool)) minimumShards.set(id, message);
    for (const [id, message] of minimumShardsProblems(plan.applications, pool, 'initial')) if (!minimumShards.has(id)) initialShards.set(id, message);
  }

  return {
    plan,
    pools,
    applications,
    policies,
    planPool: (pool) => planPools.get(pool) ?? pool.toPlanPool(),
    minimumShards,
    initialShards,
    referenceProblems,
  };
}
