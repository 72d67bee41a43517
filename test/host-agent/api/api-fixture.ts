/** Builds the API over fakes: a fake shard manager and driver, an in-memory store and history, real everything else. */
import { connect, type Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../host-agent/api/app';
import type { ApiDeps } from '../../../host-agent/api/api-deps';
import { EventLog } from '../../../host-agent/event-log';
import { silentLogger } from '../../../host-agent/log';
import { AgentMetrics } from '../../../host-agent/metrics/agent-metrics';
import type { PlanStatus } from '../../../host-agent/plan-source/plan-source';
import { agentCapacityView } from '../../../host-agent/host-capacity';
import { ShardResizer } from '../../../host-agent/shard-resize';
import type { Plan } from '../../../src/contracts/plan-schema';
import { examplePlan } from '../../helpers/plan-fixture';
import { FakeDriver, FakeShardManager, MemoryHistory, MemoryKv } from '../../helpers/agent-fakes';

export const TOKEN = 'test-fleet-token-0123456789abcdef';
export const AUTH = { authorization: `Bearer ${TOKEN}` };
export const GiB = 2 ** 30;

export interface ApiFixture {
  app: FastifyInstance;
  plan: Plan;
  manager: FakeShardManager;
  driver: FakeDriver;
  kv: MemoryKv;
  history: MemoryHistory;
  events: EventLog;
  metrics: AgentMetrics;
  drained: { value: boolean };
}

export async function apiFixture(overrides: Partial<ApiDeps> = {}): Promise<ApiFixture> {
  const plan = examplePlan();
  const manager = new FakeShardManager();
  manager.seed('web-0', 'web', { cpuCores: 0.5, memoryBytes: GiB });
  manager.seed('web-1', 'web', { cpuCores: 0.5, memoryBytes: GiB });
  const driver = new FakeDriver();
  const kv = new MemoryKv();
  const history = new MemoryHistory();
  const logger = silentLogger();
  const events = new EventLog({ hostId: 'host-a', store: kv, logger });
  const metrics = new AgentMetrics({ processMetrics: false });
  const drained = { value: false };
  const status: PlanStatus = {
    source: '/etc/shardform/plan.json',
    running: { fleet: plan.fleet, generation: plan.generation, digest: plan.digest, appliedAt: '2026-11-25T00:00:00.000Z', from: 'source' },
    rejectedTotal: 0,
  };
  const app = await buildApp({
    hostId: 'host-a',
    driver,
    manager,
    resizer: new ShardResizer({ manager, store: kv, plan: () => plan, hostId: 'host-a', capacity: agentCapacityView({ hostId: 'host-a', plan: () => plan, shards: () => manager.status() }), clock: () => new Date('2026-11-25T01:00:00Z') }),
    history,
    events,
    plan: { status: () => status, current: () => plan },
    metrics,
    drain: {
      drain: async () => {
        drained.value = true;
        return manager.drain();
      },
      undrain: async () => {
        drained.value = false;
      },
      isDrained: () => drained.value,
    },
    token: () => TOKEN,
    clock: () => 1_800_000_000,
    ...overrides,
  });
  return { app, plan, manager, driver, kv, history, events, metrics, drained };
}

/**
 * Listens on a loopback port and sends `head` plus the start of a body that never comes: a caller
 * that stalls mid-request (a peer that died mid-upload). Resolves with the socket once the app
 * has the request.
 */
export async function stalledRequest(app: FastifyInstance, head: string): Promise<Socket> {
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  const socket = connect(Number(new URL(address).port), '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.on('error', () => {});
  const received = new Promise((resolve) => app.server.once('request', resolve));
  socket.write(`${head}Content-Length: 1000\r\n\r\n{`);
  await received;
  return socket;
}
