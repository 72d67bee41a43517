/**
 * One journal record that does not parse or validate (hand-edited, cut short, written by a newer
 * version) must not stop the fleet. Before, every listing threw on it: recovery of every
 * migration failed (retried forever, held shards held), `shardform migrate` failed for every
 * shard, and GET /v1/migrations failed. Now listings skip it and report it, and nothing is done
 * about it or its shard: no abort, no roll forward, its key left as it is, for a human.
 */
import { MigrationError } from '../../../host-agent/migration/migration-error';
import { migrationKey } from '../../../host-agent/migration/migration-journal';
import { advance, migrationRecordProblem, planMigration, type MigrationRecord } from '../../../host-agent/migration/migration-record';
import { fakeDriver } from '../../helpers/migration-fakes';

const AT = '2026-11-29T03:00:00.000Z';

function prepared(id: string, shardId: string): MigrationRecord {
  return advance(planMigration({ id, fleet: 'f', shardId, applicationId: 'web', source: 'host-1', destination: 'host-2', timeoutSeconds: 600 }, AT), 'prepared', AT);
}

function setUp() {
  const { store, journal, effects, driver } = fakeDriver();
  /** Writes a raw value under a migration key, as an operator's editor or a newer agent would. */
  const raw = (id: string, value: string) => store.txn([], [{ kind: 'put', key: migrationKey('f', id), value }]);
  return { store, journal, effects, driver, raw };
}

