/**
 * What a destination agent that restarted still needs to finish an incoming migration it forgot
 * (incoming migrations live in memory): the shard and its application's state directory, so the
 * commit or abort can still remove what an unpack left beside `<stateDirectory>/<shardId>`
 * (restart strategy) — on a file system of its own, a whole copy of the state otherwise kept
 * forever. Written at prepare as `migration.json` in the migration's images directory
 * (atomically), gone with that directory at the end.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { compileSchema } from '../../src/contracts/schema-validator';
import { formatFieldError } from '../../src/errors';
import { writeFileAtomically } from '../atomic-file';
import { MigrationParams, PrepareBody } from '../api/migration-schemas';
import type { DesiredShard } from '../reconcile/desired-shard';

const IncomingRecordSchema = Type.Object(
  {
    version: Type.Literal(1),
    // As the routes accepted them: the same schemas check them on the way back in.
    migrationId: MigrationParams.properties.id,
    shardId: PrepareBody.properties.shard.properties.shardId,
    stateDirectory: PrepareBody.properties.shard.properties.stateDirectory,
  },
  { additionalProperties: false },
);
export type IncomingRecord = Static<typeof IncomingRecordSchema>;

const checkRecord = compileSchema(IncomingRecordSchema);

const FILE = 'migration.json';

export async function writeIncomingRecord(dir: string, migrationId: string, desired: Pick<DesiredShard, 'shardId' | 'stateDirectory'>): Promise<void> {
  const record: IncomingRecord = { version: 1, migrationId, shardId: desired.shardId, stateDirectory: desired.stateDirectory };
  await writeFileAtomically(join(dir, FILE), `${JSON.stringify(record)}\n`);
}

/** Read errors that pass: the commit or abort fails and is retried rather than going on without the record. */
const TRANSIENT_READ_ERRORS = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'EINTR', 'ENOMEM']);

/**
 * The record of migration `migrationId` in `dir`: none when there is none (never prepared here,
 * or already finished), and none with the `problem` when it cannot be used (a commit or abort
 * goes on without it: a lasting error such as EIO must not fail an abort for good, since the
 * source resumes its shard only once the abort answers). A read error that passes (too many
 * open files) throws instead, for a retry that can still tidy.
 */
export async function readIncomingRecord(dir: string, migrationId: string): Promise<{ record?: IncomingRecord; problem?: string }> {
  const path = join(dir, FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return {};
    if (code !== undefined && TRANSIENT_READ_ERRORS.has(code)) throw error;
    return { problem: `cannot read ${path}: ${code ?? (error as Error).message}` };
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return { problem: `${path} is not JSON: ${(error as Error).message}` };
  }
  const check = checkRecord(data);
  if (!check.ok) return { problem: `${path} is not a migration record: ${check.errors.map(formatFieldError).join('; ')}` };
  if (check.value.migrationId !== migrationId) return { problem: `${path} is the record of migration ${check.value.migrationId}, not ${migrationId}` };
  return { record: check.value };
}
