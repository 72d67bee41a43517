/**
 * The migration journal in the store: one key per migration, `/fleet/<fleet>/migrations/<id>`,
 * written only by compare-and-swap on the key's modRevision, so two drivers can never both
 * advance one migration (the loser gets JOURNAL_CONFLICT and stops before acting).
 */
import type { Store, TxnOp } from '../../src/store/store';
import { isMigrationState } from './migration-state';
import { MigrationError } from './migration-error';
import { recoveryAction, type MigrationRecord } from './migration-record';

/** The part of the Store the journal needs (so fakes stay small). */
export type JournalStore = Pick<Store, 'get' | 'txn' | 'list'>;

export interface JournalEntry {
  readonly record: MigrationRecord;
  /** The key's modRevision after this record was written: the CAS token of the next write. */
  readonly modRevision: number;
}

export function migrationKey(fleet: string, id: string): string {
  return `/fleet/${fleet}/migrations/${id}`;
}

function parse(key: string, value: string): MigrationRecord {
  let record: MigrationRecord;
  try {
    record = JSON.parse(value) as MigrationRecord;
  } catch {
    throw new MigrationError('NOT_FOUND', `${key}: journal record is not JSON`);
  }
  if (!record || typeof record.id !== 'string' || !isMigrationState(record.state)) {
    throw new MigrationError('NOT_FOUND', `${key}: journal record has no valid id and state`);
  }
  return record;
}

export class MigrationJournal {
  constructor(private readonly store: JournalStore) {}

  /** Records a new migration; JOURNAL_CONFLICT when the id is taken. */
  async create(record: MigrationRecord): Promise<JournalEntry> {
    const key = migrationKey(record.fleet, record.id);
    const result = await this.store.txn([{ key, modRevision: 0 }], [{ kind: 'put', key, value: JSON.stringify(record) }]);
    if (!result.succeeded) throw new MigrationError('JOURNAL_CONFLICT', `migration ${record.id} already exists in fleet ${record.fleet}`);
    return { record, modRevision: result.revision };
  }

  /**
   * Replaces `previous` with `record` if nobody wrote the key since `previous` was read.
   * `alongside` are written in the same transaction (the commit moves the shard's assignment
   * with the journal record: both or neither).
   */
  async save(previous: JournalEntry, record: MigrationRecord, alongside: readonly TxnOp[] = []): Promise<JournalEntry> {
    const key = migrationKey(record.fleet, record.id);
    const result = await this.store.txn([{ key, modRevision: previous.modRevision }], [{ kind: 'put', key, value: JSON.stringify(record) }, ...alongside]);
    if (!result.succeeded) {
      throw new MigrationError('JOURNAL_CONFLICT', `migration ${record.id}: the journal changed since revision ${previous.modRevision}; not writing ${record.state}`);
    }
    return { record, modRevision: result.revision };
  }

  async load(fleet: string, id: string): Promise<JournalEntry | undefined> {
    const key = migrationKey(fleet, id);
    const kv = await this.store.get(key);
    return kv ? { record: parse(key, kv.value), modRevision: kv.modRevision } : undefined;
  }

  async list(fleet: string): Promise<JournalEntry[]> {
    const kvs = await this.store.list(migrationKey(fleet, ''));
    return kvs.map((kv) => ({ record: parse(kv.key, kv.value), modRevision: kv.modRevision }));
  }

  /** Migrations that still need a driver: not done, and not aborted with cleanup complete. */
  async unfinished(fleet: string): Promise<JournalEntry[]> {
    return (await this.list(fleet)).filter(({ record }) => recoveryAction(record).kind !== 'nothing');
  }
}
