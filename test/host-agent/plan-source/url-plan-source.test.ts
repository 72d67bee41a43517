import fastify, { type FastifyInstance } from 'fastify';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { createLogger, memoryLogDestination } from '../../../host-agent/log';
import { AgentMetrics } from '../../../host-agent/metrics/agent-metrics';
import { PlanSource } from '../../../host-agent/plan-source/plan-source';
import { UrlPlanFetcher } from '../../../host-agent/plan-source/url-plan-fetcher';
import { serializePlan } from '../../../src/contracts/plan';
import { tempDir } from '../../helpers/cli';
import { examplePlan } from '../../helpers/plan-fixture';

/** A plan server on 127.0.0.1 that honours If-None-Match, like S3 or a static file server. */
async function planServer(): Promise<{ server: FastifyInstance; url: string; serve(body: string, status?: number): void; requests: { ifNoneMatch?: string; status: number }[] }> {
  let body = '';
  let status = 200;
  const requests: { ifNoneMatch?: string; status: number }[] = [];
  const server = fastify();
  server.get('/plan.json', async (request, reply) => {
    const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
    const ifNoneMatch = request.headers['if-none-match'];
    const answer = status !== 200 ? status : ifNoneMatch === etag ? 304 : 200;
    requests.push({ ifNoneMatch, status: answer });
    if (answer === 304) return reply.status(304).send();
    if (answer !== 200) return reply.status(answer).send({ message: 'unavailable' });
    return reply.header('etag', etag).type('application/json').send(body);
  });
  const address = await server.listen({ host: '127.0.0.1', port: 0 });
  return { server, url: `${address}/plan.json`, serve: (b, s = 200) => ((body = b), (status = s)), requests };
}

describe('PlanSource (http URL with ETag)', () => {
  let srv: Awaited<ReturnType<typeof planServer>>;
  const dir = tempDir('url-plan');
  beforeEach(async () => {
    srv = await planServer();
  });
  afterEach(async () => {
    await srv.server.close();
  });
  afterAll(() => dir.remove());

  const source = (stateDir: string, metrics = new AgentMetrics({ processMetrics: false })) =>
    new PlanSource({ fetcher: new UrlPlanFetcher(srv.url, { timeoutMs: 2000 }), stateDir, logger: createLogger({ destination: memoryLogDestination() }), metrics, pollIntervalSeconds: 0, watch: false });

  it('applies the served plan, then sends If-None-Match and gets 304 while nothing changed', async () => {
    srv.serve(serializePlan(examplePlan()));
    const s = source(`${dir.path}/a`);
    expect((await s.start()).kind).toBe('accept');
    expect((await s.check()).kind).toBe('unchanged');
    expect(srv.requests.map((r) => r.status)).toEqual([200, 304]);
    expect(srv.requests[1].ifNoneMatch).toMatch(/^"[0-9a-f]{16}"$/);
    await s.stop();
  });

  it('applies a new generation when the ETag changes and refuses a lower one, keeping the old', async () => {
    srv.serve(serializePlan(examplePlan((p) => (p.generation = 2))));
    const metrics = new AgentMetrics({ processMetrics: false });
    const s = source(`${dir.path}/b`, metrics);
    await s.start();
    srv.serve(serializePlan(examplePlan((p) => ((p.generation = 3), (p.applications[0].shards.initial = 1)))));
    expect((await s.check()).kind).toBe('accept');
    srv.serve(serializePlan(examplePlan((p) => (p.generation = 1))));
    expect(await s.check()).toMatchObject({ kind: 'reject', rejection: { reason: 'generation-backwards', generation: 1 } });
    expect(s.current()?.generation).toBe(3);
    expect(await metrics.text()).toContain('shardform_plan_rejected_total{reason="generation-backwards"} 1');
    await s.stop();
  });

  it('keeps the last good plan through a server error, reporting it as unreadable once', async () => {
    srv.serve(serializePlan(examplePlan()));
    const s = source(`${dir.path}/c`);
    await s.start();
    srv.serve('', 503);
    expect(await s.check()).toMatchObject({ kind: 'reject', rejection: { reason: 'unreadable', message: expect.stringContaining('HTTP 503') } });
    await s.check();
    expect(s.status().rejectedTotal).toBe(1);
    expect(s.current()?.generation).toBe(1);
    await s.stop();
  });

  it('reports a server that went away as unreadable', async () => {
    srv.serve(serializePlan(examplePlan()));
    const s = source(`${dir.path}/d`);
    await s.start();
    await srv.server.close();
    expect(await s.check()).toMatchObject({ kind: 'reject', rejection: { reason: 'unreadable', message: expect.stringMatching(/ECONNREFUSED|ECONNRESET/) } });
    expect(s.current()?.generation).toBe(1);
    await s.stop();
  });

  it('gives up on a server that sends the plan a byte at a time, however long each byte keeps the socket alive', async () => {
    // One byte every 50 ms for 2 s: never idle for the 200 ms timeout, never done within it.
    const plan = serializePlan(examplePlan());
    const trickler = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      let sent = 0;
      const timer = setInterval(() => (++sent < 40 ? response.write(' ') : (clearInterval(timer), response.end(plan))), 50);
      response.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => trickler.listen(0, '127.0.0.1', resolve));
    const { port } = trickler.address() as { port: number };
    try {
      const fetcher = new UrlPlanFetcher(`http://127.0.0.1:${port}/plan.json`, { timeoutMs: 200 });
      expect(await fetcher.fetch()).toEqual({ kind: 'failed', message: 'no complete answer within 200 ms' });
    } finally {
      trickler.closeAllConnections();
      await new Promise((resolve) => trickler.close(resolve));
    }
  });
});
