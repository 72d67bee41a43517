import { getJson, listJson, putJson } from '../../src/store/store-json';
import { embeddedHarness, type EmbeddedHarness } from './embedded-harness';

describe('JSON helpers', () => {
  let harness: EmbeddedHarness;
  beforeEach(async () => {
    harness = await embeddedHarness();
  });
  afterEach(() => harness.close());

  it('round-trips JSON values with their revisions', async () => {
    const store = harness.openEmbedded();
    const rev = await putJson(store, '/fleet/demo/journal/m-1', { state: 'prepared', hosts: ['a', 'b'] });
    expect(await getJson(store, '/fleet/demo/journal/m-1')).toEqual({ key: '/fleet/demo/journal/m-1', value: { state: 'prepared', hosts: ['a', 'b'] }, createRevision: rev, modRevision: rev });
    expect((await listJson<{ state: string }>(store, '/fleet/demo/journal/')).map((kv) => kv.value.state)).toEqual(['prepared']);
    expect(await getJson(store, '/fleet/demo/journal/none')).toBeUndefined();
  });

  it('names the key holding a value that is not JSON', async () => {
    const store = harness.openEmbedded();
    await store.put('/fleet/demo/bad', '{not json');
    await expect(getJson(store, '/fleet/demo/bad')).rejects.toMatchObject({ code: 'INVALID_VALUE', field: '/fleet/demo/bad', value: '{not json' });
  });
});
