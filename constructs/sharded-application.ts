/**
 * A workload split into shards: each shard is one cgroup on one host running `command`, with
 * limits of `granularity x shardUnits`. The application's unified instance view is the sum of
 * its shards; the coordinator grows, shrinks and moves shards between `shards.min` and `.max`.
 */
import { Construct } from 'constructs';
import type { Application, Granularity } from '../src/contracts/plan-schema';
import type { Quantity } from '../src/contracts/quantities';
import { granularityProblem, shardMemoryProblem, shardSizeProblem } from '../src/contracts/plan-checks';
import { AGENT_ENV_NAMES, AGENT_ENV_RULE, MAX_SHARD_MEMORY_BYTES, MIN_SHARD_CPU_CORES, MIN_SHARD_MEMORY_BYTES, SHARD_MEMORY_RULE } from '../src/contracts/plan-schema';
import { fleetOf, type FleetScope } from './fleet-context';
import type { HostPool } from './host-pool';
import { MigrationStrategy } from './migration-strategy';
import { PropChecker, problemAt } from './prop-checks';
import { NUL_RULE } from '../src/errors';
import type { ShardPolicy } from './shard-policy';

/** The allocation quantum: every shard's limits are a whole multiple of it. */
export interface GranularityOptions {
  /** CPU per unit: `"500m"`, `0.5`, `1`. */
  readonly cpu: Quantity;
  /** Memory per unit: `"1GiB"`, `"512Mi"`. */
  readonly memory: Quantity;
  /**
   * Read IOPS per unit (io.max riops).
   * @default 0 (not limited)
   */
  readonly readIops?: number;
  /**
   * Write IOPS per unit (io.max wiops).
   * @default 0 (not limited)
   */
  readonly writeIops?: number;
}

/** How many shards the application may have. */
export interface ShardCounts {
  /**
   * Never fewer shards than this; validated to fit the pool at synth.
   * @default 1
   */
  readonly min?: number;
  /**
   * Shards started when the plan is first applied.
   * @default min
   */
  readonly initial?: number;
  /**
   * Never more shards than this.
   * @default the larger of initial and 1
   */
  readonly max?: number;
}

