/**
 * What this host offers to shards and what is taken of it. A migration's prepare
 * (migration/incoming-migrations.ts) and an in-place resize (shard-resize.ts) both ask
 * `roomFor`, so the two can never disagree about the same host: they once computed it apart, and
 * a host the plan does not list was full for a prepare and unchecked for a resize.
 */
import type { Plan } from '../src/contracts/plan-schema';
import { planHost } from '../src/contracts/plan';
import type { ShardStatus } from './runner/shard-status';

export interface Resources {
  readonly cpuCores: number;
  readonly memoryBytes: number;
}

export const NO_RESOURCES: Resources = { cpuCores: 0, memoryBytes: 0 };

export interface CapacityView {
  /** What this host offers; undefined when it is not known (no plan, or a plan that does not list this host). */
  capacity(): Resources | undefined;
  /** Sum of the limits of the shards this host holds (the agent: also the held cgroups of shards arriving or leaving). */
  allocated(): Resources;
  /**
   * What allocated() counts for one shard, if anything: the agent counts an arriving shard's held
   * cgroup from the moment the keeper creates it. Absent: it counts no single shard (the
   * standalone server).
   */
  allocatedTo?(shardId: string): Resources | undefined;
}

export interface Room {
  readonly capacity: Resources;
  /** What is taken: every shard but the one asking, plus what arriving migrations reserved beyond their cgroups. */
  readonly held: Resources;
  /** capacity − held, never below 0. */
  readonly free: Resources;
}

/**
 * The room this host has for `shardId` (its own limits are not counted as held; omit it for a
 * shard that is not here yet), counting `reserved` as held; undefined when the capacity is unknown.
 */
export function roomFor(view: CapacityView, reserved: Resources, shardId?: string): Room | undefined {
  const capacity = view.capacity();
  if (!capacity) return undefined;
  const allocated = view.allocated();
  const own = (shardId !== undefined && view.allocatedTo?.(shardId)) || NO_RESOURCES;
  const held = {
    cpuCores: allocated.cpuCores - own.cpuCores + reserved.cpuCores,
    memoryBytes: allocated.memoryBytes - own.memoryBytes + reserved.memoryBytes,
  };
  return {
    capacity,
    held,
    free: { cpuCores: Math.max(0, capacity.cpuCores - held.cpuCores), memoryBytes: Math.max(0, capacity.memoryBytes - held.memoryBytes) },
  };
}

/** Whether `wanted` fits in `free` (cpu with a tolerance for decimal fractions of cores). */
export function fits(wanted: number, free: number, resource: keyof Resources): boolean {
  return resource === 'cpuCores' ? wanted <= free + 1e-9 : wanted <= free;
}

/** Why the capacity of `hostId` (or of this host, for a part that does not know its id) is unknown, for refusals. */
export function unknownCapacity(hostId?: string): string {
  return `the plan does not list ${hostId === undefined ? 'this host' : `host ${hostId}`}, so its capacity is unknown`;
}

export interface AgentCapacitySources {
  readonly hostId: string;
  plan(): Plan | undefined;
  /** What the keeper supervises now, held shards included. */
  shards(): readonly ShardStatus[];
  /** What a resize in progress is growing its shard by (ShardResizer.growing). */
  resizing?(): Resources;
}

/** This host's capacity in the plan, and what the keeper's shards hold, held ones included. */
export function agentCapacityView(sources: AgentCapacitySources): CapacityView {
  const sum = (shards: readonly ShardStatus[]) =>
    shards.reduce((acc, s) => ({ cpuCores: acc.cpuCores + (s.limits.cpuCores ?? 0), memoryBytes: acc.memoryBytes + (s.limits.memoryBytes ?? 0) }), NO_RESOURCES);
  return {
    capacity: () => {
      const plan = sources.plan();
      const host = plan && planHost(plan, sources.hostId);
      return host && { cpuCores: host.capacity.cpuCores, memoryBytes: host.capacity.memoryBytes };
    },
    // Held shards (arriving or leaving) are counted: their cgroups exist with their limits.
    // A resize in progress too: checked before its awaits, it has not reached the cgroup yet.
    allocated: () => {
      const held = sum(sources.shards());
      const growing = sources.resizing?.();
      return growing ? { cpuCores: held.cpuCores + growing.cpuCores, memoryBytes: held.memoryBytes + growing.memoryBytes } : held;
    },
    allocatedTo: (shardId) => {
      const shard = sources.shards().find((s) => s.shardId === shardId);
      return shard && sum([shard]);
    },
  };
}
