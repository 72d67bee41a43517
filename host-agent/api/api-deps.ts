/** What the API needs from the agent, injected by buildApp (fakes in tests, the daemon's parts in production). */
import type { FastifyPluginAsync } from 'fastify';
import type { Plan } from '../../src/contracts/plan-schema';
import type { MetricHistory } from '../../src/store/metric-history';
import type { CgroupDriver } from '../cgroups/driver';
import type { EventLog } from '../event-log';
import type { AgentLogger } from '../log';
import type { AgentMetrics } from '../metrics/agent-metrics';
import type { PlanStatus } from '../plan-source/plan-source';
import type { ReconcileReport, ShardManager } from '../reconcile/shard-manager';
import type { ForecastLoop } from '../prediction/forecast-loop';
import type { ShardResizer } from '../shard-resize';

export interface DrainControl {
  /** Stops every shard of this host cleanly and keeps them stopped (persisted) until undrained. */
  drain(): Promise<ReconcileReport>;
  /** Lets the host run its shards again; the next reconcile starts them. */
  undrain(): Promise<void>;
  isDrained(): boolean;
}

export interface ApiDeps {
  readonly hostId: string;
  readonly driver: Pick<CgroupDriver, 'layout' | 'usage'>;
  readonly manager: Pick<ShardManager, 'status'>;
  readonly resizer: Pick<ShardResizer, 'resize'>;
  readonly history: Pick<MetricHistory, 'query'>;
  /** The demand forecast (GET /v1/predictions, and the state a migration's source hands over); without it those routes answer 409 like a host without a plan. */
  readonly forecast?: Pick<ForecastLoop, 'view' | 'importState'>;
  readonly events: Pick<EventLog, 'since' | 'lastSeq'>;
  readonly plan: { status(): PlanStatus; current(): Plan | undefined };
  readonly metrics: Pick<AgentMetrics, 'text' | 'contentType'>;
  readonly drain: DrainControl;
  /** The fleet token; undefined means no caller can authenticate (every protected route answers 401). */
  readonly token: () => string | undefined;
  /** Unix seconds now (history defaults). */
  readonly clock?: () => number;
  readonly logger?: AgentLogger;
  /** More authenticated route groups (the migration plugin registers here). */
  readonly plugins?: readonly FastifyPluginAsync[];
}
