/**
 * Resizing a shard in place on request (API, CLI). The new size must be a whole multiple of
 * the application's granularity (DESIGN.md: sizes are multiples of the quantum); it is recorded
 * as the shard's assignment in the store first, so the reconcile loop keeps it (instead of
 * setting the plan's size back) and it survives an agent restart, then applied to the cgroup.
 */
import { ShardformError } from '../src/errors';
import type { Application, Plan } from '../src/contracts/plan-schema';
import type { Store, TxnOp } from '../src/store/store';
import type { ShardLimits } from './cgroups/driver';
import type { ShardManager } from './reconcile/shard-manager';
import type { ShardStatus } from './runner/shard-status';
import { fits, NO_RESOURCES, roomFor, unknownCapacity, type CapacityView, type Resources } from './host-capacity';
import { ApiError, noPlan, unknownShard } from './api/api-errors';
import { shardHeld } from './errors';
import type { AgentLogger } from './log';
import { assignmentKey, parseAssignments, type ShardAssignment } from './plan-source/shard-assignment';

export interface ResizeRequest {
  readonly cpuCores?: number;
  readonly memoryBytes?: number;
}

/** Checks a request against the application's granularity; throws a ShardformError naming the field. */
export function checkResize(app: Pick<Application, 'id' | 'granularity'>, request: ResizeRequest): ResizeRequest {
  const check = (field: 'cpuCores' | 'memoryBytes', value: number | undefined, quantum: number, show: (n: number) => string) => {
    if (value === undefined) return;
    const units = value / quantum;
    // At least one quantum: a value within the tolerance of 0 units is no size. Whole numbers
    // (bytes) must divide exactly; the tolerance is only for decimal fractions of cores.
    const whole = Number.isSafeInteger(value) && Number.isSafeInteger(quantum) ? value % quantum === 0 : Math.abs(units - Math.round(units)) <= 1e-6;
    if (!(value > 0) || Math.round(units) < 1 || !whole) {
      const below = Math.max(1, Math.floor(units));
      throw new ShardformError(
        'INVALID_ARGUMENT',
        field,
        value,
        `${field}: ${value} is not a whole multiple of ${app.id}'s granularity (${show(quantum)}); use e.g. ${show(below * quantum)} or ${show((below + 1) * quantum)}`,
      );
    }
  };
  check('cpuCores', request.cpuCores, app.granularity.cpuCores, (n) => `${Math.round(n * 1000) / 1000} cores`);
  check('memoryBytes', request.memoryBytes, app.granularity.memoryBytes, (n) => `${n} bytes`);
  return request;
}

export interface ShardResizerOptions {
  readonly manager: Pick<ShardManager, 'status' | 'resize'>;
  /** The assignment is written, and put back after a failed resize, by compare-and-swap only. */
  readonly store: Pick<Store, 'get' | 'txn'>;
  readonly plan: () => Plan | undefined;
  readonly hostId: string;
  /** This host's capacity and what its shards hold: the view a migration's prepare uses too. */
  readonly capacity: CapacityView;
  readonly clock?: () => Date;
  /** Where a put-back that failed too is reported (the refused size then stays recorded). */
  readonly logger?: Pick<AgentLogger, 'error'>;
  /**
   * Capacity migrations arriving here have reserved beyond their held cgroups (the keeper makes
   * those after the reservation): counted as held, or a resize could take what a prepare promised.
   */
  readonly reserved?: () => Resources;
}

/**
 * Why growing `shard` as `request` asks would take more than this host has beside its other shards
 * (held ones, arriving or leaving, included) and what arriving migrations reserved, or undefined.
 * The same room a migration's prepare is judged by (host-capacity.ts). Shrinking is always
 * allowed, even on a host already over its capacity or whose capacity is unknown; growing on a
 * host the plan does not list is refused. Like Kubernetes' in-place resize, a size the node
 * cannot hold is refused, not queued.
 */
export function capacityRefusal(view: CapacityView, hostId: string, shard: ShardStatus, request: ResizeRequest, reserved: Resources = NO_RESOURCES): string | undefined {
  const grows = (resource: keyof Resources) => (request[resource] ?? 0) > (shard.limits[resource] ?? 0);
  if (!grows('cpuCores') && !grows('memoryBytes')) return undefined;
  const room = roomFor(view, reserved, shard.shardId);
  if (!room) return `host ${hostId} cannot grow shard ${shard.shardId}: ${unknownCapacity(hostId)}`;
  const check = (resource: keyof Resources, unit: string) => {
    const wanted = request[resource];
    if (wanted === undefined || !grows(resource) || fits(wanted, room.free[resource], resource)) return undefined;
    const show = (n: number) => (resource === 'cpuCores' ? String(Math.round(n * 1000) / 1000) : String(n));
    return `host ${hostId} cannot hold shard ${shard.shardId} at ${show(wanted)} ${unit}: its capacity is ${show(room.capacity[resource])}, its other shards hold ${show(room.held[resource])}, so at most ${show(room.free[resource])} is free for it; migrate a shard away first`;
  };
  return check('cpuCores', 'cpu cores') ?? check('memoryBytes', 'memory bytes');
}

