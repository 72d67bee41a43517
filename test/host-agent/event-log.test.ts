import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventLog } from '../../host-agent/event-log';
import { silentLogger } from '../../host-agent/log';
import { EmbeddedStore } from '../../src/store/embedded-store';

describe('EventLog', () => {
  let dir: string;
  let store: EmbeddedStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shardform-events-'));
    store = new EmbeddedStore({ path: join(dir, 'store.db') });
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const event = (seq: number) => ({ type: 'started', shardId: 'web-0', applicationId: 'web', at: '2026-11-25T00:00:00.000Z', detail: {}, seq });
  const key = (seq: number) => `/hosts/host-a/events/${String(seq).padStart(12, '0')}`;

  it.each([
    ['a seq past 2^53', 1e300],
    ['a fractional seq', 2.5],
    ['a seq other than its key says', 7],
  ])('skips a stored event with %s, and keeps persisting after the newest good one', async (_what, badSeq) => {
    await store.put(key(1), JSON.stringify(event(1)));
    await store.put(key(2), JSON.stringify(event(badSeq)));
    const log = new EventLog({ hostId: 'host-a', store, logger: silentLogger() });
    await log.load();
    expect(log.since(0).map((e) => e.seq)).toEqual([1]);
    log.emit({ type: 'stopped', shardId: 'web-0', applicationId: 'web', at: '2026-11-25T00:01:00.000Z', detail: {} });
    await log.flush();
    expect(JSON.parse((await store.get(key(2)))?.value ?? 'null')).toMatchObject({ type: 'stopped', seq: 2 });
  });

  it('skips a stored value that is JSON but not an event', async () => {
    await store.put(key(1), JSON.stringify(event(1)));
    await store.put(key(2), JSON.stringify({ seq: 2, shardId: 42 }));
    const log = new EventLog({ hostId: 'host-a', store, logger: silentLogger() });
    await log.load();
    expect(log.since(0).map((e) => e.seq)).toEqual([1]);
  });

  /** The store, with the next `failPuts` puts and `failDeletes` deletes refused (the store briefly away). */
  const flaky = () => {
    const faults = { failPuts: 0, failDeletes: 0 };
    const wrapped = {
      put: (k: string, v: string) => (faults.failPuts-- > 0 ? Promise.reject(new Error('store away')) : store.put(k, v)),
      delete: (k: string) => (faults.failDeletes-- > 0 ? Promise.reject(new Error('store away')) : store.delete(k)),
      list: (prefix: string) => store.list(prefix),
      get: (k: string) => store.get(k),
    };
    return { faults, wrapped };
  };
  const emitOne = (log: EventLog) => log.emit({ type: 'started', shardId: 'web-0', applicationId: 'web', at: '2026-11-25T00:00:00.000Z', detail: {} });
  const storedSeqs = async () => (await store.list('/hosts/host-a/events/')).map((kv) => Number(kv.key.slice(-12)));

  it('keeps at most `keep` events in the store when a write or a deletion failed on the way', async () => {
    const { faults, wrapped } = flaky();
    const log = new EventLog({ hostId: 'host-a', store: wrapped, logger: silentLogger(), keep: 3 });
    for (let i = 0; i < 4; i += 1) emitOne(log);
    await log.flush();
    faults.failPuts = 1; // event 5 is not written: event 2 must still go
    emitOne(log);
    await log.flush();
    faults.failDeletes = 1; // event 3's deletion (at event 6) fails
    emitOne(log);
    await log.flush();
    for (let i = 0; i < 3; i += 1) emitOne(log);
    await log.flush();
    expect(await storedSeqs()).toEqual([7, 8, 9]);
  });

  it('deletes, when it loads, stored events older than the ones it keeps (left by an earlier agent)', async () => {
    for (const seq of [1, 2, 5, 6, 7, 8]) await store.put(key(seq), JSON.stringify(event(seq)));
    const log = new EventLog({ hostId: 'host-a', store, logger: silentLogger(), keep: 3 });
    await log.load();
    emitOne(log);
    await log.flush();
    expect(await storedSeqs()).toEqual([7, 8, 9]);
  });

  it('never gives a number a client was served to another event after a restart, even when the newest events were never stored', async () => {
    const { faults, wrapped } = flaky();
    const before = new EventLog({ hostId: 'host-a', store: wrapped, logger: silentLogger() });
    await before.load();
    for (let i = 0; i < 3; i += 1) emitOne(before);
    await before.flush();
    faults.failPuts = 2; // the store is away for the two newest events, then the agent restarts
    emitOne(before);
    emitOne(before);
    await before.flush();
    const cursor = before.since(0).at(-1)?.seq ?? 0;
    expect(cursor).toBe(5);

    const after = new EventLog({ hostId: 'host-a', store: wrapped, logger: silentLogger() });
    await after.load();
    after.emit({ type: 'stopped', shardId: 'web-0', applicationId: 'web', at: '2026-11-25T00:02:00.000Z', detail: {} });
    await after.flush();
    expect(after.since(cursor).map((e) => e.type)).toEqual(['stopped']);
    expect(after.since(0).map((e) => e.seq)).toEqual([1, 2, 3, after.lastSeq]);
  });

  it('serves an event only once the store holds a mark at or above its number, and serves it once the store is back', async () => {
    const { faults, wrapped } = flaky();
    const log = new EventLog({ hostId: 'host-a', store: wrapped, logger: silentLogger() });
    faults.failPuts = 1_000; // the store is away from the start: no mark taken
    await log.load();
    emitOne(log);
    await log.flush();
    expect(log.since(0)).toEqual([]);
    expect(log.lastSeq).toBe(0);
    faults.failPuts = 0; // back: the next poll asks for the mark again, no new event needed
    log.since(0);
    await log.flush();
    expect(log.since(0).map((e) => e.seq)).toEqual([1]);
    expect(log.lastSeq).toBe(1);
  });
});
