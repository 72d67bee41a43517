/**
 * The migration service tells its owner (the agent) when a migration it drove ended with an
 * error: the journal may hold it unfinished (here: an abort that could not reach the
 * destination to clean up), and only another recovery pass finishes it.
 */
import Fastify from 'fastify';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CgroupDriver } from '../../../host-agent/cgroups/driver';
import { createMigrationService } from '../../../host-agent/migration/migration-service';
import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';
import { FakeHandover } from '../../helpers/migration-destination-fakes';
import { MemoryJournalStore } from '../../helpers/migration-fakes';
import { examplePlan } from '../../helpers/plan-fixture';
import { FakeDriver } from '../fakes';

describe('migration service: a failed migration asks for recovery', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-service-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function service() {
    // host-b's agent is "down": nothing listens on that loopback port.
    const plan = examplePlan((p) => {
      p.pools[0]!.hosts = [
        { ...p.pools[0]!.hosts[0]!, id: 'host-a', address: '127.0.0.1:9' },
        { ...p.pools[0]!.hosts[0]!, id: 'host-b', address: '127.0.0.1:9' },
      ];
    });
    const driver = new FakeDriver();
    await driver.create('web-0');
    const desired: DesiredShard = { shardId: 'web-0', applicationId: 'web', limits: { cpuCores: 0.5 }, command: ['/bin/true'], env: {}, stateDirectory: dir };
    const store = new MemoryJournalStore();
    const onRecoveryNeeded = jest.fn();
    const built = createMigrationService({
      hostId: 'host-a',
      plan: () => plan,
      store,
      driver: driver as unknown as CgroupDriver,
      handover: Object.assign(new FakeHandover(), { release: async () => ({}) }) as never,
      checkpointer: { supportsPreCopy: async () => ({ ok: false, reason: 'test' }), preDump: async () => {}, dump: async () => {}, restore: async () => 1 } as never,
      describe: async () => desired,
      applicationOf: (shardId) => (shardId === 'web-0' ? 'web' : undefined),
      capacity: { capacity: () => ({ cpuCores: 2, memoryBytes: 2 ** 32 }), allocated: () => ({ cpuCores: 0, memoryBytes: 0 }) },
      token: () => 'service-test-token-0123456789',
      imagesRoot: join(dir, 'images'),
      onRecoveryNeeded,
    });
    const app = Fastify();
    for (const plugin of built.plugins) await app.register(plugin);
    return { app, onRecoveryNeeded, journal: built.journal, fleet: plan.fleet };
  }

  it('a migration whose abort cannot reach the destination is left unfinished, and recovery is asked for', async () => {
    const { app, onRecoveryNeeded, journal, fleet } = await service();
    const reply = await app.inject({ method: 'POST', url: '/v1/migrations', payload: { shardId: 'web-0', to: 'host-b' } });
    expect(reply.statusCode).toBe(500);
    expect(reply.json().message).toMatch(/ECONNREFUSED/);
    const [left] = await journal.unfinished(fleet);
    expect(left?.record).toMatchObject({ shardId: 'web-0', state: 'aborted', abort: { cleanup: 'pending' } });
    expect(onRecoveryNeeded).toHaveBeenCalledTimes(1);
    await app.close();
  });

  it('a request refused before any migration starts asks for nothing', async () => {
    const { app, onRecoveryNeeded } = await service();
    const reply = await app.inject({ method: 'POST', url: '/v1/migrations', payload: { shardId: 'web-0', to: 'host-z' } });
    expect(reply.statusCode).toBe(409);
    expect(onRecoveryNeeded).not.toHaveBeenCalled();
    await app.close();
  });
});
