/**
 * Opening a SQLite file that other processes may be opening too.
 *
 * busy_timeout does not cover everything opening does: switching a new file to WAL needs an
 * exclusive lock, and SQLite answers SQLITE_BUSY at once, without waiting, where waiting could
 * deadlock. Two agents opening one new shared file at the same instant then failed with
 * "database is locked" (reproduced: 8 processes at once, 2 rounds in 10 lost some). Opening
 * is retried with a short jittered pause until `busyTimeoutMs` has passed (an attempt started
 * just before then may itself wait up to busy_timeout: opening blocks for at most about twice it).
 */
import type Database from 'better-sqlite3';

/** Runs `open` (which must close what it opened when it throws) until it stops failing with SQLITE_BUSY*, for up to `busyTimeoutMs`. */
export function openRetryingWhileBusy(open: () => Database.Database, busyTimeoutMs: number): Database.Database {
  const deadline = Date.now() + Math.max(0, busyTimeoutMs);
  for (let attempt = 1; ; attempt += 1) {
    try {
      return open();
    } catch (error) {
      // SQLITE_BUSY and its extended codes (SQLITE_BUSY_RECOVERY: another opener recovering the WAL).
      if (!String((error as { code?: string }).code).startsWith('SQLITE_BUSY') || Date.now() >= deadline) throw error;
      pause(Math.min(5 * attempt, 50) + Math.floor(Math.random() * 10));
    }
  }
}

/** Blocks this thread for `ms` (opening is synchronous, like the rest of better-sqlite3). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
