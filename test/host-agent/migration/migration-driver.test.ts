import { MigrationError } from '../../../host-agent/migration/migration-error';
import { migrationKey } from '../../../host-agent/migration/migration-journal';
import { type MigrationRecord, type NewMigration } from '../../../host-agent/migration/migration-record';
import { MIGRATION_STATES, type MigrationState } from '../../../host-agent/migration/migration-state';
import { fakeDriver, recordIn, type EffectName } from '../../helpers/migration-fakes';

const MiB = 1 << 20;
const INPUT: NewMigration = { id: 'm1', fleet: 'f', shardId: 'web-0', applicationId: 'web', source: 'host-1', destination: 'host-2', timeoutSeconds: 60 };

const setUp = fakeDriver;

const states = (record: MigrationRecord) => record.history.map((h) => h.state);

describe('migration driver', () => {
  it('runs planned → done, journaling each state before its step is taken', async () => {
    const { driver, effects, journal } = setUp();
    const record = await driver.migrate(INPUT);
    expect(states(record)).toEqual(['planned', 'prepared', 'frozen', 'dumped', 'transferred', 'restored', 'committed', 'released', 'done']);
    expect(effects.calls.map(({ effect, journaled }) => ({ effect, journaled }))).toEqual([
      { effect: 'prepare', journaled: 'prepared' },
      { effect: 'freeze', journaled: 'frozen' },
      { effect: 'dump', journaled: 'dumped' },
      { effect: 'transfer', journaled: 'transferred' },
      { effect: 'restore', journaled: 'restored' },
      { effect: 'releaseSource', journaled: 'released' },
    ]);
    expect(record).toMatchObject({ release: 'complete', finalBytes: 1000, bytesSent: 1000 });
    expect((await journal.load('f', 'm1'))?.record).toEqual(record);
    expect(effects.finishedRecords).toEqual([record]);
  });

  it("journals with the commit how long the shard ran on the destination while its memory was filled lazily, and nothing for an eager restore", async () => {
    const lazy = setUp();
    lazy.effects.lazyPagesMs = 180;
    expect((await lazy.driver.migrate(INPUT)).lazyPagesMs).toBe(180);
    expect(lazy.effects.finishedRecords[0]?.lazyPagesMs).toBe(180);
    const eager = setUp();
    eager.effects.lazyPagesMs = 0;
    expect(await eager.driver.migrate(INPUT)).not.toHaveProperty('lazyPagesMs');
  });

  it('pre-copies while the dirty set shrinks, then freezes; counts every round in the bytes sent', async () => {
    const { driver, effects } = setUp();
    effects.preCopyBytes = [64 * MiB, 10 * MiB, 2 * MiB];
    const record = await driver.migrate({ ...INPUT, preCopy: true });
    expect(states(record).slice(0, 6)).toEqual(['planned', 'prepared', 'pre-copy', 'pre-copy', 'pre-copy', 'frozen']);
    expect(record.rounds).toEqual([
      { round: 1, bytes: 64 * MiB },
      { round: 2, bytes: 10 * MiB },
      { round: 3, bytes: 2 * MiB },
    ]);
    expect(record.bytesSent).toBe(76 * MiB + 1000);
    expect(record.preCopyMethod).toBe('criu');
    expect(effects.calls.filter((c) => c.effect === 'preCopyRound').map((c) => c.journaled)).toEqual(['pre-copy', 'pre-copy', 'pre-copy']);
  });

  it('journals how pre-copy finds changed pages before the first round, so every round and the dump use the same method', async () => {
    const { driver, effects } = setUp();
    effects.preCopyOk = { ok: true, method: 'shadow' };
    effects.preCopyBytes = [64 * MiB, 1 * MiB];
    const record = await driver.migrate({ ...INPUT, preCopy: true });
    expect(record.preCopyMethod).toBe('shadow');
    expect(effects.calls.filter((c) => c.effect === 'preCopyRound').map((c) => c.record.preCopyMethod)).toEqual(['shadow', 'shadow']);
    expect(effects.calls.find((c) => c.effect === 'dump')?.record.preCopyMethod).toBe('shadow');
  });

  it('skips pre-copy with the reason when the source can find changed pages neither way', async () => {
    const { driver, effects } = setUp();
    effects.preCopyOk = { ok: false, reason: 'kernel has no dirty-page tracking (CONFIG_MEM_SOFT_DIRTY); /proc/self/pagemap is missing' };
    const record = await driver.migrate({ ...INPUT, preCopy: true });
    expect(record.state).toBe('done');
    expect(record.preCopySkipped).toBe('kernel has no dirty-page tracking (CONFIG_MEM_SOFT_DIRTY); /proc/self/pagemap is missing');
    expect(record.preCopyMethod).toBeUndefined();
    expect(effects.effects()).not.toContain('preCopyRound');
  });

  const failures: [EffectName, MigrationState][] = [
    ['prepare', 'prepared'],
    ['preCopyRound', 'pre-copy'],
    ['freeze', 'frozen'],
    ['dump', 'dumped'],
    ['transfer', 'transferred'],
  ];
  it.each(failures)('a failed %s aborts: the source resumes first, then the destination copy is destroyed', async (effect, state) => {
    const { driver, effects } = setUp();
    effects.preCopyBytes = [64 * MiB, 10 * MiB];
    effects.fail.set(effect, new Error(`${effect} broke`));
    const record = await driver.migrate({ ...INPUT, preCopy: true });
    expect(record.state).toBe('aborted');
    expect(record.abort).toEqual({ reason: `${state}: ${effect} broke`, from: state, cleanup: 'complete', sourceResumed: true });
    expect(effects.effects().slice(-2)).toEqual(['resumeSource', 'destroyDestination']);
    expect(effects.effects()).not.toContain('releaseSource');
    expect(effects.effects()).not.toContain('restore');
  });

  it('a failed restore aborts, destroying the destination copy BEFORE resuming the source', async () => {
    const { driver, effects } = setUp();
    effects.fail.set('restore', new Error('criu restore failed'));
    const record = await driver.migrate(INPUT);
    expect(record.abort).toEqual({ reason: 'restored: criu restore failed', from: 'restored', cleanup: 'complete' });
    expect(effects.effects().slice(-2)).toEqual(['destroyDestination', 'resumeSource']);
  });

  it('a destination that refuses at prepare aborts with its reason and never touches the source', async () => {
    const { driver, effects } = setUp();
    effects.fail.set('prepare', new MigrationError('REFUSED', 'host-2 has 0.5 cores free, shard web-0 needs 1'));
    const record = await driver.migrate(INPUT);
    expect(record.abort?.reason).toBe('prepared: host-2 has 0.5 cores free, shard web-0 needs 1');
    expect(effects.effects()).toEqual(['prepare', 'resumeSource', 'destroyDestination']);
  });

  it('aborts when the migration runs past its timeout before commit', async () => {
    const { driver, effects, clock } = setUp();
    effects.onCall = (effect) => {
      if (effect === 'dump') clock.advance(61_000);
    };
    const record = await driver.migrate(INPUT);
    expect(record.abort).toMatchObject({ reason: 'timed out after 60 s in state transferred', from: 'transferred' });
  });

  it('a failed release leaves the migration released; recovery finishes it', async () => {
    const { driver, effects, journal } = setUp();
    effects.fail.set('releaseSource', new Error('cgroup busy'));
    await expect(driver.migrate(INPUT)).rejects.toThrow('cgroup busy');
    const entry = await journal.load('f', 'm1');
    expect(entry?.record).toMatchObject({ state: 'released', release: 'pending' });
    effects.fail.clear();
    const record = await driver.recover(entry!);
    expect(record).toMatchObject({ state: 'done', release: 'complete' });
  });

  it('resumes the stopped source at once when the journal cannot be written before any restore; recovery aborts it later', async () => {
    const { driver, effects, store, journal } = setUp();
    const away = new MigrationError('STORE_UNAVAILABLE' as never, 'store.path: SQLite failed (SQLITE_BUSY); nothing was written');
    effects.onCall = (effect) => {
      if (effect === 'dump') store.writesFail = away; // the write of `transferred` fails
    };
    await expect(driver.migrate(INPUT)).rejects.toBe(away);
    expect(effects.effects()).toEqual(['prepare', 'freeze', 'dump', 'resumeSource']);
    const entry = await journal.load('f', 'm1');
    expect(entry?.record.state).toBe('dumped'); // nothing written: recovery decides

    store.writesFail = undefined;
    effects.onCall = undefined;
    const record = await driver.recover(entry!);
    expect(record).toMatchObject({ state: 'aborted', abort: { from: 'dumped', cleanup: 'complete' } });
    expect(effects.effects().slice(4)).toEqual(['resumeSource', 'destroyDestination']);
    expect(effects.effects()).not.toContain('restore');
  });

  it('says so when that early resume fails too: the shard stays stopped until recovery', async () => {
    const { driver, effects, store } = setUp();
    effects.onCall = (effect) => {
      if (effect === 'freeze') store.writesFail = new Error('etcd unreachable');
    };
    effects.fail.set('resumeSource', new Error('cgroup busy'));
    await expect(driver.migrate(INPUT)).rejects.toThrow('etcd unreachable; resuming the source meanwhile failed too, recovery retries: cgroup busy');
  });

  it('keeps the source stopped when the journal cannot be written once a restore was asked for (the destination may run it)', async () => {
    const { driver, effects, store, journal } = setUp();
    effects.onCall = (effect) => {
      if (effect === 'restore') store.writesFail = new Error('etcd unreachable'); // the write of `committed` fails
    };
    await expect(driver.migrate(INPUT)).rejects.toThrow('etcd unreachable');
    expect(effects.effects()).not.toContain('resumeSource');
    expect((await journal.load('f', 'm1'))?.record.state).toBe('restored');
  });

  it('does not resume a source that was never stopped when the journal cannot be written (prepared, pre-copy)', async () => {
    const { driver, effects, store } = setUp();
    effects.onCall = (effect) => {
      if (effect === 'prepare') store.writesFail = new Error('etcd unreachable'); // the write of `frozen` fails
    };
    await expect(driver.migrate(INPUT)).rejects.toThrow('etcd unreachable');
    expect(effects.effects()).toEqual(['prepare']);
  });

  it('stops without acting when another driver wrote the journal meanwhile', async () => {
    const { driver, effects, store } = setUp();
    effects.onCall = async (effect) => {
      if (effect === 'freeze') await store.clobber(migrationKey('f', 'm1'), JSON.stringify({ ...recordIn('frozen'), id: 'm1', fleet: 'f' }));
    };
    await expect(driver.migrate(INPUT)).rejects.toMatchObject({ code: 'JOURNAL_CONFLICT' });
    expect(effects.effects()).toEqual(['prepare', 'freeze']);
  });

  it('refuses a second migration of a shard while the first runs (a duplicated request), leaving the first alone', async () => {
    const { driver, effects } = setUp();
    let second: Promise<MigrationRecord> | undefined;
    effects.onCall = (effect) => {
      if (effect === 'freeze' && !second) second = driver.migrate({ ...INPUT, id: 'm2' });
    };
    const first = await driver.migrate(INPUT);
    await expect(second).rejects.toMatchObject({ code: 'REFUSED', message: 'shard web-0 is already migrating' });
    expect(first.state).toBe('done');
    // m2 never touched the source nor the destination: no second resume, no abort discarding m1's copy.
    expect(effects.calls.every((c) => c.record.id === 'm1')).toBe(true);
    expect(effects.effects()).not.toContain('resumeSource');
  });

  it('refuses a migration of a shard whose earlier migration the journal still has unfinished (cleanup pending)', async () => {
    const { driver, effects, journal, store } = setUp();
    await store.clobber(migrationKey('f', 'm0'), JSON.stringify({ ...recordIn('aborted'), id: 'm0', fleet: 'f' }));
    await expect(driver.migrate(INPUT)).rejects.toMatchObject({ code: 'REFUSED', message: expect.stringContaining('still in migration m0 (aborted, cleanup pending)') });
    expect(effects.calls).toEqual([]);
    expect(await journal.load('f', 'm1')).toBeUndefined();
    // Once it finished, the shard may move again.
    await driver.recoverAll('f');
    expect((await driver.migrate(INPUT)).state).toBe('done');
  });

  it('refuses a second migration with the same id', async () => {
    const { driver } = setUp();
    await driver.migrate(INPUT);
    await expect(driver.migrate(INPUT)).rejects.toThrow('migration m1 already exists in fleet f');
  });
});

