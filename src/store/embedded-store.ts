/**
 * The embedded store: etcd's data model in one SQLite file (better-sqlite3), for one machine
 * and for tests. Several processes may open the same file (several agents on one machine):
 * every write runs in a BEGIN IMMEDIATE transaction, so compares and writes are atomic across
 * processes, and watchers see other processes' writes through the change log (embedded-watch.ts).
 *
 * Leases live in the file with an absolute expiry from the injected clock. Nothing runs in
 * the background to expire them unless someone watches: every operation first expires due
 * leases (deleting their keys at a revision of their own, as etcd does), so an expired key
 * is never returned, and a watching process expires them on each poll.
 */
import type Database from 'better-sqlite3';
import { type Clock, systemClock } from './clock';
import { campaign, currentLeader } from './election';
import { ChangePoller, type ChangeSource } from './embedded-watch';
import { openStoreDatabase } from './embedded-schema';
import { checkCompares, checkKey, checkLeaseId, checkOps, checkPrefix, checkTtl, checkValue, prefixEnd } from './keys';
import type { KeyValue, Lease, Leadership, Store, TxnCompare, TxnOp, TxnResult, WatchEvent, WatchOptions, Watcher } from './store';
import { StoreError, storeError } from './store-error';

export interface EmbeddedStoreOptions {
  /** The SQLite file; created if missing. */
  readonly path: string;
  /** @default the system clock */
  readonly clock?: Clock;
  /** How often watchers poll for other processes' writes. @default 50 */
  readonly pollIntervalMs?: number;
  /** How long a writer waits for another process's write lock. @default 5000 */
  readonly busyTimeoutMs?: number;
  /** 'full' survives power loss; 'normal' only process crashes, and is faster. @default 'full' */
  readonly synchronous?: 'full' | 'normal';
  /**
   * The change log keeps at least this many revisions and this many seconds of history
   * (a watcher further behind gets COMPACTED). @default { revisions: 10000, seconds: 600 }
   */
  readonly changeRetention?: { readonly revisions: number; readonly seconds: number };
}

interface KvRow {
  key: string;
  value: string;
  create_revision: number;
  mod_revision: number;
  lease_id: string | null;
}

/** Compact the change log every this many revisions (cheap enough, rare enough). */
const COMPACT_EVERY = 1000;

/** One write transaction: allocates the revision lazily, so writes that change nothing keep it. */
class Revisions {
  private pending: number | undefined;
  private seq = 0;
  constructor(private current: number) {}
  next(): { revision: number; seq: number } {
    this.pending ??= this.current + 1;
    return { revision: this.pending, seq: this.seq++ };
  }
  /** Ends the current revision (if any write happened) and returns the store revision. */
  finish(): number {
    if (this.pending !== undefined) this.current = this.pending;
    this.pending = undefined;
    this.seq = 0;
    return this.current;
  }
}

export class EmbeddedStore implements Store, ChangeSource {
  readonly kind = 'embedded' as const;
  private readonly db: Database.Database;
  private readonly clock: Clock;
  private readonly poller: ChangePoller;
  private readonly retention: { revisions: number; seconds: number };
  private readonly sql;
  private readonly path: string;
  private closed = false;

  constructor(options: EmbeddedStoreOptions) {
    this.path = options.path;
    this.clock = options.clock ?? systemClock;
    this.retention = options.changeRetention ?? { revisions: 10_000, seconds: 600 };
    this.db = openStoreDatabase(options.path, { busyTimeoutMs: options.busyTimeoutMs ?? 5000, synchronous: options.synchronous ?? 'full' });
    const db = this.db;
    this.sql = {
      meta: db.prepare<[string], { value: number }>('SELECT value FROM meta WHERE name = ?'),
      setMeta: db.prepare<[number, string]>('UPDATE meta SET value = ? WHERE name = ?'),
      get: db.prepare<[string], KvRow>('SELECT * FROM kv WHERE key = ?'),
      list: db.prepare<[string, string], KvRow>('SELECT * FROM kv WHERE key >= ? AND key < ? ORDER BY key'),
      upsert: db.prepare<[string, string, number, number, string | null]>(
        `INSERT INTO kv(key, value, create_revision, mod_revision, lease_id) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision, lease_id = excluded.lease_id`,
      ),
      remove: db.prepare<[string]>('DELETE FROM kv WHERE key = ?'),
      change: db.prepare<[number, number, string, string, string | null, number]>(
        'INSERT INTO changes(revision, seq, type, key, value, at_ms) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      changes: db.prepare<[number, number, string, string], { revision: number; type: 'put' | 'delete'; key: string; value: string | null }>(
        'SELECT revision, type, key, value FROM changes WHERE revision > ? AND revision <= ? AND key >= ? AND key < ? ORDER BY revision, seq',
      ),
      compactable: db.prepare<[number, number], { top: number | null }>('SELECT MAX(revision) AS top FROM changes WHERE revision <= ? AND at_ms < ?'),
      compact: db.prepare<[number]>('DELETE FROM changes WHERE revision <= ?'),
      lease: db.prepare<[string], { id: string; ttl_seconds: number; expires_at_ms: number }>('SELECT * FROM leases WHERE id = ?'),
      addLease: db.prepare<[string, number, number]>('INSERT INTO leases(id, ttl_seconds, expires_at_ms) VALUES (?, ?, ?)'),
      extendLease: db.prepare<[number, string]>('UPDATE leases SET expires_at_ms = ? WHERE id = ?'),
      dropLease: db.prepare<[string]>('DELETE FROM leases WHERE id = ?'),
      anyExpired: db.prepare<[number], { id: string }>('SELECT id FROM leases WHERE expires_at_ms <= ? LIMIT 1'),
      expired: db.prepare<[number], { id: string }>('SELECT id FROM leases WHERE expires_at_ms <= ? ORDER BY id'),
      keysOfLease: db.prepare<[string], { key: string }>('SELECT key FROM kv WHERE lease_id = ? ORDER BY key'),
    };
    this.poller = new ChangePoller(this, options.pollIntervalMs ?? 50);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    this.readable();
    const row = this.sqlite(() => this.sql.get.get(key));
    return row && toKeyValue(row);
  }

