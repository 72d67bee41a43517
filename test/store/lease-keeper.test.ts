import { keepLeaseAlive } from '../../src/store/lease-keeper';
import { embeddedHarness, type EmbeddedHarness } from './embedded-harness';
import { eventually } from './store-contract';

describe('keepLeaseAlive', () => {
  let harness: EmbeddedHarness;
  beforeEach(async () => {
    harness = await embeddedHarness();
  });
  afterEach(() => harness.close());

  it('renews the lease so its keys outlive the ttl, and stops renewing when stopped', async () => {
    const store = harness.openEmbedded();
    const lease = await store.grantLease(10);
    await store.put('/fleet/demo/hosts/a', 'alive', { leaseId: lease.id });
    let renewals = 0;
    const counted = { ...lease, keepAlive: async () => { renewals++; await lease.keepAlive(); } };
    const keeper = keepLeaseAlive(counted, { intervalMs: 5 });
    // Move the clock in steps shorter than the ttl, each after at least one renewal.
    for (let step = 0; step < 5; step++) {
      const before = renewals;
      await eventually(() => renewals > before, 'a renewal');
      harness.clock.advance(8);
    }
    expect(await store.get('/fleet/demo/hosts/a')).toBeDefined();
    keeper.stop();
    harness.clock.advance(10);
    expect(await store.get('/fleet/demo/hosts/a')).toBeUndefined();
  });

  it('reports LEASE_LOST once the lease is gone', async () => {
    const store = harness.openEmbedded();
    const lease = await store.grantLease(10);
    const keeper = keepLeaseAlive(lease, { intervalMs: 5 });
    await lease.revoke();
    expect(await keeper.lost).toMatchObject({ code: 'LEASE_LOST' });
  });
});
