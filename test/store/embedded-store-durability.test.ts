/**
 * What only the embedded store has to prove: durability across a process crash, reopening,
 * exact lease timing on the injected clock, change-log compaction, and openStore's checks.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { TxnCompare, WatchEvent } from '../../src/store';
import { EmbeddedStore } from '../../src/store/embedded-store';
import { openStore } from '../../src/store/open-store';
import { embeddedHarness, type EmbeddedHarness } from './embedded-harness';
import { eventually } from './store-contract';

const KEYS = 200;

/** Starts the crash writer, waits until it has committed, lets it run a moment, SIGKILLs it. */
async function crashWriter(path: string, delayMs: number): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'fixtures', 'crash-writer.ts'), path, String(KEYS), '4096'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`crash writer exited early (${code}): ${stderr}`)));
  });
  await new Promise((r) => setTimeout(r, delayMs));
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
}

/** Starts a leader in a child process on the real clock and returns its term and fence. */
async function childLeader(path: string, election: string, ttlSeconds: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'fixtures', 'campaign-holder.ts'), path, election, String(ttlSeconds)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const won = await new Promise<{ term: number; fence: TxnCompare }>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => resolve(JSON.parse(d.toString())));
    child.once('exit', (code) => reject(new Error(`leader child exited early (${code}): ${stderr}`)));
  });
  return { ...won, pid: child.pid, kill: async () => (child.kill('SIGKILL'), exited) };
}

