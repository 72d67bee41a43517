/** The one place errors become HTTP responses: `{ statusCode, error, message, errors? }`. */
import type { FastifyError, FastifyInstance } from 'fastify';
import { ShardformError } from '../../src/errors';
import { ApiError } from './api-errors';

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | ApiError | ShardformError | Error, request, reply) => {
    if (error instanceof ApiError) {
      return reply.status(error.statusCode).send({ statusCode: error.statusCode, error: error.code, message: error.message, ...(error.errors.length ? { errors: error.errors } : {}) });
    }
    if (error instanceof ShardformError) {
      const errors = 'errors' in error ? (error as { errors: unknown[] }).errors : [{ field: error.field, message: error.message, value: error.value }];
      return reply.status(400).send({ statusCode: 400, error: error.code, message: error.message, errors });
    }
    const status = (error as FastifyError).statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      // Fastify's own 4xx (unparsable JSON body, wrong content type, body too large).
      return reply.status(status).send({ statusCode: status, error: (error as FastifyError).code ?? 'BAD_REQUEST', message: error.message });
    }
    request.log.error({ err: error, url: request.url, method: request.method }, 'request failed');
    return reply.status(500).send({ statusCode: 500, error: 'INTERNAL', message: error.message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ statusCode: 404, error: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );
}
