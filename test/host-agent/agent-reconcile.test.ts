/**
 * The agent's reconcile passes over the real ShardKeeper (fake driver and launcher, no root):
 * what a pass decides from the store must still hold when the keeper acts on it, even when a
 * migration hands a shard over in between.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../../host-agent/agent';
import { createLogger } from '../../host-agent/log';
import { ShardKeeper } from '../../host-agent/reconcile/shard-keeper';
import { serializePlan } from '../../src/contracts/plan';
import type { KeyValue } from '../../src/store/store';
import { tempDir } from '../helpers/cli';
import { examplePlan } from '../helpers/plan-fixture';
import { MemoryHistory, MemoryKv } from '../helpers/agent-fakes';
import { FakeDriver, FakeLauncher, waitFor } from './fakes';

/** MemoryKv whose next `list` answers what the store held when it was asked, once the test lets it. */
class SlowListKv extends MemoryKv {
  private gate: Promise<void> | undefined;
  listed = 0;
  holdNextList(): () => void {
    let open!: () => void;
    this.gate = new Promise((resolve) => (open = resolve));
    return open;
  }
  async list(prefix: string): Promise<KeyValue[]> {
    const answer = await super.list(prefix);
    const gate = this.gate;
    this.gate = undefined;
    this.listed += 1;
    await gate;
    return answer;
  }
}

describe('Agent reconcile over the keeper', () => {
  const dir = tempDir('agent-reconcile');
  afterAll(() => dir.remove());

  it('does not start again a shard a migration moved away while the pass read the store (source side)', async () => {
    const tokenFile = dir.file('token', 'agent-reconcile-token-0123456789');
    const planFile = join(dir.path, 'plan.json');
    // 4 shards of 0.5 core on two 2-core hosts: host-a gets web-0 and web-2.
    const plan = examplePlan((p) => {
      p.security = { auth: 'token', tokenFile };
      p.applications[0].shards.initial = 4;
      p.applications[0].stateDirectory = join(dir.path, 'web');
    });
    writeFileSync(`${planFile}.tmp`, serializePlan(plan));
    renameSync(`${planFile}.tmp`, planFile);
    const kv = new SlowListKv();
    const driver = new FakeDriver();
    const launcher = new FakeLauncher(driver);
    let keeper!: ShardKeeper;
    const agent = new Agent({
      hostId: 'host-a',
      plan: planFile,
      stateDir: join(dir.path, 'state'),
      listen: '127.0.0.1:0',
      logger: createLogger({ level: 'silent' }),
      openStores: async () => ({ store: kv, history: new MemoryHistory(), close: async () => {} }),
      createKernel: async ({ events, stateDir }) => {
        keeper = new ShardKeeper({ driver, sink: events, stateDirectory: stateDir, launcher, probe: launcher, graceSeconds: 0, pollIntervalMs: 20 });
        return { driver, manager: keeper, handover: keeper, restartHandover: keeper };
      },
      planPollSeconds: 0,
      reconcileEverySeconds: 3600,
    });
    await agent.start();
    try {
      expect(keeper.status().map((s) => s.shardId)).toEqual(['web-0', 'web-2']);
      const runs = launcher.runs.length;

      // A pass reads the assignments (web-0 still here) and is slow to hear back...
      const open = kv.holdNextList();
      const listedBefore = kv.listed;
      const pass = agent.reconcile();
      await waitFor(() => kv.listed > listedBefore, 'the pass reading the assignments');
      // ... while web-0's migration to host-b commits (assignment moved, as the journal's
      // `committed` transaction does) and the source lets its copy go. Whichever goes first, the
      // pass or the hand-over, the answer must be the same; the read is answered once the
      // hand-over is done or has had a while to get as far as it can.
      const migration = (async () => {
        await keeper.release('web-0');
        await kv.put('/fleet/test-fleet/assignments/web-0', JSON.stringify({ shardId: 'web-0', applicationId: 'web', hostId: 'host-b', by: 'migration', at: '2026-11-29T00:00:00Z' }));
        await keeper.discard('web-0');
      })();
      await Promise.race([migration, new Promise((resolve) => setTimeout(resolve, 200))]);
      open();
      await Promise.all([pass, migration]);

      // web-0 runs on host-b now: this host must not start a second copy of it.
      expect(keeper.status().map((s) => s.shardId)).toEqual(['web-2']);
      expect(launcher.runs.slice(runs).map((r) => r.shardId)).toEqual([]);
    } finally {
      await agent.stop();
    }
  });
});