describe('embedded store', () => {
  let harness: EmbeddedHarness;
  beforeEach(async () => {
    harness = await embeddedHarness();
  });
  afterEach(async () => {
    await harness.close();
  });

  it('never shows a partial transaction after the writing process is SIGKILLed, and its watchers saw whole transactions', async () => {
    const observer = harness.openEmbedded();
    const events: WatchEvent[] = [];
    await observer.watch('/crash/', (e) => events.push(e), { fromRevision: 0 });
    for (const delayMs of [0, 37, 113]) {
      await crashWriter(harness.path, delayMs);
      const store = harness.openEmbedded();
      const kvs = await store.list('/crash/');
      expect(kvs).toHaveLength(KEYS);
      const revisions = new Set(kvs.map((kv) => kv.modRevision));
      const values = new Set(kvs.map((kv) => kv.value));
      expect(revisions.size).toBe(1);
      expect(values.size).toBe(1);
      const raw = new Database(harness.path, { readonly: true });
      expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
      const { revision } = raw.prepare("SELECT value AS revision FROM meta WHERE name = 'revision'").get() as { revision: number };
      const last = raw.prepare('SELECT COUNT(*) AS n FROM changes WHERE revision = ?').get(revision) as { n: number };
      raw.close();
      expect([...revisions][0]).toBe(revision);
      expect(last.n).toBe(KEYS);
      await store.close();
    }
    // Every revision the observer saw carried all KEYS puts: no watcher saw half a txn either.
    await eventually(async () => events.length > 0 && events[events.length - 1].modRevision === (await observer.get('/crash/k0'))?.modRevision, 'the observer caught up');
    const perRevision = new Map<number, number>();
    for (const e of events) perRevision.set(e.modRevision, (perRevision.get(e.modRevision) ?? 0) + 1);
    expect([...perRevision.values()].every((n) => n === KEYS)).toBe(true);
  }, 120_000);

  it('lets a candidate in another process take over from a SIGKILLed leader once its lease runs out, and fences the dead leader', async () => {
    const election = '/fleet/demo/coordinator';
    const leader = await childLeader(harness.path, election, 2);
    // This process runs on the real clock too: the child's lease expiry is real time.
    const store = new EmbeddedStore({ path: harness.path, pollIntervalMs: 20 });
    try {
      expect(await store.leader(election)).toEqual({ candidate: `pid-${leader.pid}`, term: leader.term });
      const campaign = store.campaign(election, 'successor', { ttlSeconds: 2 });
      await leader.kill();
      const won = await campaign;
      expect(won.term).toBeGreaterThan(leader.term);
      expect((await store.txn([leader.fence], [{ kind: 'put', key: '/fleet/demo/decision', value: 'dead leader' }])).succeeded).toBe(false);
      expect((await store.txn([won.fence()], [{ kind: 'put', key: '/fleet/demo/decision', value: 'successor' }])).succeeded).toBe(true);
      await won.resign();
    } finally {
      await store.close();
    }
  }, 60_000);

  it('fails a write with STORE_UNAVAILABLE when another process holds the lock past busyTimeoutMs, writing nothing', async () => {
    const store = harness.openEmbedded({ busyTimeoutMs: 50 });
    const rev = await store.put('/fleet/demo/a', '1');
    const locker = new Database(harness.path);
    locker.prepare('BEGIN IMMEDIATE').run();
    try {
      const error = await store.put('/fleet/demo/a', '2').catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE', field: 'store.path', value: harness.path });
      expect((error as Error).message).toContain('SQLITE_BUSY');
    } finally {
      locker.prepare('ROLLBACK').run();
      locker.close();
    }
    expect(await store.get('/fleet/demo/a')).toMatchObject({ value: '1', modRevision: rev });
  });

  it('keeps keys, revisions and leases across closing and reopening the file', async () => {
    const store = harness.openEmbedded();
    const lease = await store.grantLease(30);
    await store.put('/fleet/demo/a', '1');
    const rev = await store.put('/fleet/demo/hosts/a', 'alive', { leaseId: lease.id });
    await store.close();
    const reopened = harness.openEmbedded();
    expect(await reopened.get('/fleet/demo/hosts/a')).toEqual({ key: '/fleet/demo/hosts/a', value: 'alive', createRevision: rev, modRevision: rev, leaseId: lease.id });
    expect(await reopened.put('/fleet/demo/b', '2')).toBe(rev + 1);
    harness.clock.advance(31);
    expect(await reopened.get('/fleet/demo/hosts/a')).toBeUndefined();
  });

  it('expires a lease exactly at its ttl on the injected clock, and keepAlive restarts the ttl', async () => {
    const store = harness.openEmbedded();
    const lease = await store.grantLease(10);
    await store.put('/fleet/demo/hosts/a', 'alive', { leaseId: lease.id });
    harness.clock.advance(9.999);
    expect(await store.get('/fleet/demo/hosts/a')).toBeDefined();
    await lease.keepAlive();
    harness.clock.advance(9.999);
    expect(await store.get('/fleet/demo/hosts/a')).toBeDefined();
    harness.clock.advance(0.001);
    expect(await store.get('/fleet/demo/hosts/a')).toBeUndefined();
    await expect(lease.keepAlive()).rejects.toMatchObject({ code: 'LEASE_LOST', field: 'leaseId', value: lease.id });
  });

  it('expires leases at a revision of their own, seen by watchers in another instance', async () => {
    const store = harness.openEmbedded();
    const other = harness.openEmbedded();
    const events: WatchEvent[] = [];
    await other.watch('/fleet/', (e) => events.push(e));
    const lease = await store.grantLease(5);
    const put = await store.put('/fleet/demo/hosts/a', 'alive', { leaseId: lease.id });
    harness.clock.advance(5);
    // Nobody calls the store: the watching instance's poll expires the lease.
    await eventually(() => events.length === 2, 'the expiry delete');
    expect(events[1]).toEqual({ type: 'delete', key: '/fleet/demo/hosts/a', modRevision: put + 1 });
  });

  it('compacts the change log and tells a watch that starts before it with COMPACTED', async () => {
    const store = harness.openEmbedded({ changeRetention: { revisions: 100, seconds: 60 } });
    for (let i = 0; i < 1000; i++) await store.put('/fleet/demo/counter', String(i));
    // Revision 1000 triggered compaction, but nothing was old enough yet.
    await expect(store.watch('/fleet/', () => undefined, { fromRevision: 0 })).resolves.toBeDefined();
    harness.clock.advance(61);
    for (let i = 0; i < 1000; i++) await store.put('/fleet/demo/counter', String(i));
    const error = await store.watch('/fleet/', () => undefined, { fromRevision: 10 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'COMPACTED', field: 'fromRevision', value: 10 });
    const seen: WatchEvent[] = [];
    await store.watch('/fleet/', (e) => seen.push(e), { fromRevision: 1950 });
    await eventually(() => seen.length === 50, 'the retained tail');
    expect(seen[0].modRevision).toBe(1951);
  });

  it('opens from plan store settings, and names the setting when it cannot', async () => {
    const store = openStore({ kind: 'embedded', path: 'store.db' }, { baseDirectory: join(harness.path, '..') });
    expect(store.kind).toBe('embedded');
    await store.put('/fleet/demo/a', 'v');
    expect((await harness.openEmbedded().get('/fleet/demo/a'))?.value).toBe('v');
    await store.close();
    expect(() => openStore({ kind: 'embedded', path: 'store.db' })).toThrow('store.path: a relative path needs a base directory (got "store.db")');
    expect(() => openStore({ kind: 'embedded', path: '/nonexistent-dir/x/store.db' })).toThrow(/^store.path: cannot open the store file/);
    expect(() => openStore({ kind: 'etcd', endpoints: [], prefix: '/x' })).toThrow(/^store.endpoints: no etcd endpoint/);
  });
});
