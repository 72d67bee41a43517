/** Errors of the migration side: stable codes the API maps to status codes and the CLI to exit codes. */
export type MigrationErrorCode =
  | 'INVALID_MIGRATION' // the request itself is wrong (same host, unknown shard)
  | 'INVALID_TRANSITION' // the state table does not allow this step
  | 'JOURNAL_CONFLICT' // someone else wrote the journal record meanwhile (CAS failed)
  | 'NOT_FOUND' // no such migration
  | 'UNREADABLE_RECORD' // the journal holds the migration, but its record does not parse or validate (left for a human)
  | 'REFUSED' // the destination refused (out of capacity, ...); the reason is in the message
  | 'TRANSFER_FAILED' // the image did not arrive intact
  | 'TIMEOUT';

export class MigrationError extends Error {
  constructor(
    readonly code: MigrationErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MigrationError';
  }
}
