/**
 * A standalone fastify app serving only migration route plugins behind the fleet token: what the
 * dev/test destination agents run until the agent's buildApp registers migrationRoutes in its
 * authenticated scope (ApiDeps.plugins). The token check is the agent's: a bearer token
 * compared in constant time.
 */
import { timingSafeEqual } from 'node:crypto';
import fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';

function matches(presented: string, expected: string): boolean {
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function buildMigrationApp(deps: { token: () => string | undefined; plugins: readonly FastifyPluginAsync[] }): Promise<FastifyInstance> {
  const app = fastify({ logger: false, bodyLimit: 1024 * 1024 });
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (request, reply) => {
      const header = request.headers.authorization ?? '';
      const presented = /^Bearer (\S+)$/.exec(header)?.[1];
      const expected = deps.token();
      if (!presented || expected === undefined || !matches(presented, expected)) {
        await reply.status(401).send({ statusCode: 401, error: 'UNAUTHORIZED', message: presented ? 'wrong fleet token' : 'missing bearer token' });
      }
    });
    for (const plugin of deps.plugins) await scope.register(plugin);
  });
  await app.ready();
  return app;
}
