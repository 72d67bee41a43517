/**
 * The store contract against a real etcd (Debian's etcd-server), plus what only etcd shows:
 * keys really live under the configured prefix, leader keys carry etcd's own lease, and a call
 * to an etcd that hangs fails within its deadline.
 */
import { Etcd3 } from 'etcd3';
import { EtcdStore } from '../../src/store/etcd-store';
import { openStore } from '../../src/store/open-store';
import { describePrivileged, requireCommand } from '../helpers/privileged';
import type { Store } from '../../src/store';
import { describeStoreContract, type StoreHarness } from '../store/store-contract';
import { type EtcdServer, startEtcd } from './etcd-server';

jest.setTimeout(60_000);

describePrivileged('etcd store', [requireCommand('etcd', 'apt-get install etcd-server')], () => {
  let server: EtcdServer;
  let run = 0;
  beforeAll(async () => {
    server = await startEtcd();
  });
  afterAll(async () => {
    await server?.stop();
  });

  const harness = async (): Promise<StoreHarness> => {
    // A prefix per test keeps tests apart on the one server.
    const prefix = `/test-${process.pid}-${++run}`;
    const stores: Store[] = [];
    return {
      // 2 s, not etcd's 1 s minimum: "the second candidate still waits" must not race the
      // first lease running out on a loaded machine.
      ttlSeconds: 2,
      exactTime: false,
      open: async () => {
        const store = openStore({ kind: 'etcd', endpoints: [server.endpoint], prefix });
        stores.push(store);
        return store;
      },
      passTime: (seconds) => new Promise((r) => setTimeout(r, seconds * 1000)),
      close: async () => {
        for (const store of stores) await store.close();
      },
    };
  };

  describeStoreContract('etcd', harness);

  describe('on the etcd server itself', () => {
    let raw: Etcd3;
    beforeAll(() => {
      raw = new Etcd3({ hosts: server.endpoint });
    });
    afterAll(() => raw.close());

    it('stores keys under the configured prefix and strips it on the way out', async () => {
      const store = openStore({ kind: 'etcd', endpoints: [server.endpoint], prefix: '/shardform-prefix/' });
      await store.put('/fleet/demo/a', 'v');
      expect(await raw.get('/shardform-prefix/fleet/demo/a').string()).toBe('v');
      expect(await raw.get('/fleet/demo/a').string()).toBeNull();
      expect((await store.list('/fleet/')).map((kv) => kv.key)).toEqual(['/fleet/demo/a']);
      await store.close();
    });

    it("holds the leader key with etcd's own lease, so etcd itself expires a hung leader", async () => {
      const store = openStore({ kind: 'etcd', endpoints: [server.endpoint], prefix: '/lease-check' });
      const leadership = await store.campaign('/fleet/demo/coordinator', 'host-a', { ttlSeconds: 2 });
      const ttl = await raw.leaseClient.leaseTimeToLive({ ID: leadership.lease.id, keys: true });
      expect(Number(ttl.TTL)).toBeGreaterThan(0);
      expect(ttl.keys.map((k) => k.toString())).toEqual(['/lease-check/fleet/demo/coordinator']);
      await leadership.resign();
      await leadership.lost;
      await store.close();
    });

    it('fails a call to an etcd that stopped answering on an open connection, rather than waiting for TCP to give up', async () => {
      const hung = await startEtcd();
      const store = new EtcdStore({ endpoints: [hung.endpoint], prefix: '/hung', requestTimeoutMs: 300 });
      try {
        await store.put('/fleet/demo/a', '1'); // the connection is open
        const lease = await store.grantLease(5);
        process.kill(hung.pid, 'SIGSTOP');
        // The lease keep-alive is a stream, without a call deadline: its round trip has one.
        await expect(lease.keepAlive()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', message: expect.stringContaining('DEADLINE_EXCEEDED') });
        await expect(store.put('/fleet/demo/a', '2')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', message: expect.stringContaining('DEADLINE_EXCEEDED') });
        // A read that ran out its deadline is not retried: one deadline, and the client's circuit
        // breaker (three failures in a row) stays closed, so calls work again as soon as etcd does.
        await expect(store.get('/fleet/demo/a')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', message: expect.stringContaining('DEADLINE_EXCEEDED') });
        process.kill(hung.pid, 'SIGCONT');
        expect(await store.get('/fleet/demo/a')).toMatchObject({ value: '1' });
      } finally {
        process.kill(hung.pid, 'SIGCONT');
        await store.close();
        await hung.stop();
      }
    });

    it('fails a call to an unreachable etcd with STORE_UNAVAILABLE naming the endpoints', async () => {
      const store = openStore({ kind: 'etcd', endpoints: ['http://127.0.0.1:9'], prefix: '/x' });
      await expect(store.get('/fleet/demo/a')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', field: 'store.endpoints' });
      await store.close();
    });
  });
});
