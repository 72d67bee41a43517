/**
 * Errors the agent API raises on purpose, each with its HTTP status and a stable code. The
 * one error handler (error-handler.ts) maps these, ShardformError (bad input, 400) and schema
 * failures (400) to responses; anything else is a 500 that is logged.
 */
import type { FieldError } from '../../src/errors';

export type ApiErrorCode = 'UNAUTHORIZED' | 'UNKNOWN_SHARD' | 'NO_PLAN' | 'INVALID_REQUEST' | 'CONFLICT';

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ApiErrorCode,
    message: string,
    readonly errors: readonly FieldError[] = [],
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const unauthorized = (why: string) => new ApiError(401, 'UNAUTHORIZED', `${why}; send "Authorization: Bearer <fleet token>"`);

export const unknownShard = (shardId: string) =>
  new ApiError(404, 'UNKNOWN_SHARD', `shard ${JSON.stringify(shardId)} is not on this host; GET /v1/shards lists the shards here`, [
    { field: 'params.id', message: 'is not a shard on this host', value: shardId },
  ]);

export const noPlan = () => new ApiError(409, 'NO_PLAN', 'the agent has no valid plan yet; see GET /v1/plan for why');

/** Request data failed a schema: `part` is body, params or querystring; fields are prefixed with it. */
export class RequestValidationError extends ApiError {
  constructor(part: string, errors: readonly FieldError[]) {
    const named = errors.map((e) => ({ ...e, field: e.field === '(root)' ? part : `${part}.${e.field}` }));
    super(400, 'INVALID_REQUEST', `invalid ${part}: ${named.map(describe).join('; ')}`, named);
  }
}

function describe(error: FieldError): string {
  return `${error.field} ${error.message}${error.value !== undefined ? ` (got ${JSON.stringify(error.value)})` : ''}`;
}
