/**
 * ShardHandover straight over a CgroupDriver, for an agent part that does not run the
 * ShardKeeper (the dev/test destination server, `shardform dev hosts`): prepare creates the
 * held cgroup with the shard's limits, adopt finds the restored PID-namespace init, discard
 * kills and removes. The agent proper uses ShardKeeper, which implements the same interface
 * and also supervises the adopted workload.
 */
import type { CgroupDriver } from '../cgroups/driver';
import { HostAgentError } from '../errors';
import type { DesiredShard } from '../reconcile/desired-shard';
import type { IncomingShard, ShardHandover } from '../reconcile/shard-handover';
import { findNamespaceInit } from '../runner/proc-info';
import type { ShardStatus } from '../runner/shard-status';

export class CgroupHandover implements ShardHandover {
  private readonly known = new Map<string, DesiredShard>();

  constructor(private readonly driver: CgroupDriver) {}

  async prepareIncoming(desired: DesiredShard): Promise<IncomingShard> {
    const id = desired.shardId;
    if ((await this.driver.exists(id)) && (await this.driver.pids(id)).length > 0) {
      throw new HostAgentError('SHARD_EXISTS', id, 'shardId', id, `shard ${id} already runs on this host`);
    }
    await this.driver.create(id);
    await this.driver.setLimits(id, desired.limits);
    this.known.set(id, desired);
    return { procsFiles: this.driver.procsFiles(id), paths: this.driver.paths(id) };
  }

  async release(shardId: string): Promise<{ pid?: number }> {
    const main = await findNamespaceInit(await this.driver.pids(shardId));
    return main ? { pid: main.pid } : {};
  }

  async adopt(shardId: string, desired?: DesiredShard): Promise<ShardStatus> {
    if (desired) this.known.set(shardId, desired);
    const main = await findNamespaceInit(await this.driver.pids(shardId));
    if (!main) throw new HostAgentError('SHARD_NOT_RUNNING', shardId, 'pid', undefined, `shard ${shardId}: no process whose innermost NSpid is 1 in its cgroup`);
    const known = this.known.get(shardId);
    return {
      shardId,
      applicationId: known?.applicationId ?? '',
      state: 'running',
      pid: main.pid,
      restarts: 0,
      adopted: true,
      frozen: await this.driver.isFrozen(shardId),
      limits: await this.driver.readLimits(shardId),
    };
  }

  async discard(shardId: string): Promise<void> {
    if (!(await this.driver.exists(shardId))) return;
    await this.driver.killAll(shardId, 'SIGKILL');
    await this.driver.remove(shardId);
    this.known.delete(shardId);
  }
}