describe('migration journal: a record that does not read', () => {
  it('is skipped and reported by scan(), list() and unfinished(), naming the key, the field and the value', async () => {
    const { journal, raw } = setUp();
    await journal.create(prepared('m-good', 'web-1'));
    await raw('m-cut', '{"id":"m-cut","fleet":"f","shardId":"web-2","sta');
    await raw('m-edited', JSON.stringify({ ...prepared('m-edited', 'web-3'), state: 'paused' }));

    const { unfinished, unreadable } = await journal.scan('f');
    expect(unfinished.map((e) => e.record.id)).toEqual(['m-good']);
    expect(unreadable).toEqual([
      { key: '/fleet/f/migrations/m-cut', migrationId: 'm-cut', reason: expect.stringMatching(/^not JSON/) },
      { key: '/fleet/f/migrations/m-edited', migrationId: 'm-edited', shardId: 'web-3', reason: expect.stringMatching(/^state is "paused", not one of planned, /) },
    ]);
    expect((await journal.unfinished('f')).map((e) => e.record.id)).toEqual(['m-good']);
    expect((await journal.list('f')).map((e) => e.record.id)).toEqual(['m-good']);
    expect((await journal.listAll('f')).unreadable.map((u) => u.migrationId)).toEqual(['m-cut', 'm-edited']);
  });

  it('load() of it throws UNREADABLE_RECORD with the key and the reason (not NOT_FOUND)', async () => {
    const { journal, raw } = setUp();
    await raw('m-edited', JSON.stringify({ ...prepared('m-edited', 'web-3'), history: [{ state: 'planned', at: 'yesterday' }] }));
    const thrown = await journal.load('f', 'm-edited').catch((e: unknown) => e);
    expect(thrown).toBeInstanceOf(MigrationError);
    expect(thrown).toMatchObject({ code: 'UNREADABLE_RECORD', message: '/fleet/f/migrations/m-edited: journal record unreadable: history[0].at is "yesterday", not an ISO 8601 time' });
  });

  it('recovery finishes every other migration and leaves it as it is: no effect on its shard, its key unchanged', async () => {
    const { store, journal, effects, driver, raw } = setUp();
    await journal.create(prepared('m-good', 'web-1'));
    // A newer agent's state: valid to it, unknown here. Guessing (abort = thaw the source) could run the shard twice.
    const newer = JSON.stringify({ ...prepared('m-newer', 'web-3'), state: 'mirrored' });
    await raw('m-newer', newer);
    const before = store.data.get(migrationKey('f', 'm-newer'));

    const results = await driver.recoverAll('f');
    expect(results.map((r) => [r.id, r.state])).toEqual([['m-good', 'aborted']]);
    expect(effects.calls.every((c) => c.record.id === 'm-good')).toBe(true);
    expect(effects.calls.some((c) => c.record.shardId === 'web-3')).toBe(false);
    expect(store.data.get(migrationKey('f', 'm-newer'))).toEqual(before);
  });

  it('does not stop migrations of other shards, and refuses new ones of the shard it names', async () => {
    const { store, driver, raw } = setUp();
    await raw('m-edited', JSON.stringify({ ...prepared('m-edited', 'web-3'), timeoutSeconds: 'ten' }));
    const done = await driver.migrate({ id: 'm-other', fleet: 'f', shardId: 'web-1', applicationId: 'web', source: 'host-1', destination: 'host-2' });
    expect(done.state).toBe('done');
    await expect(driver.migrate({ id: 'm-same', fleet: 'f', shardId: 'web-3', applicationId: 'web', source: 'host-1', destination: 'host-2' })).rejects.toMatchObject({
      code: 'REFUSED',
      message: 'shard web-3 is named by the unreadable journal record /fleet/f/migrations/m-edited (timeoutSeconds is "ten", not a number of seconds >= 0); fix or delete that key, then try again',
    });
    expect(store.data.has(migrationKey('f', 'm-same'))).toBe(false);
  });

  it('refuses new migrations of every shard while a record names no shard that reads (it may be any of them)', async () => {
    const { store, driver, raw } = setUp();
    // Cut short mid-write: which shard it migrates does not read, so it may be web-2's migration,
    // frozen at its source or committed to its destination; a second one could thaw the source beside the copy.
    await raw('m-cut', '{"id":"m-cut","fleet":"f","shardId":"web-2","sta');
    await expect(driver.migrate({ id: 'm-second', fleet: 'f', shardId: 'web-2', applicationId: 'web', source: 'host-1', destination: 'host-2' })).rejects.toMatchObject({
      code: 'REFUSED',
      message: expect.stringContaining('the unreadable journal record /fleet/f/migrations/m-cut (not JSON'),
    });
    expect(store.data.has(migrationKey('f', 'm-second'))).toBe(false);
  });

  it('a record under another migration\'s key is unreadable there (a copy by hand)', async () => {
    const { journal, raw } = setUp();
    await raw('m-copy', JSON.stringify(prepared('m-good', 'web-1')));
    expect((await journal.scan('f')).unreadable).toEqual([
      { key: '/fleet/f/migrations/m-copy', migrationId: 'm-copy', shardId: 'web-1', reason: 'id "m-good" of fleet "f" is not the migration its key names' },
    ]);
  });
});

describe('migrationRecordProblem', () => {
  const good = prepared('m1', 'web-0');
  it.each<[string, unknown, string]>([
    ['null', null, 'the record is null, not an object'],
    ['a missing shard', { ...good, shardId: undefined }, 'shardId is missing, not a non-empty string'],
    ['an unknown strategy', { ...good, strategy: 'teleport' }, 'strategy is "teleport", not checkpoint or restart'],
    ['no history', { ...good, history: [] }, 'history is [], not a non-empty list of states entered'],
    ['an abort without its cleanup', { ...good, state: 'aborted', abort: { reason: 'x', from: 'prepared' } }, 'abort.cleanup is missing, not pending or complete'],
    ['aborted without abort', { ...good, state: 'aborted' }, 'state is "aborted" but abort is missing (cleanup unknown)'],
    ['a negative lazy fill', { ...good, lazyPagesMs: -3 }, 'lazyPagesMs is -3, not a number of milliseconds >= 0'],
    ['a fractional byte count streamed', { ...good, streamedBytes: 1.5 }, 'streamedBytes is 1.5, not a number of bytes >= 0'],
  ])('names the field and the value: %s', (_what, value, problem) => {
    expect(migrationRecordProblem(value)).toBe(problem);
  });

  it('accepts what the driver writes', () => {
    expect(migrationRecordProblem(JSON.parse(JSON.stringify(good)))).toBeUndefined();
  });
});
