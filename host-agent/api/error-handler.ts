/** The one place errors become HTTP responses: `{ statusCode, error, message, errors? }`. */
import type { FastifyError, FastifyInstance } from 'fastify';
import type { AgentLogger } from '../log';
import { ShardformError } from '../../src/errors';
import { HostAgentError, type HostAgentErrorCode } from '../errors';
import { ApiError } from './api-errors';

/** Kernel-side errors that are the caller's to fix (or to retry later), with their status. */
const HOST_AGENT_STATUS: Partial<Record<HostAgentErrorCode, number>> = {
  INVALID_LIMITS: 400,
  SHARD_UNKNOWN: 404,
  SHARD_NOT_FOUND: 404,
  SHARD_HELD: 409,
  SHARD_NOT_RUNNING: 409,
  SHARD_EXISTS: 409,
  MEMORY_IN_USE: 409,
};

export function installErrorHandler(app: FastifyInstance, logger?: AgentLogger): void {
  app.setErrorHandler((error: FastifyError | ApiError | ShardformError | Error, request, reply) => {
    if (error instanceof ApiError) {
      return reply.status(error.statusCode).send({ statusCode: error.statusCode, error: error.code, message: error.message, ...(error.errors.length ? { errors: error.errors } : {}) });
    }
    if (error instanceof ShardformError) {
      const errors = 'errors' in error ? (error as { errors: unknown[] }).errors : [{ field: error.field, message: error.message, value: error.value }];
      return reply.status(400).send({ statusCode: 400, error: error.code, message: error.message, errors });
    }
    if (error instanceof HostAgentError && HOST_AGENT_STATUS[error.code] !== undefined) {
      const code = HOST_AGENT_STATUS[error.code]!;
      return reply.status(code).send({ statusCode: code, error: error.code, message: error.message, errors: [{ field: error.field, message: error.message, value: error.value }] });
    }
    const status = (error as FastifyError).statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      // Fastify's own 4xx (unparsable JSON body, wrong content type, body too large).
      return reply.status(status).send({ statusCode: status, error: (error as FastifyError).code ?? 'BAD_REQUEST', message: error.message });
    }
    logger?.error({ part: 'api', err: error, url: request.url, method: request.method }, 'request failed');
    return reply.status(500).send({ statusCode: 500, error: 'INTERNAL', message: error.message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ statusCode: 404, error: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );
}
