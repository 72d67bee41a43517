/**
 * One agent per cgroup root on a machine (host-agent/cgroup-root-lock.ts): a second taker is
 * refused at once, naming the holder; a stopped (hung) holder keeps the lock; a killed one
 * loses it to the kernel, so the next agent starts without waiting.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { lockAgentCgroups } from '../../host-agent/agent-parts';
import { CgroupRootLock } from '../../host-agent/cgroup-root-lock';
import { tempDir } from '../helpers/cli';

describe('CgroupRootLock', () => {
  const dir = tempDir('root-lock');
  afterAll(() => dir.remove());

  it('refuses a second agent for the same cgroups at once, naming the first; another host or owner prefix is free; release frees it', async () => {
    const first = await CgroupRootLock.acquire({ hostId: 'host-a', ownerPrefix: 'shardform', dir: dir.path, stateDir: '/var/lib/shardform/host-a' });
    await expect(CgroupRootLock.acquire({ hostId: 'host-a', ownerPrefix: 'shardform', dir: dir.path })).rejects.toMatchObject({
      code: 'HOST_CLAIMED',
      field: '--host',
      value: 'host-a',
      message: expect.stringMatching(
        new RegExp(`^--host: another agent runs for host "host-a" on this machine, in the same cgroups \\(shardform/host-a\\): pid ${process.pid}, since 20\\d\\d-[^,]+, state directory /var/lib/shardform/host-a; stop it first \\(lock ${join(dir.path, 'shardform.host-a.lock')}\\)$`),
      ),
    });
    const other = await CgroupRootLock.acquire({ hostId: 'host-b', ownerPrefix: 'shardform', dir: dir.path });
    const otherPrefix = await CgroupRootLock.acquire({ hostId: 'host-a', ownerPrefix: 'tenant-2', dir: dir.path });
    first.release();
    first.release(); // idempotent
    const next = await CgroupRootLock.acquire({ hostId: 'host-a', ownerPrefix: 'shardform', dir: dir.path });
    for (const lock of [other, otherPrefix, next]) lock.release();
  });

  it('refuses a second agent on the same state directory, whatever its host, naming the first; lockAgentCgroups takes both locks', async () => {
    const stateDir = join(dir.path, 'state-shared');
    const first = await CgroupRootLock.acquireStateDir({ stateDir, hostId: 'host-a' });
    await expect(CgroupRootLock.acquireStateDir({ stateDir, hostId: 'host-b' })).rejects.toMatchObject({
      code: 'HOST_CLAIMED',
      field: '--state-dir',
      value: stateDir,
      message: expect.stringMatching(new RegExp(`^--state-dir: another agent \\(host "host-a"\\) uses state directory ${stateDir}: pid ${process.pid}, since [^;]+; stop it first, or give each host its own state directory \\(lock ${join(stateDir, 'agent.lock')}\\)$`)),
    });
    const elsewhere = await CgroupRootLock.acquireStateDir({ stateDir: join(dir.path, 'state-b'), hostId: 'host-b' });
    first.release();
    elsewhere.release();

    process.env.SHARDFORM_LOCK_DIR = join(dir.path, 'locks');
    try {
      const agentA = await lockAgentCgroups({ ownerPrefix: 'shardform' })({ hostId: 'host-a', stateDir });
      // Another host (its own cgroups) on the same state directory: refused, and holds neither lock.
      await expect(lockAgentCgroups({ ownerPrefix: 'shardform' })({ hostId: 'host-b', stateDir })).rejects.toMatchObject({ field: '--state-dir' });
      const hostB = await lockAgentCgroups({ ownerPrefix: 'shardform' })({ hostId: 'host-b', stateDir: join(dir.path, 'state-b') });
      agentA.release();
      hostB.release();
    } finally {
      delete process.env.SHARDFORM_LOCK_DIR;
    }
  });

  it('a holder that is stopped keeps the lock; killed, the kernel drops it and the next agent takes it at once', async () => {
    // Another process holding the lock the way the agent does.
    const lockPath = join(dir.path, 'shardform.host-c.lock');
    const holder = spawn(
      process.execPath,
      ['-e', `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(lockPath)}, { timeout: 0 }); db.pragma('locking_mode = EXCLUSIVE'); db.exec('BEGIN EXCLUSIVE; COMMIT'); console.log('held'); setInterval(() => {}, 1000);`],
      { stdio: ['ignore', 'pipe', 'inherit'], cwd: process.cwd() },
    );
    try {
      await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
      holder.kill('SIGSTOP');
      // No holder file was written by that process: the refusal says so rather than naming a pid.
      await expect(CgroupRootLock.acquire({ hostId: 'host-c', ownerPrefix: 'shardform', dir: dir.path })).rejects.toMatchObject({ code: 'HOST_CLAIMED', message: expect.stringContaining('a process holding the lock') });
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder.once('exit', resolve));
      const lock = await CgroupRootLock.acquire({ hostId: 'host-c', ownerPrefix: 'shardform', dir: dir.path });
      lock.release();
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
