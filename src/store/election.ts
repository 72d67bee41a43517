/**
 * Leader election on the store's own primitives, shared by both stores, so the embedded and
 * the etcd election are the same algorithm (on etcd the lease and the txn are etcd's, so the
 * fencing is enforced by the etcd server itself):
 *
 * - The leader key is the election key. A candidate grants a lease and writes the key with it
 *   in a txn that requires the key to be absent (modRevision 0). The revision of that write is
 *   the term: store revisions only grow, so a later leader always has a higher term.
 * - A candidate that loses watches the key from the revision it lost at, and tries again when
 *   the key is deleted (resign, revoke, or lease expiry — the store deletes a lease's keys).
 *   Candidates race on each vacancy; there is no queue (etcd's concurrency package orders
 *   candidates by create revision, we do not need fairness for one coordinator).
 * - `fence()` is the compare "the leader key still has modRevision = term". The holder never
 *   rewrites the key, so any change to it (deletion, a new leader) breaks the fence and a
 *   deposed leader's transaction fails instead of landing.
 * - The holder keeps its lease alive (lease.keepAlive(), or keepLeaseAlive()); when it stops,
 *   the lease expires, the key goes, `lost` resolves and another candidate wins.
 */
import { checkKey, checkValue } from './keys';
import type { Lease, Leadership, Store, TxnCompare, Watcher } from './store';
import { storeError } from './store-error';
import { getJson } from './store-json';

interface LeaderRecord {
  readonly candidate: string;
}

export async function campaign(
  store: Store,
  election: string,
  candidate: string,
  opts: { ttlSeconds: number; signal?: AbortSignal },
): Promise<Leadership> {
  checkKey(election, 'election');
  checkCandidate(candidate);
  for (;;) {
    throwIfAborted(opts.signal, election);
    const lease = await store.grantLease(opts.ttlSeconds);
    const value = JSON.stringify({ candidate } satisfies LeaderRecord);
    let result;
    try {
      result = await store.txn([{ key: election, modRevision: 0 }], [{ kind: 'put', key: election, value, leaseId: lease.id }]);
    } catch (error) {
      await lease.revoke().catch(() => undefined);
      throw error;
    }
    if (result.succeeded) {
      const leadership = new StoreLeadership(store, election, candidate, lease, result.revision);
      await leadership.watchTerm();
      return leadership;
    }
    // Lost this round: the lease is not needed while waiting (and would need keeping alive).
    await lease.revoke();
    await waitForVacancy(store, election, result.revision, opts.signal);
  }
}

export async function currentLeader(store: Store, election: string): Promise<{ candidate: string; term: number } | undefined> {
  checkKey(election, 'election');
  const kv = await getJson<unknown>(store, election);
  if (!kv) return undefined;
  const candidate = (kv.value as Partial<LeaderRecord> | null)?.candidate;
  // Written by campaign() as {"candidate": "<name>"}; anything else names the key rather than crashing on it.
  if (typeof candidate !== 'string') {
    throw storeError('INVALID_VALUE', election, kv.value, 'not a leader record', 'the key was written by something other than campaign(); delete it');
  }
  return { candidate, term: kv.modRevision };
}

function checkCandidate(candidate: unknown): void {
  checkValue(candidate, 'candidate');
  if ((candidate as string).length === 0 || (candidate as string).length > 256) {
    throw storeError('INVALID_ARGUMENT', 'candidate', candidate, 'not a candidate name', 'use 1-256 characters, e.g. the host id');
  }
}

function throwIfAborted(signal: AbortSignal | undefined, election: string): void {
  if (signal?.aborted) throw storeError('CAMPAIGN_ABORTED', 'election', election, 'the campaign was aborted before this candidate became leader');
}

/** Resolves once the election key is deleted after `fromRevision`; rejects on abort. */
async function waitForVacancy(store: Store, election: string, fromRevision: number, signal?: AbortSignal): Promise<void> {
  let settle!: { resolve: () => void; reject: (error: Error) => void };
  const vacancy = new Promise<void>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const onAbort = (): void =>
    settle.reject(storeError('CAMPAIGN_ABORTED', 'election', election, 'the campaign was aborted before this candidate became leader'));
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  const watching = store.watch(
    election,
    (event) => {
      if (event.key === election && event.type === 'delete') settle.resolve();
    },
    { fromRevision, onError: settle.reject },
  );
  watching.catch(settle.reject);
  try {
    await vacancy;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await watching.then(
      (watcher) => watcher.close(),
      () => undefined,
    );
  }
}

class StoreLeadership implements Leadership {
  readonly lost: Promise<void>;
  private markLost!: () => void;
  private watcher: Watcher | undefined;
  private isLost = false;

  constructor(
    private readonly store: Store,
    readonly election: string,
    readonly candidate: string,
    readonly lease: Lease,
    readonly term: number,
  ) {
    this.lost = new Promise((resolve) => {
      this.markLost = resolve;
    });
  }

  /** Watches the leader key from our own write: any later change to it means we lost. */
  async watchTerm(): Promise<void> {
    this.watcher = await this.store.watch(
      this.election,
      (event) => {
        if (event.key === this.election && (event.type === 'delete' || event.modRevision !== this.term)) this.lose();
      },
      // A watch that ends (store closed, backend gone) can no longer vouch for leadership.
      { fromRevision: this.term, onError: () => this.lose() },
    );
  }

  fence(): TxnCompare {
    return { key: this.election, modRevision: this.term };
  }

  async resign(): Promise<void> {
    await this.lease.revoke();
    this.lose();
  }

  private lose(): void {
    if (this.isLost) return;
    this.isLost = true;
    this.markLost();
    void this.watcher?.close();
  }
}
