/**
 * Draining a host whose agent is not running (`shardform drain --host ID --state-dir DIR`): the
 * same steps a starting agent takes to find its store (last good plan -> store), then a clean
 * stop of each shard found by its record or cgroup, and the drain recorded in the store so the
 * next agent keeps them stopped. Nothing is adopted or supervised: a drain never starts a
 * workload (the keeper's start would schedule restarts of runs that ended). It holds the host's claim while it works, as an agent would: with an
 * agent running for the host it refuses (drain through the agent), and no agent starts meanwhile.
 */
import { ShardformError } from '../src/errors';
import { DRAINED_KEY, type AgentOptions, type AgentStores } from './agent';
import { createAgentKernel, lockAgentCgroups, openAgentStores } from './agent-parts';
import { EventLog } from './event-log';
import { HostClaim, claimStoreOf } from './host-claim';
import { createLogger } from './log';
import { loadLastGoodPlan } from './plan-source/last-good-plan';
import type { ReconcileReport } from './reconcile/shard-manager';

export async function drainLocally(
  options: {
    hostId: string;
    stateDir: string;
    ownerPrefix: string;
    graceSeconds: number;
  },
  /** The shards' kernel; tests give one over fakes. @default the agent's (createAgentKernel) */
  deps: { createKernel?: AgentOptions['createKernel'] } = {},
): Promise<ReconcileReport & { drained: true }> {
  const saved = loadLastGoodPlan(options.stateDir);
  if (!saved.plan)
    throw new ShardformError('INVALID_ARGUMENT', '--state-dir', options.stateDir, `--state-dir: ${options.stateDir} holds no plan of an agent (${saved.problem ?? 'last-good-plan.json missing'}); is it the agent's state directory?`);
  const logger = createLogger({ level: 'warn', base: { host_id: options.hostId } });
  // The cgroups' lock and the host's claim, as an agent's start takes them (lock first): with
  // an agent running, its keeper would restart what this stops (it reads the drain only when it
  // starts), and an agent starting meanwhile would adopt shards being stopped. A running agent
  // is drained through it instead.
  const lock = await lockAgentCgroups({ ownerPrefix: options.ownerPrefix })(options).catch(drainThroughTheAgent);
  let stores: AgentStores | undefined;
  let claim: HostClaim | undefined;
  try {
    stores = await openAgentStores({ stateDir: options.stateDir, logger, plan: saved.plan });
    const claimStore = claimStoreOf(stores.store);
    if (!claimStore) throw new Error('the agent stores have no leases or transactions');
    claim = await HostClaim.acquire({ store: claimStore, hostId: options.hostId, logger }).catch(drainThroughTheAgent);
    const events = new EventLog({ hostId: options.hostId, store: stores.store, logger });
    await events.load();
    const createKernel = deps.createKernel ?? createAgentKernel({ ownerPrefix: options.ownerPrefix, graceSeconds: options.graceSeconds });
    const { manager, driver } = await createKernel({ ...options, events, logger });
    try {
      await stores.store.put(DRAINED_KEY(options.hostId), 'true');
      const report = await manager.drain({ graceSeconds: options.graceSeconds });
      await events.flush();
      return { ...report, drained: true };
    } finally {
      // Before the claim and the lock go: nothing of this drain acts once another may start.
      await manager.close();
      driver.close();
    }
  } finally {
    await claim?.release();
    await stores?.close();
    lock.release();
  }
}

/** An agent holds the host: say how to drain it instead. */
function drainThroughTheAgent(error: unknown): never {
  if (error instanceof ShardformError && error.code === 'HOST_CLAIMED') {
    throw new ShardformError('HOST_CLAIMED', error.field, error.value, `${error.message.replace(/; stop it first.*$/, '')}; drain through it: shardform drain --agent URL`);
  }
  throw error;
}
