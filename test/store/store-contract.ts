/**
 * One behavioural contract for every Store implementation: the embedded suite and the etcd
 * integration suite both call describeStoreContract, so the two stores cannot drift apart.
 * Time-exact lease checks run only where the harness controls the clock (embedded); on etcd
 * time is real, so those tests wait for the outcome instead of asserting when it happens.
 */
import type { Store, WatchEvent } from '../../src/store';
import { StoreError } from '../../src/store/store-error';

export interface StoreHarness {
  /** Opens another instance on the same backing (same file, same etcd and prefix). */
  open(): Promise<Store>;
  /** Lets lease time pass: advances a manual clock, or sleeps on real time. */
  passTime(seconds: number): Promise<void>;
  /** A ttl the backend honours (etcd rounds small ttls up to its minimum). */
  readonly ttlSeconds: number;
  /** True when passTime is exact (a manual clock), so expiry boundaries can be asserted. */
  readonly exactTime: boolean;
  /** Drops the change history before `revision`, as etcd's compaction does (a watch may start from revision - 1). */
  compact(revision: number): Promise<void>;
  close(): Promise<void>;
}

/** Polls `probe` until it returns true; the jest timeout bounds it. Never asserts durations. */
export async function eventually(probe: () => Promise<boolean> | boolean, what: string, tries = 1000): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`never happened: ${what}`);
}

/** Settles to 'pending' when `promise` has not settled after a few turns and `ms`. */
async function stillPending(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const marker = Symbol('pending');
  const outcome = await Promise.race([promise.then(() => 'settled', () => 'settled'), new Promise((r) => setTimeout(() => r(marker), ms))]);
  return outcome === marker;
}

async function rejection(promise: Promise<unknown>): Promise<StoreError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof StoreError) return error;
    throw error;
  }
  throw new Error('expected a StoreError, the call succeeded');
}

