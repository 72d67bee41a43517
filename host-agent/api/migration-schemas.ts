/** Request schemas of the migration routes (TypeBox: one source for the JSON Schema and the type). */
import { Type, type Static } from '@sinclair/typebox';
import { ABSOLUTE_NUL_FREE_PATH_PATTERN, MAX_MIGRATION_TIMEOUT_SECONDS, MAX_SHARD_MEMORY_BYTES, MIN_SHARD_MEMORY_BYTES, NUL_FREE_PATTERN } from '../../src/contracts/plan-schema';
import { ID_PATTERN_SOURCE } from '../../src/errors';

const Id = Type.String({ pattern: ID_PATTERN_SOURCE });
const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });
/** CRIU image file names (IMAGE_FILE_PATTERN): no slash, no leading dot. */
const FileName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' });
/** A size on disk the source sends: bounded where a figure stops being an exact integer (2^60 would be read as another number). */
const DiskBytes = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

export const MigrationParams = Type.Object({ id: Id }, { additionalProperties: false });
export type MigrationParams = Static<typeof MigrationParams>;

export const ImageFileParams = Type.Object(
  { id: Id, round: Type.String({ pattern: '^[1-9][0-9]{0,2}$' }), name: FileName },
  { additionalProperties: false },
);
export type ImageFileParams = Static<typeof ImageFileParams>;

export const ImageFileHeaders = Type.Object({
  /** When given, checked as soon as the file has arrived; else checked against the restore manifest. */
  'x-shardform-sha256': Type.Optional(Sha256),
  /** Absent for a chunked upload (a file still being written at the source); the verify checks its size. */
  'content-length': Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })),
});
export type ImageFileHeaders = Static<typeof ImageFileHeaders>;

export const PrepareBody = Type.Object(
  {
    source: Id,
    /**
     * The source's estimate of the image (the shard's anonymous memory): the destination checks
     * its disk for it. A source that sends no `stateBytes` (older) counted its state directory in it.
     */
    imageBytes: Type.Optional(DiskBytes),
    /**
     * What the shard's state directory takes on the source's disk: its archive arrives beside the
     * image unless the destination sees the source's own directory, so only then is it counted.
     */
    stateBytes: Type.Optional(DiskBytes),
    /** The migration's own time limit at the source: past it the source aborts rather than go on, so the destination's sweep of quiet migrations waits at least as long. */
    timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_MIGRATION_TIMEOUT_SECONDS })),
    /**
     * The shard's log files on the source, which its restored processes hold open as stdout and
     * stderr: the destination restores them onto its own log files of the shard instead.
     */
    logFiles: Type.Optional(Type.Object({ stdout: Type.String({ pattern: '^/', maxLength: 4096 }), stderr: Type.String({ pattern: '^/', maxLength: 4096 }) }, { additionalProperties: false })),
    shard: Type.Object(
      {
        shardId: Id,
        applicationId: Id,
        limits: Type.Object(
          {
            cpuCores: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0 }), Type.Null()])),
            cpuPeriodMicros: Type.Optional(Type.Integer({ minimum: 1000, maximum: 1_000_000 })),
            memoryBytes: Type.Optional(Type.Union([Type.Integer({ minimum: MIN_SHARD_MEMORY_BYTES, maximum: MAX_SHARD_MEMORY_BYTES }), Type.Null()])),
          },
          { additionalProperties: false },
        ),
        // As the plan's application (plan-schema.ts): the destination starts these with spawn.
        command: Type.Array(Type.String({ minLength: 1, pattern: NUL_FREE_PATTERN }), { minItems: 1 }),
        env: Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String({ pattern: NUL_FREE_PATTERN })),
        workingDirectory: Type.Optional(Type.String({ pattern: ABSOLUTE_NUL_FREE_PATH_PATTERN })),
        stateDirectory: Type.String({ pattern: ABSOLUTE_NUL_FREE_PATH_PATTERN }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type PrepareBody = Static<typeof PrepareBody>;

export const ImageManifestSchema = Type.Object(
  {
    round: Type.Integer({ minimum: 1, maximum: 999 }),
    /** The round this one is relative to (CRIU's parent images), if any. */
    parent: Type.Union([Type.Integer({ minimum: 1, maximum: 999 }), Type.Null()]),
    files: Type.Array(Type.Object({ name: FileName, bytes: Type.Integer({ minimum: 0 }), sha256: Sha256 }, { additionalProperties: false }), {
      minItems: 1,
      maxItems: 10_000,
    }),
  },
  { additionalProperties: false },
);
export type RoundManifest = Static<typeof ImageManifestSchema>;

export const RestoreBody = Type.Object(
  {
    /** Every round the final one depends on, oldest first, the final image last. */
    rounds: Type.Array(ImageManifestSchema, { minItems: 1, maxItems: 64 }),
  },
  { additionalProperties: false },
);
export type RestoreBody = Static<typeof RestoreBody>;

/**
 * Restart strategy: the round holding the state archive, or no round at all when the
 * destination said at prepare that it sees the source's own state directory (nothing to unpack).
 */
export const StartBody = Type.Object({ rounds: Type.Array(ImageManifestSchema, { minItems: 0, maxItems: 64 }) }, { additionalProperties: false });
export type StartBody = Static<typeof StartBody>;

/** The shard lets a destination that restarted (and forgot the migration) still take it over. */
export const CommitBody = Type.Object({ shardId: Type.Optional(Id) }, { additionalProperties: false });
export type CommitBody = Static<typeof CommitBody>;

export const AbortBody = Type.Object({ shardId: Id, reason: Type.String({ maxLength: 1000 }) }, { additionalProperties: false });
export type AbortBody = Static<typeof AbortBody>;

export const RoundParams = Type.Object({ id: Id, round: Type.String({ pattern: '^[1-9][0-9]{0,2}$' }) }, { additionalProperties: false });
export type RoundParams = Static<typeof RoundParams>;

/** What the source sent in one round, hashed while it streamed: checked against what arrived. */
export const VerifyRoundBody = Type.Object({ files: ImageManifestSchema.properties.files }, { additionalProperties: false });
export type VerifyRoundBody = Static<typeof VerifyRoundBody>;
