/**
 * Opening a new SQLite file (the embedded store's, a metric history) while another process holds a lock on it. Switching a new
 * file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once there instead of
 * waiting out busy_timeout; two agents starting together on one new shared file lost the race
 * ("database is locked", seen in the netns migration tests).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { openStoreDatabase } from '../../src/store/embedded-schema';
import { openHistoryDatabase } from '../../src/store/sqlite-metric-history';
import { tempDir } from '../helpers/cli';

/** A process that opens `path` (rollback journal, as a new file starts) and holds its write lock for `holdMs`, as the other opener does while switching to WAL. */
function holdWriteLock(path: string, holdMs: number): Promise<{ released: Promise<void>; release: () => void }> {
  const script = `
    const db = require('better-sqlite3')(process.argv[1]);
    db.exec('CREATE TABLE IF NOT EXISTS t(x)');
    db.exec('BEGIN IMMEDIATE'); db.prepare('INSERT INTO t VALUES (1)').run();
    process.stdout.write('locked\\n');
    setTimeout(() => { db.exec('COMMIT'); db.close(); }, Number(process.argv[2]));`;
  const child = spawn(process.execPath, ['-e', script, path, String(holdMs)], { cwd: join(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'inherit'] });
  const released = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () => resolve({ released, release: () => child.kill() }));
    child.once('exit', (code) => reject(new Error(`lock holder exited (${code}) before locking`)));
  });
}

const openers: [string, (path: string, busyTimeoutMs: number) => Database.Database][] = [
  ['embedded store', (path, busyTimeoutMs) => openStoreDatabase(path, { busyTimeoutMs, synchronous: 'full' })],
  // Its busy timeout is fixed at 5 s: the failing case below is the store's alone.
  ['metric history', (path) => openHistoryDatabase(path)],
];

describe.each(openers)('%s: opening a new file another process has locked', (what, open) => {
  const dir = tempDir('sqlite-open-race');
  afterAll(() => dir.remove());

  it('waits for the lock (within busy_timeout) instead of failing with "database is locked"', async () => {
    const path = join(dir.path, `${what.replace(' ', '-')}.db`);
    const { released } = await holdWriteLock(path, 300);
    const db = open(path, 5000);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    await released;
  });
});

describe('metric history: opening an existing file while another process writes to it', () => {
  const dir = tempDir('sqlite-open-race');
  afterAll(() => dir.remove());

  it('does not wait for the write lock when its tables are there', async () => {
    const path = join(dir.path, 'existing-history.db');
    openHistoryDatabase(path).close();
    const { released, release } = await holdWriteLock(path, 8000);
    try {
      // Taking the lock, it would wait out its busy timeout (5 s) and fail: the lock is held for 8.
      openHistoryDatabase(path).close();
    } finally {
      release();
      await released;
    }
  });

  it('still creates what is missing (an index a later version added) in an existing history', () => {
    const path = join(dir.path, 'older-history.db');
    const db = openHistoryDatabase(path);
    db.exec('DROP INDEX metric_bucket_by_time');
    db.close();
    const reopened = openHistoryDatabase(path);
    expect(reopened.prepare("SELECT name FROM sqlite_master WHERE name = 'metric_bucket_by_time'").pluck().get()).toBe('metric_bucket_by_time');
    reopened.close();
  });
});

describe('embedded store: opening a locked file', () => {
  const dir = tempDir('sqlite-open-race');
  afterAll(() => dir.remove());

  it('still fails, naming the lock, once busy_timeout has passed', async () => {
    const path = join(dir.path, 'held.db');
    const { released } = await holdWriteLock(path, 1500);
    expect(() => openStoreDatabase(path, { busyTimeoutMs: 200, synchronous: 'full' })).toThrow(/database is locked/);
    await released;
  });
});
