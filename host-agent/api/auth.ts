/** onRequest hook of the authenticated scope: every route registered inside it needs the fleet token. */
import type { FastifyInstance } from 'fastify';
import { unauthorized } from './api-errors';
import { bearerToken, tokenMatches } from './fleet-token';

export function requireFleetToken(scope: FastifyInstance, token: () => string | undefined): void {
  scope.addHook('onRequest', async (request) => {
    const presented = bearerToken(request.headers.authorization);
    if (presented === undefined) throw unauthorized('missing bearer token');
    const expected = token();
    if (expected === undefined || !tokenMatches(presented, expected)) throw unauthorized('wrong fleet token');
  });
}
