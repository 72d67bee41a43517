/** An embedded store harness: a temp file per test, one ManualClock shared by every instance. */
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
    close: async () => {
      for (const store of stores) await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
