/**
 * The store's error catalogue (after src/errors.ts): a stable `code` that callers and tests
 * match on, the field that was wrong, the value as given, and a message saying what is valid.
 * A StoreError thrown for bad input means nothing was written.
 */
import { showValue } from '../errors';

export type StoreErrorCode =
  /** A key or prefix outside the grammar of keys.ts. */
  | 'INVALID_KEY'
  | 'INVALID_VALUE'
  /** A lease ttl that is not a positive whole number of seconds. */
  | 'INVALID_TTL'
  /** A transaction that names one key twice, or an operation of unknown kind. */
  | 'INVALID_TXN'
  | 'INVALID_ARGUMENT'
  /** Store settings that cannot be opened (unknown kind, empty path, bad endpoint). */
  | 'INVALID_SETTINGS'
  /** A put names a lease that does not exist (never granted, expired or revoked). */
  | 'LEASE_NOT_FOUND'
  /** keepAlive on a lease that has already expired or been revoked. */
  | 'LEASE_LOST'
  /** A watch asked for revisions the change log no longer holds. */
  | 'COMPACTED'
  /** The campaign's AbortSignal fired before this candidate became leader. */
  | 'CAMPAIGN_ABORTED'
  /** The store was closed; open a new one. */
  | 'STORE_CLOSED'
  /** The backend (etcd) could not be reached or failed in a way we do not classify. */
  | 'STORE_UNAVAILABLE';

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    /** The argument or setting at fault: `key`, `ttlSeconds`, `success[1].leaseId`, `store.path`. */
    readonly field: string,
    /** The offending value, as given. */
    readonly value: unknown,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

/** Builds the one-line message shape every store error uses: `field: problem (got value); fix`. */
export function storeError(code: StoreErrorCode, field: string, value: unknown, problem: string, fix?: string): StoreError {
  // showValue goes through JSON, which would print NaN and Infinity as null.
  const shown = typeof value === 'number' ? String(value) : showValue(value);
  return new StoreError(code, field, value, `${field}: ${problem} (got ${shown})${fix ? `; ${fix}` : ''}`);
}