describe('recovery from every state', () => {
  const expected: Record<MigrationState, { final: MigrationState; effects: EffectName[] }> = {
    planned: { final: 'aborted', effects: ['resumeSource'] },
    prepared: { final: 'aborted', effects: ['resumeSource', 'destroyDestination'] },
    'pre-copy': { final: 'aborted', effects: ['resumeSource', 'destroyDestination'] },
    frozen: { final: 'aborted', effects: ['resumeSource', 'destroyDestination'] },
    dumped: { final: 'aborted', effects: ['resumeSource', 'destroyDestination'] },
    transferred: { final: 'aborted', effects: ['resumeSource', 'destroyDestination'] },
    restored: { final: 'aborted', effects: ['destroyDestination', 'resumeSource'] },
    committed: { final: 'done', effects: ['releaseSource'] },
    released: { final: 'done', effects: ['releaseSource'] },
    done: { final: 'done', effects: [] },
    aborted: { final: 'aborted', effects: ['resumeSource', 'destroyDestination'] },
  };

  it.each(MIGRATION_STATES.map((s) => [s]))('recovers a migration journaled in %s so the shard runs exactly once', async (state) => {
    const { store, journal, effects, driver } = setUp();
    const record = { ...recordIn(state), id: 'm1', fleet: 'f' };
    await store.clobber(migrationKey('f', 'm1'), JSON.stringify(record));
    const unfinished = await journal.unfinished('f');
    expect(unfinished.length).toBe(state === 'done' ? 0 : 1);
    const results = await driver.recoverAll('f');
    const final = (await journal.load('f', 'm1'))!.record;
    expect(final.state).toBe(expected[state].final);
    expect(effects.effects()).toEqual(expected[state].effects);
    if (final.state === 'aborted') expect(final.abort?.cleanup).toBe('complete');
    expect(results.length).toBe(unfinished.length);
    // Once recovered, nothing is left to do.
    expect(await journal.unfinished('f')).toEqual([]);
  });

  it('retries an abort whose cleanup failed (destination unreachable) until it completes', async () => {
    const { driver, effects, journal } = setUp();
    effects.fail.set('transfer', new Error('link down'));
    effects.fail.set('destroyDestination', new Error('connect ETIMEDOUT'));
    await expect(driver.migrate(INPUT)).rejects.toThrow('connect ETIMEDOUT');
    const entry = (await journal.load('f', 'm1'))!;
    expect(entry.record.abort).toMatchObject({ from: 'transferred', cleanup: 'pending' });
    // the source already runs again: only the destination's leftovers are pending
    expect(effects.effects()).toContain('resumeSource');
    effects.fail.clear();
    expect((await driver.recover(entry)).abort?.cleanup).toBe('complete');
  });

  it('lets a shard whose last destination died for good move to another host, and never resumes it twice', async () => {
    const { driver, effects, journal } = setUp();
    effects.fail.set('transfer', new Error('link down'));
    effects.fail.set('destroyDestination', new Error('connect ETIMEDOUT'));
    await expect(driver.migrate(INPUT)).rejects.toThrow('connect ETIMEDOUT');
    expect((await journal.load('f', 'm1'))!.record.abort).toMatchObject({ cleanup: 'pending', sourceResumed: true });
    // host-2 is still owed its cleanup: another migration there could lose its copy to that retry.
    await expect(driver.migrate({ ...INPUT, id: 'm2' })).rejects.toMatchObject({ code: 'REFUSED', message: expect.stringContaining('still in migration m1') });
    effects.fail.delete('transfer');
    // To host-3 it may go; m1's retries meanwhile only ever knock on host-2.
    let retried: Promise<MigrationRecord> | undefined;
    effects.onCall = async (effect) => {
      if (effect === 'freeze' && !retried) retried = driver.recover((await journal.load('f', 'm1'))!).catch((error: Error) => ({ error }) as never);
    };
    expect((await driver.migrate({ ...INPUT, id: 'm3', destination: 'host-3' })).state).toBe('done');
    await retried;
    const m1Calls = effects.calls.filter((c) => c.record.id === 'm1').map((c) => c.effect);
    expect(m1Calls.filter((e) => e === 'resumeSource')).toHaveLength(1);
    expect(m1Calls.at(-1)).toBe('destroyDestination');
  });
});
