/**
 * The agent API's answers that the CLI reads (`shards`, `drain --agent`, `migrate`, `predict --agent`): one TypeBox
 * definition for the JSON Schema the CLI checks every reply against and for the types the CLI
 * reads. A reply is outside data like any other: a server that is not a Shardform agent may answer
 * 200 with other JSON. The agent's routes are not typed against these; the CLI tests that run
 * against the real routes (test/cli/agent-commands.test.ts, the migration integration tests)
 * are what notices a route that drifted away from them.
 * Fields the CLI reads are required and typed; others are allowed, so a CLI keeps working with a
 * newer agent that adds some.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ID_PATTERN_SOURCE } from '../errors';
// Importing it compiles it, which registers its $id with the shared ajv: the replies refer to it.
import { DemandVectorSchema } from './demand-vector';
import { PredictorSettingsSchema } from './plan-schema';
import { compileSchema, StringEnum } from './schema-validator';

const Id = Type.String({ pattern: ID_PATTERN_SOURCE });
/** `type: [T, "null"]` rather than anyOf: one error ("must be integer,null") instead of one per branch and a third for anyOf. */
const Nullable = <T extends TSchema>(schema: T) => Type.Unsafe<Static<T> | null>({ ...schema, type: [schema.type as string, 'null'] });
const Count = Type.Integer({ minimum: 0 });
const Milliseconds = Type.Number({ minimum: 0 });

/** One shard as `GET /v1/shards` lists it (host-agent/api/routes/shard-routes.ts `view`). */
export const ShardViewSchema = Type.Object({
  shardId: Id,
  applicationId: Id,
  state: Type.String({ minLength: 1 }),
  pid: Nullable(Type.Integer({ minimum: 1 })),
  restarts: Count,
  adopted: Type.Boolean(),
  frozen: Type.Boolean(),
  /** Absent or null: not limited ("max"). */
  limits: Type.Object({
    cpuCores: Type.Optional(Nullable(Type.Number({ exclusiveMinimum: 0 }))),
    memoryBytes: Type.Optional(Nullable(Type.Integer({ minimum: 1 }))),
  }),
});
export type ShardView = Static<typeof ShardViewSchema>;

/** `GET /v1/shards`. */
export const ShardListSchema = Type.Object({ hostId: Id, drained: Type.Boolean(), shards: Type.Array(ShardViewSchema) });
export type ShardList = Static<typeof ShardListSchema>;

/** `GET /v1/shards/:id`: the shard plus its live usage (null when it could not be read; `usageError` says why). */
export const ShardDetailSchema = Type.Object({
  ...ShardViewSchema.properties,
  usage: Nullable(Type.Object({})),
  usageError: Type.Optional(Type.String()),
});
export type ShardDetail = Static<typeof ShardDetailSchema>;

/** `POST /v1/drain`. */
export const DrainReplySchema = Type.Object({
  drained: Type.Boolean(),
  converged: Type.Boolean(),
  actions: Type.Array(Type.Object({ kind: Type.String(), shardId: Id, ok: Type.Boolean(), error: Type.Optional(Type.String()) })),
});
export type DrainReply = Static<typeof DrainReplySchema>;

/** `POST /v1/migrations`: the finished migration (host-agent/migration/migration-summary.ts). */
export const MigrationSummarySchema = Type.Object({
  id: Type.String({ minLength: 1 }),
  shardId: Id,
  source: Id,
  destination: Id,
  strategy: StringEnum(['checkpoint', 'restart']),
  state: Type.String({ minLength: 1 }),
  downtimeMs: Nullable(Milliseconds),
  downtimeSteps: Nullable(Type.Object({ freezeMs: Milliseconds, dumpMs: Milliseconds, transferMs: Milliseconds, restoreMs: Milliseconds })),
  durationMs: Nullable(Milliseconds),
  bytesSent: Count,
  rounds: Count,
  preCopySkipped: Nullable(Type.String()),
  preCopyMethod: Nullable(Type.String()),
  abortReason: Nullable(Type.String()),
  // Optional: agents before 2026-11-29 do not send them.
  startedAt: Type.Optional(Nullable(Type.String())),
  updatedAt: Type.Optional(Nullable(Type.String())),
  // Optional: agents before lazy restores (2026-11-29) do not send it.
  lazyPagesMs: Type.Optional(Nullable(Milliseconds)),
  // Optional: agents before streamed dumps (2026-11-29) do not send it.
  streamedBytes: Type.Optional(Nullable(Count)),
});
export type MigrationSummaryReply = Static<typeof MigrationSummarySchema>;

/** `GET /v1/migrations`: every migration of the fleet in the journal, newest first. */
export const MigrationListSchema = Type.Object({ migrations: Type.Array(MigrationSummarySchema) });

/**
 * `GET /v1/predictions`: the host's forecast under its plan's predictor settings
 * (host-agent/prediction/forecast-loop.ts). Settings take the plan's fields but allow more (a
 * newer agent); null before the agent's first prediction pass, or while the plan's cannot be used.
 */
/** By reference: the schema inlined twice would be two schemas with one $id, which ajv refuses. */
const DemandVectorRef = Type.Unsafe<Static<typeof DemandVectorSchema>>({ $ref: DemandVectorSchema.$id });
export const PredictionsReplySchema = Type.Object({
  hostId: Id,
  settings: Nullable(Type.Object(PredictorSettingsSchema.properties)),
  /** The newest grid time fed into the predictors; null before any. */
  fedThroughSeconds: Nullable(Type.Number()),
  /** The agent is still replaying its history after a start: the vectors are from older points. */
  catchingUp: Type.Boolean(),
  shards: Type.Array(Type.Intersect([DemandVectorRef, Type.Object({ shard_id: Id })])),
  applications: Type.Array(DemandVectorRef),
});
export type PredictionsReply = Static<typeof PredictionsReplySchema>;

export const checkShardList = compileSchema(ShardListSchema);
export const checkShardView = compileSchema(ShardViewSchema);
export const checkShardDetail = compileSchema(ShardDetailSchema);
export const checkDrainReply = compileSchema(DrainReplySchema);
export const checkMigrationSummary = compileSchema(MigrationSummarySchema);
export const checkMigrationList = compileSchema(MigrationListSchema);
export const checkPredictionsReply = compileSchema(PredictionsReplySchema);
