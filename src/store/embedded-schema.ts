/**
 * The tables of the embedded store's SQLite file and how the file is opened. Kept apart from
 * the store's logic so the layout (what a crash can leave behind) reads in one place.
 *
 * Durability: WAL journal with synchronous=FULL by default: a transaction either committed
 * (and survives SIGKILL and power loss) or left no trace; SQLite's WAL guarantees a partial
 * write is never visible (https://www.sqlite.org/wal.html, https://www.sqlite.org/atomiccommit.html).
 * busy_timeout lets several processes sharing the file wait for the write lock instead of
 * failing with SQLITE_BUSY.
 */
import Database from 'better-sqlite3';
import { openRetryingWhileBusy } from './sqlite-open';

export const SCHEMA_VERSION = 1;

const TABLES = `
CREATE TABLE IF NOT EXISTS meta (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(name, value) VALUES ('revision', 0), ('compacted', 0), ('lease_seq', 0);

-- Current state: one row per live key, as etcd's keyspace.
CREATE TABLE IF NOT EXISTS kv (
  key             TEXT PRIMARY KEY,
  value           TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  mod_revision    INTEGER NOT NULL,
  lease_id        TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv(lease_id) WHERE lease_id IS NOT NULL;

-- Every change in revision order, for watchers in this and other processes. seq orders the
-- ops of one transaction, which share its revision. Compacted from the old end.
CREATE TABLE IF NOT EXISTS changes (
  revision INTEGER NOT NULL,
  seq      INTEGER NOT NULL,
  type     TEXT NOT NULL CHECK (type IN ('put', 'delete')),
  key      TEXT NOT NULL,
  value    TEXT,
  at_ms    INTEGER NOT NULL,
  PRIMARY KEY (revision, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS leases (
  id            TEXT PRIMARY KEY,
  ttl_seconds   INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases(expires_at_ms);
`;

export interface OpenOptions {
  readonly busyTimeoutMs: number;
  readonly synchronous: 'full' | 'normal';
}

/** Opens (creating if needed) a store file; safe to call from several processes at once (see sqlite-open.ts). */
export function openStoreDatabase(path: string, options: OpenOptions): Database.Database {
  return openRetryingWhileBusy(() => openOnce(path, options), options.busyTimeoutMs);
}

function openOnce(path: string, options: OpenOptions): Database.Database {
  const db = new Database(path);
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs))}`);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
    // IMMEDIATE takes the write lock first, so two processes creating the schema serialize.
    db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new Error(`${path}: store schema version ${version} is newer than this build (${SCHEMA_VERSION})`);
      }
      db.exec(TABLES);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }).immediate();
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}
