/**
 * The local drain (`shardform drain --host ID --state-dir DIR`) refuses when an agent holds the
 * host, before it opens a cgroup, and says to drain through that agent; what it took (the
 * cgroups' lock) is let go. (With an agent running on this machine the cgroups' lock refuses
 * first: test/integration/agent.test.ts.)
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CgroupRootLock } from '../../host-agent/cgroup-root-lock';
import { HOST_CLAIM_KEY } from '../../host-agent/host-claim';
import { drainLocally } from '../../host-agent/local-drain';
import { saveLastGoodPlan } from '../../host-agent/plan-source/last-good-plan';
import { parseProcStat } from '../../host-agent/runner/proc-info';
import { EmbeddedStore } from '../../src/store/embedded-store';
import { tempDir } from '../helpers/cli';
import { examplePlan } from '../helpers/plan-fixture';
import type { DesiredShard } from '../../host-agent/reconcile/desired-shard';
import { ShardKeeper } from '../../host-agent/reconcile/shard-keeper';
import { MemoryEventSink, type ShardEventSink } from '../../host-agent/shard-event';
import { FakeDriver, FakeLauncher } from './fakes';

describe('drainLocally with the host held by an agent', () => {
  const dir = tempDir('local-drain');
  const lockDir = join(dir.path, 'locks');
  const saved = process.env.SHARDFORM_LOCK_DIR;
  beforeAll(() => {
    process.env.SHARDFORM_LOCK_DIR = lockDir;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.SHARDFORM_LOCK_DIR;
    else process.env.SHARDFORM_LOCK_DIR = saved;
    dir.remove();
  });

  it('refuses, naming the agent and saying to drain through it, before any cgroup; lets the cgroups\' lock go', async () => {
    const stateDir = join(dir.path, 'state');
    const storePath = join(dir.path, 'store.db');
    await saveLastGoodPlan(stateDir, examplePlan((p) => void (p.store = { kind: 'embedded', path: storePath })));
    // A live agent of this machine holds host-a in the store (this very process, another agent instance).
    const store = new EmbeddedStore({ path: storePath });
    try {
      const lease = await store.grantLease(600);
      const holder = {
        machine: 'node-7',
        bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
        pidNamespace: readlinkSync('/proc/self/ns/pid'),
        pid: process.pid,
        startTicks: parseProcStat(readFileSync('/proc/self/stat', 'utf8'))!.startTime,
        instance: 'the-agent',
        address: '10.0.0.7:7100',
        since: '2026-11-28T01:02:03.000Z',
      };
      await store.put(HOST_CLAIM_KEY('host-a'), JSON.stringify(holder), { leaseId: lease.id });

      await expect(drainLocally({ hostId: 'host-a', stateDir, ownerPrefix: 'sfit-local-drain', graceSeconds: 1 })).rejects.toMatchObject({
        code: 'HOST_CLAIMED',
        message: `--host: another agent holds host "host-a": pid ${process.pid} on node-7 serving 10.0.0.7:7100, since 2026-11-28T01:02:03.000Z; drain through it: shardform drain --agent URL`,
      });
      // Nothing kept: the lock is free, the drain was not recorded, the claim is the agent's.
      (await CgroupRootLock.acquire({ hostId: 'host-a', ownerPrefix: 'sfit-local-drain', dir: lockDir })).release();
      expect(await store.get('/hosts/host-a/drained')).toBeUndefined();
      expect(JSON.parse((await store.get(HOST_CLAIM_KEY('host-a')))!.value)).toMatchObject({ instance: 'the-agent' });
    } finally {
      await store.close();
    }
  });
});

describe('drainLocally (fake driver and launcher)', () => {
  const dir = tempDir('local-drain-fakes');
  const saved = process.env.SHARDFORM_LOCK_DIR;
  beforeAll(() => {
    process.env.SHARDFORM_LOCK_DIR = join(dir.path, 'locks');
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.SHARDFORM_LOCK_DIR;
    else process.env.SHARDFORM_LOCK_DIR = saved;
    dir.remove();
  });

  it('starts no workload, not even one whose restart came due while it found the shards (a start slower than the back-off)', async () => {
    const stateDir = join(dir.path, 'state');
    await saveLastGoodPlan(stateDir, examplePlan((p) => void (p.store = { kind: 'embedded', path: join(dir.path, 'store.db') })));
    const driver = new FakeDriver();
    const launcher = new FakeLauncher(driver);
    // The back-off scaled down from 1 s to 10 ms, and finding each shard's main process 100 ms.
    const backoff = { baseSeconds: 0.01, ceilingSeconds: 0.04, resetAfterSeconds: 60 };
    const keeperOf = (sink: ShardEventSink) => new ShardKeeper({ driver, sink, stateDirectory: stateDir, launcher, probe: launcher, backoff, graceSeconds: 0 });
    const agent = keeperOf(new MemoryEventSink());
    await agent.start();
    const shard = (shardId: string): DesiredShard => ({ shardId, applicationId: 'web', limits: {}, command: ['/bin/sleep', '1000'], env: {}, stateDirectory: join(dir.path, 'app') });
    await agent.apply([shard('web-0'), shard('web-1')]);
    await agent.close(); // the agent is stopped; then web-0's workload ends while none runs
    launcher.exit(launcher.latest('web-0')!.pid, { exitCode: 3, signal: null });
    const findMain = launcher.findMain.bind(launcher);
    launcher.findMain = async (pids) => {
      await new Promise((r) => setTimeout(r, 100));
      return findMain(pids);
    };

    const report = await drainLocally(
      { hostId: 'host-a', stateDir, ownerPrefix: 'sfit-local-drain', graceSeconds: 0 },
      { createKernel: async (ctx) => ({ driver, manager: keeperOf(ctx.events) }) },
    );
    expect(report).toMatchObject({ converged: true, drained: true });
    expect(driver.cgroups.size).toBe(0);
    expect(launcher.runs).toHaveLength(2);
  });
});
