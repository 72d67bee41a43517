/**
 * The journal keeps only migrations in flight under the active prefix, which every migration
 * and every recovery pass lists: a finished one moves to a bounded history in the write that
 * finishes it. Before, a fleet's every migration stayed there, and on etcd a listing past
 * grpc-js's 4 MiB response limit failed every migration and every recovery pass.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../../src/store/embedded-store';
import type { KeyValue, TxnCompare, TxnOp } from '../../../src/store/store';
import { MigrationDriver } from '../../../host-agent/migration/migration-driver';
import { HISTORY_LIMIT, MOVES_PER_LISTING, MigrationJournal, historyIdKey, historyKey, migrationKey } from '../../../host-agent/migration/migration-journal';
import { abortRecord, advance, planMigration, type MigrationRecord, type NewMigration } from '../../../host-agent/migration/migration-record';
import type { MigrationState } from '../../../host-agent/migration/migration-state';
import { FakeClock, FakeEffects, MemoryJournalStore, recordIn } from '../../helpers/migration-fakes';

const MiB = 1 << 20;
const INPUT: NewMigration = { id: 'm1', fleet: 'f', shardId: 'web-0', applicationId: 'web', source: 'host-1', destination: 'host-2', timeoutSeconds: 60 };
const T0 = Date.parse('2026-11-25T05:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
const ACTIVE = '/fleet/f/migrations/';

/** The store with every txn and every listing recorded (keys returned, by prefix). */
class RecordingStore extends MemoryJournalStore {
  readonly txns: { compares: readonly TxnCompare[]; success: readonly TxnOp[] }[] = [];
  readonly listed = new Map<string, number>();
  /** Set: a listing of this prefix fails (once). */
  failList?: string;

  override async txn(compares: readonly TxnCompare[], success: readonly TxnOp[], failure: readonly TxnOp[] = []) {
    this.txns.push({ compares, success });
    return super.txn(compares, success, failure);
  }

  override async list(prefix: string): Promise<KeyValue[]> {
    if (prefix === this.failList) {
      this.failList = undefined;
      throw new Error('etcd unreachable');
    }
    const kvs = await super.list(prefix);
    this.listed.set(prefix, (this.listed.get(prefix) ?? 0) + kvs.length);
    return kvs;
  }

