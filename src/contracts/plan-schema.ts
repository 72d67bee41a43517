/**
 * The plan: the compiled, versioned contract that synthesis produces and agents consume.
 * This TypeBox definition is the single source of truth for both the JSON Schema (validated by
 * ajv wherever a plan is read) and the TypeScript types. All quantities are plain numbers with
 * their unit in the field name; human-friendly strings are parsed before a plan is built.
 */
import { Type, type Static } from '@sinclair/typebox';
import { ID_PATTERN_SOURCE } from '../errors';
import { MAX_INTERVAL_SECONDS, MIN_INTERVAL_SECONDS } from './prediction-grid';
import { NamedMap, StringEnum, TaggedUnion } from './schema-validator';

export const PLAN_API_VERSION = 'shardform.dev/v1alpha1';

const Id = (description: string) => Type.String({ pattern: ID_PATTERN_SOURCE, description });
const Labels = NamedMap('^[a-z0-9A-Z._/-]{1,63}$', Type.String({ maxLength: 253 }), {
  description: 'Free-form key/value labels used by placement scopes and selectors.',
});
const Seconds = (description: string, minimum = 0) => Type.Number({ minimum, description });
const Fraction = (description: string) => Type.Number({ exclusiveMinimum: 0, maximum: 1, description });

export const CapacitySchema = Type.Object(
  {
    cpuCores: Type.Number({ exclusiveMinimum: 0, description: 'CPU cores offered to shards.' }),
    memoryBytes: Type.Integer({ minimum: 1, description: 'Memory offered to shards, bytes.' }),
    readIops: Type.Integer({ minimum: 0, description: 'Read operations per second offered to shards (0 = not limited).' }),
    writeIops: Type.Integer({ minimum: 0, description: 'Write operations per second offered to shards (0 = not limited).' }),
    networkBytesPerSecond: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export const HostSchema = Type.Object(
  {
    id: Id('Host id, unique in the fleet.'),
    address: Type.String({
      minLength: 1,
      maxLength: 253,
      pattern: '^[A-Za-z0-9.:\\[\\]-]+$',
      description: 'Where the agent on this host is reached (host name or IP, optionally :port).',
    }),
    capacity: CapacitySchema,
    labels: Labels,
  },
  { additionalProperties: false },
);

export const DiscoverySchema = Type.Object(
  {
    provider: Type.Literal('aws'),
    region: Type.String({ minLength: 1 }),
    /** Instances are found by this tag (the auto scaling group tags its instances with it). */
    tagKey: Type.String({ minLength: 1 }),
    tagValue: Type.String({ minLength: 1 }),
    minHosts: Type.Integer({ minimum: 0 }),
    maxHosts: Type.Integer({ minimum: 1 }),
    desiredHosts: Type.Integer({ minimum: 0 }),
    instanceType: Type.String({ minLength: 1 }),
  },
  { additionalProperties: false },
);

export const PoolSchema = Type.Object(
  {
    id: Id('Pool id, unique in the fleet.'),
    kind: StringEnum(['static', 'aws']),
    costPerHourUsd: Type.Number({ minimum: 0, description: 'Cost of one host of this pool per hour.' }),
    labels: Labels,
    /** Static pools list their hosts; cloud pools have none at synth time and use `discovery`. */
    hosts: Type.Array(HostSchema),
    /** Capacity of one host, for pools whose hosts are discovered at run time. */
    hostCapacity: Type.Optional(CapacitySchema),
    discovery: Type.Optional(DiscoverySchema),
  },
  { additionalProperties: false },
);

/**
 * The smallest CPU a shard can be limited to: the kernel's minimum CFS quota is 1 ms per period
 * (sched-bwc.rst) and agents use the default 100 ms period, so 0.01 core; below it an agent
 * cannot write the shard's cpu.max / cpu.cfs_quota_us and refuses the shard.
 */
export const MIN_SHARD_CPU_CORES = 0.01;

/**
 * Environment variables the agent sets for each shard's processes (host-agent/runner/shard-supervisor.ts):
 * its shard id, application id and state directory (`<stateDirectory>/<shard-id>`, the directory a
 * migration moves). A plan's env cannot override them.
 */
export const AGENT_ENV_NAMES: readonly string[] = ['SHARDFORM_SHARD_ID', 'SHARDFORM_APPLICATION_ID', 'SHARDFORM_STATE_DIR'];
export const AGENT_ENV_RULE =
  'is set by the agent for every shard (its shard id, application id and state directory, <stateDirectory>/<shard-id>); a plan cannot override it, or the shards would share one value and a migration would move a state directory the workload never used; set stateDirectory instead';

/** The longest migration timeout: a destination agent refuses a prepare whose timeoutSeconds is longer. */
export const MAX_MIGRATION_TIMEOUT_SECONDS = 86_400;

/**
 * The range of a shard's memory limit, for the plan (granularity), the constructs, the agent's
 * limits check on start and its resize route alike. At least one 4 KiB page: the kernel turns a
 * memory limit into whole pages rounding down (mm/page_counter.c page_counter_memparse), so a
 * smaller one is a limit of 0 pages and the shard is OOM-killed at its first allocation. At most
 * 2^53 - 1: past Number.MAX_SAFE_INTEGER a JSON number no longer counts bytes exactly.
 */
export const MIN_SHARD_MEMORY_BYTES = 4096;
export const MAX_SHARD_MEMORY_BYTES = Number.MAX_SAFE_INTEGER;
export const SHARD_MEMORY_RULE =
  `use a whole number of bytes from ${MIN_SHARD_MEMORY_BYTES} (one 4KiB page: the kernel rounds a memory limit down to whole pages, so less is a limit of 0 and the shard is OOM-killed at its first allocation) ` +
  `to ${MAX_SHARD_MEMORY_BYTES} (2^53-1: past it a JSON number no longer counts bytes exactly)`;

/** Strings the agent hands to execve (argv, env, cwd) cannot hold a NUL byte (NUL_RULE in src/errors.ts). */
export const NUL_FREE_PATTERN = '^[^\\u0000]*$';
export const ABSOLUTE_NUL_FREE_PATH_PATTERN = '^/[^\\u0000]*$';

export const GranularitySchema = Type.Object(
  {
    cpuCores: Type.Number({ minimum: MIN_SHARD_CPU_CORES }),
    memoryBytes: Type.Integer({ minimum: MIN_SHARD_MEMORY_BYTES, maximum: MAX_SHARD_MEMORY_BYTES }),
    readIops: Type.Integer({ minimum: 0 }),
    writeIops: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false, description: 'The allocation quantum: shard limits are whole multiples of it.' },
);

export const ApplicationSchema = Type.Object(
  {
    id: Id('Application id (the demand vector\'s application_id).'),
    pool: Id('The pool whose hosts run this application\'s shards.'),
    command: Type.Array(Type.String({ minLength: 1, pattern: NUL_FREE_PATTERN }), { minItems: 1, description: 'argv; never a shell string.' }),
    env: NamedMap('^[A-Za-z_][A-Za-z0-9_]*$', Type.String({ pattern: NUL_FREE_PATTERN }), { description: 'Environment of the shard processes.' }),
    workingDirectory: Type.Optional(Type.String({ pattern: ABSOLUTE_NUL_FREE_PATH_PATTERN })),
    stateDirectory: Type.String({ pattern: ABSOLUTE_NUL_FREE_PATH_PATTERN, description: 'Per-shard state lives in <stateDirectory>/<shard-id>; moved on migration.' }),
    granularity: GranularitySchema,
    /** Each shard's limits are granularity x shardUnits (the coordinator may resize in units). */
    shardUnits: Type.Integer({ minimum: 1 }),
    shards: Type.Object(
      { min: Type.Integer({ minimum: 0 }), initial: Type.Integer({ minimum: 0 }), max: Type.Integer({ minimum: 1 }) },
      { additionalProperties: false },
    ),
    migration: Type.Object(
      {
        strategy: StringEnum(['checkpoint', 'restart']),
        /**
         * Give up (and resume the source) if a migration takes longer than this. Whole seconds up to
         * a day: what a destination agent's prepare accepts (host-agent/api/migration-schemas.ts).
         */
        timeoutSeconds: Type.Integer({ minimum: 1, maximum: MAX_MIGRATION_TIMEOUT_SECONDS, description: 'Migration timeout.' }),
        preCopy: Type.Boolean({ description: 'Iterative pre-dumps while running before the final freeze.' }),
      },
      { additionalProperties: false },
    ),
    labels: Labels,
  },
  { additionalProperties: false },
);

const PolicyBase = {
  id: Id('Policy id, unique in the fleet.'),
  /** Applications the policy governs; empty means every application. */
  applications: Type.Array(Id('Application id.')),
};

export const ProactiveMigrationSchema = Type.Object(
  {
    kind: Type.Literal('proactive-migration'),
    ...PolicyBase,
    threshold: Fraction('Migrate when the predicted utilization of a host exceeds this fraction of its capacity.'),
    /** Predicted on the fleet's predictor grid: whole steps of predictor.intervalSeconds (plan-checks.ts). */
    horizonSeconds: Seconds('How far ahead the prediction looks.', 1),
    quantile: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 }),
    cooldownSeconds: Seconds('Minimum time between two migrations of the same shard.'),
  },
  { additionalProperties: false },
);

