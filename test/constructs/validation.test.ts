import { Construct } from 'constructs';
import { TerraformVariable } from 'cdktf';
import {
  Affinity,
  AntiAffinity,
  ProactiveMigration,
  ShardFleet,
  ShardedApplication,
  StaticHostPool,
  InvalidPropsError,
  MigrationStrategy,
  PlacementScope,
} from '../../constructs';
import { smallFleet, synthErrors, testApp, thrown } from './fixture';

const command = ['/bin/sleep', 'infinity'];

describe('synth-time validation (whole tree)', () => {
  it('accepts a fleet whose shards fit', () => {
    const { fleet, edge } = smallFleet();
    new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: '500m', memory: '1GiB' }, shards: { min: 2, initial: 2, max: 4 } });
    expect(synthErrors(fleet)).toEqual([]);
  });

  it('reports a granularity larger than the smallest host of the pool', () => {
    const { fleet, edge } = smallFleet();
    new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: 4, memory: '1GiB' } });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/web] web/granularity: cpu 4 cores exceeds the smallest host in pool 'edge' (2 cores); use at most 2 cores or move web to another pool",
    ]);
  });

  it('reports minimum shards that cannot fit the pool', () => {
    const { fleet, edge } = smallFleet();
    new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: 1, memory: '1GiB' }, shards: { min: 7, initial: 7, max: 8 } });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/web] web/shards.min: 7 shards of 1 cores + 1GiB do not fit pool 'edge' (6 cores, 12GiB across 2 hosts, shared with the pool's other applications): 1 cannot be placed; lower shards.min to 6 or add capacity",
    ]);
  });

  it('reports a shard that fits no host, and initial shards that do not fit the pool', () => {
    const { fleet, edge } = smallFleet();
    // Each quantum fits every host, but 8 of them (8 cores) fit none: no shard could ever run.
    new ShardedApplication(fleet, 'big', { pool: edge, command, granularity: { cpu: 1, memory: '256MiB' }, shardUnits: 8, shards: { min: 0, initial: 0, max: 2 } });
    // The minimum fits; the shards every agent places at start do not.
    new ShardedApplication(fleet, 'many', { pool: edge, command, granularity: { cpu: 1, memory: '1GiB' }, shards: { min: 1, initial: 8, max: 8 } });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/big] big/shardUnits: one shard (8 x granularity = 8 cores + 2GiB) fits no host of pool 'edge'; lower shardUnits or move big to a pool with larger hosts",
      "[test-fleet/many] many/shards.initial: 8 shards of 1 cores + 1GiB do not fit pool 'edge' (6 cores, 12GiB across 2 hosts, shared with the pool's other applications at their initial counts): 2 cannot be placed; lower shards.initial to 6 or add capacity",
    ]);
  });

  it('refuses a cpu granularity below the smallest CFS quota an agent can set', () => {
    const { fleet } = smallFleet();
    expect(thrown(() => new ShardedApplication(fleet, 'tiny', { command, granularity: { cpu: '5m', memory: '64MiB' } }))).toBe(
      'test-fleet/tiny/granularity.cpu: "5m" is below the smallest CPU limit a shard can have (0.01 cores: the kernel\'s 1ms CFS quota per 100ms period); use at least "10m"',
    );
    expect(() => new ShardedApplication(fleet, 'small', { command, granularity: { cpu: '10m', memory: '64MiB' } })).not.toThrow();
  });

  it('refuses a shard memory limit the agent would refuse: below one page, or past 2^53 bytes', () => {
    const { fleet } = smallFleet();
    expect(thrown(() => new ShardedApplication(fleet, 'tiny', { command, granularity: { cpu: '500m', memory: 1 } }))).toBe(
      'test-fleet/tiny/granularity.memory: 1 is not a memory limit an agent can set; use a whole number of bytes from 4096 (one 4KiB page: the kernel rounds a memory limit down to whole pages, so less is a limit of 0 and the shard is OOM-killed at its first allocation) to 9007199254740991 (2^53-1: past it a JSON number no longer counts bytes exactly)',
    );
    expect(thrown(() => new ShardedApplication(fleet, 'huge', { command, granularity: { cpu: '500m', memory: 2 ** 53 } }))).toBe(
      'test-fleet/huge/granularity.memory: 9007199254740992 is not a memory limit an agent can set; use a whole number of bytes from 4096 (one 4KiB page: the kernel rounds a memory limit down to whole pages, so less is a limit of 0 and the shard is OOM-killed at its first allocation) to 9007199254740991 (2^53-1: past it a JSON number no longer counts bytes exactly)',
    );
    expect(thrown(() => new ShardedApplication(fleet, 'wide', { command, granularity: { cpu: '500m', memory: 2 ** 52 }, shardUnits: 2 }))).toBe(
      'test-fleet/wide/shardUnits: 2 is too many: one shard (2 x granularity = 9007199254740992 bytes of memory) is not a memory limit an agent can set; use a whole number of bytes from 4096 (one 4KiB page: the kernel rounds a memory limit down to whole pages, so less is a limit of 0 and the shard is OOM-killed at its first allocation) to 9007199254740991 (2^53-1: past it a JSON number no longer counts bytes exactly); lower shardUnits',
    );
    expect(() => new ShardedApplication(fleet, 'page', { command, granularity: { cpu: '500m', memory: '4Ki' } })).not.toThrow();
  });

  it('reports hard anti-affinity that needs more hosts than exist, and lets a soft rule pass', () => {
    const { fleet, edge } = smallFleet();
    const web = new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: '250m', memory: '256MiB' }, shards: { min: 3, initial: 3, max: 3 } });
    new AntiAffinity(fleet, 'apart', { applications: [web], scope: 'host', mode: 'hard' });
    new AntiAffinity(fleet, 'apart-soft', { applications: [web], scope: 'host', mode: 'soft' });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/apart] apart/scope: hard anti-affinity with scope 'host' needs 3 separate domains for the minimum shards of its applications, but only 2 exist; add hosts, lower shards.min or make the rule soft",
    ]);
  });

  it("counts anti-affinity domains only in the governed applications' own pools", () => {
    const { fleet, edge } = smallFleet();
    const core = new StaticHostPool(fleet, 'core');
    for (const n of [1, 2, 3]) core.addHost({ id: `core-${n}`, address: `10.0.0.${n}`, capacity: { cpu: 2, memory: '4GiB' } });
    const web = new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: '250m', memory: '256MiB' }, shards: { min: 3, initial: 3, max: 3 } });
    const api = new ShardedApplication(fleet, 'api', { pool: core, command, granularity: { cpu: '250m', memory: '256MiB' }, shards: { min: 2, initial: 2, max: 2 } });
    // Pool 'core' has 3 more hosts, but web's shards only ever run on edge's 2.
    new AntiAffinity(fleet, 'apart', { applications: [web], scope: 'host', mode: 'hard' });
    // One pool is one domain: two shards of one application are always in the same pool.
    new AntiAffinity(fleet, 'pools-apart', { applications: [api], scope: 'pool', mode: 'hard' });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/apart] apart/scope: hard anti-affinity with scope 'host' needs 3 separate domains for the minimum shards of its applications, but only 2 exist; add hosts, lower shards.min or make the rule soft",
      "[test-fleet/pools-apart] pools-apart/scope: hard anti-affinity with scope 'pool' needs 2 separate domains for the minimum shards of its applications, but only 1 exist; add hosts, lower shards.min or make the rule soft",
    ]);
  });

  it('reports a hard affinity that cannot hold: applications in different pools, or more than one host holds', () => {
    const { fleet, edge } = smallFleet();
    const core = new StaticHostPool(fleet, 'core').addHost({ id: 'core-1', address: '10.0.0.1', capacity: { cpu: 2, memory: '4GiB' } });
    const web = new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: 1, memory: '1GiB' }, shards: { min: 1, initial: 3, max: 3 } });
    const cache = new ShardedApplication(fleet, 'cache', { pool: edge, command, granularity: { cpu: 1, memory: '1GiB' }, shards: { min: 1, initial: 2, max: 2 } });
    const db = new ShardedApplication(fleet, 'db', { pool: core, command, granularity: { cpu: '500m', memory: '1GiB' } });
    new Affinity(fleet, 'together', { applications: [web, db], scope: 'host', mode: 'hard' });
    new Affinity(fleet, 'too-big', { applications: [web, cache], scope: 'host', mode: 'hard' });
    new Affinity(fleet, 'soft', { applications: [web, db], scope: 'host', mode: 'soft' });
    new Affinity(fleet, 'zone', { applications: [web, db], scope: 'label:zone', mode: 'hard' });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/together] together/scope: hard affinity with scope 'host' keeps every shard of 'db', 'web' in one host, but they run in pools 'core', 'edge'; put them in one pool, use a label scope or make the rule soft",
      "[test-fleet/too-big] too-big/scope: hard affinity with scope 'host' puts the initial shards of 'cache', 'web' on one host (5 cores + 5GiB), larger than any host of pool 'edge'; lower shards.initial, use larger hosts or make the rule soft",
    ]);
  });

  it("reports a proactive-migration horizon that is not whole steps of the fleet's predictor grid, or too many of them", () => {
    const { fleet } = smallFleet({ fleet: 'test', predictor: { interval: '10m', horizon: '20m' } });
    new ProactiveMigration(fleet, 'hot', { horizon: '15m' });
    new ProactiveMigration(fleet, 'far', { horizon: '100010m' });
    new ProactiveMigration(fleet, 'ok', { horizon: '30m' });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/hot] hot/horizon: \"15m\" is not a whole multiple of the fleet's predictor.interval (10m)",
      "[test-fleet/far] far/horizon: \"100010m\" is not at most 10000 steps of the fleet's predictor.interval (10m) (69d10h40m); use a shorter horizon or a coarser interval",
    ]);
  });

  it('reports a policy governing an application of another fleet', () => {
    const { app, fleet, edge } = smallFleet();
    new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: '500m', memory: '1GiB' } });
    const other = new ShardFleet(app, 'other-fleet', { fleet: 'other' });
    const far = new StaticHostPool(other, 'far').addHost({ id: 'host-z', address: '10.0.0.9', capacity: { cpu: 2, memory: '2GiB' } });
    const db = new ShardedApplication(other, 'db', { pool: far, command, granularity: { cpu: '500m', memory: '1GiB' } });
    new ProactiveMigration(fleet, 'hot', { applications: [db] });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/hot] hot/applications[0]: application 'db' (other-fleet/db) belongs to fleet 'other'; a policy can only govern applications of its own fleet 'test'",
    ]);
  });

  it('reports an application bound to a pool of another fleet', () => {
    const { app, fleet } = smallFleet();
    const other = new ShardFleet(app, 'other-fleet', { fleet: 'other' });
    const far = new StaticHostPool(other, 'far').addHost({ id: 'host-z', address: '10.0.0.9', capacity: { cpu: 2, memory: '2GiB' } });
    new ShardedApplication(fleet, 'web', { pool: far, command, granularity: { cpu: '500m', memory: '1GiB' } });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/web] web/pool: pool 'far' (other-fleet/far) belongs to fleet 'other'; use a pool of fleet 'test' ('edge')",
    ]);
  });

  it('binds an application without a pool to the only pool, and reports it when there are several', () => {
    const { fleet } = smallFleet();
    new ShardedApplication(fleet, 'web', { command, granularity: { cpu: '500m', memory: '1GiB' } });
    expect(synthErrors(fleet)).toEqual([]);
    expect(fleet.plan().applications[0]!.pool).toBe('edge');
    new StaticHostPool(fleet, 'core').addHost({ id: 'host-c', address: '10.0.0.3', capacity: { cpu: 8, memory: '16GiB' } });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/web] web/pool: web is not bound to a pool; fleet 'test' has 2 pools, set pool to one of 'core', 'edge'",
    ]);
    expect(() => fleet.plan()).toThrow("plan of fleet 'test' is invalid (1 error):\n  - test-fleet/web: not bound to a pool of fleet 'test'");
  });

  it('reports duplicate application, policy and host ids across the tree', () => {
    const { fleet, edge } = smallFleet();
    const team = new Construct(fleet, 'team-a');
    new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: '250m', memory: '256MiB' } });
    new ShardedApplication(team, 'web', { pool: edge, command, granularity: { cpu: '250m', memory: '256MiB' } });
    new ProactiveMigration(fleet, 'hot');
    new ProactiveMigration(team, 'hot');
    new StaticHostPool(team, 'core').addHost({ id: 'host-a', address: '10.0.0.3', capacity: { cpu: 8, memory: '16GiB' } });
    expect(synthErrors(fleet)).toEqual([
      '[test-fleet] test-fleet/applications: duplicate application id "web" at test-fleet/web (first declared at test-fleet/team-a/web); ids must be unique in the fleet',
      '[test-fleet] test-fleet/policies: duplicate policy id "hot" at test-fleet/hot (first declared at test-fleet/team-a/hot); ids must be unique in the fleet',
      '[test-fleet] test-fleet/hosts: duplicate host id "host-a" at pool \'edge\' (first declared at pool \'core\'); ids must be unique in the fleet',
    ]);
  });

  it('reports two hosts at one agent address, across pools and with the agent port left out', () => {
    const { fleet } = smallFleet();
    const core = new StaticHostPool(fleet, 'core');
    core.addHost({ id: 'host-c', address: '127.0.0.1:7101', capacity: { cpu: 2, memory: '4GiB' } });
    core.addHost({ id: 'host-d', address: 'NODE-1', capacity: { cpu: 2, memory: '4GiB' } });
    core.addHost({ id: 'host-e', address: 'node-1:7100', capacity: { cpu: 2, memory: '4GiB' } });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet] test-fleet/hosts: host 'host-e' of pool 'core' has the agent address \"node-1:7100\" (node-1:7100) of host 'host-d' of pool 'core'; each host needs its own address or port",
      "[test-fleet] test-fleet/hosts: host 'host-a' of pool 'edge' has the agent address \"127.0.0.1:7101\" (127.0.0.1:7101) of host 'host-c' of pool 'core'; each host needs its own address or port",
    ]);
  });

  it('reports a fleet without pools as a validation, not a plan resolution error', () => {
    const app = testApp();
    const fleet = new ShardFleet(app, 'bare', { fleet: 'bare' });
    expect(synthErrors(fleet)).toEqual(['[bare] bare/pools: a fleet needs at least one pool; declare a StaticHostPool or an AwsHostPool in it']);
  });

  it('refuses an etcd endpoint the plan schema would refuse, and a bad migration timeout as INVALID_PROPS', () => {
    const { app } = smallFleet();
    expect(thrown(() => new ShardFleet(app, 'etcd', { store: { kind: 'etcd', endpoints: ['http://[bad'] } }))).toBe(
      'etcd/store.endpoints[0]: "http://[bad" is not a URL; use e.g. "http://10.0.0.5:2379"',
    );
    expect(() => MigrationStrategy.checkpoint({ timeout: 'soon' })).toThrow(expect.objectContaining({ code: 'INVALID_PROPS', field: 'migration.timeout', value: 'soon' }));
  });

  it('reports a static pool without hosts', () => {
    const { fleet } = smallFleet();
    new StaticHostPool(fleet, 'empty');
    expect(synthErrors(fleet)).toEqual(['[test-fleet/empty] empty/hosts: a static pool needs at least one host; pass hosts or call addHost()']);
  });
});