export function describeStoreContract(name: string, makeHarness: () => Promise<StoreHarness>): void {
  describe(`${name} store contract`, () => {
    let harness: StoreHarness;
    let store: Store;
    beforeEach(async () => {
      harness = await makeHarness();
      store = await harness.open();
    });
    afterEach(async () => {
      await harness.close();
    });

    describe('keys and revisions', () => {
      it('keeps createRevision and bumps modRevision on every put, revisions strictly increasing', async () => {
        const r1 = await store.put('/fleet/demo/a', '1');
        const r2 = await store.put('/fleet/demo/a', '2');
        const r3 = await store.put('/fleet/demo/b', '3');
        expect(r2).toBeGreaterThan(r1);
        expect(r3).toBeGreaterThan(r2);
        expect(await store.get('/fleet/demo/a')).toEqual({ key: '/fleet/demo/a', value: '2', createRevision: r1, modRevision: r2 });
        expect(await store.get('/fleet/demo/missing')).toBeUndefined();
      });

      it('deletes a key once, and deleting an absent key changes no revision', async () => {
        await store.put('/fleet/demo/a', '1');
        expect(await store.delete('/fleet/demo/a')).toBe(true);
        const after = await store.put('/fleet/demo/probe', 'x');
        expect(await store.delete('/fleet/demo/a')).toBe(false);
        expect(await store.put('/fleet/demo/probe', 'y')).toBe(after + 1);
        const again = await store.put('/fleet/demo/a', 'new');
        expect((await store.get('/fleet/demo/a'))?.createRevision).toBe(again);
      });

      it('lists a prefix in key order and only that prefix', async () => {
        for (const key of ['/fleet/demo/x/2', '/fleet/demo/x/10', '/fleet/demo/xy', '/fleet/demo/x/1', '/fleet/other/x/1']) await store.put(key, key);
        expect((await store.list('/fleet/demo/x/')).map((kv) => kv.key)).toEqual(['/fleet/demo/x/1', '/fleet/demo/x/10', '/fleet/demo/x/2']);
        expect((await store.list('/fleet/demo/x')).map((kv) => kv.key)).toEqual(['/fleet/demo/x/1', '/fleet/demo/x/10', '/fleet/demo/x/2', '/fleet/demo/xy']);
        expect(await store.list('/nothing/')).toEqual([]);
      });

      it('orders revisions across two instances sharing the store', async () => {
        const other = await harness.open();
        const revisions = [];
        for (let i = 0; i < 6; i++) revisions.push(await (i % 2 ? other : store).put(`/fleet/demo/k${i}`, String(i)));
        expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
        expect(new Set(revisions).size).toBe(6);
        expect((await other.get('/fleet/demo/k0'))?.value).toBe('0');
      });
    });

    describe('transactions', () => {
      it('applies success ops when the modRevision compare holds, all at one revision', async () => {
        const rev = await store.put('/fleet/demo/owner', 'a');
        const result = await store.txn(
          [{ key: '/fleet/demo/owner', modRevision: rev }],
          [
            { kind: 'put', key: '/fleet/demo/owner', value: 'b' },
            { kind: 'put', key: '/fleet/demo/note', value: 'moved' },
          ],
        );
        expect(result).toEqual({ succeeded: true, revision: rev + 1 });
        expect((await store.get('/fleet/demo/owner'))?.modRevision).toBe(rev + 1);
        expect((await store.get('/fleet/demo/note'))?.modRevision).toBe(rev + 1);
      });

      it('applies only the failure ops when a compare fails (compare-and-swap lost)', async () => {
        const rev = await store.put('/fleet/demo/owner', 'a');
        await store.put('/fleet/demo/owner', 'someone-else');
        const result = await store.txn(
          [{ key: '/fleet/demo/owner', modRevision: rev }],
          [{ kind: 'put', key: '/fleet/demo/owner', value: 'mine' }],
          [{ kind: 'put', key: '/fleet/demo/lost', value: 'yes' }],
        );
        expect(result.succeeded).toBe(false);
        expect((await store.get('/fleet/demo/owner'))?.value).toBe('someone-else');
        expect((await store.get('/fleet/demo/lost'))?.value).toBe('yes');
      });

      it('creates a key only when absent with modRevision 0', async () => {
        const create = () => store.txn([{ key: '/fleet/demo/once', modRevision: 0 }], [{ kind: 'put', key: '/fleet/demo/once', value: 'x' }]);
        expect((await create()).succeeded).toBe(true);
        expect((await create()).succeeded).toBe(false);
      });

      it('compares values exactly, and a value compare on an absent key fails', async () => {
        await store.put('/fleet/demo/state', 'frozen');
        const move = (from: string, key = '/fleet/demo/state') => store.txn([{ key, value: from }], [{ kind: 'put', key, value: 'dumped' }]);
        expect((await move('running')).succeeded).toBe(false);
        expect((await move('frozen')).succeeded).toBe(true);
        expect((await store.get('/fleet/demo/state'))?.value).toBe('dumped');
        expect((await move('', '/fleet/demo/absent')).succeeded).toBe(false);
      });

      it('reports the current revision for a txn that writes nothing', async () => {
        const rev = await store.put('/fleet/demo/a', '1');
        expect(await store.txn([{ key: '/fleet/demo/a', modRevision: 999 }], [])).toEqual({ succeeded: false, revision: rev });
      });
    });

    describe('watch', () => {
      it('delivers changes from two instances in revision order, txn ops in their listed order', async () => {
        const other = await harness.open();
        const seenHere: WatchEvent[] = [];
        const seenThere: WatchEvent[] = [];
        const w1 = await store.watch('/fleet/demo/', (e) => seenHere.push(e));
        const w2 = await other.watch('/fleet/demo/', (e) => seenThere.push(e));
        await store.put('/fleet/demo/a', '1');
        await other.put('/fleet/demo/b', '2');
        await store.put('/fleet/elsewhere/x', 'ignored');
        await other.txn([], [
          { kind: 'put', key: '/fleet/demo/c', value: '3' },
          { kind: 'delete', key: '/fleet/demo/a' },
        ]);
        await store.delete('/fleet/demo/b');
        const expected = ['put /fleet/demo/a 1', 'put /fleet/demo/b 2', 'put /fleet/demo/c 3', 'delete /fleet/demo/a', 'delete /fleet/demo/b'];
        const show = (events: WatchEvent[]) => events.map((e) => `${e.type} ${e.key}${e.value === undefined ? '' : ` ${e.value}`}`);
        await eventually(() => seenHere.length >= 5 && seenThere.length >= 5, 'both watchers saw five events');
        expect(show(seenHere)).toEqual(expected);
        expect(show(seenThere)).toEqual(expected);
        expect(seenThere.map((e) => e.modRevision)).toEqual(seenHere.map((e) => e.modRevision));
        const revs = seenHere.map((e) => e.modRevision);
        expect(revs[2]).toBe(revs[3]);
        expect(revs[1]).toBeGreaterThan(revs[0]);
        expect(revs[4]).toBeGreaterThan(revs[3]);
        await w1.close();
        await w2.close();
      });

      it('replays history after fromRevision (exclusive) and stops after close', async () => {
        const r1 = await store.put('/fleet/demo/a', '1');
        await store.put('/fleet/demo/a', '2');
        const seen: WatchEvent[] = [];
        const watcher = await store.watch('/fleet/demo/a', (e) => seen.push(e), { fromRevision: r1 });
        await eventually(() => seen.length === 1, 'the replayed put');
        expect(seen[0]).toMatchObject({ type: 'put', value: '2', modRevision: r1 + 1 });
        await watcher.close();
        await store.put('/fleet/demo/a', '3');
        await new Promise((r) => setTimeout(r, 100));
        expect(seen).toHaveLength(1);
      });

      it('refuses a watch from a compacted revision with COMPACTED, and still watches from the compaction point', async () => {
        const r1 = await store.put('/fleet/demo/a', '1');
        const r2 = await store.put('/fleet/demo/a', '2');
        const r3 = await store.put('/fleet/demo/a', '3');
        await harness.compact(r3);
        const errors: Error[] = [];
        const error = await rejection(store.watch('/fleet/demo/', () => undefined, { fromRevision: r1, onError: (e) => errors.push(e) }));
        expect(error).toMatchObject({ code: 'COMPACTED', field: 'fromRevision', value: r1 });
        const seen: WatchEvent[] = [];
        const watcher = await store.watch('/fleet/demo/', (e) => seen.push(e), { fromRevision: r2 });
        await eventually(() => seen.length === 1, 'the put after the compaction point');
        expect(seen[0]).toMatchObject({ type: 'put', value: '3', modRevision: r3 });
        await watcher.close();
        expect(errors).toEqual([]);
      });
    });

    describe('leases', () => {
      it('deletes a lease\'s keys on revoke, with a delete event', async () => {
        const lease = await store.grantLease(harness.ttlSeconds);
        await store.put('/fleet/demo/hosts/a', 'alive', { leaseId: lease.id });
        expect((await store.get('/fleet/demo/hosts/a'))?.leaseId).toBe(lease.id);
        const seen: WatchEvent[] = [];
        await store.watch('/fleet/demo/hosts/', (e) => seen.push(e));
        await lease.revoke();
        await lease.revoke();
        expect(await store.get('/fleet/demo/hosts/a')).toBeUndefined();
        await eventually(() => seen.length === 1, 'the delete event');
        expect(seen[0]).toMatchObject({ type: 'delete', key: '/fleet/demo/hosts/a' });
      });

      it('deletes a lease\'s keys when it expires, and keepAlive then fails with LEASE_LOST', async () => {
        const lease = await store.grantLease(harness.ttlSeconds);
        await store.put('/fleet/demo/hosts/a', 'alive', { leaseId: lease.id });
        await store.put('/fleet/demo/hosts/keep', 'no lease');
        await harness.passTime(harness.ttlSeconds + 1);
        await eventually(async () => (await store.get('/fleet/demo/hosts/a')) === undefined, 'the leased key to expire');
        expect((await store.get('/fleet/demo/hosts/keep'))?.value).toBe('no lease');
        expect((await rejection(lease.keepAlive())).code).toBe('LEASE_LOST');
      });

      it('refuses a put with an unknown lease, changing nothing', async () => {
        const before = await store.put('/fleet/demo/probe', 'x');
        const error = await rejection(store.put('/fleet/demo/a', 'v', { leaseId: '987654321' }));
        expect(error).toMatchObject({ code: 'LEASE_NOT_FOUND', field: 'opts.leaseId', value: '987654321' });
        const txnError = await rejection(
          store.txn([], [
            { kind: 'put', key: '/fleet/demo/b', value: 'v' },
            { kind: 'put', key: '/fleet/demo/c', value: 'v', leaseId: '987654321' },
          ]),
        );
        expect(txnError.code).toBe('LEASE_NOT_FOUND');
        expect(await store.get('/fleet/demo/a')).toBeUndefined();
        expect(await store.get('/fleet/demo/b')).toBeUndefined();
        expect(await store.put('/fleet/demo/probe', 'y')).toBe(before + 1);
      });
    });

    describe('bad input', () => {
      it.each([
        ['empty', ''],
        ['relative', 'fleet/demo'],
        ['root only', '/'],
        ['empty segment', '/fleet//demo'],
        ['dot-dot', '/fleet/../etc'],
        ['dot', '/fleet/./x'],
        ['space', '/fleet/de mo'],
        ['non-ASCII', '/fleet/dé'],
        ['600 characters', `/${'a'.repeat(600)}`],
      ])('refuses a key that is %s with INVALID_KEY naming it', async (_what, key) => {
          const error = await rejection(store.put(key, 'v'));
          expect(error).toMatchObject({ code: 'INVALID_KEY', field: 'key', value: key });
        expect(error.message).toContain("'/'-separated segments");
      });

      it.each([0, -1, 1.5, Number.NaN, 100_000])('refuses the ttl %p with INVALID_TTL', async (ttl) => {
        const error = await rejection(store.grantLease(ttl));
        expect(error).toMatchObject({ code: 'INVALID_TTL', field: 'ttlSeconds' });
        expect(error.message).toMatch(/^ttlSeconds: not a valid lease ttl \(got .*\); use a whole number of seconds from 1 to 86400$/);
      });

      it('refuses a txn naming one key twice, or a bad compare, and writes nothing', async () => {
        const dup = await rejection(
          store.txn([], [
            { kind: 'put', key: '/fleet/demo/a', value: '1' },
            { kind: 'delete', key: '/fleet/demo/a' },
          ]),
        );
        expect(dup).toMatchObject({ code: 'INVALID_TXN', field: 'success[1].key', value: '/fleet/demo/a' });
        const bad = await rejection(store.txn([{ key: '/fleet/demo/a', modRevision: -1 }], []));
        expect(bad).toMatchObject({ code: 'INVALID_TXN', field: 'compares[0].modRevision', value: -1 });
        const badKey = await rejection(store.txn([], [], [{ kind: 'delete', key: '/x/..' }]));
        expect(badKey).toMatchObject({ code: 'INVALID_KEY', field: 'failure[0].key' });
        expect(await store.get('/fleet/demo/a')).toBeUndefined();
      });

      it('refuses a bad prefix for list and watch', async () => {
        expect((await rejection(store.list('fleet'))).field).toBe('prefix');
        expect((await rejection(store.watch('/a//', () => undefined))).code).toBe('INVALID_KEY');
      });
    });

    describe('leader election', () => {
      const election = '/fleet/demo/coordinator';

      it('makes a second candidate wait, then take over when the first lease expires; the deposed leader is fenced', async () => {
        const other = await harness.open();
        const first = await store.campaign(election, 'host-a', { ttlSeconds: harness.ttlSeconds });
        expect(await store.leader(election)).toEqual({ candidate: 'host-a', term: first.term });
        const second = other.campaign(election, 'host-b', { ttlSeconds: harness.ttlSeconds });
        expect(await stillPending(second, 150)).toBe(true);
        // host-a stops keeping its lease alive (as if it hung): the lease runs out.
        await harness.passTime(harness.ttlSeconds + 1);
        const won = await second;
        await first.lost;
        expect(won.term).toBeGreaterThan(first.term);
        expect(await other.leader(election)).toEqual({ candidate: 'host-b', term: won.term });
        const late = await store.txn([first.fence()], [{ kind: 'put', key: '/fleet/demo/decision', value: 'from host-a' }]);
        expect(late.succeeded).toBe(false);
        const current = await other.txn([won.fence()], [{ kind: 'put', key: '/fleet/demo/decision', value: 'from host-b' }]);
        expect(current.succeeded).toBe(true);
        expect((await store.get('/fleet/demo/decision'))?.value).toBe('from host-b');
        await won.resign();
      });

      it('hands over at once on resign, and a kept-alive leader stays leader', async () => {
        const other = await harness.open();
        const first = await store.campaign(election, 'host-a', { ttlSeconds: harness.ttlSeconds });
        const second = other.campaign(election, 'host-b', { ttlSeconds: harness.ttlSeconds });
        await first.lease.keepAlive();
        expect(await stillPending(second, 100)).toBe(true);
        await first.resign();
        await first.lost;
        const won = await second;
        expect(won.candidate).toBe('host-b');
        expect((await store.txn([first.fence()], [])).succeeded).toBe(false);
        await won.resign();
        expect(await store.leader(election)).toBeUndefined();
      });

      it.each(['null', '"host-a"', '{"candidate": 5}'])('refuses a leader key holding %s with INVALID_VALUE naming the key', async (value) => {
        await store.put(election, value);
        const error = await rejection(store.leader(election));
        expect(error).toMatchObject({ code: 'INVALID_VALUE', field: election });
        expect(error.message).toContain('not a leader record');
      });

      it('rejects a waiting campaign with CAMPAIGN_ABORTED when its signal aborts', async () => {
        const first = await store.campaign(election, 'host-a', { ttlSeconds: harness.ttlSeconds });
        const abort = new AbortController();
        const waiting = store.campaign(election, 'host-b', { ttlSeconds: harness.ttlSeconds, signal: abort.signal });
        expect(await stillPending(waiting, 50)).toBe(true);
        abort.abort();
        expect((await rejection(waiting)).code).toBe('CAMPAIGN_ABORTED');
        expect((await store.leader(election))?.candidate).toBe('host-a');
        await first.resign();
      });
    });

    describe('close', () => {
      it('ends watches with STORE_CLOSED and refuses calls afterwards', async () => {
        const own = await harness.open();
        const errors: Error[] = [];
        await own.watch('/fleet/', () => undefined, { onError: (e) => errors.push(e) });
        await own.close();
        await eventually(() => errors.length === 1, 'the watch to end');
        expect(errors[0]).toMatchObject({ code: 'STORE_CLOSED' });
        expect((await rejection(own.get('/fleet/demo/a'))).code).toBe('STORE_CLOSED');
      });
    });
  });
}
