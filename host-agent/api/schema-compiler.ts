/**
 * Fastify validates with the project's ajv (src/contracts/schema-validator.ts: strict, allErrors)
 * instead of its own, so an API error names the field and the bad value exactly like a plan
 * error does. No type coercion: query strings stay strings and route schemas say so.
 */
import type { TSchema } from '@sinclair/typebox';
import type { FastifySchemaCompiler } from 'fastify';
import { compileSchema } from '../../src/contracts/schema-validator';
import { RequestValidationError } from './api-errors';

export const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = compileSchema(schema);
  const part = httpPart === 'querystring' ? 'query' : (httpPart ?? 'request');
  return (data: unknown) => {
    const result = check(data);
    return result.ok ? true : { error: new RequestValidationError(part, result.errors) };
  };
};
