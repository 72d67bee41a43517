/**
 * The source agent's migration trigger (what `shardform migrate` and the coordinator call):
 * POST /v1/migrations { shardId, to, preCopy? } runs the migration to its end and answers with
 * its summary — `done`, or `aborted` with the reason (the shard then still runs here).
 * Register inside the authenticated scope, like migrationRoutes.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { MAX_MIGRATION_TIMEOUT_SECONDS } from '../../src/contracts/plan-schema';
import { compileSchema } from '../../src/contracts/schema-validator';
import { ID_PATTERN_SOURCE } from '../../src/errors';
import { RequestValidationError } from './api-errors';
import { MigrationError } from '../migration/migration-error';
import type { MigrationRecord, NewMigration } from '../migration/migration-record';
import { summarize } from '../migration/migration-summary';

export const StartMigrationBody = Type.Object(
  {
    shardId: Type.String({ pattern: ID_PATTERN_SOURCE }),
    to: Type.String({ pattern: ID_PATTERN_SOURCE }),
    preCopy: Type.Optional(Type.Boolean()),
    /** Overrides the application's migration.timeoutSeconds; the plan's range, which a destination's prepare accepts. */
    timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_MIGRATION_TIMEOUT_SECONDS })),
  },
  { additionalProperties: false },
);
export type StartMigrationBody = Static<typeof StartMigrationBody>;

export interface MigrationControlDeps {
  readonly hostId: string;
  readonly fleet: string;
  /** Hosts of the fleet this agent can migrate to. */
  peers(): readonly string[];
  /** The application of a shard this host runs, or undefined when it runs no such shard. */
  applicationOf(shardId: string): string | undefined;
  /** Runs a migration to done or aborted (MigrationDriver.migrate). */
  migrate(input: NewMigration): Promise<MigrationRecord>;
  /** Every migration of the fleet in the journal (GET /v1/migrations); the route is absent without it. */
  list?(): Promise<MigrationRecord[]>;
  /** Migration ids must be unique in the fleet; default `<shard>-<unix ms base36>`. */
  newId?(shardId: string): string;
}

const check = compileSchema(StartMigrationBody);

export const migrationControlRoutes =
  (deps: MigrationControlDeps): FastifyPluginAsync =>
  async (app) => {
    const list = deps.list;
    if (list) {
      // Newest first: what `shardform migrate` did, and what the coordinator will look at.
      app.get('/v1/migrations', async () => {
        const records = await list();
        const started = (r: MigrationRecord) => r.history[0]?.at ?? '';
        return { migrations: records.sort((a, b) => started(b).localeCompare(started(a))).map(summarize) };
      });
    }
    app.post('/v1/migrations', async (request, reply) => {
      const body = check(request.body);
      if (!body.ok) {
        // As every other route answers a bad body (docs/api.md): fields named `body.<field>`.
        const invalid = new RequestValidationError('body', body.errors);
        return reply.status(400).send({ statusCode: 400, error: invalid.code, message: invalid.message, errors: invalid.errors });
      }
      const { shardId, to, preCopy, timeoutSeconds } = body.value;
      const refuse = (message: string) => reply.status(409).send({ statusCode: 409, error: 'INVALID_MIGRATION', message });
      if (to === deps.hostId) return refuse(`shard ${shardId} already runs on ${to}`);
      if (!deps.peers().includes(to)) return refuse(`unknown destination host ${to}; known: ${deps.peers().join(', ') || '(none)'}`);
      const applicationId = deps.applicationOf(shardId);
      if (!applicationId) return refuse(`shard ${shardId} does not run on ${deps.hostId}`);
      const id = deps.newId?.(shardId) ?? `${shardId.slice(0, 48)}-${Date.now().toString(36)}`;
      try {
        const record = await deps.migrate({ id, fleet: deps.fleet, shardId, applicationId, source: deps.hostId, destination: to, preCopy, timeoutSeconds });
        return summarize(record);
      } catch (error) {
        const status = error instanceof MigrationError && (error.code === 'JOURNAL_CONFLICT' || error.code === 'REFUSED') ? 409 : 500;
        return reply.status(status).send({ statusCode: status, error: (error as MigrationError).code ?? 'INTERNAL', message: (error as Error).message });
      }
    });
  };
