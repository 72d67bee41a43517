/**
 * The fleet: one Terraform stack whose pools, applications and policies compile into one plan,
 * written as `shard-plan.json` beside the stack's `cdk.tf.json`. Fleet-wide settings (predictor,
 * store, security, agent) live here. The generation comes from props or from the cdktf context
 * `shardform:generation` (so a pipeline can bump it), never from the clock: the same code must
 * give the same bytes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lazy, Manifest, TerraformOutput, TerraformStack, type IStackSynthesizer, type ISynthesisSession } from 'cdktf';
import type { Construct, IConstruct } from 'constructs';
import { checkPlan, serializePlan, signPlan } from '../src/contracts/plan';
import { agentEndpoint } from '../src/contracts/plan-checks';
import { compileSchema } from '../src/contracts/schema-validator';
import { Type } from '@sinclair/typebox';
import type { Plan, SecuritySettings, StoreSettings } from '../src/contracts/plan-schema';
import type { Quantity } from '../src/contracts/quantities';
import { ValidationFailedError, showValue } from '../src/errors';
import { fleetOf, markFleet, type FleetScope } from './fleet-context';
import { analyzeFleet, type FleetAnalysis, type FleetSettings } from './plan-compiler';
import { PropChecker, problemAt } from './prop-checks';

/** The cdktf context key a pipeline sets to bump the generation. */
export const GENERATION_CONTEXT_KEY = 'shardform:generation';
/** The plan's file name inside `cdktf.out/stacks/<stack>/`. */
export const PLAN_FILE_NAME = 'shard-plan.json';

export interface PredictorOptions {
  /** `auto` picks a model per application by rolling backtest; a model name pins one. @default 'auto' */
  readonly model?: string;
  /**
   * Default prediction horizon: a whole multiple of `interval`, at most 10,000 of it
   * (MAX_HORIZON_STEPS; prediction work grows with the steps of the horizon).
   * @default '15m'
   */
  readonly horizon?: Quantity;
  /** Default quantile of predicted demand, in (0, 1). @default 0.95 */
  readonly quantile?: number;
  /**
   * Metric history is resampled onto this grid before it reaches a model; from 1s to 1d.
   * Every horizon (this one's and ProactiveMigration's) is whole steps of it.
   * @default '5m'
   */
  readonly interval?: Quantity;
  /** Less history than this is a cold start (conservative prior). @default '1d' */
  readonly minHistory?: Quantity;
}

export type StoreOptions =
  /** One file on each host; for one machine and tests. @default path '/var/lib/shardform/store.db' */
  | { readonly kind: 'embedded'; readonly path?: string }
  /** etcd, for fleets spanning hosts. @default prefix '/shardform/<fleet>' */
  | { readonly kind: 'etcd'; readonly endpoints: readonly string[]; readonly prefix?: string };

export interface SecurityOptions {
  /** How agents authenticate to each other. @default 'token' */
  readonly auth?: 'token' | 'mtls';
  /** File holding the fleet token on every host (never the token itself). @default '/etc/shardform/token' when auth is token and tokenEnv is unset */
  readonly tokenFile?: string;
  /** Environment variable holding the fleet token. @default none */
  readonly tokenEnv?: string;
  /** Certificate files for mtls. @default none (required for mtls) */
  readonly tls?: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
}

export interface AgentOptions {
  /** Port every agent listens on (opened between fleet members on AWS). @default 7100 */
  readonly port?: number;
  /** How often the sampler reads every shard. @default '5s' */
  readonly sampleInterval?: Quantity;
  /** Raw samples are kept this long, then downsampled. @default '1d' */
  readonly rawRetention?: Quantity;
  /** Downsampled history is kept this long. @default '30d' */
  readonly historyRetention?: Quantity;
  /** Where the agent keeps its state on each host. @default '/var/lib/shardform' */
  readonly stateDirectory?: string;
}

