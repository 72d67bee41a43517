/**
 * Where a shard runs and how big it is, once something other than the initial placement has a
 * say: the coordinator (migrations, resizes) and `POST /v1/shards/:id/resize` write one record
 * per shard under `/fleet/<fleet>/assignments/<shard-id>` in the store. A record overrides the
 * initial placement of that shard; shards without one stay where initial placement put them.
 */
import { Type, type Static } from '@sinclair/typebox';
import { MAX_SHARD_MEMORY_BYTES, MIN_SHARD_MEMORY_BYTES } from '../../src/contracts/plan-schema';
import { compileSchema } from '../../src/contracts/schema-validator';
import { ID_PATTERN_SOURCE, formatFieldError } from '../../src/errors';
import type { KeyValue } from '../../src/store/store';

export const ShardAssignmentSchema = Type.Object(
  {
    shardId: Type.String({ pattern: ID_PATTERN_SOURCE }),
    applicationId: Type.String({ pattern: ID_PATTERN_SOURCE }),
    hostId: Type.String({ pattern: ID_PATTERN_SOURCE }),
    /** Limits that replace granularity x shardUnits; absent fields keep the plan's. */
    limits: Type.Optional(
      Type.Object(
        { cpuCores: Type.Optional(Type.Number({ exclusiveMinimum: 0 })), memoryBytes: Type.Optional(Type.Integer({ minimum: MIN_SHARD_MEMORY_BYTES, maximum: MAX_SHARD_MEMORY_BYTES })) },
        { additionalProperties: false },
      ),
    ),
    /** Who wrote it: 'coordinator', 'api' (a resize), 'migration'. */
    by: Type.String({ minLength: 1, maxLength: 64 }),
    at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);

export type ShardAssignment = Static<typeof ShardAssignmentSchema>;

const checkAssignment = compileSchema(ShardAssignmentSchema);

export function assignmentsPrefix(fleet: string): string {
  return `/fleet/${fleet}/assignments/`;
}

export function assignmentKey(fleet: string, shardId: string): string {
  return `${assignmentsPrefix(fleet)}${shardId}`;
}

/**
 * Parses the records of a prefix listing. A record that does not validate is skipped and
 * reported (the store is shared; one bad writer must not stop every agent).
 */
export function parseAssignments(kvs: readonly KeyValue[]): { assignments: Map<string, ShardAssignment>; problems: string[] } {
  const assignments = new Map<string, ShardAssignment>();
  const problems: string[] = [];
  for (const kv of kvs) {
    let data: unknown;
    try {
      data = JSON.parse(kv.value);
    } catch (error) {
      problems.push(`${kv.key}: not JSON: ${(error as Error).message}`);
      continue;
    }
    const check = checkAssignment(data);
    if (!check.ok) {
      problems.push(`${kv.key}: ${check.errors.map(formatFieldError).join('; ')}`);
      continue;
    }
    if (!kv.key.endsWith(`/${check.value.shardId}`)) {
      problems.push(`${kv.key}: shardId ${check.value.shardId} does not match the key`);
      continue;
    }
    assignments.set(check.value.shardId, check.value);
  }
  return { assignments, problems };
}
