/**
 * The one store interface of DESIGN.md "Stores": fleet state, the migration journal and
 * leader election live behind it. Two implementations: embedded (one SQLite file via
 * better-sqlite3; the default, and what tests use) and etcd (the `etcd3` client) for fleets
 * that span hosts. The model is etcd's, so both behave the same: every write bumps one
 * store-wide `revision`; a key remembers the revision that created and last modified it;
 * compare-and-swap is a transaction of compares on those revisions (or values).
 *
 * Keys are `/`-separated paths (`/fleet/<fleet>/journal/<migration-id>`); values are strings
 * (JSON by convention, see `getJson`/`putJson` helpers in store-json.ts).
 *
 * Metric history (many small numeric samples) is *not* kept here: see metric-history.ts.
 */

export interface KeyValue {
  readonly key: string;
  readonly value: string;
  /** Revision of the write that created the key (kept until the key is deleted). */
  readonly createRevision: number;
  /** Revision of the last write to the key. */
  readonly modRevision: number;
  /** Lease the key is attached to; the key is deleted when the lease expires or is revoked. */
  readonly leaseId?: string;
}

/**
 * One condition of a transaction. `modRevision: 0` means "the key does not exist"
 * (etcd's `createRevision == 0` idiom); `value` compares the current value exactly.
 */
export type TxnCompare =
  | { readonly key: string; readonly modRevision: number }
  | { readonly key: string; readonly value: string };

export type TxnOp =
  | { readonly kind: 'put'; readonly key: string; readonly value: string; readonly leaseId?: string }
  | { readonly kind: 'delete'; readonly key: string };

export interface TxnResult {
  /** True when every compare held and the `success` ops were applied; else `failure` ops were. */
  readonly succeeded: boolean;
  /** The store revision after the transaction. */
  readonly revision: number;
}

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: string;
  /** The new value (put) — absent for delete. */
  readonly value?: string;
  readonly modRevision: number;
}

export interface WatchOptions {
  /** Deliver changes with a revision greater than this one (exclusive); default: from now. */
  readonly fromRevision?: number;
  /**
   * Called once when the watch ends without close(): the change log was compacted past it
   * (StoreError 'COMPACTED'), the store was closed ('STORE_CLOSED') or the backend failed.
   * Without it such a watch ends silently, so long-lived watchers should pass it.
   */
  readonly onError?: (error: Error) => void;
}

export interface Watcher {
  close(): Promise<void>;
}

export interface Lease {
  readonly id: string;
  readonly ttlSeconds: number;
  /** Extends the lease by its ttl; rejects with StoreError 'LEASE_LOST' when it has already expired. */
  keepAlive(): Promise<void>;
  /** Ends the lease now, deleting every key attached to it. Idempotent. */
  revoke(): Promise<void>;
}

/**
 * The result of a successful election: the holder writes only while it is leader, and fences
 * every write with `fence()` so a deposed leader's late write fails instead of landing.
 */
export interface Leadership {
  readonly election: string;
  readonly candidate: string;
  readonly lease: Lease;
  /** The modRevision of the leader key when this candidate won: a monotonic fencing token. */
  readonly term: number;
  /** A compare to add to every transaction this leader makes (the leader key is still ours). */
  fence(): TxnCompare;
  /** Resolves when leadership is lost (lease expired, revoked, or another candidate won). */
  readonly lost: Promise<void>;
  /** Gives up leadership (revokes the lease). */
  resign(): Promise<void>;
}

export interface Store {
  readonly kind: 'embedded' | 'etcd';
  get(key: string): Promise<KeyValue | undefined>;
  /** Writes a value; returns the new store revision. */
  put(key: string, value: string, opts?: { leaseId?: string }): Promise<number>;
  /** Deletes a key; true when it existed. */
  delete(key: string): Promise<boolean>;
  /** Every key starting with `prefix`, in key order. */
  list(prefix: string): Promise<KeyValue[]>;
  /** Atomically: if every compare holds apply `success`, else apply `failure`. */
  txn(compares: readonly TxnCompare[], success: readonly TxnOp[], failure?: readonly TxnOp[]): Promise<TxnResult>;
  /**
   * Calls `onEvent` for every change under `prefix` after `fromRevision` (default: from now),
   * in revision order, including changes made by other processes sharing the store. Ops of one
   * transaction share its revision and arrive in the order the transaction listed them.
   */
  watch(prefix: string, onEvent: (event: WatchEvent) => void, opts?: WatchOptions): Promise<Watcher>;
  grantLease(ttlSeconds: number): Promise<Lease>;
  /**
   * Campaigns for `election` as `candidate`; resolves once this candidate is leader (waits
   * while another candidate's lease is alive). Rejects when `signal` aborts the campaign.
   */
  campaign(election: string, candidate: string, opts: { ttlSeconds: number; signal?: AbortSignal }): Promise<Leadership>;
  /** Current leader of an election, if any. */
  leader(election: string): Promise<{ candidate: string; term: number } | undefined>;
  close(): Promise<void>;
}
