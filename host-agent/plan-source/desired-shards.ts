/**
 * The shards this host should run: the plan's initial placement (every agent computes the same
 * one, policies/initial-placement.ts), overridden shard by shard by assignment records
 * (coordinator moves and resizes), minus everything when the host is drained. Pure.
 */
import { placeShards } from '../../policies/initial-placement';
import { shardLimits } from '../../src/contracts/plan-checks';
import type { Application, Plan } from '../../src/contracts/plan-schema';
import type { DesiredShard } from '../reconcile/desired-shard';
import type { ShardAssignment } from './shard-assignment';

export interface DesiredShardsInput {
  readonly plan: Plan;
  readonly hostId: string;
  readonly assignments?: ReadonlyMap<string, ShardAssignment>;
  /** A drained host runs nothing until it is undrained. */
  readonly drained?: boolean;
}

export function desiredShardsForHost(input: DesiredShardsInput): DesiredShard[] {
  const { plan, hostId, assignments = new Map(), drained = false } = input;
  if (drained) return [];
  const apps = new Map(plan.applications.map((app) => [app.id, app]));
  const wanted = new Map<string, { app: Application; assignment?: ShardAssignment }>();
  for (const placed of placeShards(plan).assignments) {
    const override = assignments.get(placed.shardId);
    const host = override?.hostId ?? placed.hostId;
    if (host === hostId) wanted.set(placed.shardId, { app: apps.get(placed.applicationId)!, assignment: override });
  }
  // Shards the coordinator added beyond the initial ones (scale-out, or moved here).
  for (const assignment of assignments.values()) {
    const app = apps.get(assignment.applicationId);
    if (assignment.hostId === hostId && app && !wanted.has(assignment.shardId)) wanted.set(assignment.shardId, { app, assignment });
  }
  return [...wanted.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([shardId, { app, assignment }]) => toDesired(shardId, app, assignment));
}

function toDesired(shardId: string, app: Application, assignment: ShardAssignment | undefined): DesiredShard {
  const base = shardLimits(app);
  return {
    shardId,
    applicationId: app.id,
    // IOPS limits need a block device the plan does not name yet, so only cpu and memory are set here.
    limits: { cpuCores: assignment?.limits?.cpuCores ?? base.cpuCores, memoryBytes: assignment?.limits?.memoryBytes ?? base.memoryBytes },
    command: app.command,
    env: app.env,
    ...(app.workingDirectory ? { workingDirectory: app.workingDirectory } : {}),
    stateDirectory: app.stateDirectory,
  };
}
