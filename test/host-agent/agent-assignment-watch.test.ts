/**
 * The agent reconciles on every change of the fleet's assignments; a watch the store ends (etcd
 * compacted past it, a connection lost for good) is opened again after a catch-up reconcile,
 * with back-off while the store refuses, and never after the agent stopped.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../../host-agent/agent';
import { createLogger, memoryLogDestination } from '../../host-agent/log';
import { serializePlan } from '../../src/contracts/plan';
import type { WatchEvent, WatchOptions, Watcher } from '../../src/store/store';
import { StoreError } from '../../src/store/store-error';
import { tempDir } from '../helpers/cli';
import { examplePlan } from '../helpers/plan-fixture';
import { FakeDriver, FakeShardManager, MemoryHistory, MemoryKv } from '../helpers/agent-fakes';

/** MemoryKv whose watches the test ends, and whose next `refuse` watch calls fail. */
class WatchableKv extends MemoryKv {
  readonly watches: { prefix: string; onEvent: (event: WatchEvent) => void; opts?: WatchOptions; closed: boolean }[] = [];
  refuse = 0;
  calls = 0;

  async watch(prefix: string, onEvent: (event: WatchEvent) => void, opts?: WatchOptions): Promise<Watcher> {
    this.calls += 1;
    if (this.refuse > 0) {
      this.refuse -= 1;
      throw new StoreError('STORE_UNAVAILABLE', 'store', 'etcd', 'etcd is not answering');
    }
    const watch = { prefix, onEvent, opts, closed: false };
    this.watches.push(watch);
    return { close: async () => void (watch.closed = true) };
  }
}

const waitFor = async (what: string, ok: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

describe('Agent: the assignment watch', () => {
  const dir = tempDir('agent-watch');
  afterAll(() => dir.remove());

  it('is opened again after the store ends it, with a catch-up reconcile and back-off, and not after stop', async () => {
    const tokenFile = dir.file('token', 'agent-watch-token-0123456789');
    const planFile = join(dir.path, 'plan.json');
    writeFileSync(`${planFile}.tmp`, serializePlan(examplePlan((p) => (p.security = { auth: 'token', tokenFile }))));
    renameSync(`${planFile}.tmp`, planFile);
    const kv = new WatchableKv();
    const manager = new FakeShardManager();
    const logs = memoryLogDestination();
    const agent = new Agent({
      hostId: 'host-a',
      plan: planFile,
      stateDir: join(dir.path, 'state'),
      listen: '127.0.0.1:0',
      logger: createLogger({ level: 'debug', destination: logs }),
      openStores: async () => ({ store: kv, history: new MemoryHistory(), close: async () => {} }),
      createKernel: async () => ({ driver: Object.assign(new FakeDriver(), { hostRoot: 'shardform/host-a' }) as never, manager }),
      planPollSeconds: 0,
      reconcileEverySeconds: 3600,
    });
    await agent.start();
    try {
      expect(kv.watches).toHaveLength(1);
      expect(kv.watches[0]!.prefix).toBe('/fleet/test-fleet/assignments/');
      const applies = () => manager.calls.filter((c) => c.method === 'apply').length;
      const before = applies();

      // The store ends the watch; the next try to watch again fails, the one after succeeds.
      kv.refuse = 1;
      kv.watches[0]!.opts!.onError!(new StoreError('COMPACTED', 'fromRevision', 7, 'revision 7 was compacted'));
      await waitFor('a catch-up reconcile', () => applies() > before);
      await waitFor('the watch opened again', () => kv.watches.length === 2, 8_000);
      expect(kv.calls).toBe(3);
      expect(logs.lines()).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ level: 'warn', code: 'COMPACTED', msg: 'the assignment watch ended; reconciling now and watching again' }),
          expect.objectContaining({ level: 'warn', msg: 'cannot watch the assignments yet; trying again' }),
          expect.objectContaining({ level: 'info', attempt: 2, msg: 'watching the assignments again' }),
        ]),
      );

      // Changes reach the agent through the new watch.
      const beforeEvent = applies();
      kv.watches[1]!.onEvent({ type: 'put', key: '/fleet/test-fleet/assignments/web-0', value: '{}', modRevision: 9 });
      await waitFor('a reconcile on the event', () => applies() > beforeEvent);

      // Ended again, then stopped before the retry: no watch is opened after stop.
      kv.watches[1]!.opts!.onError!(new StoreError('STORE_UNAVAILABLE', 'store', 'etcd', 'connection lost'));
    } finally {
      await agent.stop();
    }
    const calls = kv.calls;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(kv.calls).toBe(calls);
    expect(kv.watches).toHaveLength(2);
    expect(kv.watches[1]!.closed).toBe(true);
  }, 20_000);
});
