/**
 * Request schemas of the agent API (TypeBox -> JSON Schema, validated by the project's ajv).
 * Query strings are strings (no coercion): numbers are checked by pattern and parsed in the route.
 */
import { Type, type Static } from '@sinclair/typebox';
import { MAX_SHARD_MEMORY_BYTES, MIN_SHARD_MEMORY_BYTES } from '../../src/contracts/plan-schema';
import { ID_PATTERN_SOURCE } from '../../src/errors';

/** Shard ids become cgroup paths: the pattern is checked before a handler runs, so `../../etc` never reaches the filesystem. */
export const ShardParams = Type.Object({ id: Type.String({ pattern: ID_PATTERN_SOURCE, description: 'Shard id.' }) }, { additionalProperties: false });
export type ShardParams = Static<typeof ShardParams>;

const UNIX_SECONDS = '^[0-9]{1,12}(\\.[0-9]{1,6})?$';

export const HistoryQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ pattern: UNIX_SECONDS, description: 'Unix seconds; default to - 3600.' })),
    to: Type.Optional(Type.String({ pattern: UNIX_SECONDS, description: 'Unix seconds; default now.' })),
    // A bucket is at least one unit wide: 0 would be taken as "no resolution" and answer raw samples.
    resolution: Type.Optional(Type.String({ pattern: '^0*[1-9][0-9]{0,8}(s|m|h|d)?$', description: 'Bucket width: seconds, or 30s, 5m, 1h, 1d.' })),
  },
  { additionalProperties: false },
);
export type HistoryQuery = Static<typeof HistoryQuery>;

export const PredictionQuery = Type.Object(
  { application: Type.Optional(Type.String({ pattern: ID_PATTERN_SOURCE, description: 'Only this application\'s vectors.' })) },
  { additionalProperties: false },
);
export type PredictionQuery = Static<typeof PredictionQuery>;

/** A predictor's saved state (ApplicationPredictorState): its shape beyond the version is checked by loading it. */
export const PredictorStateBody = Type.Object({ version: Type.Literal(1), applicationId: Type.String({ pattern: ID_PATTERN_SOURCE }) }, { additionalProperties: true });
export type PredictorStateBody = Static<typeof PredictorStateBody>;

export const EventsQuery = Type.Object(
  {
    since: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'Return events after this sequence number; default 0.' })),
    limit: Type.Optional(Type.String({ pattern: '^([1-9][0-9]{0,2}|1000)$', description: '1-1000; default 500.' })),
  },
  { additionalProperties: false },
);
export type EventsQuery = Static<typeof EventsQuery>;

export const ResizeBody = Type.Object(
  {
    cpuCores: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1024, description: 'New CPU limit in cores.' })),
    memoryBytes: Type.Optional(Type.Integer({ minimum: MIN_SHARD_MEMORY_BYTES, maximum: MAX_SHARD_MEMORY_BYTES, description: 'New memory limit in bytes.' })),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type ResizeBody = Static<typeof ResizeBody>;

export const DrainBody = Type.Object(
  { undo: Type.Optional(Type.Boolean({ description: 'true lifts a drain: the host runs its shards again.' })) },
  { additionalProperties: false },
);
export type DrainBody = Static<typeof DrainBody>;
