/**
 * Saved predictor state, next to the metric history it was learnt from (the agent's
 * `<state-dir>/metrics.db`): one row per predictor key (`shard/<id>`, `application/<id>`), the
 * state as gzip'd JSON (a predictor's ~0.9 MB of JSON is ~0.2 MB gzip'd). Like the history
 * this is per host and disposable: a lost or unreadable row only means the predictor is rebuilt
 * from the history.
 */
import Database from 'better-sqlite3';
import { gunzipSync, gzipSync } from 'node:zlib';

const TABLE = `
CREATE TABLE IF NOT EXISTS predictor_state (
  key TEXT PRIMARY KEY, saved_at_seconds REAL NOT NULL, state BLOB NOT NULL
) WITHOUT ROWID;
`;

export interface SavedState {
  readonly key: string;
  readonly savedAtSeconds: number;
}

export interface ModelStateStore {
  /** What is saved, without the states. */
  list(): SavedState[];
  /** The saved state of `key` (parsed), undefined when none; throws when the row cannot be read. */
  read(key: string): unknown;
  /** Saves states in one transaction (replacing those of the same keys). */
  save(entries: readonly { key: string; savedAtSeconds: number; state: unknown }[]): void;
  delete(keys: readonly string[]): void;
}

export class SqliteModelStates implements ModelStateStore {
  private readonly saveAll: (entries: readonly { key: string; savedAtSeconds: number; state: unknown }[]) => void;

  constructor(private readonly db: Database.Database) {
    db.exec(TABLE);
    const upsert = db.prepare('INSERT OR REPLACE INTO predictor_state (key, saved_at_seconds, state) VALUES (?, ?, ?)');
    this.saveAll = db.transaction((entries: readonly { key: string; savedAtSeconds: number; state: unknown }[]) => {
      for (const e of entries) upsert.run(e.key, e.savedAtSeconds, gzipSync(JSON.stringify(e.state), { level: 1 }));
    });
  }

  list(): SavedState[] {
    return this.db
      .prepare<[], { key: string; saved_at_seconds: number }>('SELECT key, saved_at_seconds FROM predictor_state ORDER BY key')
      .all()
      .map((row) => ({ key: row.key, savedAtSeconds: row.saved_at_seconds }));
  }

  read(key: string): unknown {
    const row = this.db.prepare<[string], { state: Buffer }>('SELECT state FROM predictor_state WHERE key = ?').get(key);
    return row === undefined ? undefined : JSON.parse(gunzipSync(row.state).toString('utf8'));
  }

  save(entries: readonly { key: string; savedAtSeconds: number; state: unknown }[]): void {
    this.saveAll(entries);
  }

  delete(keys: readonly string[]): void {
    const remove = this.db.prepare('DELETE FROM predictor_state WHERE key = ?');
    this.db.transaction(() => keys.forEach((key) => remove.run(key)))();
  }
}
