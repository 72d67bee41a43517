/**
 * A resize and a migration arriving on the same host check the same capacity: neither may take
 * what the other was granted while it is still on its way to the cgroup.
 */
import { agentCapacityView } from '../../host-agent/host-capacity';
import { IncomingMigrations } from '../../host-agent/migration/incoming-migrations';
import { ShardResizer } from '../../host-agent/shard-resize';
import { createLogger, memoryLogDestination } from '../../host-agent/log';
import { FakeShardManager, MemoryKv } from '../helpers/agent-fakes';
import { examplePlan } from '../helpers/plan-fixture';

const GiB = 2 ** 30;
const arriving = (cpuCores: number) => ({ shardId: 'web-9', applicationId: 'web', limits: { cpuCores, memoryBytes: GiB }, command: ['sleep', '1'], env: {}, stateDirectory: '/var/lib/web' });

function host() {
  // host-a: 2 cores, 8 GiB (test/helpers/plan-fixture.ts); web-0 holds 0.5 core.
  const plan = examplePlan();
  const manager = new FakeShardManager();
  manager.seed('web-0', 'web', { cpuCores: 0.5, memoryBytes: GiB });
  const kv = new MemoryKv();
  let resizer: ShardResizer | undefined;
  const capacity = agentCapacityView({ hostId: 'host-a', plan: () => plan, shards: () => manager.status(), resizing: () => resizer!.growing() });
  const incoming = new IncomingMigrations('/nonexistent/images', capacity, { free: () => undefined });
  resizer = new ShardResizer({ manager, store: kv, plan: () => plan, hostId: 'host-a', capacity, reserved: () => incoming.reservedBeyondAllocated() });
  return { plan, manager, kv, incoming, resizer, capacity };
}

describe('resizing a shard beside migrations arriving on its host', () => {
  it('refuses a prepare while a resize that takes the room is on its way to the cgroup', async () => {
    const { kv, incoming, resizer, manager } = host();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const get = kv.get.bind(kv);
    jest.spyOn(kv, 'get').mockImplementationOnce(async (key: string) => {
      await gate; // the store read takes a while, as etcd's can
      return get(key);
    });
    const resized = resizer.resize('web-0', { cpuCores: 2 });
    await new Promise((resolve) => setImmediate(resolve));
    expect(() => incoming.prepare('mig-1', 'host-b', arriving(1.5))).toThrow('out of capacity: 0 cpu cores free, shard web-9 needs 1.5');
    open();
    await resized;
    expect(manager.status().find((s) => s.shardId === 'web-0')!.limits.cpuCores).toBe(2);
    expect(resizer.growing()).toEqual({ cpuCores: 0, memoryBytes: 0 });
  });

  it('refuses to grow into what a prepared migration reserved before its held cgroup exists', async () => {
    const { incoming, resizer, kv, manager } = host();
    incoming.prepare('mig-1', 'host-b', arriving(1)); // the keeper has not made its cgroup yet
    await expect(resizer.resize('web-0', { cpuCores: 1.5 })).rejects.toThrow('host host-a cannot hold shard web-0 at 1.5 cpu cores: its capacity is 2, its other shards hold 1, so at most 1 is free for it');
    expect(kv.data.size).toBe(0);
    expect(manager.calls.filter((c) => c.method === 'resize')).toEqual([]);
    expect((await resizer.resize('web-0', { cpuCores: 1 })).limits.cpuCores).toBe(1);
  });
});

describe('a refused resize whose put-back fails too', () => {
  it('says so in the log, naming the shard and both errors', async () => {
    const { kv, manager, plan, capacity } = host();
    const logs = memoryLogDestination();
    const resizer = new ShardResizer({ manager, store: kv, plan: () => plan, hostId: 'host-a', capacity, logger: createLogger({ level: 'info', destination: logs }) });
    jest.spyOn(manager, 'resize').mockRejectedValueOnce(new Error('EBUSY: memory below usage'));
    const txn = kv.txn.bind(kv);
    // The write goes through; the compare-and-swap that would put it back does not.
    jest.spyOn(kv, 'txn').mockImplementationOnce(txn).mockRejectedValueOnce(new Error('store unavailable'));
    await expect(resizer.resize('web-0', { cpuCores: 1 })).rejects.toThrow('EBUSY: memory below usage');
    expect(logs.lines()).toEqual([
      expect.objectContaining({ level: 'error', shard_id: 'web-0', error: 'store unavailable', resize_error: 'EBUSY: memory below usage', msg: expect.stringContaining('could not put the previous assignment back') }),
    ]);
  });
});


describe('one room for a resize and a prepare (host-capacity.ts)', () => {
  it('judges growing a shard by d as it judges a new shard of size d arriving', async () => {
    // web-0 holds 0.5 of host-a's 2 cores; a prepared migration reserves 0.75 more.
    const { incoming, resizer } = host();
    incoming.prepare('mig-1', 'host-b', arriving(0.75));
    for (const grow of [0.5, 1, 1.5]) {
      const prepareRefused = incoming.refusal({ ...arriving(grow), shardId: 'web-8' }) !== undefined;
      const resizeRefused = await resizer.resize('web-0', { cpuCores: 0.5 + grow }).then(
        () => false,
        () => true,
      );
      expect({ grow, resizeRefused }).toEqual({ grow, resizeRefused: prepareRefused });
      await resizer.resize('web-0', { cpuCores: 0.5 }).catch(() => undefined);
    }
  });

  it('on a host the plan does not list, refuses growing and arriving alike, and still lets a shard shrink', async () => {
    const plan = examplePlan();
    const manager = new FakeShardManager();
    manager.seed('web-0', 'web', { cpuCores: 1, memoryBytes: GiB });
    const capacity = agentCapacityView({ hostId: 'host-z', plan: () => plan, shards: () => manager.status() });
    const incoming = new IncomingMigrations('/nonexistent/images', capacity, { free: () => undefined });
    const resizer = new ShardResizer({ manager, store: new MemoryKv(), plan: () => plan, hostId: 'host-z', capacity });
    expect(incoming.refusal(arriving(0.25))).toBe('out of capacity: the plan does not list this host, so its capacity is unknown');
    await expect(resizer.resize('web-0', { cpuCores: 1.5 })).rejects.toThrow('host host-z cannot grow shard web-0: the plan does not list host host-z, so its capacity is unknown');
    expect((await resizer.resize('web-0', { cpuCores: 0.5 })).limits.cpuCores).toBe(0.5);
  });
});
