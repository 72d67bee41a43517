/** GET /healthz: liveness for load balancers and systemd; no auth, no secrets. */
import type { FastifyPluginAsync } from 'fastify';
import { SHARDFORM_VERSION } from '../../../src/version';
import type { ApiDeps } from '../api-deps';

export const healthRoutes =
  (deps: ApiDeps): FastifyPluginAsync =>
  async (app) => {
    app.get('/healthz', async () => ({
      status: 'ok',
      hostId: deps.hostId,
      version: SHARDFORM_VERSION,
      cgroupLayout: deps.driver.layout,
      generation: deps.plan.current()?.generation ?? null,
      drained: deps.drain.isDrained(),
    }));
  };
