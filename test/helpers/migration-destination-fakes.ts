/** Fakes of the destination's kernel side for the migration routes: a recording keeper hand-over and CRIU restorer. */
import { readlinkSync } from 'node:fs';
import type { RestoreTarget } from '../../host-agent/checkpoint/criu-checkpointer';
import type { DesiredShard } from '../../host-agent/reconcile/desired-shard';
import type { ShardStatus } from '../../host-agent/runner/shard-status';
import { IncomingMigrations } from '../../host-agent/migration/incoming-migrations';
import type { MigrationRouteDeps } from '../../host-agent/api/migration-routes';

export class FakeHandover {
  readonly calls: string[] = [];
  async prepareIncoming(desired: DesiredShard) {
    this.calls.push(`prepareIncoming ${desired.shardId}`);
    return { procsFiles: [`/fake/${desired.shardId}/cgroup.procs`], paths: {} };
  }
  /** Thrown by adopt (e.g. SHARD_NOT_RUNNING: the restored workload ended, or the host rebooted). */
  adoptFails?: Error;
  async adopt(shardId: string): Promise<ShardStatus> {
    this.calls.push(`adopt ${shardId}`);
    if (this.adoptFails) throw this.adoptFails;
    return { shardId, applicationId: 'web', state: 'running', pid: 4242, restarts: 0, adopted: true, frozen: false, limits: {} };
  }
  async discard(shardId: string) {
    this.calls.push(`discard ${shardId}`);
  }
}

export class FakeRestorer {
  /** `files`: each handed-over descriptor as the file it is open on, read while the restore runs. */
  readonly restored: { dir: string; procsFiles: readonly string[]; files?: { dumpedPath: string; openOn: string }[] }[] = [];
  fail?: Error;
  /** What the fake answers as the lazy fill's time (a real lazy restore runs the tree this long before it resolves). */
  lazyPagesMs = 0;
  async restore(dir: string, target: RestoreTarget) {
    if (this.fail) throw this.fail;
    const files = target.files?.map((f) => ({ dumpedPath: f.dumpedPath, openOn: readlinkSync(`/proc/self/fd/${f.fd}`) }));
    this.restored.push({ dir, procsFiles: target.procsFiles, ...(files ? { files } : {}) });
    return { pid: 4242, lazyPagesMs: this.lazyPagesMs };
  }
}

/** `freeBytes`: what the images directory's file system has free (default: measured). */
export function fakeDestination(imagesRoot: string, capacity = { cpuCores: 2, memoryBytes: 4 * 2 ** 30 }, allocated = { cpuCores: 0, memoryBytes: 0 }, freeBytes?: number) {
  const handover = new FakeHandover();
  const restorer = new FakeRestorer();
  const incoming = new IncomingMigrations(imagesRoot, { capacity: () => capacity, allocated: () => allocated }, ...(freeBytes === undefined ? [] : [{ free: () => freeBytes }]));
  const deps: MigrationRouteDeps & { token: () => string } = { hostId: 'host-2', incoming, handover, restorer, token: () => 'sekret-token' };
  return { deps, handover, restorer, incoming };
}

export const prepareBody = (shardId = 'web-0', memoryBytes = 1 << 30) => ({
  source: 'host-1',
  shard: { shardId, applicationId: 'web', limits: { cpuCores: 1, memoryBytes }, command: ['/usr/bin/python3', 'app.py'], env: {}, stateDirectory: '/var/lib/web' },
});
