/**
 * Opening a new shared store file while another process holds a lock on it. Switching a new
 * file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once there instead of
 * waiting out busy_timeout; two agents starting together on one new shared file lost the race
 * ("database is locked", seen in the netns migration tests).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { openStoreDatabase } from '../../src/store/embedded-schema';
import { tempDir } from '../helpers/cli';

/** A process that opens `path` (rollback journal, as a new file starts) and holds its write lock for `holdMs`, as the other opener does while switching to WAL. */
function holdWriteLock(path: string, holdMs: number): Promise<{ released: Promise<void> }> {
  const script = `
    const db = require('better-sqlite3')(process.argv[1]);
    db.exec('CREATE TABLE IF NOT EXISTS t(x)');
    db.exec('BEGIN IMMEDIATE'); db.prepare('INSERT INTO t VALUES (1)').run();
    process.stdout.write('locked\\n');
    setTimeout(() => { db.exec('COMMIT'); db.close(); }, Number(process.argv[2]));`;
  const child = spawn(process.execPath, ['-e', script, path, String(holdMs)], { cwd: join(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'inherit'] });
  const released = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () => resolve({ released }));
    child.once('exit', (code) => reject(new Error(`lock holder exited (${code}) before locking`)));
  });
}

describe('embedded store: opening a new file another process has locked', () => {
  const dir = tempDir('embedded-open-race');
  afterAll(() => dir.remove());

  it('waits for the lock (within busy_timeout) instead of failing with "database is locked"', async () => {
    const path = join(dir.path, 'store.db');
    const { released } = await holdWriteLock(path, 300);
    const db = openStoreDatabase(path, { busyTimeoutMs: 5000, synchronous: 'full' });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    await released;
  });

  it('still fails, naming the lock, once busy_timeout has passed', async () => {
    const path = join(dir.path, 'held.db');
    const { released } = await holdWriteLock(path, 1500);
    expect(() => openStoreDatabase(path, { busyTimeoutMs: 200, synchronous: 'full' })).toThrow(/database is locked/);
    await released;
  });
});
