/**
 * Draining a host whose agent is not running (`shardform drain --host ID --state-dir DIR`): the
 * same steps a starting agent takes to find its shards (last good plan -> store; adopt what runs
 * in the cgroups), then a clean stop of each, and the drain recorded in the store so the next
 * agent keeps them stopped.
 */
import { ShardformError } from '../src/errors';
import { DRAINED_KEY } from './agent';
import { createAgentKernel, openAgentStores } from './agent-parts';
import { EventLog } from './event-log';
import { createLogger } from './log';
import { loadLastGoodPlan } from './plan-source/last-good-plan';
import type { ReconcileReport } from './reconcile/shard-manager';

export async function drainLocally(options: { hostId: string; stateDir: string; ownerPrefix: string; graceSeconds: number }): Promise<ReconcileReport & { drained: true }> {
  const saved = loadLastGoodPlan(options.stateDir);
  if (!saved.plan)
    throw new ShardformError('INVALID_ARGUMENT', '--state-dir', options.stateDir, `--state-dir: ${options.stateDir} holds no plan of an agent (${saved.problem ?? 'last-good-plan.json missing'}); is it the agent's state directory?`);
  const logger = createLogger({ level: 'warn', base: { host_id: options.hostId } });
  const stores = await openAgentStores({ stateDir: options.stateDir, logger, plan: saved.plan });
  try {
    const events = new EventLog({ hostId: options.hostId, store: stores.store, logger });
    await events.load();
    const { manager } = await createAgentKernel({ ownerPrefix: options.ownerPrefix, graceSeconds: options.graceSeconds })({ ...options, events, logger });
    await stores.store.put(DRAINED_KEY(options.hostId), 'true');
    await manager.start();
    const report = await manager.drain({ graceSeconds: options.graceSeconds });
    await manager.close();
    await events.flush();
    return { ...report, drained: true };
  } finally {
    await stores.close();
  }
}
