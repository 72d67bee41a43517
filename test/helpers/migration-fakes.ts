/** Fakes for the migration state machine's unit tests: an in-memory journal store and recording effects. */
import type { KeyValue, TxnCompare, TxnOp, TxnResult } from '../../src/store/store';
import type { MigrationEffects } from '../../host-agent/migration/migration-effects';
import { MigrationDriver } from '../../host-agent/migration/migration-driver';
import { MigrationJournal, type JournalStore } from '../../host-agent/migration/migration-journal';
import { abortRecord, advance, planMigration, type MigrationRecord, type PreCopyMethod } from '../../host-agent/migration/migration-record';
import type { MigrationState } from '../../host-agent/migration/migration-state';

/** etcd-like revisions: every write bumps one store-wide revision. */
export class MemoryJournalStore implements JournalStore {
  private revision = 0;
  readonly data = new Map<string, KeyValue>();

  async get(key: string): Promise<KeyValue | undefined> {
    return this.data.get(key);
  }

  /** In byte order, as etcd (not localeCompare, which puts `-` and `.` elsewhere). */
  async list(prefix: string): Promise<KeyValue[]> {
    return [...this.data.values()].filter((kv) => kv.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Set: every transaction fails with it, writing nothing (the store away: etcd unreachable, a lock held past its timeout). */
  writesFail?: Error;

  async txn(compares: readonly TxnCompare[], success: readonly TxnOp[], failure: readonly TxnOp[] = []): Promise<TxnResult> {
    if (this.writesFail) throw this.writesFail;
    const holds = compares.every((c) => {
      const kv = this.data.get(c.key);
      return 'modRevision' in c ? (kv?.modRevision ?? 0) === c.modRevision : kv?.value === c.value;
    });
    const ops = holds ? success : failure;
    if (ops.length > 0) this.revision += 1;
    for (const op of ops) {
      if (op.kind === 'delete') this.data.delete(op.key);
      else {
        const existing = this.data.get(op.key);
        this.data.set(op.key, { key: op.key, value: op.value, createRevision: existing?.createRevision ?? this.revision, modRevision: this.revision });
      }
    }
    return { succeeded: holds, revision: this.revision };
  }

  /** Writes behind the journal's back (another driver). */
  async clobber(key: string, value: string): Promise<void> {
    await this.txn([], [{ kind: 'put', key, value }]);
  }
}

export type EffectName = Exclude<keyof MigrationEffects, 'finished'>;

export interface EffectCall {
  readonly effect: EffectName;
  /** What the journal said when the effect was called (it must already name the step). */
  readonly journaled: MigrationState | undefined;
  /** The record the effect was given. */
  readonly record: MigrationRecord;
}

/**
 * Records every call with the journal state at that moment; `fail` makes an effect throw,
 * `preCopyBytes` are the bytes of successive pre-copy rounds, `onCall` runs before each.
 */
export class FakeEffects implements MigrationEffects {
  readonly calls: EffectCall[] = [];
  readonly finishedRecords: MigrationRecord[] = [];
  fail = new Map<EffectName, Error>();
  preCopyBytes: number[] = [];
  preCopyOk: { ok: true; method: PreCopyMethod } | { ok: false; reason: string } = { ok: true, method: 'criu' };
  /** What restore reports of a lazy fill (undefined: nothing, as the restart strategy). */
  lazyPagesMs?: number;
  onCall?: (effect: EffectName) => void | Promise<void>;

  constructor(private readonly journal: MigrationJournal) {}

  private async call(effect: EffectName, record: MigrationRecord): Promise<void> {
    const current = await this.journal.load(record.fleet, record.id);
    this.calls.push({ effect, journaled: current?.record.state, record });
    await this.onCall?.(effect);
    const error = this.fail.get(effect);
    if (error) throw error;
  }

  effects(): EffectName[] {
    return this.calls.map((c) => c.effect);
  }

  async prepare(r: MigrationRecord) {
    await this.call('prepare', r);
  }
  async preCopySupport(r: MigrationRecord) {
    await this.call('preCopySupport', r);
    return this.preCopyOk;
  }
  async preCopyRound(r: MigrationRecord, round: number) {
    await this.call('preCopyRound', r);
    return { bytes: this.preCopyBytes[round - 1] ?? 0 };
  }
  async freeze(r: MigrationRecord) {
    await this.call('freeze', r);
  }
  async dump(r: MigrationRecord) {
    await this.call('dump', r);
    return { bytes: 1000 };
  }
  async transfer(r: MigrationRecord) {
    await this.call('transfer', r);
    return { bytes: 1000 };
  }
  async restore(r: MigrationRecord) {
    await this.call('restore', r);
    return this.lazyPagesMs === undefined ? undefined : { lazyPagesMs: this.lazyPagesMs };
  }
  async releaseSource(r: MigrationRecord) {
    await this.call('releaseSource', r);
  }
  async destroyDestination(r: MigrationRecord) {
    await this.call('destroyDestination', r);
  }
  async resumeSource(r: MigrationRecord) {
    await this.call('resumeSource', r);
  }
  finished(r: MigrationRecord) {
    this.finishedRecords.push(r);
  }
}

/** A clock that moves only when told. */
export class FakeClock {
  constructor(private ms = Date.parse('2026-11-25T05:00:00.000Z')) {}
  now = (): Date => new Date(this.ms);
  advance(ms: number): void {
    this.ms += ms;
  }
}

const AT = '2026-11-25T05:00:00.000Z';

/** A record that went the shortest way to `state` (through pre-copy when asked). */
export function recordIn(state: MigrationState): MigrationRecord {
  const path: MigrationState[] = ['planned', 'prepared', 'frozen', 'dumped', 'transferred', 'restored', 'committed', 'released', 'done'];
  let record = planMigration({ id: 'm1', fleet: 'f', shardId: 'web-0', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT);
  if (state === 'pre-copy') return advance(advance(record, 'prepared', AT), 'pre-copy', AT);
  if (state === 'aborted') return abortRecord(advance(record, 'prepared', AT), 'test', AT);
  for (const next of path.slice(1, path.indexOf(state) + 1)) record = advance(record, next, AT);
  return record;
}

/** A driver over an in-memory journal, recording effects, on a clock the test moves. */
export function fakeDriver(): { store: MemoryJournalStore; journal: MigrationJournal; effects: FakeEffects; clock: FakeClock; driver: MigrationDriver } {
  const store = new MemoryJournalStore();
  const journal = new MigrationJournal(store);
  const effects = new FakeEffects(journal);
  const clock = new FakeClock();
  const driver = new MigrationDriver({ journal, effects, now: clock.now });
  return { store, journal, effects, clock, driver };
}
