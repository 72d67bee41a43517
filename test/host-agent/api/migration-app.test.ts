import type { FastifyInstance } from 'fastify';
import { buildMigrationApp } from '../../../host-agent/api/migration-app';
import { stalledRequest } from './api-fixture';

const TOKEN = 'migration-app-token-0123456789';

describe('buildMigrationApp', () => {
  let app: FastifyInstance;
  beforeEach(async () => {
    app = await buildMigrationApp({ token: () => TOKEN, plugins: [async (scope) => void scope.get('/v1/migrations/mig-1', async () => ({ ok: true }))] });
  });
  afterEach(async () => app.close());
  const get = (authorization?: string) => app.inject({ method: 'GET', url: '/v1/migrations/mig-1', headers: authorization === undefined ? {} : { authorization } });

  it('takes the fleet token as the agent API does: the Bearer scheme in any case (RFC 9110 §11.1), any spacing', async () => {
    for (const authorization of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `BEARER  ${TOKEN}`]) expect((await get(authorization)).statusCode).toBe(200);
  });

  it('answers a missing or wrong token with the agent API\'s 401, saying what to send', async () => {
    expect((await get()).json()).toEqual({ statusCode: 401, error: 'UNAUTHORIZED', message: 'missing bearer token; send "Authorization: Bearer <fleet token>"' });
    for (const authorization of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Basic ${TOKEN}`]) {
      const res = await get(authorization);
      expect(res.statusCode).toBe(401);
      expect(res.json().error).toBe('UNAUTHORIZED');
    }
  });

  it('closes with a source stalled in the middle of an upload (a dev destination\'s SIGTERM does not wait for it)', async () => {
    const g = await buildMigrationApp({ token: () => TOKEN, plugins: [async (scope) => void scope.put('/v1/migrations/mig-1', async () => ({ ok: true }))] });
    const socket = await stalledRequest(g, `PUT /v1/migrations/mig-1 HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\n`);
    const dropped = new Promise((resolve) => socket.once('close', resolve));
    await g.close();
    await dropped;
  });
});
