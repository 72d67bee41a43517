/**
 * The migration journal in the store. A migration in flight has one key,
 * `/fleet/<fleet>/migrations/<id>`, written only by compare-and-swap on the key's modRevision,
 * so two drivers can never both advance one migration (the loser gets JOURNAL_CONFLICT and
 * stops before acting). The write that finishes it (done, or aborted with its cleanup
 * complete) moves it, in the same transaction, to the fleet's history:
 *
 *   /fleet/<fleet>/migration-history/<finished at>-<id>   the record, so sorted by finish time
 *   /fleet/<fleet>/migration-history-ids/<id>             its history key, to find it by id
 *
 * So the active prefix, which every migration and every recovery pass lists, holds only what
 * is in flight; the history keeps the newest HISTORY_LIMIT finished migrations.
 */
import type { KeyValue, Store, TxnOp } from '../../src/store/store';
import { MigrationError } from './migration-error';
import { migrationRecordProblem, recoveryAction, type MigrationRecord } from './migration-record';

/** The part of the Store the journal needs (so fakes stay small). */
export type JournalStore = Pick<Store, 'get' | 'txn' | 'list'>;

export interface JournalEntry {
  readonly record: MigrationRecord;
  /**
   * The key's modRevision after this record was written: the CAS token of the next write. A
   * finished record is never written again (its active key is gone, so a save fails the CAS).
   */
  readonly modRevision: number;
}

/**
 * Finished migrations kept per fleet. A record is about 1 KB (measured 2026-11-28 with the
 * driver: done 0.76 KB, 1.2 KB with five pre-copy rounds; aborted 0.9-1 KB, 2.1 KB with a
 * 1000-character reason), so listing the whole history takes 1-2 MiB, under the 4 MiB grpc-js
 * accepts in one etcd response by default.
 */
export const HISTORY_LIMIT = 1000;

/** Finished records older versions left under the active prefix moved per `unfinished()` call (a txn each). */
export const MOVES_PER_LISTING = 50;

/** etcd refuses a txn of more than 128 operations by default (`--max-txn-ops`); a pruned record is two. */
const PRUNED_PER_TXN = 50;

export function migrationKey(fleet: string, id: string): string {
  return `/fleet/${fleet}/migrations/${id}`;
}

/** Where a finished record lives: sorted by when it finished, so the oldest come first. */
export function historyKey(record: MigrationRecord): string {
  return `${historyPrefix(record.fleet)}${finishedAt(record)}-${record.id}`;
}

/** The history key of migration `id` (its value), so `load` finds a finished migration by id. */
export function historyIdKey(fleet: string, id: string): string {
  return `/fleet/${fleet}/migration-history-ids/${id}`;
}

function historyPrefix(fleet: string): string {
  return `/fleet/${fleet}/migration-history/`;
}

/**
 * When the record entered its final state (for an abort: when it was aborted, its cleanup may
 * have completed later), as fixed-width UTC ISO 8601 (sorts as it reads).
 */
function finishedAt(record: MigrationRecord): string {
  const last = Array.isArray(record.history) ? record.history.at(-1)?.at : undefined;
  const ms = Date.parse(typeof last === 'string' ? last : '');
  // Unreadable, or outside the years ISO 8601 writes in four digits: sort first (pruned first)
  // rather than fail the write that finishes the migration, or the move of an old record.
  const valid = !Number.isNaN(ms) && ms >= 0 && ms < Date.UTC(10000, 0, 1);
  return new Date(valid ? ms : 0).toISOString();
}

export function isFinished(record: MigrationRecord): boolean {
  return recoveryAction(record).kind === 'nothing';
}

/**
 * A record under a journal prefix that does not parse or validate (an operator's hand edit, a
 * write cut short, a newer agent's format). Listings skip it and report it: one bad record
 * must not stop the recovery, the migrations and the listings of every other shard. Nothing is
 * done about it — neither aborted nor rolled forward, its shard neither resumed nor killed,
 * its key left where it is (a newer agent may be driving it) — until a human fixes or deletes it.
 */
export interface UnreadableRecord {
  readonly key: string;
  /** The migration id the key names. */
  readonly migrationId: string;
  /** The shard the record names, when that much of it reads: new migrations of it are refused meanwhile. */
  readonly shardId?: string;
  readonly reason: string;
}

type Read = { readonly entry: JournalEntry } | { readonly unreadable: UnreadableRecord };

