/**
 * Migration in the daemon's wiring (fakes, no root): recovery runs after adoption and before
 * the first reconcile, is retried on the reconcile timer while a migration cannot finish, and
 * the migration routes sit behind the fleet token.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import { Agent } from '../../host-agent/agent';
import { type AgentMigration, type AgentMigrationContext } from '../../host-agent/agent-migration';
import { agentCapacityView } from '../../host-agent/host-capacity';
import { buildMigrationApp } from '../../host-agent/api/migration-app';
import { migrationRoutes } from '../../host-agent/api/migration-routes';
import { IncomingMigrations } from '../../host-agent/migration/incoming-migrations';
import type { DesiredShard } from '../../host-agent/reconcile/desired-shard';
import type { ShardStatus } from '../../host-agent/runner/shard-status';
import { createLogger, memoryLogDestination } from '../../host-agent/log';
import type { RecoveryReport } from '../../host-agent/migration/migration-service';
import type { ShardHandover } from '../../host-agent/reconcile/shard-handover';
import { serializePlan } from '../../src/contracts/plan';
import { tempDir } from '../helpers/cli';
import { examplePlan } from '../helpers/plan-fixture';
import { FakeDriver, FakeShardManager, MemoryHistory } from '../helpers/agent-fakes';
import { FakeRestorer, prepareBody } from '../helpers/migration-destination-fakes';
import { MemoryJournalStore, recordIn } from '../helpers/migration-fakes';

const TOKEN = 'agent-test-token-0123456789';

/** The journal fake plus the put/delete the agent's own records need. */
class TxnKv extends MemoryJournalStore {
  async put(key: string, value: string): Promise<number> {
    return (await this.txn([], [{ kind: 'put', key, value }])).revision;
  }
  async delete(key: string): Promise<boolean> {
    const had = this.data.has(key);
    await this.txn([], [{ kind: 'delete', key }]);
    return had;
  }
}

const handover: ShardHandover = {
  prepareIncoming: async () => ({ procsFiles: [], paths: {} }),
  release: async () => ({}),
  adopt: async () => {
    throw new Error('not used');
  },
  discard: async () => {},
};

