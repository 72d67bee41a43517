/**
 * The production parts of the agent: the real cgroup driver (probed once), the ShardKeeper,
 * the store the plan names (embedded: its relative path resolves under the state directory)
 * and the metric history in `<state-dir>/metrics.db` (every agent keeps its own history, and its
 * predictors' saved state beside it).
 */
import { mkdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { EmbeddedStore } from '../src/store/embedded-store';
import { openHistoryDatabase, SqliteMetricHistory } from '../src/store/sqlite-metric-history';
import { SqliteModelStates } from '../src/store/sqlite-model-states';
import type { Store } from '../src/store/store';
import { storeError } from '../src/store/store-error';
import type { Plan } from '../src/contracts/plan-schema';
import type { AgentKernel, AgentStores } from './agent';
import { detectCgroupDriver } from './cgroups/detect';
import { CgroupRootLock } from './cgroup-root-lock';
import type { AgentLogger } from './log';
import { ShardKeeper } from './reconcile/shard-keeper';
import type { ShardEventSink } from './shard-event';

export async function openAgentStores(ctx: { stateDir: string; logger: AgentLogger; plan: Plan }): Promise<AgentStores> {
    const settings = ctx.plan.store;
    mkdirSync(ctx.stateDir, { recursive: true });
    const store = openPlanStore(settings, ctx.stateDir);
    // One connection for the history and the predictors' saved state, which sit in the same file.
    const metricsDb = openHistoryDatabase(join(ctx.stateDir, 'metrics.db'));
    const history = new SqliteMetricHistory(metricsDb);
    ctx.logger.info({ store: settings.kind, history: join(ctx.stateDir, 'metrics.db') }, 'stores opened');
    return {
      store,
      history,
      modelStates: new SqliteModelStates(metricsDb),
      close: async () => {
        metricsDb.close();
        await store.close();
      },
    };
}

/**
 * The plan's store. Embedded: opened here with a 1 s watch poll (the agent watches only
 * assignments, which the 10 s reconcile timer backs up; the store's 50 ms default would cost
 * 20 queries a second on an idle host). etcd: loaded only when asked for, since the etcd client
 * (gRPC, protobufjs) adds ~25 MiB to an agent that does not use it.
 */
function openPlanStore(settings: Plan['store'], stateDir: string): Store {
  if (settings.kind === 'etcd') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { openStore } = require('../src/store/open-store') as typeof import('../src/store/open-store');
    return openStore(settings, { baseDirectory: stateDir });
  }
  const path = isAbsolute(settings.path) ? settings.path : resolve(stateDir, settings.path);
  try {
    return new EmbeddedStore({ path, pollIntervalMs: 1000 });
  } catch (error) {
    throw storeError('INVALID_SETTINGS', 'store.path', settings.path, `cannot open the store file: ${(error as Error).message}`, 'check the directory exists and is writable');
  }
}

/**
 * The cgroups' lock of an agent (cgroup-root-lock.ts): taken first, before the store's host
 * claim, so that a second agent of this machine stops there and never touches the claim (it
 * could otherwise take a claim the first had just lost, and make it halt).
 */
export function lockAgentCgroups(options: { ownerPrefix: string }) {
  return async (ctx: { hostId: string; stateDir: string }): Promise<{ release(): void }> => {
    const cgroups = await CgroupRootLock.acquire({ hostId: ctx.hostId, ownerPrefix: options.ownerPrefix, stateDir: ctx.stateDir });
    // And its state directory: shard records, logs and the embedded store are this host's alone.
    const stateDir = await CgroupRootLock.acquireStateDir({ stateDir: ctx.stateDir, hostId: ctx.hostId }).catch((error: unknown) => {
      cgroups.release();
      throw error;
    });
    return {
      release: () => {
        stateDir.release();
        cgroups.release();
      },
    };
  };
}

export function createAgentKernel(options: { ownerPrefix: string; cgroupRoot?: string; graceSeconds?: number }) {
  return async (ctx: { hostId: string; stateDir: string; events: ShardEventSink; logger: AgentLogger }): Promise<AgentKernel> => {
    const driver = detectCgroupDriver({ hostId: ctx.hostId, ownerPrefix: options.ownerPrefix, ...(options.cgroupRoot ? { root: options.cgroupRoot } : {}) });
    // The keeper's tick (adopted-run exits, OOM counters, log caps) every 2 s rather than 1 s:
    // exits of runs this agent started arrive as child events anyway, and adopted exits are
    // seen within 2 s. The OOM counter comes from the sampler's reading while that is at most
    // 5 ticks (10 s) old, and idle logs are checked every 5 ticks, so an idle host's tick
    // reads next to nothing (docs/agent.md "Benchmark").
    const manager = new ShardKeeper({
      driver,
      sink: ctx.events,
      stateDirectory: ctx.stateDir,
      pollIntervalMs: 2000,
      ...(options.graceSeconds !== undefined ? { graceSeconds: options.graceSeconds } : {}),
    });
    return { driver, manager, handover: manager, restartHandover: manager };
  };
}