function read(kv: KeyValue): Read {
  const migrationId = kv.key.slice(kv.key.lastIndexOf('/') + 1);
  let value: unknown;
  try {
    value = JSON.parse(kv.value);
  } catch (error) {
    return { unreadable: { key: kv.key, migrationId, reason: `not JSON (${(error as Error).message})` } };
  }
  const named = (value as { shardId?: unknown } | null)?.shardId;
  const shardId = typeof named === 'string' && named !== '' ? { shardId: named } : {};
  let reason = migrationRecordProblem(value);
  const record = value as MigrationRecord;
  // The key names the migration: a record that names another one is not this key's (copied by hand?).
  if (!reason && kv.key !== migrationKey(record.fleet, record.id) && !(kv.key.startsWith(historyPrefix(record.fleet)) && kv.key.endsWith(`-${record.id}`))) reason = `id ${JSON.stringify(record.id)} of fleet ${JSON.stringify(record.fleet)} is not the migration its key names`;
  if (reason) return { unreadable: { key: kv.key, migrationId, ...shardId, reason } };
  return { entry: { record, modRevision: kv.modRevision } };
}

/** One record read by key: UNREADABLE_RECORD (naming the key and why) when it does not parse or validate. */
function entry(kv: KeyValue): JournalEntry {
  const r = read(kv);
  if ('unreadable' in r) throw new MigrationError('UNREADABLE_RECORD', `${r.unreadable.key}: journal record unreadable: ${r.unreadable.reason}`);
  return r.entry;
}

/** The records of a listing that read, and those that do not. */
function readAll(kvs: readonly KeyValue[]): { entries: JournalEntry[]; unreadable: UnreadableRecord[] } {
  const entries: JournalEntry[] = [];
  const unreadable: UnreadableRecord[] = [];
  for (const kv of kvs) {
    const r = read(kv);
    if ('entry' in r) entries.push(r.entry);
    else unreadable.push(r.unreadable);
  }
  return { entries, unreadable };
}

export interface MigrationJournalOptions {
  /** Finished migrations kept per fleet. @default HISTORY_LIMIT */
  readonly historyLimit?: number;
}

export class MigrationJournal {
  private readonly historyLimit: number;

  constructor(private readonly store: JournalStore, opts: MigrationJournalOptions = {}) {
    this.historyLimit = opts.historyLimit ?? HISTORY_LIMIT;
  }

  /** Records a new migration; JOURNAL_CONFLICT when the id is taken (in flight, or finished and kept). */
  async create(record: MigrationRecord): Promise<JournalEntry> {
    const key = migrationKey(record.fleet, record.id);
    const result = await this.store.txn(
      [
        { key, modRevision: 0 },
        { key: historyIdKey(record.fleet, record.id), modRevision: 0 },
      ],
      [{ kind: 'put', key, value: JSON.stringify(record) }],
    );
    if (!result.succeeded) throw new MigrationError('JOURNAL_CONFLICT', `migration ${record.id} already exists in fleet ${record.fleet}`);
    return { record, modRevision: result.revision };
  }

  /**
   * Replaces `previous` with `record` if nobody wrote the key since `previous` was read.
   * `alongside` are written in the same transaction (the commit moves the shard's assignment
   * with the journal record: both or neither). A finished `record` leaves the active prefix for
   * the history in that transaction; the history is then pruned to its limit.
   */
  async save(previous: JournalEntry, record: MigrationRecord, alongside: readonly TxnOp[] = []): Promise<JournalEntry> {
    const key = migrationKey(record.fleet, record.id);
    const finished = isFinished(record);
    const writes: TxnOp[] = finished ? moveToHistory(record) : [{ kind: 'put', key, value: JSON.stringify(record) }];
    const result = await this.store.txn([{ key, modRevision: previous.modRevision }], [...writes, ...alongside]);
    if (!result.succeeded) {
      throw new MigrationError('JOURNAL_CONFLICT', `migration ${record.id}: the journal changed since revision ${previous.modRevision}; not writing ${record.state}`);
    }
    // Never the record just finished: its answer and a lookup right after must still find it
    // (an abort whose cleanup completed late is filed under its abort time, among the oldest).
    if (finished) await this.pruneQuietly(record.fleet, record.id);
    return { record, modRevision: result.revision };
  }

  /** The migration in flight, or else the finished one in the history (while it is kept). */
  async load(fleet: string, id: string): Promise<JournalEntry | undefined> {
    const key = migrationKey(fleet, id);
    const active = await this.store.get(key);
    if (active) return entry(active);
    const index = await this.store.get(historyIdKey(fleet, id));
    if (!index || !index.value.startsWith(historyPrefix(fleet))) return undefined;
    const finished = await this.store.get(index.value);
    return finished && entry(finished);
  }

