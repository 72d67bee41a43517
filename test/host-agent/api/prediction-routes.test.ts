/** GET /v1/predictions and PUT /v1/predictions/shards/:id/state over a fake forecast: the route's checks and error shapes. */
import type { ForecastView } from '../../../host-agent/prediction/forecast-loop';
import { apiFixture, AUTH } from './api-fixture';

const vector = (shardId: string | undefined, applicationId: string) => ({
  timestamp: '2026-11-27T12:15:00Z',
  application_id: applicationId,
  resources: { cpu: { cores: 0.5 }, memory: { gb: 1 } },
  horizon_seconds: 900,
  quantile: 0.95,
  ...(shardId ? { shard_id: shardId } : {}),
});

function fakeForecast() {
  const imported: { shardId: string; state: unknown }[] = [];
  const view: ForecastView = {
    settings: { model: 'auto', horizonSeconds: 900, quantile: 0.95, intervalSeconds: 300, minHistorySeconds: 86400 },
    fedThroughSeconds: 1_700_000_000,
    catchingUp: false,
    shards: [vector('web-0', 'web'), vector('db-0', 'db')],
    applications: [vector(undefined, 'web'), vector(undefined, 'db')],
  };
  return {
    imported,
    view: () => view,
    importState: (shardId: string, state: unknown) => {
      if (shardId === 'web-1') return 'the predictor here has as much history already';
      imported.push({ shardId, state });
      return undefined;
    },
  };
}

describe('prediction routes', () => {
  it('serves the forecast, one application\'s on request, and 409 NO_PLAN without a forecast', async () => {
    const forecast = fakeForecast();
    const { app } = await apiFixture({ forecast });
    const all = await app.inject({ method: 'GET', url: '/v1/predictions', headers: AUTH });
    expect(all.statusCode).toBe(200);
    expect(all.json()).toMatchObject({ hostId: 'host-a', catchingUp: false, fedThroughSeconds: 1_700_000_000 });
    const web = (await app.inject({ method: 'GET', url: '/v1/predictions?application=web', headers: AUTH })).json();
    expect([web.shards.length, web.applications.length]).toEqual([1, 1]);
    expect((await app.inject({ method: 'GET', url: '/v1/predictions?application=Not_An_Id', headers: AUTH })).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: '/v1/predictions?shard=web-0', headers: AUTH })).statusCode).toBe(400);
    const without = await apiFixture();
    expect((await without.app.inject({ method: 'GET', url: '/v1/predictions', headers: AUTH })).json()).toMatchObject({ statusCode: 409, error: 'NO_PLAN' });
  });

  it('takes a handed-over predictor state, refuses one the forecast will not take (409, with why), a malformed one (400) and an unauthenticated one (401)', async () => {
    const forecast = fakeForecast();
    const { app } = await apiFixture({ forecast });
    const state = { version: 1, applicationId: 'web', shardId: 'web-0', models: {} };
    const put = (id: string, payload: unknown, headers: Record<string, string> = AUTH) => app.inject({ method: 'PUT', url: `/v1/predictions/shards/${id}/state`, headers, payload: payload as object });
    const taken = await put('web-0', state);
    expect([taken.statusCode, taken.json()]).toEqual([200, { shardId: 'web-0', taken: true }]);
    expect(forecast.imported).toEqual([{ shardId: 'web-0', state }]);
    const refused = await put('web-1', state);
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ error: 'CONFLICT', message: 'predictor state of web-1 not taken: the predictor here has as much history already' });
    const malformed = await put('web-0', { version: 2, applicationId: 'web' });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json().message).toContain('body.version');
    expect((await put('Bad_Id', state)).statusCode).toBe(400);
    expect((await put('web-0', state, {})).statusCode).toBe(401);
    expect(forecast.imported).toHaveLength(1);
  });
});
