import { checkPlan, parsePlanText, planDigest, serializePlan, signPlan } from '../../src/contracts/plan';
import { PlanSchema, type UnsignedPlan } from '../../src/contracts/plan-schema';
import { PrepareBody } from '../../host-agent/api/migration-schemas';
import { ResizeBody } from '../../host-agent/api/schemas';
import { StartMigrationBody } from '../../host-agent/api/migration-control-routes';
import { examplePlan, unsignedPlan } from '../helpers/plan-fixture';

const GiB = 2 ** 30;

function errorsOf(edit: (plan: any) => void, sign = true) {
  const plan: any = unsignedPlan();
  edit(plan);
  const result = checkPlan(sign ? { ...plan, digest: planDigest(plan) } : plan);
  return result.ok ? [] : result.errors;
}

describe('plan contract', () => {
  it('accepts a complete signed plan', () => {
    expect(checkPlan(examplePlan())).toEqual({ ok: true, plan: examplePlan() });
  });

  it('computes the digest over canonical JSON, independent of key order', () => {
    const plan = unsignedPlan();
    const reordered = Object.fromEntries(Object.entries(plan).reverse()) as UnsignedPlan;
    expect(planDigest(reordered)).toBe(planDigest(plan));
    expect(planDigest(plan)).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('serializes deterministically', () => {
    expect(serializePlan(examplePlan())).toBe(serializePlan(signPlan(unsignedPlan())));
    expect(serializePlan(examplePlan()).endsWith('}\n')).toBe(true);
  });

  it('refuses a plan edited after signing, naming the digest', () => {
    const plan = examplePlan();
    plan.applications[0].shards.max = 40;
    const result = checkPlan(plan);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors[0]).toMatchObject({ field: 'digest', message: expect.stringContaining('does not match the plan') });
  });

  const schemaCases: [string, (p: any) => void, string, string][] = [
    ['a wrong apiVersion', (p) => (p.apiVersion = 'v0'), 'apiVersion', 'must be "shardform.dev/v1alpha1"'],
    ['generation 0', (p) => (p.generation = 0), 'generation', 'must be >= 1'],
    ['a fractional generation', (p) => (p.generation = 1.5), 'generation', 'must be integer'],
    ['a fleet id with a slash', (p) => (p.fleet = 'a/b'), 'fleet', 'must match pattern'],
    ['no pools', (p) => (p.pools = []), 'pools', 'must NOT have fewer than 1 items'],
    ['a host without an address', (p) => delete p.pools[0].hosts[0].address, 'pools[0].hosts[0].address', 'is required'],
    ['a host address with a space', (p) => (p.pools[0].hosts[0].address = 'a b'), 'pools[0].hosts[0].address', 'must match pattern'],
    ['zero cpu capacity', (p) => (p.pools[0].hosts[1].capacity.cpuCores = 0), 'pools[0].hosts[1].capacity.cpuCores', 'must be > 0'],
    ['memory as a human string', (p) => (p.pools[0].hosts[0].capacity.memoryBytes = '8GiB'), 'pools[0].hosts[0].capacity.memoryBytes', 'must be integer'],
    ['an unknown pool kind', (p) => (p.pools[0].kind = 'gcp'), 'pools[0].kind', 'must be one of "static", "aws"'],
    ['a shell-string command', (p) => (p.applications[0].command = 'sleep 1'), 'applications[0].command', 'must be array'],
    ['an empty command', (p) => (p.applications[0].command = []), 'applications[0].command', 'must NOT have fewer than 1 items'],
    ['an unknown migration strategy', (p) => (p.applications[0].migration.strategy = 'teleport'), 'applications[0].migration.strategy', 'must be one of "checkpoint", "restart"'],
    ['a relative state directory', (p) => (p.applications[0].stateDirectory = 'data'), 'applications[0].stateDirectory', 'must match pattern'],
    ['an env name with a dash', (p) => (p.applications[0].env = { 'BAD-NAME': 'x' }), 'applications[0].env.BAD-NAME', 'is not a valid name (must match pattern'],
    ['a threshold of 1.2', (p) => (p.policies[0].threshold = 1.2), 'policies[0].threshold', 'must be <= 1'],
    ['a threshold of 0', (p) => (p.policies[0].threshold = 0), 'policies[0].threshold', 'must be > 0'],
    ['an unknown policy field', (p) => (p.policies[0].aggressive = true), 'policies[0].aggressive', 'is not a known field'],
    ['an unknown store kind', (p) => (p.store = { kind: 'redis', path: '/x' }), 'store.kind', 'must be one of "embedded", "etcd"'],
    ['an agent port of 70000', (p) => (p.agent.port = 70000), 'agent.port', 'must be <= 65535'],
    ['a cpu granularity below the kernel\'s smallest quota', (p) => (p.applications[0].granularity.cpuCores = 0.005), 'applications[0].granularity.cpuCores', 'must be >= 0.01'],
    // The destination agent's prepare takes timeoutSeconds as a whole number up to 86400; a plan past it synthesized but every migration of the application was refused.
    ['a migration timeout of 2 days', (p) => (p.applications[0].migration.timeoutSeconds = 172800), 'applications[0].migration.timeoutSeconds', 'must be <= 86400'],
    ['a fractional migration timeout', (p) => (p.applications[0].migration.timeoutSeconds = 90.5), 'applications[0].migration.timeoutSeconds', 'must be integer'],
    // child_process.spawn throws on a NUL byte in argv, env or cwd: the shard never started and the agent retried it forever.
    ['a NUL byte in a command element', (p) => (p.applications[0].command = ['/bin/sleep', 'inf\u0000inity']), 'applications[0].command[1]', 'contains a NUL byte'],
    ['a NUL byte in an env value', (p) => (p.applications[0].env = { MODE: 'te\u0000st' }), 'applications[0].env.MODE', 'contains a NUL byte'],
    ['a NUL byte in an env name', (p) => (p.applications[0].env = { 'MO\u0000DE': 'test' }), 'applications[0].env.MO\u0000DE', 'is not a valid name'],
    ['a NUL byte in the working directory', (p) => (p.applications[0].workingDirectory = '/srv\u0000/web'), 'applications[0].workingDirectory', 'contains a NUL byte'],
    ['a NUL byte in the state directory', (p) => (p.applications[0].stateDirectory = '/var/lib/\u0000web'), 'applications[0].stateDirectory', 'contains a NUL byte'],
    // The agent refuses a memory limit below one page (resize and start alike): a 1-byte quantum synthesized, then every shard failed.
    ['a memory granularity below one page', (p) => (p.applications[0].granularity.memoryBytes = 1), 'applications[0].granularity.memoryBytes', 'must be >= 4096'],
    ['a memory granularity of 2^53 bytes', (p) => (p.applications[0].granularity.memoryBytes = 2 ** 53), 'applications[0].granularity.memoryBytes', 'must be <= 9007199254740991'],
    ['a secret in the security block'
, (p) => (p.security.token = 's3cret'), 'security.token', 'is not a known field'],
  ];

  it.each(schemaCases)('rejects %s, naming the field', (_name, edit, field, message) => {
    expect(errorsOf(edit)).toEqual(expect.arrayContaining([expect.objectContaining({ field, message: expect.stringContaining(message) })]));
  });

  const semanticCases: [string, (p: any) => void, string, string][] = [
    ['a duplicate host id', (p) => (p.pools[0].hosts[1].id = 'host-a'), 'pools[0].hosts[1].id', 'duplicate host id (first used at pools[0].hosts[0].id)'],
    ['two hosts at one agent address', (p) => (p.pools[0].hosts[1].address = '127.0.0.1:7101'), 'pools[0].hosts[1].address', 'duplicate agent address 127.0.0.1:7101 (first used at pools[0].hosts[0].address)'],
    ['a host address whose default port is another host\'s', (p) => (p.pools[0].hosts[0].address = 'node-1') && (p.pools[0].hosts[1].address = 'node-1:7100'), 'pools[0].hosts[1].address', 'duplicate agent address node-1:7100 (first used at pools[0].hosts[0].address)'],
    ['a host address with a port out of range', (p) => (p.pools[0].hosts[0].address = 'node-1:70000'), 'pools[0].hosts[0].address', 'is not an agent address; use a host name or IP (IPv6 in brackets) with an optional :port from 1 to 65535'],
    ['an application in an unknown pool', (p) => (p.applications[0].pool = 'nowhere'), 'applications[0].pool', 'unknown pool; known pools: local'],
    ['shards initial above max', (p) => (p.applications[0].shards = { min: 1, initial: 5, max: 4 }), 'applications[0].shards', 'needs min <= initial <= max'],
    ['a policy naming an unknown application', (p) => (p.policies[0].applications = ['api']), 'policies[0].applications[0]', 'unknown application'],
    [
      'a granularity larger than the smallest host',
      (p) => (p.applications[0].granularity.cpuCores = 4),
      'applications[0].granularity',
      "cpu 4 cores exceeds the smallest host in pool 'local' (2 cores); use at most 2 cores or move web to another pool",
    ],
    [
      'minimum shards that do not fit the pool',
      (p) => (p.applications[0].shards = { min: 20, initial: 20, max: 20 }),
      'applications[0].shards.min',
      "20 shards of 0.5 cores + 1GiB do not fit pool 'local' (4 cores, 16GiB across 2 hosts, shared with the pool's other applications): 12 cannot be placed; lower shards.min to 8 or add capacity",
    ],
    [
      'a shard larger than every host, even with no minimum shards',
      (p) => (p.applications[0].shardUnits = 8) && (p.applications[0].shards = { min: 0, initial: 0, max: 2 }),
      'applications[0].shardUnits',
      "one shard (8 x granularity = 4 cores + 8GiB) fits no host of pool 'local'; lower shardUnits or move web to a pool with larger hosts",
    ],
    [
      'initial shards that do not fit the pool',
      (p) => (p.applications[0].shards = { min: 1, initial: 10, max: 10 }),
      'applications[0].shards.initial',
      "10 shards of 0.5 cores + 1GiB do not fit pool 'local' (4 cores, 16GiB across 2 hosts, shared with the pool's other applications at their initial counts): 2 cannot be placed; lower shards.initial to 8 or add capacity",
    ],
    [
      'a hard anti-affinity needing more hosts than exist',
      (p) => p.policies.push({ kind: 'anti-affinity', id: 'apart', applications: ['web'], scope: 'host', mode: 'hard', weight: 100, }) && (p.applications[0].shards.min = 3) && (p.applications[0].shards.initial = 3),
      'policies[1].scope',
      "hard anti-affinity with scope 'host' needs 3 separate domains for the minimum shards of its applications, but only 2 exist; add hosts, lower shards.min or make the rule soft",
    ],
    [
      'a predictor horizon off the predictor grid',
      (p) => (p.predictor.horizonSeconds = 1000),
      'predictor.horizonSeconds',
      'must be a whole multiple of predictor.intervalSeconds (5m)',
    ],
    [
      'a predictor horizon of more grid steps than a prediction may take',
      (p) => (p.predictor.horizonSeconds = 365 * 86400),
      'predictor.horizonSeconds',
      'must be at most 10000 steps of predictor.intervalSeconds (5m) (34d17h20m); use a shorter horizon or a coarser interval',
    ],
    [
      'a proactive-migration horizon off the predictor grid',
      (p) => (p.policies[0].horizonSeconds = 60),
      'policies[0].horizonSeconds',
      'must be a whole multiple of predictor.intervalSeconds (5m)',
    ],
    [
      'a proactive-migration horizon of more grid steps than a prediction may take',
      (p) => (p.policies[0].horizonSeconds = 1e25),
      'policies[0].horizonSeconds',
      'must be at most 10000 steps of predictor.intervalSeconds (5m) (34d17h20m); use a shorter horizon or a coarser interval',
    ],
    ['a predictor interval finer than 1 s', (p) => (p.predictor.intervalSeconds = 0.001) && (p.predictor.horizonSeconds = 1), 'predictor.intervalSeconds', 'must be >= 1'],
    ['a predictor interval coarser than a day', (p) => (p.predictor.intervalSeconds = 2 * 86400) && (p.predictor.horizonSeconds = 2 * 86400), 'predictor.intervalSeconds', 'must be <= 86400'],
    ['token auth without a token source', (p) => (p.security = { auth: 'token' }), 'security.tokenFile', 'token auth needs tokenFile or tokenEnv (where agents read the fleet token)'],
    // The agent sets these for each shard (runner/shard-supervisor.ts) and the plan's env was spread over them.
    ['an env overriding the shard\'s state directory', (p) => (p.applications[0].env = { SHARDFORM_STATE_DIR: '/data' }), 'applications[0].env.SHARDFORM_STATE_DIR', 'is set by the agent for every shard (its shard id, application id and state directory, <stateDirectory>/<shard-id>); a plan cannot override it, or the shards would share one value and a migration would move a state directory the workload never used; set stateDirectory instead'],
    [
      'a shard memory limit past 2^53 bytes, though its granularity is not',
      (p) => (p.applications[0].granularity.memoryBytes = 2 ** 52) && (p.applications[0].shardUnits = 2) && (p.applications[0].shards = { min: 0, initial: 0, max: 1 }) && (p.pools[0].hosts[0].capacity.memoryBytes = 2 ** 60),
      'applications[0].shardUnits',
      'one shard (2 x granularity = 9007199254740992 bytes of memory) is not a memory limit an agent can set; use a whole number of bytes from 4096 (one 4KiB page: the kernel rounds a memory limit down to whole pages, so less is a limit of 0 and the shard is OOM-killed at its first allocation) to 9007199254740991 (2^53-1: past it a JSON number no longer counts bytes exactly); lower shardUnits',
    ],
    ['a static pool without hosts', (p) => (p.pools[0].hosts = []) && (p.applications = []) && (p.policies = []), 'pools[0].hosts', 'a static pool needs at least one host'],
  ];

  it.each(semanticCases)('rejects %s with its exact message', (_name, edit, field, message) => {
    expect(errorsOf(edit)).toEqual(expect.arrayContaining([expect.objectContaining({ field, message })]));
  });

  it("counts anti-affinity domains in the governed applications' own pools, and refuses hard affinity across pools", () => {
    const second = (p: any) => {
      p.pools.push({ ...p.pools[0], id: 'core', hosts: [1, 2, 3].map((n) => ({ ...p.pools[0].hosts[0], id: `core-${n}`, address: `10.0.0.${n}` })) });
      p.applications.push({ ...p.applications[0], id: 'db', pool: 'core', shards: { min: 1, initial: 1, max: 1 } });
    };
    expect(
      errorsOf((p) => {
        second(p);
        p.applications[0].shards = { min: 3, initial: 3, max: 3 };
        p.policies.push({ kind: 'anti-affinity', id: 'apart', applications: ['web', 'db'], scope: 'host', mode: 'hard', weight: 100 });
      }),
    ).toEqual([
      {
        field: 'policies[1].scope',
        message: "hard anti-affinity with scope 'host' needs 3 separate domains for the minimum shards of 'web', but its pool 'local' has only 2; add hosts, lower shards.min or make the rule soft",
        value: 'host',
      },
    ]);
    expect(
      errorsOf((p) => {
        second(p);
        p.policies.push({ kind: 'affinity', id: 'together', applications: ['web', 'db'], scope: 'pool', mode: 'hard', weight: 100 });
      }),
    ).toEqual([
      {
        field: 'policies[1].scope',
        message: "hard affinity with scope 'pool' keeps every shard of 'web', 'db' in one pool, but they run in pools 'core', 'local'; put them in one pool, use a label scope or make the rule soft",
        value: 'pool',
      },
    ]);
  });

  it('counts label scopes by distinct label values across hosts', () => {
    const errors = errorsOf((p) => {
      p.policies.push({ kind: 'anti-affinity', id: 'zones', applications: ['web'], scope: 'label:zone', mode: 'hard', weight: 100 });
      p.applications[0].shards = { min: 3, initial: 3, max: 4 };
    });
    expect(errors.map((e) => e.message)).toContain(
      "hard anti-affinity with scope 'label:zone' needs 3 separate domains for the minimum shards of its applications, but only 2 exist; add hosts, lower shards.min or make the rule soft",
    );
  });

  it('accepts minimum shards that exactly fill the pool', () => {
    expect(errorsOf((p) => (p.applications[0].shards = { min: 8, initial: 8, max: 8 }))).toEqual([]);
  });

  it('parsePlanText names the source and lists every error', () => {
    expect(() => parsePlanText('{"apiVersion":1}', 'plan.json')).toThrow(/^plan plan\.json is invalid \(12 errors\):\n {2}- fleet: is required\n(.|\n)*\n {2}- apiVersion: must be "shardform.dev\/v1alpha1" \(got 1\)$/);
    expect(() => parsePlanText('{', 'plan.json')).toThrow('plan plan.json is invalid (1 error):\n  - (root): not JSON');
  });

  it('keeps memory byte counts exact for large hosts', () => {
    const plan = examplePlan((p) => (p.pools[0].hosts[0].capacity.memoryBytes = 1024 * GiB));
    expect(checkPlan(JSON.parse(serializePlan(plan))).ok).toBe(true);
  });
});

describe('plan and agent API agree on the shard memory limit', () => {
  it("every shard memory a plan accepts is one the agent's resize accepts, and no other", () => {
    const granularity = PlanSchema.properties.applications.items.properties.granularity.properties.memoryBytes;
    const resize = ResizeBody.properties.memoryBytes;
    expect({ minimum: resize.minimum, maximum: resize.maximum }).toEqual({ minimum: granularity.minimum, maximum: granularity.maximum });
  });
});

describe('plan and agent API agree on the migration timeout', () => {
  it("every timeout a plan accepts is one a destination's prepare accepts", () => {
    const planTimeout = PlanSchema.properties.applications.items.properties.migration.properties.timeoutSeconds;
    const prepareTimeout = PrepareBody.properties.timeoutSeconds;
    expect({ type: planTimeout.type, minimum: planTimeout.minimum, maximum: planTimeout.maximum }).toEqual({ type: prepareTimeout.type, minimum: prepareTimeout.minimum, maximum: prepareTimeout.maximum });
  });

  it('the control route (shardform migrate --timeout) accepts the same range as a plan', () => {
    const planTimeout = PlanSchema.properties.applications.items.properties.migration.properties.timeoutSeconds;
    const startTimeout = StartMigrationBody.properties.timeoutSeconds;
    expect({ type: startTimeout.type, minimum: startTimeout.minimum, maximum: startTimeout.maximum }).toEqual({ type: planTimeout.type, minimum: planTimeout.minimum, maximum: planTimeout.maximum });
  });
});