describe('eager prop checks (constructor)', () => {
  it('rejects a threshold outside (0, 1]', () => {
    const { fleet } = smallFleet();
    expect(thrown(() => new ProactiveMigration(fleet, 'hot', { threshold: 1.5 }))).toBe('test-fleet/hot/threshold: 1.5 is outside (0, 1]; use a number in (0, 1]');
    expect(thrown(() => new ProactiveMigration(fleet, 'cold', { threshold: 0 }))).toBe('test-fleet/cold/threshold: 0 is outside (0, 1]; use a number in (0, 1]');
    expect(() => new ProactiveMigration(fleet, 'edge-case', { threshold: 1 })).not.toThrow();
  });

  it('rejects invalid ids of applications, pools, policies, hosts and the fleet', () => {
    const { app, fleet, edge } = smallFleet();
    const rule = "is not a valid id; ids are 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit";
    expect(thrown(() => new ShardedApplication(fleet, 'Web_App', { command, granularity: { cpu: 1, memory: '1GiB' } }))).toBe(`test-fleet/Web_App/id: "Web_App" ${rule}`);
    expect(thrown(() => new StaticHostPool(fleet, '-pool'))).toBe(`test-fleet/-pool/id: "-pool" ${rule}`);
    expect(thrown(() => new AntiAffinity(fleet, 'x'.repeat(64)))).toBe(`test-fleet/${'x'.repeat(64)}/id: "${'x'.repeat(64)}" ${rule}`);
    expect(thrown(() => edge.addHost({ id: 'Host 1', address: '10.0.0.1', capacity: { cpu: 1, memory: '1GiB' } }))).toBe(`test-fleet/edge/addHost(Host 1).id: "Host 1" ${rule}`);
    expect(thrown(() => new ShardFleet(app, 'Prod'))).toBe(`Prod/fleet: "Prod" ${rule}`);
  });

  it('lists every failure of a constructor at once, naming path, property, value and what is valid', () => {
    const { fleet } = smallFleet();
    const error = (() => {
      try {
        new ShardedApplication(fleet, 'web', {
          command: ['python3 -m http.server'],
          granularity: { cpu: 'lots', memory: '1GiB', readIops: -5 },
          shards: { min: 3, initial: 1, max: 2 },
          stateDirectory: 'relative/dir',
        });
      } catch (e) {
        return e as InvalidPropsError;
      }
      throw new Error('expected InvalidPropsError');
    })();
    expect(error).toBeInstanceOf(InvalidPropsError);
    expect(error.code).toBe('INVALID_PROPS');
    expect(error.message.split('\n')).toEqual([
      'test-fleet/web/command: ["python3 -m http.server"] looks like a shell string; split it into argv, e.g. ["python3","-m","http.server"]',
      'test-fleet/web/granularity.cpu: "lots" is not a CPU quantity such as "500m", "0.5" or 2 (cores)',
      'test-fleet/web/granularity.readIops: -5 is not valid; use a whole number 0 or more',
      'test-fleet/web/shards: {"min":3,"initial":1,"max":2} is not ordered; use min <= initial <= max',
      'test-fleet/web/stateDirectory: "relative/dir" is not an absolute path; use a path starting with /',
    ]);
  });

  it('rejects a host with a bad address or capacity', () => {
    const { edge } = smallFleet();
    expect(thrown(() => edge.addHost({ id: 'host-c', address: 'http://x/', capacity: { cpu: '0', memory: '2XB' } })).split('\n')).toEqual([
      'test-fleet/edge/addHost(host-c).address: "http://x/" is not a host address; use a host name or IP (IPv6 in brackets), optionally with :port from 1 to 65535 (e.g. "127.0.0.1:7101")',
      'test-fleet/edge/addHost(host-c).capacity.cpu: "0" must be more than 0 cores (e.g. "500m" or 1)',
      'test-fleet/edge/addHost(host-c).capacity.memory: "2XB" is not a byte quantity such as "512MiB", "2GiB", "1G" or a whole number of bytes',
    ]);
  });

  it('rejects host addresses no agent can listen on: a port out of range, a bare IPv6, stray colons', () => {
    const { edge } = smallFleet();
    const capacity = { cpu: 1, memory: '1GiB' };
    for (const address of ['node-1:99999', 'node-1:0', '::1', ':::', 'a:b:c']) {
      expect(thrown(() => edge.addHost({ id: 'host-c', address, capacity }))).toContain(`addHost(host-c).address: ${JSON.stringify(address)} is not a host address`);
    }
    expect(() => edge.addHost({ id: 'host-v6', address: '[::1]:7109', capacity })).not.toThrow();
  });

  it('rejects bad placement scopes, modes, weights and migration strategies', () => {
    const { fleet } = smallFleet();
    expect(thrown(() => new AntiAffinity(fleet, 'apart', { scope: 'rack' as never, mode: 'strict' as never, weight: 0 })).split('\n')).toEqual([
      "test-fleet/apart/scope: \"rack\" is not a placement scope; use 'host', 'pool' or 'label:<key>'",
      "test-fleet/apart/mode: \"strict\" is not a mode; use 'hard' or 'soft'",
      'test-fleet/apart/weight: 0 is not valid; use a whole number from 1 to 100',
    ]);
    expect(thrown(() => MigrationStrategy.checkpoint({ timeout: 'soon' }))).toBe(
      'migration.timeout: "soon" is not a duration such as "90s", "15m", "1h30m", "7d" or a number of seconds',
    );
    expect(thrown(() => MigrationStrategy.restart({ timeout: '100ms' }))).toBe('migration.timeout: "100ms" is too short; use at least 1s');
    // What a destination agent's prepare accepts (whole seconds, at most a day): past it every migration of the application was refused.
    expect(thrown(() => MigrationStrategy.checkpoint({ timeout: '2d' }))).toBe('migration.timeout: "2d" is too long; use at most 1d (86400s), the longest a destination agent accepts');
    expect(thrown(() => MigrationStrategy.restart({ timeout: '90500ms' }))).toBe('migration.timeout: "90500ms" is not whole seconds; use e.g. "90s" (agents time migrations in whole seconds)');
    expect(MigrationStrategy.checkpoint({ timeout: '1d' }).toPlan().timeoutSeconds).toBe(86400);
    expect(thrown(() => PlacementScope.label('zone with spaces'))).toBe(
      'scope: "zone with spaces" is not a label key; use 1-63 characters of A-Z, a-z, 0-9 and . _ / -',
    );
  });

  it('rejects bad fleet settings, all at once', () => {
    const { app } = smallFleet();
    const message = thrown(
      () =>
        new ShardFleet(app, 'bad-fleet', {
          generation: 0,
          predictor: { quantile: 1, horizon: '0s' },
          store: { kind: 'etcd', endpoints: ['10.0.0.5:2379'] },
          security: { auth: 'mtls' },
          agent: { port: 70000 },
        }),
    );
    expect(message.split('\n')).toEqual([
      'bad-fleet/generation: 0 is not valid; use a whole number 1 or more',
      'bad-fleet/predictor.quantile: 1 is outside (0, 1); use e.g. 0.95',
      'bad-fleet/predictor.horizon: "0s" must be at least 1s',
      'bad-fleet/agent.port: 70000 is not valid; use a whole number from 1 to 65535',
      'bad-fleet/store.endpoints[0]: "10.0.0.5:2379" is not a URL; use e.g. "http://10.0.0.5:2379"',
      'bad-fleet/security.tls: undefined is required for mtls; give caFile, certFile and keyFile',
    ]);
  });

  it('refuses a predictor grid the CLI and the plan would refuse, naming the prop and value', () => {
    const { app } = smallFleet();
    expect(thrown(() => new ShardFleet(app, 'fine', { predictor: { interval: '500ms', horizon: '1s' } }))).toBe('fine/predictor.interval: "500ms" is not an interval from 1s to 1d');
    expect(thrown(() => new ShardFleet(app, 'coarse', { predictor: { interval: '2d', horizon: '2d' } }))).toBe('coarse/predictor.interval: "2d" is not an interval from 1s to 1d');
    expect(thrown(() => new ShardFleet(app, 'off', { predictor: { horizon: '7m' } }))).toBe('off/predictor.horizon: "7m" is not a whole multiple of predictor.interval "5m"');
    expect(thrown(() => new ShardFleet(app, 'far', { predictor: { horizon: '365d' } }))).toBe(
      'far/predictor.horizon: "365d" is not at most 10000 steps of predictor.interval "5m" (34d17h20m); use a shorter horizon or a coarser interval',
    );
  });

  it('leaves nothing half-built in the tree when a constructor throws and the caller goes on', () => {
    const { app, fleet, edge } = smallFleet();
    new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: '500m', memory: '1GiB' } });
    expect(() => new ShardedApplication(fleet, 'broken', { pool: edge, command: [], granularity: { cpu: 1, memory: '1GiB' } })).toThrow(InvalidPropsError);
    const half = [
      { id: 'host-y', address: '10.0.0.8', capacity: { cpu: 1, memory: '1GiB' } },
      { id: 'Host Z', address: '10.0.0.9', capacity: { cpu: 1, memory: '1GiB' } },
    ];
    expect(() => new StaticHostPool(fleet, 'half', { hosts: half })).toThrow(InvalidPropsError);
    expect(() => new ProactiveMigration(fleet, 'hot', { threshold: 2 })).toThrow(InvalidPropsError);
    expect(() => new StaticHostPool(app, 'loose')).toThrow('must be created inside a ShardFleet');
    // A bad host is refused without taking its pool out of the tree.
    expect(() => edge.addHost({ id: 'Bad', address: '10.0.0.7', capacity: { cpu: 1, memory: '1GiB' } })).toThrow(InvalidPropsError);
    expect(fleet.node.tryFindChild('broken') ?? fleet.node.tryFindChild('half') ?? fleet.node.tryFindChild('hot') ?? app.node.tryFindChild('loose')).toBeUndefined();
    expect(synthErrors(fleet)).toEqual([]);
    const plan = fleet.plan();
    expect(plan.pools.map((p) => p.id)).toEqual(['edge']);
    expect(plan.applications.map((a) => a.id)).toEqual(['web']);
    expect(plan.policies).toEqual([]);
  });

  it('refuses env names the agent sets for each shard', () => {
    const { fleet } = smallFleet();
    expect(thrown(() => new ShardedApplication(fleet, 'web', { command, env: { SHARDFORM_STATE_DIR: '/data', SHARDFORM_SHARD_ID: 'web', LOG_LEVEL: 'debug' }, granularity: { cpu: '500m', memory: '1GiB' } })).split('\n')).toEqual([
      'test-fleet/web/env.SHARDFORM_STATE_DIR: "SHARDFORM_STATE_DIR" is set by the agent for every shard (its shard id, application id and state directory, <stateDirectory>/<shard-id>); a plan cannot override it, or the shards would share one value and a migration would move a state directory the workload never used; set stateDirectory instead',
      'test-fleet/web/env.SHARDFORM_SHARD_ID: "SHARDFORM_SHARD_ID" is set by the agent for every shard (its shard id, application id and state directory, <stateDirectory>/<shard-id>); a plan cannot override it, or the shards would share one value and a migration would move a state directory the workload never used; set stateDirectory instead',
    ]);
  });

  // child_process.spawn throws on a NUL byte in argv, env or cwd: the shard never started and the agent retried it forever.
  it('refuses NUL bytes in the argv, env and directories of an application', () => {
    const { fleet } = smallFleet();
    const nul = '\u0000';
    expect(
      thrown(() => new ShardedApplication(fleet, 'web', { command: ['/bin/sleep', `inf${nul}inity`], env: { MODE: `te${nul}st` }, workingDirectory: `/srv${nul}`, stateDirectory: `/var/lib/${nul}web`, granularity: { cpu: '500m', memory: '1GiB' } })).split('\n'),
    ).toEqual([
      'test-fleet/web/command[1]: "inf\\u0000inity" contains a NUL byte (\\u0000), which no argv element, environment variable or path can hold (the agent could never start the process); remove it',
      'test-fleet/web/env.MODE: "te\\u0000st" contains a NUL byte (\\u0000), which no argv element, environment variable or path can hold (the agent could never start the process); remove it',
      'test-fleet/web/stateDirectory: "/var/lib/\\u0000web" contains a NUL byte (\\u0000), which no argv element, environment variable or path can hold (the agent could never start the process); remove it',
      'test-fleet/web/workingDirectory: "/srv\\u0000" contains a NUL byte (\\u0000), which no argv element, environment variable or path can hold (the agent could never start the process); remove it',
    ]);
  });

  it('refuses a member created outside a fleet', () => {
    const { app } = smallFleet();
    expect(thrown(() => new StaticHostPool(app, 'loose'))).toBe("loose: must be created inside a ShardFleet (new ShardFleet(app, 'my-fleet')), not directly in the app");
  });
});

