/** GET /v1/plan: which plan runs, where it came from, and the last refusal with its reason. */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiDeps } from '../api-deps';

export const planRoutes =
  (deps: ApiDeps): FastifyPluginAsync =>
  async (app) => {
    app.get('/v1/plan', async () => {
      const status = deps.plan.status();
      return {
        source: status.source,
        generation: status.running?.generation ?? null,
        digest: status.running?.digest ?? null,
        fleet: status.running?.fleet ?? null,
        appliedAt: status.running?.appliedAt ?? null,
        from: status.running?.from ?? null,
        lastCheckAt: status.lastCheckAt ?? null,
        rejectedTotal: status.rejectedTotal,
        lastRejection: status.lastRejection ?? null,
      };
    });
  };