export interface ShardedApplicationProps {
  /**
   * The pool whose hosts run this application's shards (an object of this fleet).
   * @default the fleet's only pool, when it has exactly one
   */
  readonly pool?: HostPool;
  /** argv of each shard's process, e.g. `['/usr/bin/python3', '-m', 'http.server']`; never a shell string. */
  readonly command: readonly string[];
  /** The allocation quantum, e.g. `{ cpu: '500m', memory: '1GiB' }`. */
  readonly granularity: GranularityOptions;
  /**
   * Shard counts.
   * @default { min: 1, initial: 1, max: 1 }
   */
  readonly shards?: ShardCounts;
  /**
   * Units of granularity per shard: each shard's limits are granularity x shardUnits.
   * @default 1
   */
  readonly shardUnits?: number;
  /**
   * How shards move between hosts.
   * @default MigrationStrategy.checkpoint() (CRIU, no pre-copy, 5m timeout)
   */
  readonly migration?: MigrationStrategy;
  /**
   * Environment of the shard processes (names `[A-Za-z_][A-Za-z0-9_]*`). Never put secrets
   * here: the plan is committed and uploaded.
   * Not SHARDFORM_SHARD_ID, SHARDFORM_APPLICATION_ID or SHARDFORM_STATE_DIR: the agent sets them per shard.
   * @default {}
   */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Per-shard state lives in `<stateDirectory>/<shard-id>`; moved on migration.
   * @default `/var/lib/shardform/apps/<id>`
   */
  readonly stateDirectory?: string;
  /**
   * Working directory of the shard processes.
   * @default the shard's state directory (decided by the agent)
   */
  readonly workingDirectory?: string;
  /**
   * Labels of the application (selectors, dashboards).
   * @default {}
   */
  readonly labels?: Readonly<Record<string, string>>;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export class ShardedApplication extends Construct {
  /** The application's id in the plan and in demand vectors (`application_id`): the construct id. */
  readonly applicationId: string;
  readonly fleet: FleetScope;
  /** The pool given in props; see `resolvePool()` for the default. */
  readonly pool: HostPool | undefined;
  private readonly spec: Omit<Application, 'pool'>;

  constructor(scope: Construct, id: string, props: ShardedApplicationProps) {
    super(scope, id);
    this.fleet = fleetOf(this);
    this.applicationId = id;
    this.pool = props?.pool;
    const checks = PropChecker.for(this);
    checks.id('id', id);
    if (!checks.literals(props)) checks.throwIfAny();
    const command = this.checkCommand(checks, props?.command);
    const granularity = this.checkGranularity(checks, props?.granularity);
    const shardUnits = checks.integer('shardUnits', props?.shardUnits ?? 1, 1);
    const shards = this.checkShards(checks, props?.shards ?? {});
    const memory = granularity && shardUnits !== undefined ? shardMemoryProblem({ granularity, shardUnits }) : undefined;
    if (memory) checks.fail('shardUnits', shardUnits, `is too many: ${memory}`);
    const env = props?.env ?? {};
    for (const [name, value] of Object.entries(env)) {
      checks.require(ENV_NAME.test(name), `env.${name}`, name, 'is not an environment variable name; use [A-Za-z_][A-Za-z0-9_]*');
      checks.require(!AGENT_ENV_NAMES.includes(name), `env.${name}`, name, AGENT_ENV_RULE);
      if (checks.require(typeof value === 'string', `env.${name}`, value, 'is not a string; environment values are strings')) checks.require(!value.includes('\0'), `env.${name}`, value, NUL_RULE);
    }
    const stateDirectory = checks.absolutePath('stateDirectory', props?.stateDirectory ?? `/var/lib/shardform/apps/${id}`);
    if (stateDirectory !== undefined) checks.require(!stateDirectory.includes('\0'), 'stateDirectory', stateDirectory, NUL_RULE);
    if (props?.workingDirectory !== undefined && checks.absolutePath('workingDirectory', props.workingDirectory) !== undefined)
      checks.require(!props.workingDirectory.includes('\0'), 'workingDirectory', props.workingDirectory, NUL_RULE);
    const migration = props?.migration ?? MigrationStrategy.checkpoint();
    if (!(migration instanceof MigrationStrategy))
      checks.fail('migration', migration, "is not a migration strategy; use MigrationStrategy.checkpoint({ preCopy: true }) or MigrationStrategy.restart()");
    const labels = checks.labels('labels', props?.labels ?? {});
    checks.throwIfAny();
    this.spec = {
      id,
      command: [...command!],
      env: { ...env },
      ...(props.workingDirectory !== undefined ? { workingDirectory: props.workingDirectory } : {}),
      stateDirectory: stateDirectory!,
      granularity: granularity!,
      shardUnits: shardUnits!,
      shards: shards!,
      migration: migration.toPlan(),
      labels,
    };
    this.node.addValidation({ validate: () => this.problems() });
  }

  /** Puts this application under `policy` (which then governs only the applications added to it). */
  addPolicy(policy: ShardPolicy): this {
    policy.addApplication(this);
    return this;
  }

  /** The pool this application runs on: its `pool` prop, or the fleet's only pool. */
  resolvePool(fleetPools: readonly HostPool[]): HostPool | undefined {
    if (this.pool) return this.pool.fleet === this.fleet ? this.pool : undefined;
    return fleetPools.length === 1 ? fleetPools[0] : undefined;
  }

  /** The plan's application on `poolId`. */
  toPlanApplication(poolId: string): Application {
    const s = this.spec;
    return {
      ...s,
      pool: poolId,
      command: [...s.command],
      env: { ...s.env },
      granularity: { ...s.granularity },
      shards: { ...s.shards },
      migration: { ...s.migration },
      labels: { ...s.labels },
    };
  }

  /** Whole-tree checks: bound to a pool of this fleet, one quantum fits every host, the minimum fits the pool. */
  private problems(): string[] {
    const analysis = this.fleet.analysis();
    const pool = this.resolvePool(analysis.pools);
    if (!pool) {
      if (this.pool) {
        return [
          problemAt(this, 'pool', `pool '${this.pool.poolId}' (${this.pool.node.path}) belongs to fleet '${this.pool.fleet.fleetName}'; ` +
            `use a pool of fleet '${this.fleet.fleetName}' (${analysis.pools.map((p) => `'${p.poolId}'`).join(', ') || 'none declared'})`),
        ];
      }
      const known = analysis.pools.map((p) => `'${p.poolId}'`).join(', ');
      return [problemAt(this, 'pool', `${this.applicationId} is not bound to a pool; fleet '${this.fleet.fleetName}' has ${analysis.pools.length === 0 ? 'no pools; declare one' : `${analysis.pools.length} pools, set pool to one of ${known}`}`)];
    }
    const planPool = analysis.planPool(pool);
    const problems: string[] = [];
    const granularity = granularityProblem(this.spec, planPool);
    if (granularity) problems.push(problemAt(this, 'granularity', granularity));
    const shard = granularity ? undefined : shardSizeProblem(this.spec, planPool);
    if (shard) problems.push(problemAt(this, 'shardUnits', shard));
    const minimum = analysis.minimumShards.get(this.applicationId);
    if (minimum) problems.push(problemAt(this, 'shards.min', minimum));
    const initial = analysis.initialShards.get(this.applicationId);
    if (initial) problems.push(problemAt(this, 'shards.initial', initial));
    return problems;
  }

  private checkCommand(checks: PropChecker, command: readonly string[] | undefined): string[] | undefined {
    if (!Array.isArray(command) || command.length === 0 || !command.every((arg) => typeof arg === 'string' && arg.length > 0)) {
      checks.fail('command', command, "is not an argv list; use e.g. ['/usr/bin/python3', '-m', 'http.server'] (non-empty strings)");
      return undefined;
    }
    // One element with spaces is a shell string in disguise: the agent execs argv, it never runs a shell.
    if (command.length === 1 && /\s/.test(command[0]!)) {
      checks.fail('command', command, `looks like a shell string; split it into argv, e.g. ${JSON.stringify(command[0]!.trim().split(/\s+/))}`);
      return undefined;
    }
    command.forEach((arg, i) => checks.require(!arg.includes('\0'), `command[${i}]`, arg, NUL_RULE));
    return [...command];
  }

  private checkGranularity(checks: PropChecker, granularity: GranularityOptions | undefined): Granularity | undefined {
    if (granularity === null || typeof granularity !== 'object') {
      checks.fail('granularity', granularity, "is not a granularity; use { cpu: '500m', memory: '1GiB' }");
      return undefined;
    }
    let cpuCores = checks.cpu('granularity.cpu', granularity.cpu);
    // Agents refuse a CFS quota below the kernel's 1 ms per 100 ms period.
    if (cpuCores !== undefined && !checks.require(cpuCores >= MIN_SHARD_CPU_CORES, 'granularity.cpu', granularity.cpu, `is below the smallest CPU limit a shard can have (${MIN_SHARD_CPU_CORES} cores: the kernel's 1ms CFS quota per 100ms period); use at least "10m"`)) cpuCores = undefined;
    let memoryBytes = checks.bytes('granularity.memory', granularity.memory);
    // The agent refuses these on start and on resize (host-agent/cgroups/limits-check.ts).
    if (memoryBytes !== undefined && !checks.require(memoryBytes >= MIN_SHARD_MEMORY_BYTES && memoryBytes <= MAX_SHARD_MEMORY_BYTES, 'granularity.memory', granularity.memory, `is not a memory limit an agent can set; ${SHARD_MEMORY_RULE}`)) memoryBytes = undefined;
    const readIops = checks.integer('granularity.readIops', granularity.readIops ?? 0, 0);
    const writeIops = checks.integer('granularity.writeIops', granularity.writeIops ?? 0, 0);
    if (cpuCores === undefined || memoryBytes === undefined || readIops === undefined || writeIops === undefined) return undefined;
    return { cpuCores, memoryBytes, readIops, writeIops };
  }

  private checkShards(checks: PropChecker, shards: ShardCounts): Application['shards'] | undefined {
    const min = checks.integer('shards.min', shards.min ?? 1, 0);
    const initial = checks.integer('shards.initial', shards.initial ?? min ?? 1, 0);
    const max = checks.integer('shards.max', shards.max ?? Math.max(initial ?? 1, 1), 1);
    if (min === undefined || initial === undefined || max === undefined) return undefined;
    if (!(min <= initial && initial <= max)) {
      checks.fail('shards', { min, initial, max }, 'is not ordered; use min <= initial <= max');
      return undefined;
    }
    return { min, initial, max };
  }
}