export interface ShardFleetProps {
  /** The plan's fleet name. @default the construct id */
  readonly fleet?: string;
  /**
   * Plan generation, a whole number >= 1; agents never apply a lower one. The cdktf context
   * `shardform:generation` wins over this prop, so a pipeline can bump a fleet whose code pins one.
   * @default the context `shardform:generation`, else 1
   */
  readonly generation?: number;
  /** Predictor settings. @default { model: 'auto', horizon: '15m', quantile: 0.95, interval: '5m', minHistory: '1d' } */
  readonly predictor?: PredictorOptions;
  /** Where fleet state lives. @default { kind: 'embedded' } */
  readonly store?: StoreOptions;
  /** How agents authenticate. @default { auth: 'token', tokenFile: '/etc/shardform/token' } */
  readonly security?: SecurityOptions;
  /** Agent settings. @default see AgentOptions */
  readonly agent?: AgentOptions;
}

const MODEL = /^[a-z0-9-]{1,32}$/;
const checkEndpoint = compileSchema(Type.String({ format: 'uri' }));
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

export class ShardFleet extends TerraformStack implements FleetScope {
  /** The fleet that `construct` belongs to. */
  static of(construct: IConstruct): ShardFleet {
    return fleetOf(construct) as ShardFleet;
  }

  readonly fleetName: string;
  readonly generation: number;
  readonly agentPort: number;
  /** Where agents the fleet launches (AwsHostPool) keep their state: `<it>/<host id>`, and the plan file beside. */
  readonly agentStateDirectory: string;
  private readonly settings: FleetSettings;
  /** Set during one validation pass or one synthesis, so N validations do not compile N plans. */
  private cachedAnalysis: FleetAnalysis | undefined;
  private cachedPlan: Plan | undefined;
  private synthesizing = false;

  constructor(scope: Construct, id: string, props: ShardFleetProps = {}) {
    super(scope, id);
    markFleet(this);
    const checks = PropChecker.for(this);
    if (!checks.literals(props)) checks.throwIfAny();
    const fleet = checks.id('fleet', props.fleet ?? id);
    const generation = this.checkGeneration(checks, props.generation);
    const p = props.predictor ?? {};
    const model = p.model ?? 'auto';
    checks.require(MODEL.test(model), 'predictor.model', model, "is not a model name; use 'auto' or 1-32 characters of a-z, 0-9, '-'");
    const quantile = p.quantile ?? 0.95;
    checks.require(typeof quantile === 'number' && quantile > 0 && quantile < 1, 'predictor.quantile', quantile, 'is outside (0, 1); use e.g. 0.95');
    const interval = p.interval ?? '5m';
    const intervalSeconds = checks.interval('predictor.interval', interval);
    const predictor = {
      model,
      horizonSeconds: checks.horizon('predictor.horizon', p.horizon ?? '15m', intervalSeconds, `predictor.interval ${showValue(interval)}`) ?? 0,
      quantile,
      intervalSeconds: intervalSeconds ?? 0,
      minHistorySeconds: checks.duration('predictor.minHistory', p.minHistory ?? '1d') ?? 0,
    };
    const a = props.agent ?? {};
    const agent = {
      port: checks.integer('agent.port', a.port ?? 7100, 1, 65535) ?? 0,
      sampleIntervalSeconds: checks.duration('agent.sampleInterval', a.sampleInterval ?? '5s', 0.1) ?? 0,
      rawRetentionSeconds: checks.duration('agent.rawRetention', a.rawRetention ?? '1d', 60) ?? 0,
      historyRetentionSeconds: checks.duration('agent.historyRetention', a.historyRetention ?? '30d', 60) ?? 0,
      stateDirectory: checks.absolutePath('agent.stateDirectory', a.stateDirectory ?? '/var/lib/shardform') ?? '',
    };
    const store = this.checkStore(checks, props.store ?? { kind: 'embedded' }, fleet ?? id);
    const security = this.checkSecurity(checks, props.security ?? {});
    checks.throwIfAny();
    this.fleetName = fleet!;
    this.generation = generation!;
    this.agentPort = agent.port;
    this.agentStateDirectory = agent.stateDirectory;
    this.settings = { fleet: fleet!, generation: generation!, predictor, store: store!, security: security!, agent };

    this.node.addValidation({ validate: () => this.duplicateIds() });
    // Without this the synth fails on the plan schema inside a token resolution ("pools: must NOT have fewer than 1 items").
    this.node.addValidation({ validate: () => (this.analysis().pools.length === 0 ? [problemAt(this, 'pools', 'a fleet needs at least one pool; declare a StaticHostPool or an AwsHostPool in it')] : []) });
    new TerraformOutput(this, 'plan-digest', { value: Lazy.stringValue({ produce: (context) => (context.preparing ? '' : this.planDigest()) }), description: 'sha256 of the shard plan' });
    new TerraformOutput(this, 'plan-generation', { value: this.generation, description: 'generation of the shard plan' });

    // Wrap the stack's synthesizer: after cdktf has validated and written cdk.tf.json, write the
    // plan beside it. Wrapping (not subclassing StackSynthesizer) keeps cdktf's own choices (HCL
    // output, continue-on-error) intact.
    const terraform = this.synthesizer;
    const synthesizer: IStackSynthesizer = {
      synthesize: (session: ISynthesisSession) => {
        this.synthesizing = true;
        this.cachedPlan = undefined;
        try {
          terraform.synthesize(session);
          const directory = join(session.outdir, Manifest.stacksFolder, this.node.id);
          mkdirSync(directory, { recursive: true });
          writeFileSync(join(directory, PLAN_FILE_NAME), this.planJson());
        } finally {
          this.synthesizing = false;
          this.cachedPlan = undefined;
        }
      },
    };
    this.synthesizer = synthesizer;
  }

