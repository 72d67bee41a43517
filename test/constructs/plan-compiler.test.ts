import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testing } from 'cdktf';
import { checkPlan, loadPlanFile } from '../../src/contracts/plan';
import {
  Affinity,
  CostAwarePlacement,
  MigrationStrategy,
  PlacementScope,
  ProactiveMigration,
  ShardFleet,
  ShardedApplication,
  StaticHostPool,
} from '../../constructs';
import { smallFleet, synthErrors, testApp, thrown } from './fixture';

const command = ['/bin/sleep', 'infinity'];
const ROOT = join(__dirname, '..', '..');

describe('plan compiler', () => {
  it('renders lazily: a host added after the applications and policies still counts', () => {
    const { fleet, edge } = smallFleet();
    const web = new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: 1, memory: '1GiB' } });
    new ProactiveMigration(fleet, 'hot', { applications: [web] });
    edge.addHost({ id: 'host-c', address: '127.0.0.1:7103', capacity: { cpu: 1, memory: '1GiB' } });
    expect(fleet.plan().pools[0]!.hosts.map((h) => h.id)).toEqual(['host-a', 'host-b', 'host-c']);
    expect(synthErrors(fleet)).toEqual([]);
    // ...and the validations see late hosts too: one cpu no longer fits the smallest host.
    edge.addHost({ id: 'host-d', address: '127.0.0.1:7104', capacity: { cpu: '500m', memory: '1GiB' } });
    expect(synthErrors(fleet)).toEqual([
      "[test-fleet/web] web/granularity: cpu 1 cores exceeds the smallest host in pool 'edge' (0.5 cores); use at most 0.5 cores or move web to another pool",
    ]);
  });

  it('renders lazily: a policy added to an application after construction governs it', () => {
    const { fleet, edge } = smallFleet();
    const web = new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: '500m', memory: '1GiB' } });
    const cheap = new CostAwarePlacement(fleet, 'cheap');
    expect(fleet.plan().policies[0]!.applications).toEqual([]);
    web.addPolicy(cheap);
    expect(fleet.plan().policies[0]!.applications).toEqual(['web']);
  });

  it('gives the same bytes and digest whatever order things were declared in', () => {
    const build = (reverse: boolean) => {
      const app = testApp();
      const fleet = new ShardFleet(app, 'f', { fleet: 'same', generation: 3 });
      const pool = new StaticHostPool(fleet, 'p');
      const hosts = ['h1', 'h2', 'h3'].map((id, i) => ({ id, address: `10.0.0.${i + 1}`, capacity: { cpu: 2, memory: '2GiB' }, labels: { zone: id, rack: 'r1' } }));
      for (const host of reverse ? [...hosts].reverse() : hosts) pool.addHost(host);
      const names = reverse ? ['b', 'a'] : ['a', 'b'];
      const apps = names.map((id) => new ShardedApplication(fleet, id, { pool, command, granularity: { cpu: '500m', memory: '256MiB' }, env: reverse ? { Y: '2', X: '1' } : { X: '1', Y: '2' } }));
      new Affinity(fleet, 'together', { applications: reverse ? apps : [...apps].reverse(), scope: PlacementScope.label('rack') });
      return fleet.planJson();
    };
    const first = build(false);
    expect(build(true)).toBe(first);
    expect(first).toBe(build(false));
  });

  it('writes a plan that checkPlan accepts, with the generation and settings given', () => {
    const { fleet, edge } = smallFleet({ fleet: 'test', generation: 4, store: { kind: 'etcd', endpoints: ['http://10.0.0.5:2379'] }, agent: { port: 7200 } });
    new ShardedApplication(fleet, 'web', {
      pool: edge,
      command,
      granularity: { cpu: '500m', memory: '1GiB', readIops: 100 },
      shardUnits: 2,
      shards: { min: 1, initial: 2, max: 3 },
      migration: MigrationStrategy.restart({ timeout: '90s' }),
    });
    const plan = fleet.plan();
    expect(checkPlan(plan)).toEqual({ ok: true, plan });
    expect(plan.generation).toBe(4);
    expect(plan.store).toEqual({ kind: 'etcd', endpoints: ['http://10.0.0.5:2379'], prefix: '/shardform/test' });
    expect(plan.agent.port).toBe(7200);
    expect(plan.applications[0]).toMatchObject({
      id: 'web',
      pool: 'edge',
      granularity: { cpuCores: 0.5, memoryBytes: 2 ** 30, readIops: 100, writeIops: 0 },
      shardUnits: 2,
      migration: { strategy: 'restart', timeoutSeconds: 90, preCopy: false },
      stateDirectory: '/var/lib/shardform/apps/web',
    });
  });

  it('takes the generation from the cdktf context shardform:generation, over the props', () => {
    expect(smallFleet({ fleet: 'test', generation: 2 }, { 'shardform:generation': 7 }).fleet.plan().generation).toBe(7);
    expect(smallFleet({ fleet: 'test' }, { 'shardform:generation': '12' }).fleet.plan().generation).toBe(12);
    expect(smallFleet({ fleet: 'test' }).fleet.plan().generation).toBe(1);
    expect(thrown(() => smallFleet({ fleet: 'test' }, { 'shardform:generation': 'tomorrow' }))).toBe(
      'test-fleet/context[shardform:generation]: "tomorrow" is not a generation; use a whole number from 1 to 9007199254740991',
    );
  });

  it('refuses a context generation past 2^53 (it would be rounded) and checks the prop even when the context wins', () => {
    // Read as 9007199254740992: the next bump would compare equal to this one.
    expect(thrown(() => smallFleet({ fleet: 'test' }, { 'shardform:generation': '9007199254740993' }))).toBe(
      'test-fleet/context[shardform:generation]: "9007199254740993" is not a generation; use a whole number from 1 to 9007199254740991',
    );
    expect(thrown(() => smallFleet({ fleet: 'test' }, { 'shardform:generation': 1e21 }))).toContain('1e+21 is not a generation');
    expect(thrown(() => smallFleet({ fleet: 'test', generation: -5 }, { 'shardform:generation': 3 }))).toBe(
      'test-fleet/generation: -5 is not valid; use a whole number 1 or more',
    );
  });

  it('writes shard-plan.json beside cdk.tf.json on a full synth', () => {
    const { fleet, edge } = smallFleet();
    new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: '500m', memory: '1GiB' } });
    const outdir = Testing.fullSynth(fleet);
    try {
      const stackDir = join(outdir, 'stacks', 'test-fleet');
      expect(existsSync(join(stackDir, 'cdk.tf.json'))).toBe(true);
      expect(readFileSync(join(stackDir, 'shard-plan.json'), 'utf8')).toBe(fleet.planJson());
      expect(loadPlanFile(join(stackDir, 'shard-plan.json')).digest).toBe(fleet.plan().digest);
      const terraform = JSON.parse(readFileSync(join(stackDir, 'cdk.tf.json'), 'utf8'));
      expect(terraform.output['plan-digest'].value).toBe(fleet.plan().digest);
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  });

  it('does not write a plan when validation fails', () => {
    const { app, fleet, edge } = smallFleet();
    new ShardedApplication(fleet, 'web', { pool: edge, command, granularity: { cpu: 8, memory: '1GiB' } });
    // The app's own outdir (removed with the file's), not Testing.fullSynth's: a synth that throws left that one in /tmp.
    expect(thrown(() => app.synth())).toContain('[test-fleet/web] web/granularity: cpu 8 cores exceeds');
    expect(existsSync(join(app.outdir, 'stacks', 'test-fleet', 'shard-plan.json'))).toBe(false);
  });
});

