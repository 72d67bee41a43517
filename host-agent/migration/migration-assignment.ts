/**
 * What a committed migration writes beside its journal record: the shard's assignment record
 * (`/fleet/<fleet>/assignments/<shard>`, the key every agent's reconcile reads) now naming the
 * destination, with the limits the shard ran with. Written in the same transaction as
 * `committed`, so there is no revision at which the journal says "the destination owns it"
 * while the assignments still place it on the source (which would re-create it). Pure.
 */
import type { TxnOp } from '../../src/store/store';
import { assignmentKey, type ShardAssignment } from '../plan-source/shard-assignment';
import type { DesiredShard } from '../reconcile/desired-shard';
import type { MigrationRecord } from './migration-record';

export function assignmentOnCommit(record: MigrationRecord, desired: DesiredShard, at: string): TxnOp {
  const limits: NonNullable<ShardAssignment['limits']> = {
    ...(desired.limits.cpuCores != null ? { cpuCores: desired.limits.cpuCores } : {}),
    ...(desired.limits.memoryBytes != null ? { memoryBytes: desired.limits.memoryBytes } : {}),
  };
  const assignment: ShardAssignment = {
    shardId: record.shardId,
    applicationId: record.applicationId,
    hostId: record.destination,
    ...(Object.keys(limits).length > 0 ? { limits } : {}),
    by: 'migration',
    at,
  };
  return { kind: 'put', key: assignmentKey(record.fleet, record.shardId), value: JSON.stringify(assignment) };
}