  async list(prefix: string): Promise<KeyValue[]> {
    checkPrefix(prefix);
    this.readable();
    return this.sqlite(() => this.sql.list.all(prefix, prefixEnd(prefix))).map(toKeyValue);
  }

  async put(key: string, value: string, opts: { leaseId?: string } = {}): Promise<number> {
    checkKey(key);
    checkValue(value);
    checkLeaseId(opts.leaseId, 'opts.leaseId');
    return this.write((revisions) => {
      this.apply(revisions, { kind: 'put', key, value, leaseId: opts.leaseId }, 'opts.leaseId');
      return revisions.finish();
    });
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.write((revisions) => {
      const existed = this.apply(revisions, { kind: 'delete', key }, 'key');
      revisions.finish();
      return existed;
    });
  }

  async txn(compares: readonly TxnCompare[], success: readonly TxnOp[], failure: readonly TxnOp[] = []): Promise<TxnResult> {
    checkCompares(compares);
    checkOps(success, 'success');
    checkOps(failure, 'failure');
    return this.write((revisions) => {
      const succeeded = compares.every((compare) => this.holds(compare));
      const [ops, branch] = succeeded ? [success, 'success'] : [failure, 'failure'];
      // An unknown lease throws inside the transaction, which rolls back every op before it.
      ops.forEach((op, i) => this.apply(revisions, op, `${branch}[${i}].leaseId`));
      return { succeeded, revision: revisions.finish() };
    });
  }

  async watch(prefix: string, onEvent: (event: WatchEvent) => void, opts: WatchOptions = {}): Promise<Watcher> {
    checkPrefix(prefix);
    if (opts.fromRevision !== undefined && (!Number.isInteger(opts.fromRevision) || opts.fromRevision < 0)) {
      throw storeError('INVALID_ARGUMENT', 'opts.fromRevision', opts.fromRevision, 'not a revision', 'use a whole number >= 0');
    }
    this.open();
    return this.sqlite(() => this.poller.add(prefix, opts.fromRevision ?? this.revision(), onEvent, opts.onError));
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    checkTtl(ttlSeconds);
    const id = this.write(() => {
      const id = String(this.meta('lease_seq') + 1);
      this.sql.setMeta.run(Number(id), 'lease_seq');
      this.sql.addLease.run(id, ttlSeconds, this.clock.nowMs() + ttlSeconds * 1000);
      return id;
    });
    return {
      id,
      ttlSeconds,
      keepAlive: async () => this.keepAlive(id),
      revoke: async () => this.revoke(id),
    };
  }

  campaign(election: string, candidate: string, opts: { ttlSeconds: number; signal?: AbortSignal }): Promise<Leadership> {
    return campaign(this, election, candidate, opts);
  }

  leader(election: string): Promise<{ candidate: string; term: number } | undefined> {
    return currentLeader(this, election);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.poller.closeAll(storeError('STORE_CLOSED', 'store', 'embedded', 'the store was closed'));
    this.db.close();
  }

  // ChangeSource, for the poller.

  tick(): void {
    this.expireDueLeases();
  }

  revision(): number {
    return this.meta('revision');
  }

  compacted(): number {
    return this.meta('compacted');
  }

  /**
   * One read transaction (one WAL snapshot), checking the compaction point in it: the poller
   * reads that point first, and another process compacting in between left only the newer
   * rows to read, delivered as if nothing was missing.
   */
  changes(prefix: string, after: number, upTo: number): WatchEvent[] {
    const rows = this.db.transaction(() => {
      const compacted = this.compacted();
      if (after < compacted) {
        throw storeError('COMPACTED', 'watch', prefix, `fell behind: revisions up to ${compacted} were compacted before delivery`, 're-read the state and watch again');
      }
      return this.sql.changes.all(after, upTo, prefix, prefixEnd(prefix));
    }).deferred();
    return rows.map((row) =>
      row.type === 'put'
        ? { type: 'put', key: row.key, value: row.value ?? '', modRevision: row.revision }
        : { type: 'delete', key: row.key, modRevision: row.revision },
    );
  }

  // Internals.