describe('the example fleet (main.ts)', () => {
  const synth = () => {
    const outdir = mkdtempSync(join(tmpdir(), 'shardform-example-'));
    const run = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(ROOT, 'main.ts')], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, CDKTF_OUTDIR: outdir, CHECKPOINT_DISABLE: '1' },
      timeout: 60_000,
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const plan = readFileSync(join(outdir, 'stacks', 'local-fleet', 'shard-plan.json'));
    rmSync(outdir, { recursive: true, force: true });
    return plan;
  };

  it('synthesizes byte-identical, valid plans on two runs', () => {
    const first = synth();
    const second = synth();
    expect(second.equals(first)).toBe(true);
    const result = checkPlan(JSON.parse(first.toString('utf8')));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.plan.pools[0]!.hosts.map((h) => h.address)).toEqual(['127.0.0.1:7101', '127.0.0.1:7102', '127.0.0.1:7103']);
    expect(result.plan.applications.map((a) => a.id)).toEqual(['cache', 'web', 'worker']);
    expect(result.plan.policies.map((p) => p.kind).sort()).toEqual(['affinity', 'anti-affinity', 'cost-aware-placement', 'proactive-migration']);
  }, 120_000);
});

describe('the README quick start', () => {
  it('synthesizes as written (the documented API is the real one)', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const code = /## Quick start: a fleet as code\n+```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(code).toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), 'shardform-readme-'));
    try {
      const file = join(dir, 'main.ts');
      writeFileSync(file, code!.replace("from './constructs'", `from ${JSON.stringify(join(ROOT, 'constructs'))}`));
      const run = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), file], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, NODE_PATH: join(ROOT, 'node_modules'), CDKTF_OUTDIR: join(dir, 'out'), CHECKPOINT_DISABLE: '1' },
        timeout: 60_000,
      });
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      const plan = loadPlanFile(join(dir, 'out', 'stacks', 'local-fleet', 'shard-plan.json'));
      expect(plan.fleet).toBe('demo');
      expect(plan.applications.map((a) => a.id)).toEqual(['web']);
      expect(plan.policies.map((p) => p.id)).toEqual(['hot', 'spread-web']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
