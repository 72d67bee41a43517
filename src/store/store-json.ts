/**
 * JSON values on the store (the convention of store.ts): one place parses, so a corrupt value
 * fails with the key that holds it instead of a bare SyntaxError somewhere in the caller.
 */
import type { KeyValue, Store } from './store';
import { storeError } from './store-error';

export interface JsonKeyValue<T> extends Omit<KeyValue, 'value'> {
  readonly value: T;
}

export function parseJson<T>(kv: KeyValue): JsonKeyValue<T> {
  try {
    return { ...kv, value: JSON.parse(kv.value) as T };
  } catch (error) {
    throw storeError('INVALID_VALUE', kv.key, kv.value, `not JSON (${(error as Error).message})`, 'the key was written by something other than putJson');
  }
}

export async function getJson<T>(store: Store, key: string): Promise<JsonKeyValue<T> | undefined> {
  const kv = await store.get(key);
  return kv && parseJson<T>(kv);
}

export async function putJson(store: Store, key: string, value: unknown, opts?: { leaseId?: string }): Promise<number> {
  return store.put(key, JSON.stringify(value), opts);
}

export async function listJson<T>(store: Store, prefix: string): Promise<JsonKeyValue<T>[]> {
  return (await store.list(prefix)).map((kv) => parseJson<T>(kv));
}