export const CostAwarePlacementSchema = Type.Object(
  {
    kind: Type.Literal('cost-aware-placement'),
    ...PolicyBase,
    /** Capacity kept free on every host when packing for cost. */
    headroom: Type.Number({ minimum: 0, exclusiveMaximum: 1 }),
    /** Only move a shard for cost if it saves at least this much per hour. */
    minSavingsPerHourUsd: Type.Number({ minimum: 0 }),
  },
  { additionalProperties: false },
);

/** `host`, `pool`, or `label:<key>` (e.g. `label:zone`). */
const Scope = Type.String({ pattern: '^(host|pool|label:[a-zA-Z0-9._/-]{1,63})$' });

const PlacementRule = (kind: 'affinity' | 'anti-affinity') =>
  Type.Object(
    {
      kind: Type.Literal(kind),
      ...PolicyBase,
      scope: Scope,
      mode: StringEnum(['hard', 'soft']),
      /** Soft rules: how strongly a violation counts against a placement (1-100). */
      weight: Type.Integer({ minimum: 1, maximum: 100 }),
    },
    { additionalProperties: false },
  );

export const AffinitySchema = PlacementRule('affinity');
export const AntiAffinitySchema = PlacementRule('anti-affinity');

export const PolicySchema = TaggedUnion('kind', [ProactiveMigrationSchema, CostAwarePlacementSchema, AffinitySchema, AntiAffinitySchema]);

