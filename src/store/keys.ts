/**
 * The key grammar both stores enforce before anything is written, so a bad key fails the
 * same way on SQLite and on etcd, and a key can always be shown, logged and used as a path
 * fragment safely:
 *
 *   key    = 1*( "/" segment )           at most 512 characters
 *   segment = 1*( ALPHA / DIGIT / "." / "_" / ":" / "-" ), never "." or ".."
 *
 * A prefix (list, watch) is "/" or a key, optionally followed by "/" or by the start of a
 * segment (`/fleet/demo/journal/mig-`). Keys are compared bytewise, as etcd does.
 */
import type { TxnCompare, TxnOp } from './store';
import { storeError } from './store-error';

export const MAX_KEY_LENGTH = 512;
/** etcd refuses requests over 1.5 MiB by default; a value well under that leaves room for the txn. */
export const MAX_VALUE_BYTES = 1024 * 1024;
/** Longest lease we grant: a day. Longer would outlive any sensible liveness signal. */
export const MAX_TTL_SECONDS = 86_400;

const SEGMENT = /^[A-Za-z0-9._:-]+$/;
const GRAMMAR = "keys are '/'-separated segments of A-Z a-z 0-9 . _ : - (e.g. /fleet/demo/journal/m-1), no empty, '.' or '..' segment";

export function checkKey(key: unknown, field = 'key'): string {
  if (typeof key !== 'string' || !isKey(key)) {
    throw storeError('INVALID_KEY', field, key, 'not a valid key', `${GRAMMAR}, at most ${MAX_KEY_LENGTH} characters`);
  }
  return key;
}

export function checkPrefix(prefix: unknown, field = 'prefix'): string {
  if (typeof prefix !== 'string' || !isPrefix(prefix)) {
    throw storeError('INVALID_KEY', field, prefix, 'not a valid prefix', `a prefix is '/' or the start of a key; ${GRAMMAR}`);
  }
  return prefix;
}

function isKey(key: string): boolean {
  if (key.length < 2 || key.length > MAX_KEY_LENGTH || key[0] !== '/') return false;
  return key
    .slice(1)
    .split('/')
    .every((segment) => SEGMENT.test(segment) && segment !== '.' && segment !== '..');
}

function isPrefix(prefix: string): boolean {
  if (prefix === '/') return true;
  if (prefix.length > MAX_KEY_LENGTH) return false;
  // A trailing '/' ends a complete key; otherwise the last segment may be partial.
  return isKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
}

/** The first key after every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): string {
  // Keys are ASCII by the grammar, so bumping the last character is exact.
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

export function checkValue(value: unknown, field = 'value'): string {
  if (typeof value !== 'string') {
    throw storeError('INVALID_VALUE', field, value, 'values are strings', 'serialize with JSON.stringify (see store-json.ts)');
  }
  if (Buffer.byteLength(value) > MAX_VALUE_BYTES) {
    throw storeError('INVALID_VALUE', field, `${value.slice(0, 40)}...`, `value is ${Buffer.byteLength(value)} bytes`, `keep values under ${MAX_VALUE_BYTES} bytes`);
  }
  return value;
}

export function checkTtl(ttlSeconds: unknown, field = 'ttlSeconds'): number {
  if (typeof ttlSeconds !== 'number' || !Number.isInteger(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > MAX_TTL_SECONDS) {
    // Whole seconds because etcd leases are whole seconds; both stores must accept the same ttls.
    throw storeError('INVALID_TTL', field, ttlSeconds, 'not a valid lease ttl', `use a whole number of seconds from 1 to ${MAX_TTL_SECONDS}`);
  }
  return ttlSeconds;
}

export function checkLeaseId(leaseId: unknown, field = 'leaseId'): string | undefined {
  if (leaseId === undefined) return undefined;
  if (typeof leaseId !== 'string' || !/^[0-9]{1,20}$/.test(leaseId)) {
    throw storeError('LEASE_NOT_FOUND', field, leaseId, 'not a lease id', 'pass the id of a lease from grantLease()');
  }
  return leaseId;
}

export function checkCompares(compares: readonly TxnCompare[]): void {
  if (!Array.isArray(compares)) throw storeError('INVALID_TXN', 'compares', compares, 'not an array');
  compares.forEach((compare, i) => {
    checkKey(compare?.key, `compares[${i}].key`);
    if ('modRevision' in compare) {
      if (!Number.isInteger(compare.modRevision) || compare.modRevision < 0) {
        throw storeError('INVALID_TXN', `compares[${i}].modRevision`, compare.modRevision, 'not a revision', 'use a whole number >= 0 (0 = the key is absent)');
      }
    } else if ('value' in compare) {
      checkValue(compare.value, `compares[${i}].value`);
    } else {
      throw storeError('INVALID_TXN', `compares[${i}]`, compare, 'compares need modRevision or value');
    }
  });
}

/** Validates one branch of a txn; etcd refuses a key twice in one branch, so we do as well. */
export function checkOps(ops: readonly TxnOp[], branch: string): void {
  if (!Array.isArray(ops)) throw storeError('INVALID_TXN', branch, ops, 'not an array');
  const seen = new Set<string>();
  ops.forEach((op, i) => {
    const key = checkKey(op?.key, `${branch}[${i}].key`);
    if (seen.has(key)) {
      throw storeError('INVALID_TXN', `${branch}[${i}].key`, key, 'the key appears twice in one branch', 'merge the two operations into one');
    }
    seen.add(key);
    if (op.kind === 'put') {
      checkValue(op.value, `${branch}[${i}].value`);
      checkLeaseId(op.leaseId, `${branch}[${i}].leaseId`);
    } else if (op.kind !== 'delete') {
      throw storeError('INVALID_TXN', `${branch}[${i}].kind`, (op as { kind: unknown }).kind, 'unknown operation', "use 'put' or 'delete'");
    }
  });
}