  /** The compiled plan plus the facts validations ask about; cached during a validation pass. */
  analysis(): FleetAnalysis {
    return this.cachedAnalysis ?? analyzeFleet(this, this.settings);
  }

  /** Validations of the whole tree share one analysis instead of compiling the plan each. */
  override runAllValidations(): void {
    this.cachedAnalysis = analyzeFleet(this, this.settings);
    try {
      super.runAllValidations();
    } finally {
      this.cachedAnalysis = undefined;
    }
  }

  /**
   * The signed plan, checked with checkPlan (schema, references, capacity, digest) before anyone
   * sees it. Throws INVALID_PLAN listing every problem.
   */
  plan(): Plan {
    if (this.cachedPlan) return this.cachedPlan;
    const analysis = analyzeFleet(this, this.settings);
    if (analysis.referenceProblems.length > 0) {
      throw new ValidationFailedError('INVALID_PLAN', analysis.referenceProblems, `plan of fleet '${this.fleetName}'`);
    }
    const plan = signPlan(analysis.plan);
    const check = checkPlan(plan);
    if (!check.ok) throw new ValidationFailedError('INVALID_PLAN', check.errors, `plan of fleet '${this.fleetName}'`);
    // Cached only while a synthesis is running (the synthesizer clears it), so addHost() after an
    // earlier plan() call still counts.
    if (this.synthesizing) this.cachedPlan = plan;
    return plan;
  }

  /** The plan's bytes as written to shard-plan.json and uploaded to S3. */
  planJson(): string {
    return serializePlan(this.plan());
  }

  planDigest(): string {
    return this.plan().digest;
  }

  private checkGeneration(checks: PropChecker, fromProps: number | undefined): number | undefined {
    const fromContext: unknown = this.node.tryGetContext(GENERATION_CONTEXT_KEY);
    // The prop is checked even when the context wins: a bad one must not wait for the day the pipeline stops setting it.
    const prop = fromProps === undefined ? undefined : checks.integer('generation', fromProps, 1);
    if (fromContext !== undefined) {
      // Context arrives as JSON (CDKTF_CONTEXT_JSON) or from code; accept "7" as well as 7.
      const value = typeof fromContext === 'string' && /^\d+$/.test(fromContext) ? Number(fromContext) : fromContext;
      // Past 2^53 a number is rounded ("9007199254740993" is read as ...992): a bump could compare equal to the last generation.
      const ok = typeof value === 'number' && Number.isSafeInteger(value) && value >= 1;
      if (!ok) {
        checks.fail(`context[${GENERATION_CONTEXT_KEY}]`, fromContext, `is not a generation; use a whole number from 1 to ${Number.MAX_SAFE_INTEGER}`);
        return undefined;
      }
      return value as number;
    }
    return fromProps === undefined ? 1 : prop;
  }

