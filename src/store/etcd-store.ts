/**
 * The Store on etcd (the `etcd3` client), for fleets that span hosts. etcd already has the
 * model store.ts describes — one revision, create/mod revisions, txns, leases, watches — so
 * this is a thin mapping onto the KV, Lease and Watch RPCs. Every key lives under the plan's
 * `store.prefix`, stripped again on the way out, so callers see the same keys as on the
 * embedded store. Leases are etcd's own (etcd deletes a lease's keys when it expires), and the
 * election (election.ts) runs on etcd txns, so fencing is enforced by the etcd server.
 *
 * Leases are not kept alive automatically (etcd3's Lease class would): the holder calls
 * keepAlive(), as on the embedded store, so a hung holder really loses its lease.
 */
import { Etcd3, type IKeyValue, type IOptions, type IRequestOp, type ICompare, type Watcher as EtcdWatcher } from 'etcd3';
import { campaign, currentLeader } from './election';
import { checkCompares, checkKey, checkLeaseId, checkOps, checkPrefix, checkTtl, checkValue, prefixEnd } from './keys';
import type { KeyValue, Lease, Leadership, Store, TxnCompare, TxnOp, TxnResult, WatchEvent, WatchOptions, Watcher } from './store';
import { StoreError, storeError } from './store-error';

export interface EtcdStoreOptions {
  /** Client URLs, e.g. `http://10.0.0.5:2379`. */
  readonly endpoints: readonly string[];
  /** Every key is stored under this prefix (`/shardform`); `/` for none. */
  readonly prefix: string;
  /** How long to wait for a connection before a call fails. @default 5000 */
  readonly dialTimeoutMs?: number;
  /**
   * How long one call (not a watch or keep-alive stream) may take before it fails with
   * STORE_UNAVAILABLE, like the embedded store's busy timeout. @default 5000
   */
  readonly requestTimeoutMs?: number;
  /** Keys per page of a `list`. @default 64 */
  readonly listPageKeys?: number;
}

const READ_ATTEMPTS = 3;
/**
 * Keys per page of a list. Values are at most 1.5 MiB (etcd's default request limit; ours are at
 * most 1 MiB), so a page of 64 fits in `MAX_ANSWER_BYTES` whatever it holds: no answer is ever
 * refused as too large, which etcd3 would count as a connection failure (reset the channel, and
 * after three in a row open its circuit breaker). Records are ~1 KB: a page is ~64 KB.
 */
const LIST_PAGE_KEYS = 64;
/** The largest answer the client takes (grpc-js's default is 4 MiB). */
const MAX_ANSWER_BYTES = 128 * 1024 * 1024;

/**
 * etcd3 retries every call on a "recoverable" gRPC error by default. For a write that is
 * wrong: if the first attempt applied and only its reply was lost, the retried CAS finds its
 * own write and reports a lost compare. So no call is retried by the client: a write that
 * fails with STORE_UNAVAILABLE has an unknown outcome (re-read before deciding), and reads
 * are retried by EtcdStore.read(), where repeating is harmless.
 */
const NO_RETRY: NonNullable<NonNullable<IOptions['faultHandling']>['global']> = {
  _altReturn: undefined as never,
  onSuccess: () => ({ dispose: () => undefined }),
  onFailure: () => ({ dispose: () => undefined }),
  execute: async (fn, signal) => fn({ signal: signal ?? new AbortController().signal }),
};

export class EtcdStore implements Store {
  readonly kind = 'etcd' as const;
  private readonly client: Etcd3;
  private readonly root: string;
  private readonly watchers = new Set<{ watcher: EtcdWatcher; onError?: (error: Error) => void }>();
  private closed = false;

