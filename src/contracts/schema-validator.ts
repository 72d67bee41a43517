/**
 * One ajv instance for every schema of the project (strict mode, allErrors), and the one place
 * that turns ajv's errors into FieldErrors that name the field and the bad value.
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { Type, type TSchema, type Static, type TLiteral, type TObject, type TUnion } from '@sinclair/typebox';
import { NUL_RULE, type FieldError } from '../errors';

export const ajv = new Ajv({ strict: true, allErrors: true, allowUnionTypes: true, discriminator: true, verbose: true });
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
      case 'propertyNames':
        // ajv reports the inner failure (e.g. pattern) separately with the property name; keep that one.
        continue;
      case 'discriminator':
        fieldError =
          error.params.error === 'mapping'
            ? { field: join(base, String(error.params.tag)), message: `must be one of ${discriminatorValues(error)}`, value: error.params.tagValue }
            : { field: join(base, String(error.params.tag)), message: 'is required' };
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
        if (error.keyword === 'pattern' && error.propertyName === undefined && /\u0000/.test(String(valueAt(data, error.instancePath)))) {
          // "must match pattern "^[^\u0000]*$"" does not say which character is wrong, nor why it matters.
          fieldError = { field: base, message: NUL_RULE, value: valueAt(data, error.instancePath) };
        } else if (error.propertyName !== undefined) {
          fieldError = { field: join(base, error.propertyName), message: `is not a valid name (${error.message ?? error.keyword})`, value: error.propertyName };
        } else {
          fieldError = { field: base, message: error.message ?? error.keyword, value: valueAt(data, error.instancePath) };
        }
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

function discriminatorValues(error: ErrorObject): string {
  const branches = (error.parentSchema?.oneOf ?? []) as { properties?: Record<string, { const?: unknown }> }[];
  return branches.map((b) => JSON.stringify(b.properties?.[String(error.params.tag)]?.const)).join(', ');
}

/** A string enum as a plain JSON Schema `enum` (one error "must be one of ..." instead of one per literal). */
export function StringEnum<const T extends readonly string[]>(values: T, options: { description?: string } = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/** A map with validated keys (`propertyNames`), e.g. environment variables. */
export function NamedMap<V extends TSchema>(keyPattern: string, value: V, options: { description?: string; maxProperties?: number } = {}) {
  return Type.Unsafe<Record<string, Static<V>>>({ type: 'object', propertyNames: { pattern: keyPattern }, additionalProperties: value, ...options });
}

/**
 * A tagged union checked with ajv's `discriminator`: the tag picks the branch, so errors speak
 * about that branch only (not "must match a schema in anyOf" plus every branch's complaints).
 */
export function TaggedUnion<K extends string, T extends TObject<Record<K, TLiteral<string>> & Record<string, TSchema>>[]>(tag: K, branches: [...T]) {
  return Type.Unsafe<Static<TUnion<T>>>({
    type: 'object',
    discriminator: { propertyName: tag },
    properties: { [tag]: { type: 'string' } },
    required: [tag],
    oneOf: branches,
  });
}
