/**
 * The daemon's wiring over fakes (no root): plan -> desired shards -> ShardManager.apply,
 * assignments from the store, drain kept across a restart, and SIGTERM-style stop that closes
 * the manager without stopping shards.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Agent } from '../../host-agent/agent';
import { createLogger, memoryLogDestination } from '../../host-agent/log';
import type { DesiredShard } from '../../host-agent/reconcile/desired-shard';
import { lastGoodPlanPath } from '../../host-agent/plan-source/last-good-plan';
import { serializePlan } from '../../src/contracts/plan';
import type { Plan } from '../../src/contracts/plan-schema';
import { tempDir } from '../helpers/cli';
import { examplePlan } from '../helpers/plan-fixture';
import { FakeDriver, FakeShardManager, MemoryHistory, MemoryKv } from '../helpers/agent-fakes';

const TOKEN = 'agent-test-token-0123456789';

describe('Agent (daemon wiring over fakes)', () => {
  const dir = tempDir('agent');
  const planFile = join(dir.path, 'plan.json');
  const tokenFile = dir.file('token', TOKEN);
  const kv = new MemoryKv();
  const history = new MemoryHistory();
  let manager: FakeShardManager;
  let driver: FakeDriver;
  let agent: Agent;
  let agentLogs: ReturnType<typeof memoryLogDestination>;

  const write = (plan: Plan | string) => {
    writeFileSync(`${planFile}.tmp`, typeof plan === 'string' ? plan : serializePlan(plan));
    renameSync(`${planFile}.tmp`, planFile);
  };
  const plan = (generation: number, initial = 2) =>
    examplePlan((p) => {
      p.generation = generation;
      p.applications[0].shards.initial = initial;
      p.security = { auth: 'token', tokenFile };
    });
  const applied = () => manager.calls.filter((c) => c.method === 'apply').map((c) => (c.args[0] as DesiredShard[]).map((d) => d.shardId));

  const start = async () => {
    manager = new FakeShardManager();
    const logs = (agentLogs = memoryLogDestination());
    agent = new Agent({
      hostId: 'host-a',
      plan: planFile,
      stateDir: join(dir.path, 'state'),
      listen: '127.0.0.1:0',
      logger: createLogger({ level: 'debug', destination: logs }),
      openStores: async () => ({ store: kv, history, close: async () => {} }),
      createKernel: async () => ({ driver: Object.assign((driver = new FakeDriver()), { hostRoot: 'shardform/host-a' }) as never, manager }),
      planPollSeconds: 0,
      reconcileEverySeconds: 3600,
    });
    await agent.start();
    return logs;
  };
  const get = async (path: string): Promise<any> => (await fetch(`${agent.address}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json(); // eslint-disable-line @typescript-eslint/no-explicit-any

  const refusedDirs: ReturnType<typeof tempDir>[] = [];
  afterAll(() => [dir, ...refusedDirs].forEach((d) => d.remove()));

  it('adopts, then applies the shards initial placement gives this host, and serves the API', async () => {
    write(plan(1, 4));
    await start();
    expect(manager.calls[0].method).toBe('start');
    // 4 shards of 0.5 core on two 2-core hosts: spread 2 and 2; host-a gets web-0 and web-2.
    expect(applied()).toEqual([['web-0', 'web-2']]);
    expect(await get('/v1/plan')).toMatchObject({ generation: 1, lastRejection: null });
    expect((await get('/v1/shards')).shards.map((s: { shardId: string }) => s.shardId)).toEqual(['web-0', 'web-2']);
  });

  it('predicts its shards\' demand from the metric history: GET /v1/predictions, one vector per shard and per application', async () => {
    const now = Math.floor(Date.now() / 1000);
    for (let t = now - 7200; t < now; t += 30) {
      for (const shardId of ['web-0', 'web-2']) {
        history.append([{ atSeconds: t, shardId, applicationId: 'web', cpuCores: 0.25, cpuThrottledRatio: 0, memoryBytes: 1e8, readOps: 0, writeOps: 0, readBytesPerSecond: 0, writeBytesPerSecond: 0 }]);
      }
    }
    // History recorded before this agent started (a restart): its first pass replays it.
    await agent.stop();
    await start();
    await agent['forecast']!.pass();
    const reply = await get('/v1/predictions');
    expect(reply).toMatchObject({ hostId: 'host-a', catchingUp: false, settings: { model: 'auto', horizonSeconds: 900, quantile: 0.95, intervalSeconds: 300 } });
    expect(reply.shards.map((v: { shard_id: string }) => v.shard_id)).toEqual(['web-0', 'web-2']);
    // Under a day of history (the plan's minimum): the cold-start prior, twice the highest value seen.
    expect(reply.applications).toEqual([expect.objectContaining({ application_id: 'web', model: 'cold-start-prior', confidence: 0, resources: expect.objectContaining({ cpu: { cores: 1, percentage: 100 } }) })]);
    expect((await get('/v1/predictions?application=db')).shards).toEqual([]);
    const bad = await fetch(`${agent.address}/v1/predictions?application=..%2Fx`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(bad.status).toBe(400);
    expect((await fetch(`${agent.address}/v1/predictions`)).status).toBe(401);
  });

  it('hands a migrated shard\'s predictor state to its destination, and logs a refusal without failing', async () => {
    const received: { url?: string; auth?: string; body: string }[] = [];
    let answer = 200;
    const server = createHttpServer((request, response) => {
      let body = '';
      request.on('data', (chunk) => (body += chunk));
      request.on('end', () => {
        received.push({ url: request.url, auth: request.headers.authorization, body });
        response.writeHead(answer, { 'content-type': 'application/json' });
        response.end(JSON.stringify(answer === 200 ? { taken: true } : { statusCode: 409, error: 'CONFLICT', message: 'predictor state of web-0 not taken: saved under other predictor settings' }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    let running: Plan | undefined;
    try {
      const port = (server.address() as AddressInfo).port;
      // Generation 1 again, with host-b's agent where the test listens: only the address differs.
      const moved = plan(1, 4);
      moved.pools[0].hosts[1].address = `127.0.0.1:${port}`;
      running = agent['planSource']['plan'];
      agent['planSource']['plan'] = moved;
      expect(agent.plan()?.pools[0].hosts[1].address).toBe(`127.0.0.1:${port}`);
      await agent['handOverForecast']('web-0', 'host-b');
      expect(received).toHaveLength(1);
      expect(received[0]).toMatchObject({ url: '/v1/predictions/shards/web-0/state', auth: `Bearer ${TOKEN}` });
      expect(JSON.parse(received[0].body)).toMatchObject({ version: 1, shardId: 'web-0', applicationId: 'web', lastSeconds: expect.any(Number) });
      answer = 409;
      await agent['handOverForecast']('web-0', 'host-b');
      const warning = agentLogs.lines().find((l) => l.msg === 'predictor of web-0 not handed over to host-b; it relearns there from its own history');
      // The client's message names the call, the destination and its answer (status, code, reason).
      expect(warning?.error).toBe(`predictor hand-over at http://127.0.0.1:${port}: 409 CONFLICT predictor state of web-0 not taken: saved under other predictor settings`);
      // A shard this host has no predictor for, or a host not in the plan: nothing is sent.
      await agent['handOverForecast']('nope-0', 'host-b');
      await agent['handOverForecast']('web-0', 'host-z');
      expect(received).toHaveLength(2);
      // A saved state that cannot be read is a warning, never an unhandled rejection.
      const forecast = agent['forecast']!;
      const stateOf = forecast.stateOf.bind(forecast);
      forecast.stateOf = () => {
        throw new Error('unexpected end of file');
      };
      try {
        await agent['handOverForecast']('web-0', 'host-b');
      } finally {
        forecast.stateOf = stateOf;
      }
      expect(agentLogs.lines().filter((l) => l.shard_id === 'web-0' && l.level === 'warn').at(-1)?.error).toBe('unexpected end of file');
    } finally {
      if (running) agent['planSource']['plan'] = running;
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('reconciles a new generation and refuses a bad plan, keeping the running one', async () => {
    write(plan(2, 2));
    await agent['planSource'].check();
    await agent.reconcile();
    expect(applied().at(-1)).toEqual(['web-0']);
    write(plan(1, 4));
    await agent['planSource'].check();
    expect(await get('/v1/plan')).toMatchObject({ generation: 2, lastRejection: { reason: 'generation-backwards', generation: 1 } });
    const metrics = await (await fetch(`${agent.address}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(metrics).toContain('shardform_plan_rejected_total{reason="generation-backwards"} 1');
    expect(metrics).toContain('shardform_plan_generation 2');
  });

  it('a new plan that fails validation changes nothing: same plan, same last good plan, no reconcile', async () => {
    const saved = readFileSync(lastGoodPlanPath(join(dir.path, 'state')), 'utf8');
    const passes = applied().length;
    const invalid = JSON.parse(serializePlan(plan(3, 4)));
    invalid.applications[0].granularity.cpuCores = -1;
    write(JSON.stringify(invalid));
    await agent['planSource'].check();
    await new Promise((resolve) => setImmediate(resolve));
    expect(await get('/v1/plan')).toMatchObject({ generation: 2, lastRejection: { reason: 'invalid', generation: 3 } });
    expect(readFileSync(lastGoodPlanPath(join(dir.path, 'state')), 'utf8')).toBe(saved);
    expect(JSON.parse(saved).generation).toBe(2);
    expect(applied()).toHaveLength(passes);
  });

  it('refuses a new plan whose fleet token this host cannot read: it would become a last good plan the next start refuses', async () => {
    const saved = readFileSync(lastGoodPlanPath(join(dir.path, 'state')), 'utf8');
    const passes = applied().length;
    const missing = join(dir.path, 'no-such-token');
    write(examplePlan((p) => {
      p.generation = 3;
      p.security = { auth: 'token', tokenFile: missing };
    }));
    await agent['planSource'].check();
    await new Promise((resolve) => setImmediate(resolve));
    expect(await get('/v1/plan')).toMatchObject({ generation: 2, lastRejection: { reason: 'unusable-here', generation: 3, errors: [{ field: 'security.tokenFile', value: missing }] } });
    expect(readFileSync(lastGoodPlanPath(join(dir.path, 'state')), 'utf8')).toBe(saved);
    expect(applied()).toHaveLength(passes);
  });

  it('takes a reloaded plan\'s new fleet token: the API answers it and refuses the old one', async () => {
    const rotated = 'agent-test-token-rotated-9876543210';
    const rotatedFile = dir.file('token-rotated', rotated);
    write(examplePlan((p) => {
      p.generation = 3;
      p.applications[0].shards.initial = 2;
      p.security = { auth: 'token', tokenFile: rotatedFile };
    }));
    await agent['planSource'].check();
    const plan = (token: string) => fetch(`${agent.address}/v1/plan`, { headers: { authorization: `Bearer ${token}` } });
    const answered = await plan(rotated);
    expect(answered.status).toBe(200);
    expect(await answered.json()).toMatchObject({ generation: 3 });
    expect((await plan(TOKEN)).status).toBe(401);
  });

  it('runs a shard the coordinator assigned to this host, with the assigned size', async () => {
    await kv.put('/fleet/test-fleet/assignments/web-1', JSON.stringify({ shardId: 'web-1', applicationId: 'web', hostId: 'host-a', limits: { cpuCores: 1 }, by: 'coordinator', at: '2026-11-25T00:00:00Z' }));
    const report = await agent.reconcile();
    expect(report?.converged).toBe(true);
    const last = manager.calls.filter((c) => c.method === 'apply').at(-1)!.args[0] as DesiredShard[];
    expect(last.map((d) => [d.shardId, d.limits.cpuCores])).toEqual([['web-0', 0.5], ['web-1', 1]]);
  });

  it('drains, stays drained across a restart, and stop() leaves shards to the next agent', async () => {
    await agent.drain();
    expect(agent.isDrained()).toBe(true);
    await agent.stop();
    expect(manager.calls.map((c) => c.method)).toContain('close');
    // The driver closes the cgroup files it kept open, once the shards are no longer supervised.
    expect(driver.calls.at(-1)).toEqual({ method: 'close' });
    expect(manager.calls.filter((c) => c.method === 'drain')).toHaveLength(1);
    await start();
    expect(agent.isDrained()).toBe(true);
    expect(applied()).toEqual([[]]);
    await agent.undrain();
    expect(applied().at(-1)).toEqual(['web-0', 'web-1']);
    await agent.stop();
  });

  /** A fresh plan file and state directory; the agent over fakes that record whether stores or the kernel were opened. */
  const refusedStart = (options: { listen: string; tokenFile?: string }) => {
    const fresh = tempDir('agent-refused');
    refusedDirs.push(fresh);
    const stateDir = join(fresh.path, 'state');
    const openStores = jest.fn();
    const createKernel = jest.fn();
    const a = new Agent({
      hostId: 'host-a', plan: fresh.file('plan.json', serializePlan(plan(1))), stateDir, ...options,
      logger: createLogger({ level: 'silent' }), openStores, createKernel, planPollSeconds: 0,
    });
    return {
      start: () => a.start(),
      async expectNothingWritten() {
        await a.stop();
        expect(openStores).not.toHaveBeenCalled();
        expect(createKernel).not.toHaveBeenCalled();
        expect(existsSync(stateDir)).toBe(false);
      },
    };
  };

  it('refuses to start when its token file cannot be read, before writing the state directory, the last good plan, stores or cgroups', async () => {
    const r = refusedStart({ listen: '127.0.0.1:0', tokenFile: '/nonexistent/token' });
    await expect(r.start()).rejects.toMatchObject({ code: 'UNREADABLE_FILE', message: '--token-file: cannot read /nonexistent/token: ENOENT' });
    await r.expectNothingWritten();
  });

  it('refuses to start when its --listen address is taken (another agent), before adopting, reconciling or writing anything', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const busy = `127.0.0.1:${(holder.address() as { port: number }).port}`;
    try {
      const r = refusedStart({ listen: busy, tokenFile });
      await expect(r.start()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', field: '--listen', message: `--listen: "${busy}" cannot be served on this host: EADDRINUSE` });
      await r.expectNothingWritten();
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it('refuses to start without a good plan, touching nothing', async () => {
    const empty = tempDir('agent-empty');
    const file = empty.file('plan.json', '{}');
    const kernel = jest.fn();
    const a = new Agent({
      hostId: 'host-a', plan: file, stateDir: join(empty.path, 'state'), logger: createLogger({ level: 'silent' }),
      openStores: async () => { throw new Error('must not open stores'); }, createKernel: kernel, planPollSeconds: 0,
    });
    await expect(a.start()).rejects.toThrow(/no good plan to start from: plan from .* is invalid: apiVersion: is required/);
    expect(kernel).not.toHaveBeenCalled();
    empty.remove();
  });
});