  keys(prefix: string): string[] {
    return [...this.data.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
}

function setUp(historyLimit?: number) {
  const store = new RecordingStore();
  const journal = new MigrationJournal(store, historyLimit === undefined ? {} : { historyLimit });
  const effects = new FakeEffects(journal);
  const clock = new FakeClock();
  const driver = new MigrationDriver({ journal, effects, now: clock.now });
  return { store, journal, effects, clock, driver };
}

function planned(id: string, fleet = 'f'): MigrationRecord {
  return planMigration({ ...INPUT, id, fleet, shardId: `web-${id}` }, at(0));
}

/** `record` walked to `done`, every state entered at `seconds`. */
function doneAt(record: MigrationRecord, seconds: number): MigrationRecord {
  const path: MigrationState[] = ['prepared', 'frozen', 'dumped', 'transferred', 'restored', 'committed', 'released', 'done'];
  return path.reduce((r, state) => advance(r, state, at(seconds), state === 'done' ? { release: 'complete' } : {}), record);
}

function abortedAt(record: MigrationRecord, seconds: number, cleanup: 'pending' | 'complete'): MigrationRecord {
  const aborted = abortRecord(advance(record, 'prepared', at(seconds)), 'prepared: boom', at(seconds));
  return { ...aborted, abort: { ...aborted.abort!, cleanup } };
}

/** Journals a migration and finishes it (done) at `seconds`, as the driver's last write does. */
async function finish(journal: MigrationJournal, id: string, seconds: number, fleet = 'f'): Promise<void> {
  const entry = await journal.create(planned(id, fleet));
  await journal.save(entry, doneAt(entry.record, seconds));
}

describe('migration journal: finished migrations leave the active prefix', () => {
  it('moves a migration to the history in the write that finishes it (one compare-and-swap), still returning its record', async () => {
    const { store, journal, driver } = setUp();
    const record = await driver.migrate(INPUT);
    expect(record.state).toBe('done');
    expect(store.keys(ACTIVE)).toEqual([]);
    expect(store.keys('/fleet/f/migration-history/')).toEqual([historyKey(record)]);
    expect(historyKey(record)).toBe(`/fleet/f/migration-history/${record.history.at(-1)!.at}-m1`);
    // One transaction: compare on the active key, delete it, put the record and its id index.
    const last = store.txns.find((t) => t.success.some((op) => op.key === historyKey(record)))!;
    expect(last.compares).toEqual([{ key: migrationKey('f', 'm1'), modRevision: expect.any(Number) }]);
    expect(last.success.map((op) => [op.kind, op.key])).toEqual([
      ['delete', migrationKey('f', 'm1')],
      ['put', historyKey(record)],
      ['put', historyIdKey('f', 'm1')],
    ]);
    const loaded = (await journal.load('f', 'm1'))!;
    expect(loaded.record).toEqual(record);
    expect(loaded.modRevision).toBe(store.data.get(historyKey(record))!.modRevision);
  });

  it('moves an abort once its cleanup is complete, not while it is pending', async () => {
    const { store, journal, effects, driver } = setUp();
    effects.fail.set('transfer', new Error('link down'));
    effects.fail.set('destroyDestination', new Error('connect ETIMEDOUT'));
    await expect(driver.migrate(INPUT)).rejects.toThrow('connect ETIMEDOUT');
    expect(store.keys(ACTIVE)).toEqual([migrationKey('f', 'm1')]);
    expect((await journal.unfinished('f')).map((e) => e.record.abort?.cleanup)).toEqual(['pending']);
    effects.fail.clear();
    const recovered = await driver.recover((await journal.load('f', 'm1'))!);
    expect(recovered.abort?.cleanup).toBe('complete');
    expect(store.keys(ACTIVE)).toEqual([]);
    expect(store.keys('/fleet/f/migration-history/')).toEqual([historyKey(recovered)]);
    expect(effects.finishedRecords).toEqual([recovered]);
  });

  it('stops a stale driver at the final write with JOURNAL_CONFLICT, moving nothing', async () => {
    const { store, journal, effects, driver } = setUp();
    const theirs = { ...recordIn('released'), id: 'm1', fleet: 'f', source: 'host-9' };
    effects.onCall = async (effect) => {
      if (effect === 'releaseSource') await store.clobber(migrationKey('f', 'm1'), JSON.stringify(theirs));
    };
    await expect(driver.migrate(INPUT)).rejects.toMatchObject({ code: 'JOURNAL_CONFLICT', message: expect.stringContaining('not writing done') });
    expect(store.keys('/fleet/f/migration-history')).toEqual([]);
    expect((await journal.load('f', 'm1'))!.record).toEqual(theirs);
    expect(effects.finishedRecords).toEqual([]);
  });

  it('stops a stale driver whose migration another one finished meanwhile, and the history holds it once', async () => {
    const { store, journal, effects, driver } = setUp();
    effects.fail.set('releaseSource', new Error('cgroup busy'));
    await expect(driver.migrate(INPUT)).rejects.toThrow('cgroup busy');
    const stale = (await journal.load('f', 'm1'))!;
    expect(stale.record.state).toBe('released');
    effects.fail.clear();
    expect((await driver.recover(stale)).state).toBe('done');
    await expect(driver.recover(stale)).rejects.toMatchObject({ code: 'JOURNAL_CONFLICT' });
    expect(store.keys('/fleet/f/migration-history/')).toHaveLength(1);
    expect(store.keys(ACTIVE)).toEqual([]);
  });

  it('unfinished() lists the active prefix only; list() and load() still find finished migrations', async () => {
    const { store, journal } = setUp();
    await finish(journal, 'm-done', 10);
    const inFlight = await journal.create(planned('m-flying'));
    store.listed.clear();
    expect((await journal.unfinished('f')).map((e) => e.record.id)).toEqual(['m-flying']);
    expect([...store.listed.keys()]).toEqual([ACTIVE]);
    expect((await journal.list('f')).map((e) => [e.record.id, e.record.state])).toEqual([
      ['m-flying', 'planned'],
      ['m-done', 'done'],
    ]);
    expect((await journal.load('f', 'm-done'))?.record.state).toBe('done');
    expect(await journal.load('f', 'm-flying')).toEqual(inFlight);
    expect(await journal.load('f', 'm-never')).toBeUndefined();
  });

  it('refuses a new migration with the id of a finished one it still keeps', async () => {
    const { journal } = setUp();
    await finish(journal, 'm1', 10);
    await expect(journal.create(planned('m1'))).rejects.toMatchObject({ code: 'JOURNAL_CONFLICT', message: 'migration m1 already exists in fleet f' });
  });

  it('keeps each fleet to itself', async () => {
    const { journal } = setUp(2);
    for (let i = 0; i < 3; i += 1) await finish(journal, `a${i}`, i, 'fleet-a');
    await finish(journal, 'b0', 0, 'fleet-b');
    expect((await journal.list('fleet-a')).map((e) => e.record.id)).toEqual(['a1', 'a2']);
    expect((await journal.list('fleet-b')).map((e) => e.record.id)).toEqual(['b0']);
  });
});

describe('migration journal: the history is bounded', () => {
  it('keeps the newest finished migrations, pruning the oldest by finish time (not by when they were written)', async () => {
    const { store, journal } = setUp(5);
    const finishedAt = [70, 10, 40, 80, 20, 60, 30, 50];
    for (const [i, seconds] of finishedAt.entries()) await finish(journal, `m${i}`, seconds);
    const kept = (await journal.list('f')).map((e) => e.record.id);
    // Newest five by finish time: 40 (m2), 50 (m7), 60 (m5), 70 (m0), 80 (m3), oldest first.
    expect(kept).toEqual(['m2', 'm7', 'm5', 'm0', 'm3']);
    expect(store.keys('/fleet/f/migration-history-ids/')).toEqual(['m0', 'm2', 'm3', 'm5', 'm7'].map((id) => historyIdKey('f', id)));
    expect(await journal.load('f', 'm1')).toBeUndefined();
  });

  it('never prunes a migration in flight, even one an index entry points at', async () => {
    const { store, journal } = setUp(2);
    const flying = await journal.create(planned('m-flying'));
    const pending = await journal.create(abortedAt(planned('m-pending'), 1, 'pending'));
    // A corrupt index entry naming an active key: pruning only deletes under the history prefixes.
    await store.clobber(historyIdKey('f', 'm-bogus'), migrationKey('f', 'm-flying'));
    for (let i = 0; i < 6; i += 1) await finish(journal, `m${i}`, 10 + i);
    expect(await journal.load('f', 'm-flying')).toEqual(flying);
    expect(await journal.load('f', 'm-pending')).toEqual(pending);
    expect((await journal.unfinished('f')).map((e) => e.record.id)).toEqual(['m-flying', 'm-pending']);
    expect((await journal.list('f')).map((e) => e.record.id)).toEqual(['m-flying', 'm-pending', 'm4', 'm5']);
  });

  it('deletes an index entry only if unchanged since the prune read it (a newer migration of the id keeps its entry)', async () => {
    const { store, journal } = setUp(2);
    for (const [i, seconds] of [10, 20, 30].entries()) await finish(journal, `m${i}`, seconds);
    const prune = store.txns.filter((t) => t.success.some((op) => op.kind === 'delete' && op.key === historyIdKey('f', 'm0')));
    expect(prune).toHaveLength(1);
    expect(prune[0]!.compares).toEqual([{ key: historyIdKey('f', 'm0'), modRevision: expect.any(Number) }]);
  });

  it('list() shows a migration that finishes between its two reads once, from the history', async () => {
    const { store, journal } = setUp();
    const entry = await journal.create(planned('m1'));
    const list = store.list.bind(store);
    let moved = false;
    store.list = async (prefix: string) => {
      const kvs = await list(prefix);
      // The active prefix was read; the migration finishes before the history is read.
      if (prefix === ACTIVE && !moved) {
        moved = true;
        await journal.save(entry, doneAt(entry.record, 5));
      }
      return kvs;
    };
    expect((await journal.list('f')).map((e) => [e.record.id, e.record.state])).toEqual([['m1', 'done']]);
  });

  it('a prune that fails does not fail the migration; the next finish prunes', async () => {
    const { store, journal, driver } = setUp(1);
    await finish(journal, 'm0', -10);
    store.failList = '/fleet/f/migration-history-ids/';
    expect((await driver.migrate(INPUT)).state).toBe('done');
    expect(store.keys('/fleet/f/migration-history/')).toHaveLength(2);
    await finish(journal, 'm2', 3600);
    expect((await journal.list('f')).map((e) => e.record.id)).toEqual(['m2']);
  });

  it(`after 3000 finished migrations unfinished() lists no key, and the history holds ${HISTORY_LIMIT} well under 4 MiB`, async () => {
    const { store, journal } = setUp();
    for (let i = 0; i < 3000; i += 1) await finish(journal, `web-${i}-mhxa5b${String(i).padStart(4, '0')}`, i);
    store.listed.clear();
    expect(await journal.unfinished('f')).toEqual([]);
    expect(store.listed.get(ACTIVE)).toBe(0);
    const history = await store.list('/fleet/f/migration-history/');
    expect(history).toHaveLength(HISTORY_LIMIT);
    expect(history[0]!.key).toContain(`web-2000-`); // the oldest 2000 went
    const bytes = history.reduce((sum, kv) => sum + kv.key.length + kv.value.length, 0);
    expect(bytes).toBeLessThan(MiB);
  });

  it(`${HISTORY_LIMIT} of the largest records a driver writes list in under 3 MiB, below etcd's 4 MiB response limit`, async () => {
    const { journal, effects, clock, driver } = setUp();
    effects.onCall = () => clock.advance(137);
    // Five pre-copy rounds (the policy's most) and an abort reason as long as the destination is sent.
    effects.preCopyBytes = [1000 * MiB, 500 * MiB, 250 * MiB, 125 * MiB, 62 * MiB];
    const done = await driver.migrate({ ...INPUT, id: 'web-0-mhxa5b00', fleet: 'prod-eu-1', preCopy: true });
    effects.fail.set('transfer', new Error('x'.repeat(1000)));
    const aborted = await driver.migrate({ ...INPUT, id: 'web-0-mhxa5b01', fleet: 'prod-eu-1', preCopy: true });
    expect([done.rounds.length, aborted.state]).toEqual([5, 'aborted']);
    const largest = Math.max(...(await journal.list('prod-eu-1')).map((e) => historyKey(e.record).length + JSON.stringify(e.record).length));
    // Key and value, measured: 2.2 KB the abort, 1.3 KB a `done` with five rounds.
    expect(largest * HISTORY_LIMIT).toBeLessThan(3 * MiB);
  });
});

describe('migration journal: finished records older versions left under the active prefix', () => {
  async function oldLayout(store: MemoryJournalStore, count: number): Promise<void> {
    for (let i = 0; i < count; i += 1) {
      const id = `old-${String(i).padStart(3, '0')}`;
      const record = i % 2 === 0 ? doneAt(planned(id), i) : abortedAt(planned(id), i, 'complete');
      await store.clobber(migrationKey('f', id), JSON.stringify(record));
    }
  }

  it(`are moved to the history by unfinished(), ${MOVES_PER_LISTING} per call, and stay findable`, async () => {
    const { store, journal } = setUp();
    await oldLayout(store, 120);
    await journal.create(abortedAt(planned('new-pending'), 500, 'pending'));
    expect((await journal.unfinished('f')).map((e) => e.record.id)).toEqual(['new-pending']);
    expect(store.keys(ACTIVE)).toHaveLength(121 - MOVES_PER_LISTING);
    await journal.unfinished('f');
    await journal.unfinished('f');
    expect(store.keys(ACTIVE)).toEqual([migrationKey('f', 'new-pending')]);
    expect(await journal.list('f')).toHaveLength(121);
    expect((await journal.load('f', 'old-007'))?.record).toMatchObject({ state: 'aborted', abort: { cleanup: 'complete' } });
  });

  it('are pruned with the rest once moved', async () => {
    const { store, journal } = setUp(10);
    await oldLayout(store, 30);
    await journal.unfinished('f');
    expect(store.keys(ACTIVE)).toEqual([]);
    expect((await journal.list('f')).map((e) => e.record.id)).toEqual(Array.from({ length: 10 }, (_, i) => `old-0${20 + i}`));
  });

  it('one that cannot be moved (a key the store refuses) does not hold back the ones after it', async () => {
    const { store, journal } = setUp();
    await oldLayout(store, 6);
    const txn = store.txn.bind(store);
    store.txn = async (compares, success, failure) => {
      if (success.some((op) => op.key === historyIdKey('f', 'old-000'))) throw Object.assign(new Error('key refused'), { code: 'INVALID_KEY' });
      return txn(compares, success, failure);
    };
    await journal.unfinished('f');
    expect(store.keys(ACTIVE)).toEqual([migrationKey('f', 'old-000')]);
  });

  it('stay where they are when the store cannot be written, and unfinished() still answers', async () => {
    const { store, journal } = setUp();
    await oldLayout(store, 3);
    await journal.create(planned('new-flying'));
    store.writesFail = new Error('etcd unreachable');
    expect((await journal.unfinished('f')).map((e) => e.record.id)).toEqual(['new-flying']);
    expect(store.keys(ACTIVE)).toHaveLength(4);
  });
});

describe('migration journal on the embedded store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sf-journal-'));
  const store = new EmbeddedStore({ path: join(dir, 'store.db') });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('its history keys and moves pass the real store’s key grammar and transaction checks', async () => {
    const journal = new MigrationJournal(store, { historyLimit: 1 });
    const effects = new FakeEffects(journal);
    const driver = new MigrationDriver({ journal, effects, now: new FakeClock().now });
    await store.put(migrationKey('f', 'old-1'), JSON.stringify(doneAt(planned('old-1'), -10)));
    expect((await driver.migrate(INPUT)).state).toBe('done');
    expect(await journal.unfinished('f')).toEqual([]);
    expect((await store.list(ACTIVE)).length).toBe(0);
    // m1 finished at the fake clock's 05:00:00, after old-1 (04:59:50): old-1 was pruned.
    expect((await journal.list('f')).map((e) => e.record.id)).toEqual(['m1']);
    // An older one finishing (a late abort cleanup) is kept by its own write, one over the limit,
    // and is the first to go at the next finish.
    await finish(journal, 'm0', -20);
    expect((await journal.list('f')).map((e) => e.record.id)).toEqual(['m0', 'm1']);
    expect((await journal.load('f', 'm1'))?.record.state).toBe('done');
    await finish(journal, 'm2', 10);
    expect((await journal.list('f')).map((e) => e.record.id)).toEqual(['m2']);
  });
});
