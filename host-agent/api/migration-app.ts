/**
 * A standalone fastify app serving only migration route plugins behind the fleet token: what the
 * dev/test destination agents run until the agent's buildApp registers migrationRoutes in its
 * authenticated scope (ApiDeps.plugins). The token check is the agent's own (auth.ts: constant
 * time over sha256 digests, so not even the token's length leaks), and so are its 401s.
 */
import fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import { requireFleetToken } from './auth';
import { installErrorHandler } from './error-handler';

export async function buildMigrationApp(deps: { token: () => string | undefined; plugins: readonly FastifyPluginAsync[] }): Promise<FastifyInstance> {
  // As buildApp: close() ends requests in flight, so a source that died mid-upload cannot hold a SIGTERM.
  const app = fastify({ logger: false, bodyLimit: 1024 * 1024, forceCloseConnections: true });
  installErrorHandler(app);
  await app.register(async (scope) => {
    requireFleetToken(scope, deps.token);
    for (const plugin of deps.plugins) await scope.register(plugin);
  });
  await app.ready();
  return app;
}
