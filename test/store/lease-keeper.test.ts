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

  it('renews at a fixed rate: a slow renewal does not push the next one later by its own length', async () => {
    jest.useFakeTimers();
    try {
      const startedAt: number[] = [];
      // Each renewal takes 800 ms of the 1 s interval (a store answering slowly).
      const slow = { id: '1', ttlSeconds: 3, revoke: async () => {}, keepAlive: () => new Promise<void>((resolve) => { startedAt.push(Date.now()); setTimeout(resolve, 800); }) };
      const keeper = keepLeaseAlive(slow);
      const t0 = Date.now();
      await jest.advanceTimersByTimeAsync(5_000);
      keeper.stop();
      // Started every 1 s (3 s ttl / 3), not every 1.8 s: five renewals in 5 s, the ttl never reached.
      expect(startedAt.map((t) => t - t0)).toEqual([1000, 2000, 3000, 4000, 5000]);
    } finally {
      jest.useRealTimers();
    }
  });
});