  /**
   * Every migration kept: in flight (in id order), then the history (oldest first). Two reads:
   * the active prefix first, so one that finishes in between is read twice (in flight, then
   * moved) rather than missed, and its history copy is the one kept.
   */
  async list(fleet: string): Promise<JournalEntry[]> {
    return (await this.listAll(fleet)).entries;
  }

  /** `list()`, and the records it skipped because they do not read (UnreadableRecord). */
  async listAll(fleet: string): Promise<{ entries: JournalEntry[]; unreadable: UnreadableRecord[] }> {
    const active = readAll(await this.store.list(migrationKey(fleet, '')));
    const finished = readAll(await this.store.list(historyPrefix(fleet)));
    const moved = new Set(finished.entries.map((e) => e.record.id));
    return { entries: [...active.entries.filter((e) => !moved.has(e.record.id)), ...finished.entries], unreadable: [...active.unreadable, ...finished.unreadable] };
  }

  /**
   * Migrations that still need a driver: not done, and not aborted with cleanup complete. Lists
   * only the active prefix. Finished records older versions left there are moved to the history
   * on the way, MOVES_PER_LISTING per call, best effort (a move that fails is retried next call).
   * Records that do not read are skipped (see `scan` to hear of them).
   */
  async unfinished(fleet: string): Promise<JournalEntry[]> {
    return (await this.scan(fleet)).unfinished;
  }

  /** `unfinished()`, and the records under the active prefix that do not read (each maybe in flight: nobody knows). */
  async scan(fleet: string): Promise<{ unfinished: JournalEntry[]; unreadable: UnreadableRecord[] }> {
    const { entries: active, unreadable } = readAll(await this.store.list(migrationKey(fleet, '')));
    const left = active.filter((e) => isFinished(e.record)).slice(0, MOVES_PER_LISTING);
    if (left.length > 0) await this.moveQuietly(fleet, left);
    return { unfinished: active.filter((e) => !isFinished(e.record)), unreadable };
  }

  private async moveQuietly(fleet: string, finished: readonly JournalEntry[]): Promise<void> {
    for (const { record, modRevision } of finished) {
      try {
        // Lost CAS: someone else moved it (or, impossibly for a finished record, wrote it): skip.
        await this.store.txn([{ key: migrationKey(record.fleet, record.id), modRevision }], moveToHistory(record));
      } catch (error) {
        // The store away: the records stay where they are and are only filtered out. Anything
        // else is this record's own (a key it cannot have): the next ones still move.
        const code = (error as { code?: string }).code;
        if (code === 'STORE_UNAVAILABLE' || code === 'STORE_CLOSED') return;
      }
    }
    await this.pruneQuietly(fleet);
  }

  /** A prune that fails leaves the history over its limit until the next finished migration prunes it. */
  private async pruneQuietly(fleet: string, keep?: string): Promise<void> {
    await this.prune(fleet, keep).catch(() => {});
  }

  /**
   * Deletes the oldest finished records beyond the history limit. Reads only the small id
   * index (about 150 bytes a record), and deletes only keys under the history prefixes: never
   * a migration in flight. Each index entry is deleted only if unchanged since it was read: a
   * prune working from an old read must not delete the entry of a newer migration of the same
   * id (its record would be left unfindable and never pruned).
   */
  private async prune(fleet: string, keep?: string): Promise<void> {
    const keptId = keep === undefined ? undefined : historyIdKey(fleet, keep);
    const index = (await this.store.list(historyIdKey(fleet, ''))).filter((kv) => kv.value.startsWith(historyPrefix(fleet)));
    const sorted = index.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
    // The kept one, when among the oldest, holds the history one over its limit until the next prune.
    const oldest = sorted.slice(0, Math.max(0, index.length - this.historyLimit)).filter((kv) => kv.key !== keptId);
    for (let i = 0; i < oldest.length; i += PRUNED_PER_TXN) {
      const group = oldest.slice(i, i + PRUNED_PER_TXN);
      const ops = group.flatMap((kv): TxnOp[] => [
        { kind: 'delete', key: kv.value },
        { kind: 'delete', key: kv.key },
      ]);
      // A lost compare leaves this group for the next prune.
      await this.store.txn(group.map((kv) => ({ key: kv.key, modRevision: kv.modRevision })), ops);
    }
  }
}

/** The writes that move a finished record from the active prefix to the history (one txn, with the CAS). */
function moveToHistory(record: MigrationRecord): TxnOp[] {
  const key = historyKey(record);
  return [
    { kind: 'delete', key: migrationKey(record.fleet, record.id) },
    { kind: 'put', key, value: JSON.stringify(record) },
    { kind: 'put', key: historyIdKey(record.fleet, record.id), value: key },
  ];
}