export const PredictorSettingsSchema = Type.Object(
  {
    /** `auto` selects per application by rolling backtest; a model name pins one. */
    model: Type.String({ pattern: '^[a-z0-9-]{1,32}$' }),
    horizonSeconds: Seconds('Default prediction horizon.', 1),
    quantile: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 }),
    /**
     * Metric history is resampled onto this grid before it reaches a model. Horizons (this
     * block's and every proactive-migration policy's) are whole steps of it, at most
     * MAX_HORIZON_STEPS (checked in plan-checks.ts: a schema cannot compare two fields).
     */
    intervalSeconds: Type.Number({ minimum: MIN_INTERVAL_SECONDS, maximum: MAX_INTERVAL_SECONDS, description: 'Resampling interval of the model input.' }),
    /** Less history than this is a cold start: a conservative prior, flagged in the vector. */
    minHistorySeconds: Seconds('History needed before a model is trusted.'),
  },
  { additionalProperties: false },
);

export const StoreSettingsSchema = TaggedUnion('kind', [
  Type.Object({ kind: Type.Literal('embedded'), path: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
  Type.Object(
    {
      kind: Type.Literal('etcd'),
      endpoints: Type.Array(Type.String({ format: 'uri' }), { minItems: 1 }),
      prefix: Type.String({ pattern: '^/' }),
    },
    { additionalProperties: false },
  ),
]);

/** Never a secret in the plan (it is committed and uploaded): only where to find one. */
export const SecuritySettingsSchema = Type.Object(
  {
    auth: StringEnum(['token', 'mtls']),
    tokenFile: Type.Optional(Type.String({ pattern: '^/' })),
    tokenEnv: Type.Optional(Type.String({ pattern: '^[A-Z_][A-Z0-9_]*$' })),
    tls: Type.Optional(
      Type.Object(
        { caFile: Type.String({ pattern: '^/' }), certFile: Type.String({ pattern: '^/' }), keyFile: Type.String({ pattern: '^/' }) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const AgentSettingsSchema = Type.Object(
  {
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    sampleIntervalSeconds: Seconds('How often the sampler reads every shard.', 0.1),
    /** Raw samples are kept this long, then downsampled. */
    rawRetentionSeconds: Seconds('Raw sample retention.', 60),
    /** Downsampled history is kept this long. */
    historyRetentionSeconds: Seconds('Downsampled history retention.', 60),
    stateDirectory: Type.String({ pattern: '^/' }),
  },
  { additionalProperties: false },
);

export const PlanSchema = Type.Object(
  {
    apiVersion: Type.Literal(PLAN_API_VERSION),
    fleet: Id('Fleet name.'),
    generation: Type.Integer({ minimum: 1, description: 'Monotonic; agents never apply a lower one.' }),
    digest: Type.String({ pattern: '^sha256:[0-9a-f]{64}$', description: 'sha256 of the canonical JSON of the plan without this field.' }),
    pools: Type.Array(PoolSchema, { minItems: 1 }),
    applications: Type.Array(ApplicationSchema),
    policies: Type.Array(PolicySchema),
    predictor: PredictorSettingsSchema,
    store: StoreSettingsSchema,
    security: SecuritySettingsSchema,
    agent: AgentSettingsSchema,
  },
  { additionalProperties: false, $id: 'https://shardform.dev/schemas/plan.json' },
);

export type Plan = Static<typeof PlanSchema>;
export type Capacity = Static<typeof CapacitySchema>;
export type Host = Static<typeof HostSchema>;
export type Pool = Static<typeof PoolSchema>;
export type Granularity = Static<typeof GranularitySchema>;
export type Application = Static<typeof ApplicationSchema>;
export type Policy = Static<typeof PolicySchema>;
export type ProactiveMigrationPolicy = Static<typeof ProactiveMigrationSchema>;
export type CostAwarePlacementPolicy = Static<typeof CostAwarePlacementSchema>;
export type AffinityPolicy = Static<typeof AffinitySchema>;
export type AntiAffinityPolicy = Static<typeof AntiAffinitySchema>;
export type PredictorSettings = Static<typeof PredictorSettingsSchema>;
export type StoreSettings = Static<typeof StoreSettingsSchema>;
export type SecuritySettings = Static<typeof SecuritySettingsSchema>;
export type AgentSettings = Static<typeof AgentSettingsSchema>;
/** A plan before its digest is computed. */
export type UnsignedPlan = Omit<Plan, 'digest'>;
