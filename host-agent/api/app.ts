/**
 * The agent's HTTP API as a fastify instance with everything injected (buildApp); listening is
 * a separate step (listen.ts), so tests drive it through app.inject() without a socket.
 * /healthz is public; every other route group is registered inside one scope whose onRequest
 * hook checks the fleet token.
 */
import fastify, { type FastifyInstance } from 'fastify';
import type { ApiDeps } from './api-deps';
import { requireFleetToken } from './auth';
import { installErrorHandler } from './error-handler';
import { drainRoutes } from './routes/drain-routes';
import { eventRoutes } from './routes/event-routes';
import { healthRoutes } from './routes/health-routes';
import { metricsRoutes } from './routes/metrics-routes';
import { planRoutes } from './routes/plan-routes';
import { predictionRoutes } from './routes/prediction-routes';
import { shardRoutes } from './routes/shard-routes';
import { validatorCompiler } from './schema-compiler';

export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  // No per-request logging (a /metrics scrape every 15 s is not news); the error handler logs failures.
  const app = fastify({
    logger: false,
    bodyLimit: 64 * 1024,
    // Ids are case-sensitive and a trailing slash is a different URL; no guessing.
    routerOptions: { ignoreTrailingSlash: false, caseSensitive: true },
    // close() ends requests in flight too: a peer that died mid-upload (no FIN, no TCP keepalive)
    // would otherwise hold the agent's stop, its host claim and its cgroups' lock forever.
    forceCloseConnections: true,
  });
  app.setValidatorCompiler(validatorCompiler);
  installErrorHandler(app, deps.logger);
  await app.register(healthRoutes(deps));
  await app.register(async (scope) => {
    requireFleetToken(scope, deps.token);
    await scope.register(planRoutes(deps));
    await scope.register(shardRoutes(deps));
    await scope.register(eventRoutes(deps));
    await scope.register(drainRoutes(deps));
    await scope.register(metricsRoutes(deps));
    await scope.register(predictionRoutes(deps));
    for (const plugin of deps.plugins ?? []) await scope.register(plugin);
  });
  await app.ready();
  return app;
}
