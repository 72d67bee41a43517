import fastify, { type FastifyInstance } from 'fastify';
import { createHash } from 'node:crypto';
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
});
