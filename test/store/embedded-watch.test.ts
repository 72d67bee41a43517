import type { WatchEvent } from '../../src/store';
import { eventually } from './store-contract';
import { embeddedHarness, type EmbeddedHarness } from './embedded-harness';

describe('embedded watch', () => {
  let harness: EmbeddedHarness;
  beforeEach(async () => {
    harness = await embeddedHarness();
  });
  afterEach(async () => {
    await harness.close();
  });

  it('ends with COMPACTED, never a partial stream, when another process compacts between its reads', async () => {
    const store = harness.openEmbedded();
    const from = await store.put('/fleet/demo/start', 'x');
    await store.put('/fleet/demo/k/1', '1');
    await store.put('/fleet/demo/k/2', '2');
    const last = await store.put('/fleet/demo/k/3', '3');
    // The poll has read the compaction point (nothing compacted); another process compacts
    // before the poll reads the changes: its reads are not one snapshot.
    const changes = store.changes.bind(store);
    jest.spyOn(store, 'changes').mockImplementationOnce((...args) => {
      void harness.compact(last);
      return changes(...args);
    });
    const seen: WatchEvent[] = [];
    const errors: Error[] = [];
    await store.watch('/fleet/demo/k/', (e) => seen.push(e), { fromRevision: from, onError: (e) => errors.push(e) });
    await eventually(() => seen.length + errors.length > 0, 'an event or an error');
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual([]);
    expect(errors).toEqual([expect.objectContaining({ code: 'COMPACTED' })]);
  });
});
