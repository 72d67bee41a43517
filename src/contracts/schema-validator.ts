/**
 * One ajv instance for every schema of the project (strict mode, allErrors), and the one place
 * that turns ajv's errors into FieldErrors that name the field and the bad value.
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { TSchema, Static } from '@sinclair/typebox';
import type { FieldError } from '../errors';

export const ajv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true });
addFormats(ajv, ['date-time', 'uri']);

/** `/pools/0/hosts/1/address` -> `pools[0].hosts[1].address`. */
export function jsonPointerToField(pointer: string): string {
  if (pointer === '') return '(root)';
  return pointer
    .split('/')
    .slice(1)
    .map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((path, segment) => (/^\d+$/.test(segment) ? `${path}[${segment}]` : path ? `${path}.${segment}` : segment), '');
}

function valueAt(data: unknown, pointer: string): unknown {
  let current: unknown = data;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function join(field: string, key: string): string {
  return field === '(root)' ? key : `${field}.${key}`;
}

/** Converts ajv errors to field errors; required/additional properties name the child field. */
export function toFieldErrors(errors: readonly ErrorObject[] | null | undefined, data: unknown): FieldError[] {
  const result: FieldError[] = [];
  const seen = new Set<string>();
  for (const error of errors ?? []) {
    const base = jsonPointerToField(error.instancePath);
    let fieldError: FieldError;
    switch (error.keyword) {
      case 'required':
        fieldError = { field: join(base, String(error.params.missingProperty)), message: 'is required' };
        break;
      case 'additionalProperties':
        fieldError = {
          field: join(base, String(error.params.additionalProperty)),
          message: 'is not a known field',
        };
        break;
      case 'enum':
        fieldError = {
          field: base,
          message: `must be one of ${(error.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
          value: valueAt(data, error.instancePath),
        };
        break;
      case 'const':
        fieldError = {
          field: base,
          message: `must be ${JSON.stringify(error.params.allowedValue)}`,
          value: valueAt(data, error.instancePath),
        };
        break;
      default:
        fieldError = { field: base, message: error.message ?? error.keyword, value: valueAt(data, error.instancePath) };
    }
    const key = `${fieldError.field}|${fieldError.message}`;
    // anyOf/oneOf branches repeat the same complaint; say it once.
    if (!seen.has(key)) {
      seen.add(key);
      result.push(fieldError);
    }
  }
  return result;
}

export type SchemaCheck<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

/** Compiles a TypeBox schema once; the returned function validates and types in one step. */
export function compileSchema<S extends TSchema>(schema: S): (data: unknown) => SchemaCheck<Static<S>> {
  const validate: ValidateFunction = ajv.compile(schema);
  return (data: unknown) =>
    validate(data) ? { ok: true, value: data as Static<S> } : { ok: false, errors: toFieldErrors(validate.errors, data) };
}
