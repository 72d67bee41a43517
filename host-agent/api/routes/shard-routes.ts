/**
 * Shards on this host: list, one shard with its limits and live usage, usage history, and
 * in-place resize. Ids are checked by the params schema before a handler (and so the driver)
 * ever sees them.
 */
import type { FastifyPluginAsync } from 'fastify';
import { parseDurationSeconds } from '../../../src/contracts/quantities';
import type { ShardStatus } from '../../runner/shard-status';
import type { ApiDeps } from '../api-deps';
import { RequestValidationError, unknownShard } from '../api-errors';
import { HistoryQuery, ResizeBody, ShardParams } from '../schemas';

export const shardRoutes =
  (deps: ApiDeps): FastifyPluginAsync =>
  async (app) => {
    const now = deps.clock ?? (() => Date.now() / 1000);
    const find = (id: string): ShardStatus => {
      const status = deps.manager.status().find((s) => s.shardId === id);
      if (!status) throw unknownShard(id);
      return status;
    };

    app.get('/v1/shards', async () => ({
      hostId: deps.hostId,
      drained: deps.drain.isDrained(),
      shards: deps.manager.status().map(view),
    }));

    app.get<{ Params: ShardParams }>('/v1/shards/:id', { schema: { params: ShardParams } }, async (request) => {
      const status = find(request.params.id);
      let usage: unknown = null;
      let usageError: string | undefined;
      try {
        usage = await deps.driver.usage(status.shardId);
      } catch (error) {
        usageError = (error as Error).message;
      }
      return { ...view(status), usage, ...(usageError ? { usageError } : {}) };
    });

    app.get<{ Params: ShardParams; Querystring: HistoryQuery }>(
      '/v1/shards/:id/history',
      { schema: { params: ShardParams, querystring: HistoryQuery } },
      async (request) => {
        const status = find(request.params.id);
        const toSeconds = request.query.to !== undefined ? Number(request.query.to) : now();
        const fromSeconds = request.query.from !== undefined ? Number(request.query.from) : toSeconds - 3600;
        if (fromSeconds > toSeconds)
          throw new RequestValidationError('query', [{ field: 'from', message: `must not be after to (${toSeconds})`, value: request.query.from }]);
        const resolution = request.query.resolution;
        const resolutionSeconds = resolution === undefined ? undefined : parseDurationSeconds(/^[0-9]+$/.test(resolution) ? Number(resolution) : resolution, 'query.resolution');
        const samples = deps.history.query({ shardId: status.shardId, fromSeconds, toSeconds, ...(resolutionSeconds ? { resolutionSeconds } : {}) });
        return { shardId: status.shardId, applicationId: status.applicationId, fromSeconds, toSeconds, resolutionSeconds: resolutionSeconds ?? null, samples };
      },
    );

    app.post<{ Params: ShardParams; Body: ResizeBody }>(
      '/v1/shards/:id/resize',
      { schema: { params: ShardParams, body: ResizeBody } },
      async (request) => view(await deps.resizer.resize(request.params.id, request.body)),
    );
  };

function view(status: ShardStatus) {
  return {
    shardId: status.shardId,
    applicationId: status.applicationId,
    state: status.state,
    pid: status.pid ?? null,
    startedAt: status.startedAt ?? null,
    restarts: status.restarts,
    adopted: status.adopted,
    frozen: status.frozen,
    limits: status.limits,
    lastExit: status.lastExit ?? null,
    nextRestartAt: status.nextRestartAt ?? null,
  };
}