/** What a resize needs of the agent's store; one without transactions (only test doubles) refuses resizes rather than write blind. */
export function resizeStoreOf(store: Pick<Store, 'get'> & Partial<Pick<Store, 'txn'>>): Pick<Store, 'get' | 'txn'> {
  const { txn } = store;
  return {
    get: (key) => store.get(key),
    txn: txn
      ? txn.bind(store)
      : async () => {
          throw new Error('resizing a shard needs a store with transactions (etcd or the embedded store)');
        },
  };
}

export class ShardResizer {
  constructor(private readonly options: ShardResizerOptions) {}

  /** Resizes run one at a time: two growing shards checked side by side could each fit alone and not together. */
  private turn: Promise<unknown> = Promise.resolve();
  /** What the resize in progress grows its shard by, from its capacity check until its cgroup write ends. */
  private inFlight: Resources | undefined;

  /**
   * What a resize in progress is growing its shard by and the cgroup does not show yet: a
   * migration's prepare counts it as held (agentCapacityView), as this resize counts prepares.
   */
  growing(): Resources {
    return this.inFlight ?? NO_RESOURCES;
  }

  resize(shardId: string, request: ResizeRequest): Promise<ShardStatus> {
    const mine = this.turn.then(() => this.resizeNow(shardId, request));
    this.turn = mine.catch(() => undefined);
    return mine;
  }

  private async resizeNow(shardId: string, request: ResizeRequest): Promise<ShardStatus> {
    const { manager, hostId } = this.options;
    const status = manager.status().find((s) => s.shardId === shardId);
    if (!status) throw unknownShard(shardId);
    const plan = this.options.plan();
    if (!plan) throw noPlan();
    const app = plan.applications.find((a) => a.id === status.applicationId);
    if (!app) throw unknownShard(shardId);
    checkResize(app, request);

    // A shard a migration holds (frozen, dumped, arriving or leaving) is the migration's to move.
    if (status.state === 'held') throw shardHeld(shardId, 'resize');
    const overCapacity = capacityRefusal(this.options.capacity, hostId, status, request, this.options.reserved?.());
    if (overCapacity) throw new ApiError(409, 'CONFLICT', overCapacity);
    // Published in the same tick as the check: a prepare during the awaits below sees it.
    const growth = (resource: keyof Resources) => Math.max(0, (request[resource] ?? 0) - (status.limits[resource] ?? 0));
    this.inFlight = { cpuCores: growth('cpuCores'), memoryBytes: growth('memoryBytes') };
    try {
      return await this.write(shardId, request, plan, app, status);
    } finally {
      this.inFlight = undefined;
    }
  }

  private async write(shardId: string, request: ResizeRequest, plan: Plan, app: Application, status: ShardStatus): Promise<ShardStatus> {
    const { manager, store, hostId } = this.options;

    const key = assignmentKey(plan.fleet, shardId);
    const existing = await store.get(key);
    const previous = existing ? parseAssignments([existing]).assignments.get(shardId) : undefined;
    // The store says the shard belongs elsewhere (a migration committed it to another host): a
    // write naming this host would pull it back here and start it twice.
    if (previous && previous.hostId !== hostId)
      throw new ApiError(409, 'CONFLICT', `shard ${JSON.stringify(shardId)} is assigned to host ${previous.hostId} (by ${previous.by}); resize it through that host's agent`);
    const assignment: ShardAssignment = {
      shardId,
      applicationId: app.id,
      hostId,
      limits: { ...previous?.limits, ...(request.cpuCores !== undefined ? { cpuCores: request.cpuCores } : {}), ...(request.memoryBytes !== undefined ? { memoryBytes: request.memoryBytes } : {}) },
      by: 'api',
      at: (this.options.clock?.() ?? new Date()).toISOString(),
    };
    // Written only over what was read: a migration's commit (or another resize) in between
    // wins, and this resize changes nothing.
    const written = await store.txn([{ key, modRevision: existing?.modRevision ?? 0 }], [{ kind: 'put', key, value: JSON.stringify(assignment) }]);
    if (!written.succeeded)
      throw new ApiError(409, 'CONFLICT', `the assignment of shard ${JSON.stringify(shardId)} changed while it was resized (a migration or another resize); nothing was changed, ask again`);
    const revision = written.revision;
    const limits: ShardLimits = { ...(request.cpuCores !== undefined ? { cpuCores: request.cpuCores } : {}), ...(request.memoryBytes !== undefined ? { memoryBytes: request.memoryBytes } : {}) };
    try {
      await manager.resize(shardId, limits);
    } catch (error) {
      // The resize failed (e.g. cgroup v1 refuses a memory limit below usage with EBUSY): the
      // assignment goes back to what it was, or reconcile would try the refused size on every
      // pass. Only if nobody has written it since (a put returns the key's new modRevision).
      await this.putBack(key, revision, existing?.value).catch((putBackError: unknown) =>
        this.options.logger?.error(
          { part: 'resize', shard_id: shardId, key, error: (putBackError as Error).message, resize_error: (error as Error).message },
          'a refused resize could not put the previous assignment back: the refused size stays recorded and reconcile retries it; resize the shard again',
        ),
      );
      throw error;
    }
    return manager.status().find((s) => s.shardId === shardId) ?? status;
  }

  /** Restores the assignment `value` (undefined: none) unless the key changed after our write at `revision`. */
  private async putBack(key: string, revision: number, value: string | undefined): Promise<void> {
    const { store } = this.options;
    const op: TxnOp = value !== undefined ? { kind: 'put', key, value } : { kind: 'delete', key };
    await store.txn([{ key, modRevision: revision }], [op]);
  }
}
