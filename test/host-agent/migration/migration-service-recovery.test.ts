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
import { migrationKey } from '../../../host-agent/migration/migration-journal';
import { createMigrationService } from '../../../host-agent/migration/migration-service';
import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';
import { FakeHandover } from '../../helpers/migration-destination-fakes';
import { MemoryJournalStore } from '../../helpers/migration-fakes';
import { abortRecord, advance, planMigration } from '../../../host-agent/migration/migration-record';
import { examplePlan } from '../../helpers/plan-fixture';
import { FakeDriver } from '../fakes';

describe('migration service: a failed migration asks for recovery', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-service-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function service(notActingReason?: () => string | undefined) {
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
    /** Reads of the journal (store.get) wait for this gate when set: a recovery pass held mid-way. */
    const gate: { held?: Promise<void> } = {};
    const get = store.get.bind(store);
    store.get = async (key) => {
      await gate.held;
      return get(key);
    };
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
      ...(notActingReason ? { notActingReason } : {}),
    });
    const app = Fastify();
    for (const plugin of built.plugins) await app.register(plugin);
    return { app, onRecoveryNeeded, journal: built.journal, fleet: plan.fleet, recover: built.recover, gate, store };
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

  it('recovery reads each migration again before acting: one finished meanwhile (by another pass) is not replayed', async () => {
    const { journal, fleet, recover, gate } = await service();
    const aborted = (id: string, shardId: string) =>
      abortRecord(advance(planMigration({ id, fleet, shardId, applicationId: 'web', source: 'host-a', destination: 'host-b' }, '2026-11-28T01:00:00.000Z'), 'prepared', '2026-11-28T01:00:01.000Z'), 'prepared: boom', '2026-11-28T01:00:02.000Z');
    await journal.create(aborted('m-a', 'web-1'));
    const cEntry = await journal.create(aborted('m-c', 'web-2'));
    let open!: () => void;
    gate.held = new Promise<void>((resolve) => (open = resolve));
    const pass = recover(); // lists both, then waits reading m-a
    await new Promise((r) => setImmediate(r));
    // Meanwhile m-c is finished elsewhere (another pass): its cleanup is complete.
    await journal.save(cEntry, { ...cEntry.record, abort: { ...cEntry.record.abort!, cleanup: 'complete' } });
    open();
    const report = await pass;
    expect(report.failed.map((f) => f.id)).toEqual(['m-a']); // host-b unreachable: retried later
    expect([...report.recovered, ...report.failed].map((r) => r.id)).not.toContain('m-c');
  });

  it('a recovery pass moves migrations an older version left finished among those in flight to the history', async () => {
    const { journal, fleet, recover, store } = await service();
    const aborted = abortRecord(advance(planMigration({ id: 'm-old', fleet, shardId: 'web-1', applicationId: 'web', source: 'host-b', destination: 'host-a' }, '2026-11-28T01:00:00.000Z'), 'prepared', '2026-11-28T01:00:01.000Z'), 'prepared: boom', '2026-11-28T01:00:02.000Z');
    await store.clobber(migrationKey(fleet, 'm-old'), JSON.stringify({ ...aborted, abort: { ...aborted.abort!, cleanup: 'complete' } }));
    expect(await recover()).toEqual({ recovered: [], failed: [], unreadable: [] });
    expect(await store.list(migrationKey(fleet, ''))).toEqual([]);
    expect((await journal.load(fleet, 'm-old'))?.record.abort?.cleanup).toBe('complete');
  });

  it('a recovery pass reports an unreadable record, leaves it and its shard alone, and recovers the others', async () => {
    const { journal, fleet, recover, store } = await service();
    const finishedElsewhere = abortRecord(advance(planMigration({ id: 'm-ok', fleet, shardId: 'web-1', applicationId: 'web', source: 'host-b', destination: 'host-a' }, '2026-11-28T01:00:00.000Z'), 'prepared', '2026-11-28T01:00:01.000Z'), 'prepared: boom', '2026-11-28T01:00:02.000Z');
    await store.clobber(migrationKey(fleet, 'm-ok'), JSON.stringify({ ...finishedElsewhere, abort: { ...finishedElsewhere.abort!, cleanup: 'complete' } }));
    await store.clobber(migrationKey(fleet, 'm-bad'), '{"id":"m-bad","shardId":"web-0",');
    const report = await recover();
    expect(report).toEqual({ recovered: [], failed: [], unreadable: [{ key: migrationKey(fleet, 'm-bad'), migrationId: 'm-bad', reason: expect.stringMatching(/^not JSON/) }] });
    expect((await store.list(migrationKey(fleet, ''))).map((kv) => [kv.key, kv.value])).toEqual([[migrationKey(fleet, 'm-bad'), '{"id":"m-bad","shardId":"web-0",']]);
    expect((await journal.load(fleet, 'm-ok'))?.record.abort?.cleanup).toBe('complete');
  });

  it('answers a bad body as every route does: 400 INVALID_REQUEST naming body.<field> and the value, nothing started', async () => {
    const { app, onRecoveryNeeded } = await service();
    const reply = await app.inject({ method: 'POST', url: '/v1/migrations', payload: { shardId: 'web-0', to: 'host-b', timeoutSeconds: 0 } });
    expect(reply.statusCode).toBe(400);
    expect(reply.json()).toEqual({
      statusCode: 400,
      error: 'INVALID_REQUEST',
      message: expect.stringMatching(/^invalid body: body\.timeoutSeconds must be >= 1 \(got 0\)/),
      errors: [expect.objectContaining({ field: 'body.timeoutSeconds', value: 0 })],
    });
    expect(onRecoveryNeeded).not.toHaveBeenCalled();
    await app.close();
  });

  it('a request refused before any migration starts asks for nothing', async () => {
    const { app, onRecoveryNeeded, journal, fleet } = await service();
    const reply = await app.inject({ method: 'POST', url: '/v1/migrations', payload: { shardId: 'web-0', to: 'host-z' } });
    expect(reply.statusCode).toBe(409);
    // Refused by the driver too: the shard is still in another migration.
    await journal.create(planMigration({ id: 'm-busy', fleet, shardId: 'web-0', applicationId: 'web', source: 'host-a', destination: 'host-b' }, '2026-11-28T01:00:00.000Z'));
    const busy = await app.inject({ method: 'POST', url: '/v1/migrations', payload: { shardId: 'web-0', to: 'host-b' } });
    expect(busy.statusCode).toBe(409);
    expect(busy.json().message).toMatch(/m-busy/);
    expect(onRecoveryNeeded).not.toHaveBeenCalled();
    await app.close();
  });

  it('a migration asked for while the agent does not hold its host claim is refused before anything is journaled', async () => {
    let notActing: string | undefined = 'the agent of host host-a does not hold its host claim now';
    const { app, onRecoveryNeeded, journal, fleet } = await service(() => notActing);
    const reply = await app.inject({ method: 'POST', url: '/v1/migrations', payload: { shardId: 'web-0', to: 'host-b' } });
    expect(reply.statusCode).toBe(409);
    expect(reply.json()).toMatchObject({ error: 'REFUSED', message: 'the agent of host host-a does not hold its host claim now' });
    expect(await journal.list(fleet)).toEqual([]);
    expect(onRecoveryNeeded).not.toHaveBeenCalled();
    // Held again: the same request gets as far as the destination (down here), so it is journaled.
    notActing = undefined;
    const next = await app.inject({ method: 'POST', url: '/v1/migrations', payload: { shardId: 'web-0', to: 'host-b' } });
    expect(next.statusCode).toBe(500);
    expect(await journal.list(fleet)).toHaveLength(1);
    await app.close();
  });
});
