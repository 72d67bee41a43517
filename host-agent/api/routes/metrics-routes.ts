/** GET /metrics: Prometheus text exposition of every agent and shard metric (authenticated like the rest). */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiDeps } from '../api-deps';

export const metricsRoutes =
  (deps: ApiDeps): FastifyPluginAsync =>
  async (app) => {
    app.get('/metrics', async (_request, reply) => reply.type(deps.metrics.contentType).send(await deps.metrics.text()));
  };