describe('unresolved cdktf tokens (the plan is read by agents, never by Terraform)', () => {
  // cdktf numbers tokens app-wide, in creation order: the assertions do not depend on which test ran first.
  const anyToken = (text: string) => text.replace(/TOKEN\.\d+/g, 'TOKEN.n');
  const tokenRule = 'is an unresolved cdktf token (a TerraformVariable, a resource attribute, Fn.*); agents read the plan as written, so give a literal value known at synth';

  it('refuses tokens in the argv, env, labels and paths of an application instead of writing "${TfToken[...]}" into the plan', () => {
    const { fleet } = smallFleet();
    const host = new TerraformVariable(fleet, 'db-host', { type: 'string' });
    const message = thrown(
      () =>
        new ShardedApplication(fleet, 'web', {
          command: ['/usr/bin/app', '--db', host.stringValue],
          env: { DB_HOST: host.stringValue },
          labels: { team: host.stringValue },
          workingDirectory: `/srv/${host.stringValue}`,
          granularity: { cpu: '500m', memory: '1GiB' },
        }),
    );
    expect(anyToken(message).split('\n')).toEqual([
      `test-fleet/web/command[2]: "\${TfToken[TOKEN.n]}" ${tokenRule}`,
      `test-fleet/web/env.DB_HOST: "\${TfToken[TOKEN.n]}" ${tokenRule}`,
      `test-fleet/web/labels.team: "\${TfToken[TOKEN.n]}" ${tokenRule}`,
      `test-fleet/web/workingDirectory: "/srv/\${TfToken[TOKEN.n]}" ${tokenRule}`,
    ]);
    expect(fleet.node.tryFindChild('web')).toBeUndefined();
  });

  it('names a number token as a token, not as the huge negative number cdktf encodes it as', () => {
    const { fleet, edge } = smallFleet();
    const count = new TerraformVariable(fleet, 'count', { type: 'number' });
    expect(anyToken(thrown(() => new ShardedApplication(fleet, 'web', { pool: edge, command, shards: { min: count.numberValue }, granularity: { cpu: '500m', memory: '1GiB' } })))).toBe(
      `test-fleet/web/shards.min: "\${TfToken[TOKEN.n]}" ${tokenRule}`,
    );
  });

  it('refuses tokens in hosts, pools, policies and fleet settings', () => {
    const { fleet, edge } = smallFleet();
    const v = new TerraformVariable(fleet, 'v', { type: 'string' });
    const n = new TerraformVariable(fleet, 'n', { type: 'number' });
    expect(anyToken(thrown(() => edge.addHost({ id: 'host-c', address: v.stringValue, capacity: { cpu: n.numberValue, memory: '4GiB' } }))).split('\n')).toEqual([
      `test-fleet/edge/addHost(host-c).address: "\${TfToken[TOKEN.n]}" ${tokenRule}`,
      `test-fleet/edge/addHost(host-c).capacity.cpu: "\${TfToken[TOKEN.n]}" ${tokenRule}`,
    ]);
    expect(anyToken(thrown(() => new StaticHostPool(fleet, 'core', { costPerHour: n.numberValue, labels: { zone: v.stringValue } }))).split('\n')).toEqual([
      `test-fleet/core/costPerHour: "\${TfToken[TOKEN.n]}" ${tokenRule}`,
      `test-fleet/core/labels.zone: "\${TfToken[TOKEN.n]}" ${tokenRule}`,
    ]);
    expect(anyToken(thrown(() => new ProactiveMigration(fleet, 'hot', { threshold: n.numberValue })))).toBe(`test-fleet/hot/threshold: "\${TfToken[TOKEN.n]}" ${tokenRule}`);
    const app = testApp();
    expect(anyToken(thrown(() => new ShardFleet(app, 'f', { security: { tokenFile: `/etc/${v.stringValue}` } })))).toBe(`f/security.tokenFile: "/etc/\${TfToken[TOKEN.n]}" ${tokenRule}`);
  });
});
