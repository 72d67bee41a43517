/**
 * `GET /v1/predictions`: the demand vectors of this host's shards, and of its applications (the
 * sum of an application's shards here), at the plan's predictor horizon and quantile
 * (host-agent/prediction/forecast-loop.ts). `?application=ID` keeps one application's.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiDeps } from '../api-deps';
import { noPlan } from '../api-errors';
import { PredictionQuery } from '../schemas';

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
  };
