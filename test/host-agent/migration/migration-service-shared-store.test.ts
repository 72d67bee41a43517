/**
 * Source and destination must share one store: the journal, and the shard's assignment that the
 * commit moves to the destination in the same transaction. The test hosts share one machine,
 * and so one embedded store file; real hosts with the default embedded store (a file on each)
 * do not, and a committed shard would then run nowhere (the destination's reconcile never sees
 * the assignment and stops the copy it adopted; the source's sees it and does not run the shard).
 * The destination refuses such a prepare, so the source aborts and runs on.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CgroupDriver } from '../../../host-agent/cgroups/driver';
import { advance, planMigration } from '../../../host-agent/migration/migration-record';
import { createMigrationService } from '../../../host-agent/migration/migration-service';
import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';
import type { Plan } from '../../../src/contracts/plan-schema';
import { FakeHandover, prepareBody } from '../../helpers/migration-destination-fakes';
import { MemoryJournalStore } from '../../helpers/migration-fakes';
import { examplePlan } from '../../helpers/plan-fixture';
import { FakeDriver } from '../fakes';

const TOKEN = 'shared-store-test-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };

describe('migration service: source and destination share one store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-shared-store-'));
  const apps: FastifyInstance[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.close()));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function agent(hostId: string, store: MemoryJournalStore, plan: () => Plan) {
    const driver = new FakeDriver();
    await driver.create('web-0');
    const desired: DesiredShard = { shardId: 'web-0', applicationId: 'web', limits: { cpuCores: 0.5 }, command: ['/bin/true'], env: {}, stateDirectory: dir };
    const handover = Object.assign(new FakeHandover(), { release: async () => ({}) });
    const built = createMigrationService({
      hostId,
      plan,
      store,
      driver: driver as unknown as CgroupDriver,
      handover: handover as never,
      checkpointer: { supportsPreCopy: async () => ({ ok: false, reason: 'test' }), preDump: async () => {}, dump: async () => {}, restore: async () => 1 } as never,
      describe: async () => desired,
      applicationOf: (shardId) => (shardId === 'web-0' ? 'web' : undefined),
      capacity: { capacity: () => ({ cpuCores: 2, memoryBytes: 2 ** 32 }), allocated: () => ({ cpuCores: 0, memoryBytes: 0 }) },
      token: () => TOKEN,
      imagesRoot: join(dir, hostId, 'images'),
    });
    const app = Fastify();
    for (const plugin of built.plugins) await app.register(plugin);
    apps.push(app);
    return { app, handover, journal: built.journal };
  }

  it('refuses a prepare its own store does not journal (each host with an embedded store of its own): the source aborts and runs on, nothing is held', async () => {
    let plan = examplePlan();
    const source = await agent('host-a', new MemoryJournalStore(), () => plan);
    const destination = await agent('host-b', new MemoryJournalStore(), () => plan);
    await destination.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (destination.app.server.address() as AddressInfo).port;
    plan = examplePlan((p) => {
      p.pools[0]!.hosts = [
        { ...p.pools[0]!.hosts[0]!, id: 'host-a', address: '127.0.0.1:9' },
        { ...p.pools[0]!.hosts[0]!, id: 'host-b', address: `127.0.0.1:${port}` },
      ];
    });

    await source.app.inject({ method: 'POST', url: '/v1/migrations', payload: { shardId: 'web-0', to: 'host-b' } });

    const [record] = (await source.journal.list(plan.fleet)).map((e) => e.record);
    expect(record).toMatchObject({ state: 'aborted', abort: { from: 'prepared', cleanup: 'complete', sourceResumed: true } });
    expect(record!.abort!.reason).toContain(`is not in fleet ${plan.fleet}'s journal in this host's store: hosts host-a and host-b do not share one store`);
    expect(destination.handover.calls.filter((c) => c.startsWith('prepareIncoming'))).toEqual([]); // no held cgroup was made there
  });

  it('prepares a migration the shared journal holds as the source wrote it, and refuses one it holds otherwise', async () => {
    const plan = examplePlan();
    const store = new MemoryJournalStore();
    const destination = await agent('host-b', store, () => plan);
    const prepared = (id: string, shardId: string) =>
      advance(planMigration({ id, fleet: plan.fleet, shardId, applicationId: 'web', source: 'host-1', destination: 'host-b' }, '2026-11-29T10:00:00.000Z'), 'prepared', '2026-11-29T10:00:01.000Z');
    const prepare = (id: string, shardId: string) => destination.app.inject({ method: 'POST', url: `/v1/migrations/${id}/prepare`, headers: AUTH, payload: prepareBody(shardId) });

    const unknown = await prepare('mig-1', 'web-0');
    expect(unknown.statusCode).toBe(409);
    expect(unknown.json()).toMatchObject({ error: 'REFUSED', message: expect.stringContaining('migration mig-1 of shard web-0 from host-1 is not in fleet') });

    await store.txn([], [{ kind: 'put', key: `/fleet/${plan.fleet}/migrations/mig-1`, value: JSON.stringify(prepared('mig-1', 'web-0')) }]);
    const ok = await prepare('mig-1', 'web-0');
    expect(ok.statusCode).toBe(200);
    expect(destination.handover.calls).toEqual(['prepareIncoming web-0']);

    await store.txn([], [{ kind: 'put', key: `/fleet/${plan.fleet}/migrations/mig-2`, value: JSON.stringify(prepared('mig-2', 'web-1')) }]);
    const other = await prepare('mig-2', 'web-9');
    expect(other.json()).toMatchObject({ error: 'REFUSED', message: 'migration mig-2 is journaled as prepared, shard web-1 from host-1 to host-b; this prepare asks for shard web-9 from host-1 to host-b' });
  });
});
