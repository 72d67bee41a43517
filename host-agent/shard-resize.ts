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
import { noPlan, unknownShard } from './api/api-errors';
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
  /** With `txn` the assignment of a failed resize is put back by compare-and-swap; without, by a read then a write. */
  readonly store: Pick<Store, 'get' | 'put' | 'delete'> & Partial<Pick<Store, 'txn'>>;
  readonly plan: () => Plan | undefined;
  readonly hostId: string;
  readonly clock?: () => Date;
}

export class ShardResizer {
  constructor(private readonly options: ShardResizerOptions) {}

  async resize(shardId: string, request: ResizeRequest): Promise<ShardStatus> {
    const { manager, store, hostId } = this.options;
    const status = manager.status().find((s) => s.shardId === shardId);
    if (!status) throw unknownShard(shardId);
    const plan = this.options.plan();
    if (!plan) throw noPlan();
    const app = plan.applications.find((a) => a.id === status.applicationId);
    if (!app) throw unknownShard(shardId);
    checkResize(app, request);

    const key = assignmentKey(plan.fleet, shardId);
    const existing = await store.get(key);
    const previous = existing ? parseAssignments([existing]).assignments.get(shardId) : undefined;
    const assignment: ShardAssignment = {
      shardId,
      applicationId: app.id,
      hostId,
      limits: { ...previous?.limits, ...(request.cpuCores !== undefined ? { cpuCores: request.cpuCores } : {}), ...(request.memoryBytes !== undefined ? { memoryBytes: request.memoryBytes } : {}) },
      by: 'api',
      at: (this.options.clock?.() ?? new Date()).toISOString(),
    };
    const revision = await store.put(key, JSON.stringify(assignment));
    const limits: ShardLimits = { ...(request.cpuCores !== undefined ? { cpuCores: request.cpuCores } : {}), ...(request.memoryBytes !== undefined ? { memoryBytes: request.memoryBytes } : {}) };
    try {
      await manager.resize(shardId, limits);
    } catch (error) {
      // The resize failed (e.g. cgroup v1 refuses a memory limit below usage with EBUSY): the
      // assignment goes back to what it was, or reconcile would try the refused size on every
      // pass. Only if nobody has written it since (a put returns the key's new modRevision).
      await this.putBack(key, revision, existing?.value).catch(() => undefined);
      throw error;
    }
    return manager.status().find((s) => s.shardId === shardId) ?? status;
  }

  /** Restores the assignment `value` (undefined: none) unless the key changed after our write at `revision`. */
  private async putBack(key: string, revision: number, value: string | undefined): Promise<void> {
    const { store } = this.options;
    const op: TxnOp = value !== undefined ? { kind: 'put', key, value } : { kind: 'delete', key };
    if (store.txn) {
      await store.txn([{ key, modRevision: revision }], [op]);
      return;
    }
    if ((await store.get(key))?.modRevision !== revision) return;
    if (value !== undefined) await store.put(key, value);
    else await store.delete(key);
  }
}
