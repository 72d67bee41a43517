/** GET /v1/events?since=SEQ&limit=N: shard events after a cursor, oldest first; `lastSeq` is the next cursor. */
import type { FastifyPluginAsync } from 'fastify';
import type { ApiDeps } from '../api-deps';
import { EventsQuery } from '../schemas';

export const eventRoutes =
  (deps: ApiDeps): FastifyPluginAsync =>
  async (app) => {
    app.get<{ Querystring: EventsQuery }>('/v1/events', { schema: { querystring: EventsQuery } }, async (request) => {
      const since = Number(request.query.since ?? 0);
      const events = deps.events.since(since, Number(request.query.limit ?? 500));
      return { events, lastSeq: events.length > 0 ? events[events.length - 1].seq : Math.max(since, 0), newestSeq: deps.events.lastSeq };
    });
  };