  private async keepAlive(id: string): Promise<void> {
    this.write(() => {
      const lease = this.sql.lease.get(id);
      if (!lease) throw storeError('LEASE_LOST', 'leaseId', id, 'the lease has expired or was revoked', 'grant a new lease and re-create its keys');
      this.sql.extendLease.run(this.clock.nowMs() + lease.ttl_seconds * 1000, id);
    });
  }

  private async revoke(id: string): Promise<void> {
    if (this.closed) return;
    this.write((revisions) => {
      this.dropLease(revisions, id);
      revisions.finish();
    });
  }

  /** Runs `fn` in one IMMEDIATE transaction after expiring due leases; nudges local watchers. */
  private write<T>(fn: (revisions: Revisions) => T): T {
    this.open();
    const result = this.sqlite(() =>
      this.db
        .transaction(() => {
          const start = this.revision();
          const revisions = new Revisions(start);
          this.expireLeasesIn(revisions);
          const value = fn(revisions);
          const revision = revisions.finish();
          if (revision !== start) {
            this.sql.setMeta.run(revision, 'revision');
            // Lease expiries can move several revisions at once: compare thousands, not `% 1000`.
            if (Math.floor(revision / COMPACT_EVERY) > Math.floor(start / COMPACT_EVERY)) this.compactChanges(revision);
          }
          return value;
        })
        .immediate(),
    );
    this.poller.nudge();
    return result;
  }

  /**
   * SQLite failures (the lock held past busy_timeout, a full disk, a removed file) as
   * StoreErrors. The transaction was rolled back, so unlike etcd the outcome is known:
   * nothing was written.
   */
  private sqlite<T>(fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      if (error instanceof StoreError) throw error;
      const code = (error as { code?: string }).code ?? '';
      throw storeError('STORE_UNAVAILABLE', 'store.path', this.path, `SQLite failed (${code || (error as Error).message}); nothing was written`, code === 'SQLITE_BUSY' ? 'another process held the write lock past busyTimeoutMs; retry' : 'check the file and its disk');
    }
  }

  /** Applies one op at the current revision; returns whether it changed a key. */
  private apply(revisions: Revisions, op: TxnOp, leaseField: string): boolean {
    if (op.kind === 'put') {
      if (op.leaseId !== undefined && !this.sql.lease.get(op.leaseId)) {
        throw storeError('LEASE_NOT_FOUND', leaseField, op.leaseId, 'no such lease (never granted, expired or revoked)', 'grant a lease first');
      }
      const existing = this.sql.get.get(op.key);
      const { revision, seq } = revisions.next();
      this.sql.upsert.run(op.key, op.value, existing?.create_revision ?? revision, revision, op.leaseId ?? null);
      this.sql.change.run(revision, seq, 'put', op.key, op.value, this.clock.nowMs());
      return true;
    }
    // Deleting an absent key is not a change: etcd does not bump the revision for it either.
    if (!this.sql.get.get(op.key)) return false;
    const { revision, seq } = revisions.next();
    this.sql.remove.run(op.key);
    this.sql.change.run(revision, seq, 'delete', op.key, null, this.clock.nowMs());
    return true;
  }

  private holds(compare: TxnCompare): boolean {
    const row = this.sql.get.get(compare.key);
    if ('modRevision' in compare) return (row?.mod_revision ?? 0) === compare.modRevision;
    // As in etcd, a value compare on an absent key fails.
    return row !== undefined && row.value === compare.value;
  }

  private dropLease(revisions: Revisions, id: string): void {
    for (const { key } of this.sql.keysOfLease.all(id)) this.apply(revisions, { kind: 'delete', key }, 'leaseId');
    this.sql.dropLease.run(id);
  }

  /** Expires due leases inside the caller's transaction, each at its own revision. */
  private expireLeasesIn(revisions: Revisions): void {
    for (const { id } of this.sql.expired.all(this.clock.nowMs())) {
      this.dropLease(revisions, id);
      revisions.finish();
    }
  }

  /** Outside a write: a cheap read first, a write transaction only when something is due. */
  private expireDueLeases(): void {
    if (this.sql.anyExpired.get(this.clock.nowMs())) this.write(() => undefined);
  }

  private readable(): void {
    this.open();
    this.sqlite(() => this.expireDueLeases());
  }

  private compactChanges(revision: number): void {
    const { top } = this.sql.compactable.get(revision - this.retention.revisions, this.clock.nowMs() - this.retention.seconds * 1000) ?? { top: null };
    if (top === null) return;
    this.sql.compact.run(top);
    this.sql.setMeta.run(top, 'compacted');
  }

  private meta(name: string): number {
    return this.sql.meta.get(name)?.value ?? 0;
  }

  private open(): void {
    if (this.closed) throw new StoreError('STORE_CLOSED', 'store', 'embedded', 'store: the embedded store was closed; open a new one');
  }
}

function toKeyValue(row: KvRow): KeyValue {
  return {
    key: row.key,
    value: row.value,
    createRevision: row.create_revision,
    modRevision: row.mod_revision,
    ...(row.lease_id === null ? {} : { leaseId: row.lease_id }),
  };
}
