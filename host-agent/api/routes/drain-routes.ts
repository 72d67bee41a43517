/** POST /v1/drain: stop every shard of this host cleanly and keep them stopped; `{ "undo": true }` lifts it. */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiDeps } from '../api-deps';
import { DrainBody } from '../schemas';

export const drainRoutes =
  (deps: ApiDeps): FastifyPluginAsync =>
  async (app) => {
    app.post<{ Body: DrainBody }>('/v1/drain', { schema: { body: DrainBody } }, async (request) => {
      if (request.body.undo) {
        await deps.drain.undrain();
        return { drained: false, actions: [], converged: true };
      }
      const report = await deps.drain.drain();
      return { drained: true, actions: report.actions, converged: report.converged };
    });
  };
