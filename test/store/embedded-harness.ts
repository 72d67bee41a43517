/** An embedded store harness: a temp file per test, one ManualClock shared by every instance. */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/store/clock';
import { EmbeddedStore, type EmbeddedStoreOptions } from '../../src/store/embedded-store';
import type { StoreHarness } from './store-contract';

export interface EmbeddedHarness extends StoreHarness {
  readonly clock: ManualClock;
  readonly path: string;
  openEmbedded(options?: Partial<EmbeddedStoreOptions>): EmbeddedStore;
}

export async function embeddedHarness(): Promise<EmbeddedHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'shardform-store-'));
  const path = join(dir, 'store.db');
  const clock = new ManualClock();
  const stores: EmbeddedStore[] = [];
  const openEmbedded = (options: Partial<EmbeddedStoreOptions> = {}) => {
    const store = new EmbeddedStore({ path, clock, pollIntervalMs: 10, ...options });
    stores.push(store);
    return store;
  };
  return {
    clock,
    path,
    ttlSeconds: 5,
    exactTime: true,
    openEmbedded,
    open: async () => openEmbedded(),
    passTime: async (seconds) => clock.advance(seconds),
    // What the store's own compaction does (it runs only every 1000 revisions), done directly.
    compact: async (revision) => {
      const db = new Database(path);
      try {
        db.transaction(() => {
          db.prepare('DELETE FROM changes WHERE revision < ?').run(revision);
          db.prepare("UPDATE meta SET value = ? WHERE name = 'compacted'").run(revision - 1);
        }).immediate();
      } finally {
        db.close();
      }
    },
    close: async () => {
      for (const store of stores) await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
