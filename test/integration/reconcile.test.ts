/**
 * ShardKeeper.apply on the real kernel: partial failures converge on the next pass, spec
 * changes replace the workload, and whatever is not desired (including a stray cgroup with a
 * process and no record) is stopped and removed in every hierarchy.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CgroupDriver } from '../../host-agent/cgroups';
import type { DesiredShard } from '../../host-agent/reconcile/desired-shard';
import { ShardKeeper } from '../../host-agent/reconcile/shard-keeper';
import { MemoryEventSink } from '../../host-agent/shard-event';
import { describePrivileged, requireCgroups, requireCommand } from '../helpers/privileged';
import { waitFor } from '../host-agent/fakes';
import { driverFor, isAlive, removeOwnerTree, uniqueOwnerPrefix } from './runner-fixtures';

const MiB = 2 ** 20;

describePrivileged('ShardKeeper reconcile on the real kernel', [requireCgroups, requireCommand('unshare', 'apt-get install util-linux')], () => {
  const ownerPrefix = uniqueOwnerPrefix();
  const dir = mkdtempSync(join(tmpdir(), 'reconcile-it-'));
  let driver: CgroupDriver;
  let keeper: ShardKeeper;
  let sink: MemoryEventSink;
  const desired = (shardId: string, over: Partial<DesiredShard> = {}): DesiredShard => ({
    shardId,
    applicationId: 'svc',
    limits: { cpuCores: 0.25, memoryBytes: 32 * MiB },
    command: ['/bin/sleep', '1000'],
    env: {},
    stateDirectory: join(dir, 'apps'),
    ...over,
  });

  beforeAll(async () => {
    driver = driverFor(ownerPrefix, 'rec');
    sink = new MemoryEventSink();
    keeper = new ShardKeeper({ driver, sink, stateDirectory: join(dir, 'agent'), pollIntervalMs: 50, graceSeconds: 0.1 });
    await keeper.start();
  });

  afterAll(async () => {
    await keeper?.close();
    try {
      if (driver) await removeOwnerTree(driver, ownerPrefix);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a start that failed (missing working directory), keeps the cgroup and its limits, and converges on the next pass', async () => {
    const wd = join(dir, 'not-yet');
    const first = await keeper.apply([desired('svc-0', { workingDirectory: wd })]);
    expect(first.converged).toBe(false);
    expect(first.actions.map((a) => `${a.kind}:${a.ok}`)).toEqual(['create:true', 'set-limits:true', 'start:false']);
    expect(first.actions[2]?.error).toContain('cannot start ["/bin/sleep","1000"]');
    expect(sink.ofType('failed', 'svc-0')[0]?.detail).toMatchObject({ action: 'start', code: 'WORKLOAD_START_FAILED' });
    expect(await driver.readLimits('svc-0')).toMatchObject({ cpuCores: 0.25, memoryBytes: 32 * MiB });
    expect(await driver.pids('svc-0')).toEqual([]);

    mkdirSync(wd);
    const second = await keeper.apply([desired('svc-0', { workingDirectory: wd })]);
    expect(second).toEqual({ actions: [{ kind: 'start', shardId: 'svc-0', ok: true }], converged: true });
    expect(await keeper.apply([desired('svc-0', { workingDirectory: wd })])).toEqual({ actions: [], converged: true });
  });

  it('replaces the workload when its command changes, and removes what is no longer desired, including a stray cgroup', async () => {
    const wd = join(dir, 'not-yet');
    const before = keeper.status()[0]!.pid!;
    expect((await keeper.apply([desired('svc-0', { workingDirectory: wd, command: ['/bin/sleep', '999'] })])).actions).toEqual([
      { kind: 'replace', shardId: 'svc-0', ok: true },
    ]);
    const after = keeper.status()[0]!.pid!;
    expect(after).not.toBe(before);
    await waitFor(() => !isAlive(before), 'the old run to be gone');

    // a cgroup under our root with a process and no record (e.g. left by a crashed agent)
    await driver.create('stray-0');
    const stray = spawn('/bin/sh', ['-c', 'for f in "$@"; do echo $$ > "$f"; done; exec sleep 1000', 'sh', ...driver.procsFiles('stray-0')], { detached: true, stdio: 'ignore' });
    stray.unref();
    await waitFor(async () => (await driver.pids('stray-0')).length === 1, 'the stray process in its cgroup');

    const report = await keeper.apply([]);
    expect(report).toEqual({
      actions: [
        { kind: 'remove', shardId: 'stray-0', ok: true },
        { kind: 'stop', shardId: 'svc-0', ok: true },
        { kind: 'remove', shardId: 'svc-0', ok: true },
      ],
      converged: true,
    });
    expect(await driver.list()).toEqual([]);
    for (const p of [...Object.values(driver.paths('svc-0')), ...Object.values(driver.paths('stray-0'))]) expect(existsSync(p)).toBe(false);
    expect(isAlive(after)).toBe(false);
    expect(isAlive(stray.pid!)).toBe(false);
    expect(keeper.status()).toEqual([]);
  });
});
