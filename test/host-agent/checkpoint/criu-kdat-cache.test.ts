import { kdatCacheWanted } from '../../../host-agent/checkpoint/criu-kdat-cache';

describe('keeping CRIU\'s kernel probe: the switch', () => {
  it('is on unless SHARDFORM_CRIU_KDAT_CACHE=off, and refuses any other value naming it', () => {
    expect(kdatCacheWanted({})).toBe(true);
    expect(kdatCacheWanted({ SHARDFORM_CRIU_KDAT_CACHE: 'on' })).toBe(true);
    expect(kdatCacheWanted({ SHARDFORM_CRIU_KDAT_CACHE: 'off' })).toBe(false);
    expect(() => kdatCacheWanted({ SHARDFORM_CRIU_KDAT_CACHE: 'no' })).toThrow('SHARDFORM_CRIU_KDAT_CACHE="no" must be on or off');
  });
});
