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
