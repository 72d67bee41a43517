/**
 * `GET /v1/predictions`: the demand vectors of this host's shards, and of its applications (the
 * sum of an application's shards here), at the plan's predictor horizon and quantile
 * (host-agent/prediction/forecast-loop.ts). `?application=ID` keeps one application's.
 *
 * `PUT /v1/predictions/shards/:id/state`: a migration's source hands over the shard's predictor
 * state after the commit, so the shard does not start cold here (ForecastLoop.importState).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiDeps } from '../api-deps';
import { ApiError, noPlan } from '../api-errors';
import { PredictionQuery, PredictorStateBody, ShardParams } from '../schemas';

/**
 * A shard's saved predictor is ~1 MB of JSON on the default 5-min grid, but its models keep a
 * week of samples on the grid: on a 1-s grid (the plan's finest) it is ~12 MB fresh and ~50 MB
 * after a week. Above this it is not one.
 */
export const PREDICTOR_STATE_MAX_BYTES = 64 * 2 ** 20;

export const predictionRoutes =
  (deps: ApiDeps): FastifyPluginAsync =>
  async (app) => {
    app.get<{ Querystring: PredictionQuery }>('/v1/predictions', { schema: { querystring: PredictionQuery } }, async (request) => {
      if (!deps.plan.current() || !deps.forecast) throw noPlan();
      const view = deps.forecast.view();
      const application = request.query.application;
      const keep = <T extends { application_id: string }>(list: T[]) => (application === undefined ? list : list.filter((v) => v.application_id === application));
      return { hostId: deps.hostId, ...view, shards: keep(view.shards), applications: keep(view.applications) };
    });

    app.put<{ Params: ShardParams; Body: PredictorStateBody }>(
      '/v1/predictions/shards/:id/state',
      { schema: { params: ShardParams, body: PredictorStateBody }, bodyLimit: PREDICTOR_STATE_MAX_BYTES },
      async (request) => {
        if (!deps.plan.current() || !deps.forecast) throw noPlan();
        const why = deps.forecast.importState(request.params.id, request.body);
        if (why !== undefined) throw new ApiError(409, 'CONFLICT', `predictor state of ${request.params.id} not taken: ${why}`, [{ field: 'body', message: why }]);
        return { shardId: request.params.id, taken: true };
      },
    );
  };