  constructor(private readonly options: EtcdStoreOptions) {
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) {
      throw storeError('INVALID_SETTINGS', 'store.endpoints', options.endpoints, 'no etcd endpoint', 'list at least one client URL, e.g. http://127.0.0.1:2379');
    }
    if (options.listPageKeys !== undefined && (!Number.isInteger(options.listPageKeys) || options.listPageKeys < 1)) {
      throw storeError('INVALID_SETTINGS', 'listPageKeys', options.listPageKeys, 'not a page size', 'use a whole number >= 1, e.g. 64');
    }
    if (options.prefix !== '/') checkKey(options.prefix.replace(/\/$/, ''), 'store.prefix');
    this.root = options.prefix.replace(/\/+$/, '');
    this.client = new Etcd3({
      hosts: [...options.endpoints],
      dialTimeout: options.dialTimeoutMs ?? 5000,
      faultHandling: { global: NO_RETRY },
      grpcOptions: { 'grpc.max_receive_message_length': MAX_ANSWER_BYTES },
      // Without a deadline a call to an etcd that stopped answering on an open connection (hung,
      // or cut off by a partition) waits for TCP to give up, many minutes: measured, a put still
      // waiting after 30 s. A journal write waits like that with the shard frozen.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + (options.requestTimeoutMs ?? 5000) }),
    });
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    const res = await this.read(() => this.client.kv.range({ key: this.full(key) }));
    return res.kvs[0] && this.toKeyValue(res.kvs[0]);
  }

  /**
   * In pages of at most `listPageKeys` keys, every page read at the revision of the first (one
   * snapshot, as a single range would be). One range answer is one gRPC message: unpaged, a
   * prefix holding more than grpc-js's default 4 MiB (3 000-4 000 journal records, or four values
   * near the 1 MiB limit) could not be listed at all, and every read of it would fail. A snapshot
   * compacted away between pages starts the listing over.
   */
  async list(prefix: string): Promise<KeyValue[]> {
    checkPrefix(prefix);
    const end = this.full(prefixEnd(prefix));
    const limit = this.options.listPageKeys ?? LIST_PAGE_KEYS;
    for (let attempt = 1; ; attempt++) {
      const found: KeyValue[] = [];
      let from = this.full(prefix);
      let revision: string | undefined;
      try {
        for (;;) {
          const res = await this.read(() => this.client.kv.range({ key: from, range_end: end, limit, ...(revision ? { revision } : {}) }));
          revision ??= res.header.revision;
          for (const kv of res.kvs) found.push(this.toKeyValue(kv));
          const last = res.kvs.at(-1);
          if (!res.more || !last) return found;
          from = Buffer.concat([last.key, Buffer.from([0])]); // the next key after the last one read
        }
      } catch (error) {
        if ((error as StoreError).code !== 'COMPACTED' || revision === undefined || attempt >= READ_ATTEMPTS) throw error;
      }
    }
  }

  async put(key: string, value: string, opts: { leaseId?: string } = {}): Promise<number> {
    checkKey(key);
    checkValue(value);
    checkLeaseId(opts.leaseId, 'opts.leaseId');
    const res = await this.call(() => this.client.kv.put({ key: this.full(key), value: Buffer.from(value), lease: opts.leaseId }), opts.leaseId && { field: 'opts.leaseId', leaseId: opts.leaseId });
    return Number(res.header.revision);
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    const res = await this.call(() => this.client.kv.deleteRange({ key: this.full(key) }));
    return Number(res.deleted) > 0;
  }

  async txn(compares: readonly TxnCompare[], success: readonly TxnOp[], failure: readonly TxnOp[] = []): Promise<TxnResult> {
    checkCompares(compares);
    checkOps(success, 'success');
    checkOps(failure, 'failure');
    const leased = firstLease(success, 'success') ?? firstLease(failure, 'failure');
    const res = await this.call(
      () =>
        this.client.kv.txn({
          compare: compares.map((c) => this.toCompare(c)),
          success: success.map((op) => this.toRequestOp(op)),
          failure: failure.map((op) => this.toRequestOp(op)),
        }),
      leased,
    );
    return { succeeded: res.succeeded, revision: Number(res.header.revision) };
  }

  async watch(prefix: string, onEvent: (event: WatchEvent) => void, opts: WatchOptions = {}): Promise<Watcher> {
    checkPrefix(prefix);
    if (opts.fromRevision !== undefined && (!Number.isInteger(opts.fromRevision) || opts.fromRevision < 0)) {
      throw storeError('INVALID_ARGUMENT', 'opts.fromRevision', opts.fromRevision, 'not a revision', 'use a whole number >= 0');
    }
    this.open();
    const start = this.full(prefix);
    const end = this.full(prefixEnd(prefix));
    // etcd accepts a watch from a compacted revision and only cancels it afterwards, with no
    // reason: refuse it here with COMPACTED, as the embedded store does.
    if (opts.fromRevision !== undefined) await this.refuseIfCompacted(start, end, opts.fromRevision);
    let builder = this.client.watch().inRange({ start, end });
    // etcd's start revision is inclusive; ours is exclusive ("changes after fromRevision").
    if (opts.fromRevision !== undefined) builder = builder.startRevision(String(opts.fromRevision + 1));
    const watcher = await this.call(() => builder.create());
    /**
     * The last revision delivered (or, with no event, known to hold none for us): a reconnect
     * resumes after it. etcd3 resumes after the revision in the header of the last answer,
     * which is the *current* revision while etcd replays history (the create answer, and each
     * batch of a replay longer than 1000 revisions): a stream cut mid-replay lost the rest.
     */
    let delivered = opts.fromRevision ?? Number(watcher.request.start_revision) - 1;
    const resumeAfterDelivered = (): void => {
      watcher.request.start_revision = String(delivered + 1);
    };
    resumeAfterDelivered();
    const entry = { watcher, onError: opts.onError };
    this.watchers.add(entry);
    watcher.on('connected', resumeAfterDelivered);
    watcher.on('data', (res) => {
      for (const event of res.events) {
        const key = this.strip(event.kv.key);
        const modRevision = Number(event.kv.mod_revision);
        delivered = Math.max(delivered, modRevision);
        onEvent(event.type === 'Put' ? { type: 'put', key, value: event.kv.value.toString(), modRevision } : { type: 'delete', key, modRevision });
      }
      // An answer without events is a progress notification, only sent once the watch has caught up.
      if (res.events.length === 0) delivered = Math.max(delivered, Number(res.header.revision));
      resumeAfterDelivered();
    });
    watcher.on('error', (error) => {
      this.watchers.delete(entry);
      // etcd cancels a watch whose next revision was compacted (at a reconnect, say) without a reason.
      void this.refuseIfCompacted(start, end, delivered).then(
        () => opts.onError?.(this.translate(error)),
        (refused: Error) => opts.onError?.((refused as StoreError).code === 'COMPACTED' ? refused : this.translate(error)),
      );
    });
    return {
      close: async () => {
        if (!this.watchers.delete(entry)) return;
        await this.cancelWatcher(watcher);
      },
    };
  }

  /**
   * Cancels a watch, waiting for etcd's answer at most one call deadline: etcd3 waits for it
   * forever, so closing a watch (or the store) on an etcd that hangs never returned, and an
   * agent shutting down behind a partition hung with it.
   */
  private async cancelWatcher(watcher: EtcdWatcher): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.requestTimeoutMs ?? 5000);
    });
    try {
      await Promise.race([watcher.cancel().catch(() => undefined), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Throws COMPACTED when the changes after `after` in [start, end) are no longer in etcd's history. */
  private async refuseIfCompacted(start: Buffer, end: Buffer, after: number): Promise<void> {
    try {
      await this.call(() => this.client.kv.range({ key: start, range_end: end, revision: String(after + 1), limit: 1, keys_only: true }));
    } catch (error) {
      if ((error as StoreError).code === 'COMPACTED') {
        throw storeError('COMPACTED', 'fromRevision', after, `etcd compacted the revisions after it (${(error as Error).message})`, 're-read the state and watch from now');
      }
      // A future revision (nothing written after `after` yet) is not compacted; other failures show when the watch is made.
      if (!(error as Error).message.includes('future revision')) throw error;
    }
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    checkTtl(ttlSeconds);
    const res = await this.call(() => this.client.leaseClient.leaseGrant({ TTL: ttlSeconds }));
    const id = res.ID;
    return {
      id,
      // etcd may raise a short ttl to its minimum (1.5 election timeouts); report what it granted.
      ttlSeconds: Number(res.TTL),
      keepAlive: () => this.keepAlive(id),
      revoke: async () => {
        if (this.closed) return;
        await this.call(() => this.client.leaseClient.leaseRevoke({ ID: id })).catch((error: StoreError) => {
          // Revoking a lease that already expired is done already: revoke is idempotent.
          if (error.code !== 'LEASE_NOT_FOUND') throw error;
        });
      },
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
    const closing = storeError('STORE_CLOSED', 'store', 'etcd', 'the store was closed');
    for (const entry of [...this.watchers]) {
      this.watchers.delete(entry);
      await this.cancelWatcher(entry.watcher);
      entry.onError?.(closing);
    }
    this.client.close();
  }

  /** One keep-alive round trip on etcd's bidirectional LeaseKeepAlive stream. */
  private async keepAlive(id: string): Promise<void> {
    const stream = await this.call(() => this.client.leaseClient.leaseKeepAlive());
    let timer: NodeJS.Timeout | undefined;
    try {
      const res = await new Promise<{ TTL: string }>((resolve, reject) => {
        stream.on('data', resolve);
        stream.on('error', reject);
        // A stream has no call deadline: this round trip gets the same one, so a hung etcd is a lost renewal, not a wait forever.
        const ms = this.options.requestTimeoutMs ?? 5000;
        timer = setTimeout(() => reject(new Error(`DEADLINE_EXCEEDED: no keep-alive answer within ${ms} ms`)), ms);
        stream.write({ ID: id });
      });
      // etcd answers TTL 0 (rather than an error) for a lease that no longer exists.
      if (Number(res.TTL) <= 0) throw storeError('LEASE_LOST', 'leaseId', id, 'the lease has expired or was revoked', 'grant a new lease and re-create its keys');
    } catch (error) {
      throw this.translate(error);
    } finally {
      clearTimeout(timer);
      stream.end();
    }
  }

  /**
   * Reads are safe to repeat: a few attempts ride out a leader change or a reconnect. Not one
   * that ran out its deadline: etcd is not answering, and three of them would make a read take
   * three deadlines (15 s) and open the client's circuit breaker (fails everything for 5 s more).
   */
  private async read<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.call(fn);
      } catch (error) {
        const timedOut = (error as Error).message.includes('DEADLINE_EXCEEDED');
        if (attempt >= READ_ATTEMPTS || (error as StoreError).code !== 'STORE_UNAVAILABLE' || timedOut) throw error;
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    }
  }

  private async call<T>(fn: () => Promise<T>, lease?: { field: string; leaseId: string } | '' | undefined): Promise<T> {
    this.open();
    try {
      return await fn();
    } catch (error) {
      throw this.translate(error, lease || undefined);
    }
  }

  /** etcd3 errors to StoreError codes, so callers handle both stores the same way. */
  private translate(error: unknown, lease?: { field: string; leaseId: string }): Error {
    if (error instanceof StoreError) return error;
    const message = error instanceof Error ? error.message : String(error);
    const name = error instanceof Error ? error.constructor.name : '';
    if (name === 'EtcdLeaseInvalidError' || message.includes('requested lease not found')) {
      return storeError('LEASE_NOT_FOUND', lease?.field ?? 'leaseId', lease?.leaseId, 'no such lease (never granted, expired or revoked)', 'grant a lease first');
    }
    if (name === 'ClientClosedError' || this.closed) return storeError('STORE_CLOSED', 'store', 'etcd', 'the store was closed');
    if (message.includes('compacted')) {
      return storeError('COMPACTED', 'fromRevision', undefined, `etcd compacted the revisions asked for (${message})`, 're-read the state and watch from now');
    }
    return storeError('STORE_UNAVAILABLE', 'store.endpoints', this.options.endpoints, `etcd call failed: ${message}`, 'check that etcd is running and reachable');
  }

  private open(): void {
    if (this.closed) throw storeError('STORE_CLOSED', 'store', 'etcd', 'the store was closed', 'open a new one');
  }

  private full(key: string): Buffer {
    return Buffer.from(this.root + key);
  }

  private strip(key: Buffer): string {
    return key.toString().slice(this.root.length);
  }

  private toKeyValue(kv: IKeyValue): KeyValue {
    return {
      key: this.strip(kv.key),
      value: kv.value.toString(),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
      ...(kv.lease && kv.lease !== '0' ? { leaseId: kv.lease } : {}),
    };
  }

  private toCompare(compare: TxnCompare): ICompare {
    if ('modRevision' in compare) return { key: this.full(compare.key), target: 'Mod', result: 'Equal', mod_revision: compare.modRevision };
    return { key: this.full(compare.key), target: 'Value', result: 'Equal', value: Buffer.from(compare.value) };
  }

  private toRequestOp(op: TxnOp): IRequestOp {
    if (op.kind === 'put') return { request_put: { key: this.full(op.key), value: Buffer.from(op.value), lease: op.leaseId } };
    return { request_delete_range: { key: this.full(op.key) } };
  }
}

function firstLease(ops: readonly TxnOp[], branch: string): { field: string; leaseId: string } | undefined {
  const index = ops.findIndex((op) => op.kind === 'put' && op.leaseId !== undefined);
  const op = ops[index];
  return op?.kind === 'put' && op.leaseId ? { field: `${branch}[${index}].leaseId`, leaseId: op.leaseId } : undefined;
}