describe('Agent with migration (wiring over fakes)', () => {
  const dir = tempDir('agent-migration');
  const planFile = join(dir.path, 'plan.json');
  const tokenFile = dir.file('token', TOKEN);
  let agent: Agent | undefined;

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
  });
  afterAll(() => dir.remove());

  async function start(recoveries: RecoveryReport[], gate?: { held?: Promise<void>; running: number; most: number }, reconcileEverySeconds = 0.05) {
    const plan = examplePlan((p) => {
      p.security = { auth: 'token', tokenFile };
    });
    writeFileSync(`${planFile}.tmp`, serializePlan(plan));
    renameSync(`${planFile}.tmp`, planFile);
    const manager = new FakeShardManager();
    const order: string[] = [];
    const contexts: AgentMigrationContext[] = [];
    const log = memoryLogDestination();
    const originalApply = manager.apply.bind(manager);
    manager.apply = async (desired) => {
      order.push('apply');
      return originalApply(desired);
    };
    const route: FastifyPluginAsync = async (app) => {
      app.get('/v1/migrations', async () => ({ migrations: [] }));
    };
    const migration = async (ctx: AgentMigrationContext): Promise<AgentMigration> => {
      contexts.push(ctx);
      order.push('migration built');
      return {
        plugins: [route],
        recover: async () => {
          order.push('recover');
          if (gate) {
            gate.running += 1;
            gate.most = Math.max(gate.most, gate.running);
            await gate.held;
            gate.running -= 1;
          }
          return recoveries.shift() ?? { recovered: [], failed: [] };
        },
      };
    };
    agent = new Agent({
      hostId: 'host-a',
      plan: planFile,
      stateDir: join(dir.path, `state-${Math.random().toString(36).slice(2)}`),
      listen: '127.0.0.1:0',
      logger: createLogger({ level: 'debug', destination: log }),
      openStores: async () => ({ store: new TxnKv(), history: new MemoryHistory(), close: async () => {} }),
      createKernel: async () => {
        order.push('kernel');
        return { driver: Object.assign(new FakeDriver(), { hostRoot: 'shardform/host-a' }) as never, manager, handover };
      },
      migration,
      planPollSeconds: 0,
      reconcileEverySeconds,
    });
    await agent.start();
    return { order, contexts, manager, log };
  }

  it('recovers after adopting and before the first reconcile, with the agent\'s store, hand-over and metrics', async () => {
    const { order, contexts, manager } = await start([]);
    expect(order.slice(0, 4)).toEqual(['kernel', 'migration built', 'recover', 'apply']);
    expect(manager.calls[0]!.method).toBe('start');
    expect(contexts[0]!.handover).toBe(handover);
    expect(contexts[0]!.metrics).toBe(agent!.metrics);
    expect(typeof contexts[0]!.store.txn).toBe('function');
    expect((await contexts[0]!.desiredShards()).map((d) => d.shardId)).toEqual(['web-0']);
  });

  it('describes the shards placed here to a migration that commits on a drained host, and to nothing else', async () => {
    const { contexts } = await start([]);
    await agent!.drain();
    expect(await contexts[0]!.desiredShards()).toEqual([]);
    // The commit's assignment needs the shard's definition: moving it away is what the drain
    // wants (refused, a good migration aborted and resumed the shard on the drained host).
    expect((await contexts[0]!.desiredShards({ evenIfDrained: true })).map((d) => d.shardId)).toEqual(['web-0']);
  });

  it('serves the migration routes behind the fleet token only', async () => {
    await start([]);
    expect((await fetch(`${agent!.address}/v1/migrations`)).status).toBe(401);
    const ok = await fetch(`${agent!.address}/v1/migrations`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ migrations: [] });
  });

  it('retries recovery on the reconcile timer while a migration cannot finish, and stops once it did', async () => {
    const stuck = { id: 'm1', shardId: 'web-0', state: 'committed' as const, error: 'destination unreachable' };
    const { order } = await start([{ recovered: [], failed: [stuck] }, { recovered: [], failed: [stuck] }, { recovered: [recordIn('done')], failed: [] }]);
    for (let i = 0; i < 200 && order.filter((o) => o === 'recover').length < 3; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(order.filter((o) => o === 'recover')).toHaveLength(3);
    const applies = order.filter((o) => o === 'apply').length;
    for (let i = 0; i < 200 && order.filter((o) => o === 'apply').length < applies + 3; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(order.filter((o) => o === 'recover')).toHaveLength(3);
  });

  it('reports an unreadable journal record loudly (error log with key and reason, gauge), once, and retries until it reads', async () => {
    const bad = { key: '/fleet/f/migrations/m-bad', migrationId: 'm-bad', shardId: 'web-3', reason: 'state is "paused", not one of planned, ...' };
    const { order, log } = await start([
      { recovered: [], failed: [], unreadable: [bad] },
      { recovered: [], failed: [], unreadable: [bad] },
      { recovered: [], failed: [], unreadable: [] },
    ]);
    for (let i = 0; i < 200 && order.filter((o) => o === 'recover').length < 3; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(order.filter((o) => o === 'recover').length).toBeGreaterThanOrEqual(3);
    const errors = log.lines().filter((l) => l.key === bad.key && l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ migration_id: 'm-bad', shard_id: 'web-3', reason: bad.reason });
    expect(String(errors[0]!.msg)).toMatch(/shard web-3 neither resumed nor killed, new migrations of it refused\. Fix or delete the key by hand/);
    expect(log.lines().some((l) => l.key === bad.key && String(l.msg).includes('readable again or gone'))).toBe(true);
    expect(await agent!.metrics.text()).toMatch(/^shardform_migration_journal_unreadable_records 0$/m);
  });

  it('counts unreadable journal records in a gauge while they are there', async () => {
    const bad = { key: '/fleet/f/migrations/m-bad', migrationId: 'm-bad', reason: 'not JSON' };
    await start([{ recovered: [], failed: [], unreadable: [bad] }], undefined, 60);
    expect(await agent!.metrics.text()).toMatch(/^shardform_migration_journal_unreadable_records 1$/m);
  });

  it('runs one recovery pass at a time: asked for during a long pass, the next runs after it', async () => {
    const gate: { held?: Promise<void>; running: number; most: number } = { running: 0, most: 0 };
    const { order, contexts } = await start([], gate);
    let open!: () => void;
    gate.held = new Promise<void>((resolve) => (open = resolve));
    contexts[0]!.onRecoveryNeeded!();
    for (let i = 0; i < 200 && order.filter((o) => o === 'recover').length < 2; i += 1) await new Promise((r) => setTimeout(r, 20));
    // The pass is held (an abort waiting out its timeout); more asks and several timer ticks pass.
    contexts[0]!.onRecoveryNeeded!();
    const applies = order.filter((o) => o === 'apply').length;
    for (let i = 0; i < 200 && order.filter((o) => o === 'apply').length < applies + 4; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(order.filter((o) => o === 'recover')).toHaveLength(2);
    open();
    for (let i = 0; i < 200 && order.filter((o) => o === 'recover').length < 3; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(order.filter((o) => o === 'recover')).toHaveLength(3); // the one asked for during the pass
    expect(gate.most).toBe(1);
  });

  it('stop waits for a recovery pass in progress before closing what it uses', async () => {
    const gate: { held?: Promise<void>; running: number; most: number } = { running: 0, most: 0 };
    const { order, contexts } = await start([], gate);
    let open!: () => void;
    gate.held = new Promise<void>((resolve) => (open = resolve));
    contexts[0]!.onRecoveryNeeded!();
    for (let i = 0; i < 200 && gate.running === 0; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(gate.running).toBe(1);
    const stopping = agent!.stop().then(() => order.push('stopped'));
    for (let i = 0; i < 5; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(order).not.toContain('stopped');
    open();
    await stopping;
    expect(gate.running).toBe(0); // the pass had ended when stop closed the keeper and the stores
    agent = undefined;
  });

  it('runs recovery again after a live migration failed (its abort may have left it unfinished), once', async () => {
    const { order, contexts } = await start([]);
    expect(order.filter((o) => o === 'recover')).toHaveLength(1);
    const applies = order.filter((o) => o === 'apply').length;
    for (let i = 0; i < 200 && order.filter((o) => o === 'apply').length < applies + 2; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(order.filter((o) => o === 'recover')).toHaveLength(1); // nothing asked for it

    contexts[0]!.onRecoveryNeeded!();
    for (let i = 0; i < 200 && order.filter((o) => o === 'recover').length < 2; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(order.filter((o) => o === 'recover')).toHaveLength(2);
    const after = order.filter((o) => o === 'apply').length;
    for (let i = 0; i < 200 && order.filter((o) => o === 'apply').length < after + 3; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(order.filter((o) => o === 'recover')).toHaveLength(2); // it finished: no more passes
  });

  it('reconciles at once when a migration ends aborted (the shard may have been handed back to reconcile), not after a done one', async () => {
    const { order, contexts } = await start([], undefined, 3600);
    const applies = () => order.filter((o) => o === 'apply').length;
    const before = applies();
    contexts[0]!.onFinished!(recordIn('done'));
    for (let i = 0; i < 5; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(applies()).toBe(before);
    contexts[0]!.onFinished!(recordIn('aborted'));
    for (let i = 0; i < 200 && applies() === before; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(applies()).toBe(before + 1);
  });
});

describe('the agent\'s capacity view for incoming migrations', () => {
  const dir = tempDir('agent-capacity');
  afterAll(() => dir.remove());
  const GiB = 2 ** 30;
  const status = (shardId: string, state: ShardStatus['state'], cpuCores: number): ShardStatus => ({ shardId, applicationId: 'web', state, restarts: 0, adopted: false, frozen: false, limits: { cpuCores, memoryBytes: GiB } });

  it('counts a prepared migration once, before and after the keeper created its held cgroup', async () => {
    // host-a offers 2 cores (the example plan) and runs web-0 with 0.5.
    const shards: ShardStatus[] = [status('web-0', 'running', 0.5)];
    let gate: Promise<void> | undefined;
    let reached!: () => void;
    const inKeeper = new Promise<void>((resolve) => (reached = resolve));
    const handover = {
      // As the keeper: the held cgroup appears in its status only once prepareIncoming runs, after the entry.
      prepareIncoming: async (desired: DesiredShard) => {
        reached();
        await gate;
        shards.push(status(desired.shardId, 'held', desired.limits.cpuCores ?? 0));
        return { procsFiles: [], paths: {} };
      },
      adopt: async () => status('x', 'running', 0),
      discard: async () => {},
    };
    const plan = examplePlan();
    const incoming = new IncomingMigrations(join(dir.path, 'images'), agentCapacityView({ hostId: 'host-a', plan: () => plan, shards: () => shards }), { free: () => undefined });
    const app = await buildMigrationApp({ token: () => TOKEN, plugins: [migrationRoutes({ hostId: 'host-a', incoming, handover, restorer: new FakeRestorer() })] });
    const prepare = (id: string, shardId: string, cpuCores: number) =>
      app.inject({ method: 'POST', url: `/v1/migrations/${id}/prepare`, headers: { authorization: `Bearer ${TOKEN}` }, payload: { ...prepareBody(shardId), shard: { ...prepareBody(shardId).shard, limits: { cpuCores, memoryBytes: GiB } } } });
    try {
      let open!: () => void;
      gate = new Promise<void>((resolve) => (open = resolve));
      const first = prepare('mig-1', 'web-1', 1);
      await inKeeper;
      // The entry exists, the held cgroup not yet: the reservation counts (0.5 of 2 cores left).
      expect(incoming.refusal({ ...prepareBody('web-2').shard, limits: { cpuCores: 0.75 } })).toBe('out of capacity: 0.5 cpu cores free, shard web-2 needs 0.75');
      open();
      expect((await first).statusCode).toBe(200);
      expect(shards.map((s) => `${s.shardId} ${s.state}`)).toEqual(['web-0 running', 'web-1 held']);
      // Entry and held cgroup are one reservation: room for exactly one more 0.5-core shard, and no more.
      expect((await prepare('mig-2', 'web-2', 0.5)).statusCode).toBe(200);
      const third = await prepare('mig-3', 'web-3', 0.25);
      expect(third.json()).toMatchObject({ error: 'REFUSED', message: 'out of capacity: 0 cpu cores free, shard web-3 needs 0.25' });
    } finally {
      await app.close();
    }
  });
});