  private checkStore(checks: PropChecker, store: StoreOptions, fleet: string): StoreSettings | undefined {
    if (store?.kind === 'embedded') {
      const path = checks.absolutePath('store.path', store.path ?? '/var/lib/shardform/store.db');
      return path === undefined ? undefined : { kind: 'embedded', path };
    }
    if (store?.kind === 'etcd') {
      const endpoints = Array.isArray(store.endpoints) ? store.endpoints : [];
      checks.require(endpoints.length > 0, 'store.endpoints', store.endpoints, 'is empty; list at least one etcd endpoint (e.g. "http://10.0.0.5:2379")');
      endpoints.forEach((endpoint, i) => {
        // The plan schema's own format check, so a URL it refuses ("http://[bad") fails here and not as a resolution error at synth.
        checks.require(typeof endpoint === 'string' && /^[a-z][a-z0-9+.-]*:\/\/\S+$/.test(endpoint) && checkEndpoint(endpoint).ok, `store.endpoints[${i}]`, endpoint, 'is not a URL; use e.g. "http://10.0.0.5:2379"');
      });
      const prefix = checks.absolutePath('store.prefix', store.prefix ?? `/shardform/${fleet}`);
      return prefix === undefined ? undefined : { kind: 'etcd', endpoints: [...endpoints], prefix };
    }
    checks.fail('store.kind', (store as { kind?: unknown } | undefined)?.kind, "is not a store kind; use 'embedded' or 'etcd'");
    return undefined;
  }

  private checkSecurity(checks: PropChecker, security: SecurityOptions): SecuritySettings | undefined {
    const auth = security.auth ?? 'token';
    if (auth === 'token') {
      if (security.tokenEnv !== undefined) checks.require(ENV_NAME.test(security.tokenEnv), 'security.tokenEnv', security.tokenEnv, 'is not an environment variable name; use [A-Z_][A-Z0-9_]*');
      const tokenFile = security.tokenFile ?? (security.tokenEnv === undefined ? '/etc/shardform/token' : undefined);
      if (tokenFile !== undefined) checks.absolutePath('security.tokenFile', tokenFile);
      return { auth, ...(tokenFile !== undefined ? { tokenFile } : {}), ...(security.tokenEnv !== undefined ? { tokenEnv: security.tokenEnv } : {}) };
    }
    if (auth === 'mtls') {
      const tls = security.tls;
      if (!tls) {
        checks.fail('security.tls', tls, 'is required for mtls; give caFile, certFile and keyFile');
        return undefined;
      }
      for (const key of ['caFile', 'certFile', 'keyFile'] as const) checks.absolutePath(`security.tls.${key}`, tls[key]);
      return { auth, tls: { caFile: tls.caFile, certFile: tls.certFile, keyFile: tls.keyFile } };
    }
    checks.fail('security.auth', auth, "is not an auth mode; use 'token' or 'mtls'");
    return undefined;
  }

  /** "duplicate ids": construct ids are unique among siblings only, and host ids across pools not at all. */
  private duplicateIds(): string[] {
    const { pools, applications, policies, plan } = this.analysis();
    const problems: string[] = [];
    const report = (what: 'pool' | 'application' | 'policy' | 'host', items: { id: string; path: string }[]) => {
      const first = new Map<string, string>();
      for (const item of items) {
        const seen = first.get(item.id);
        if (seen !== undefined) problems.push(problemAt(this, what === 'policy' ? 'policies' : `${what}s`, `duplicate ${what} id ${showValue(item.id)} at ${item.path} (first declared at ${seen}); ids must be unique in the fleet`));
        else first.set(item.id, item.path);
      }
    };
    report('pool', pools.map((p) => ({ id: p.poolId, path: p.node.path })));
    report('application', applications.map((a) => ({ id: a.applicationId, path: a.node.path })));
    report('policy', policies.map((p) => ({ id: p.policyId, path: p.node.path })));
    report('host', plan.pools.flatMap((pool) => pool.hosts.map((host) => ({ id: host.id, path: `pool '${pool.id}'` }))));
    // Two hosts at one address (the agent port filled in) would be two agents on one socket.
    const firstAt = new Map<string, string>();
    for (const pool of plan.pools) {
      for (const host of pool.hosts) {
        const endpoint = agentEndpoint(host.address, plan.agent.port);
        if (endpoint === undefined) continue;
        const seen = firstAt.get(endpoint);
        if (seen !== undefined) problems.push(problemAt(this, 'hosts', `host '${host.id}' of pool '${pool.id}' has the agent address ${showValue(host.address)} (${endpoint}) of ${seen}; each host needs its own address or port`));
        else firstAt.set(endpoint, `host '${host.id}' of pool '${pool.id}'`);
      }
    }
    return problems;
  }
}
