/**
 * The production parts of the agent: the real cgroup driver (probed once), the ShardKeeper,
 * the store the plan names (embedded: its relative path resolves under the state directory)
 * and the metric history in `<state-dir>/metrics.db` (every agent keeps its own history).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { openStore } from '../src/store/open-store';
import { SqliteMetricHistory } from '../src/store/sqlite-metric-history';
import type { Plan } from '../src/contracts/plan-schema';
import type { AgentKernel, AgentStores } from './agent';
import { detectCgroupDriver } from './cgroups/detect';
import type { AgentLogger } from './log';
import { ShardKeeper } from './reconcile/shard-keeper';
import type { ShardEventSink } from './shard-event';

export async function openAgentStores(ctx: { stateDir: string; logger: AgentLogger; plan: Plan }): Promise<AgentStores> {
    const settings = ctx.plan.store;
    mkdirSync(ctx.stateDir, { recursive: true });
    const store = openStore(settings, { baseDirectory: ctx.stateDir });
    const history = SqliteMetricHistory.open(join(ctx.stateDir, 'metrics.db'));
    ctx.logger.info({ store: settings.kind, history: join(ctx.stateDir, 'metrics.db') }, 'stores opened');
    return {
      store,
      history,
      close: async () => {
        history.close();
        await store.close();
      },
    };
}

export function createAgentKernel(options: { ownerPrefix: string; cgroupRoot?: string; graceSeconds?: number }) {
  return async (ctx: { hostId: string; stateDir: string; events: ShardEventSink; logger: AgentLogger }): Promise<AgentKernel> => {
    const driver = detectCgroupDriver({ hostId: ctx.hostId, ownerPrefix: options.ownerPrefix, ...(options.cgroupRoot ? { root: options.cgroupRoot } : {}) });
    const manager = new ShardKeeper({ driver, sink: ctx.events, stateDirectory: ctx.stateDir, ...(options.graceSeconds !== undefined ? { graceSeconds: options.graceSeconds } : {}) });
    return { driver, manager };
  };
}
