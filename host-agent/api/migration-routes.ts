/**
 * Migration routes of the destination agent (a fastify plugin the agent registers inside its
 * authenticated scope; see migration-app.ts for a standalone app): prepare (reserve capacity,
 * create the held cgroup), receive image files (streamed to disk, sha256 and size checked
 * while they arrive, never held in memory), restore (CRIU into the shard's cgroup), commit
 * (supervise the restored shard) and abort (destroy the copy). Errors are mapped here, so the
 * plugin answers the same inside any app.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { TSchema } from '@sinclair/typebox';
import { errorCodes, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyPluginAsync, type FastifySchemaCompiler } from 'fastify';
import { compileSchema } from '../../src/contracts/schema-validator';
import { formatFieldError, type FieldError } from '../../src/errors';
import { CheckpointError } from '../checkpoint/checkpoint-error';
import type { RestoredTree, RestoreTarget } from '../checkpoint/criu-checkpointer';
import { openShardLogs, shardLogPaths } from '../runner/shard-logs';
import { HostAgentError } from '../errors';
import type { DesiredShard } from '../reconcile/desired-shard';
import type { RestartHandover, ShardHandover } from '../reconcile/shard-handover';
import { reclaimStateDir, sharedStateMark, STATE_ARCHIVE, tidyStateDir, unpackState, type UnpackOutcome } from '../migration/state-archive';
import { StateArrival } from '../migration/state-arrival';
import { quietLimitMs, untilDeadlineMs, type IncomingMigration, type IncomingMigrations } from '../migration/incoming-migrations';
import { readIncomingRecord, writeIncomingRecord } from '../migration/incoming-record';
import { MigrationError, type MigrationErrorCode } from '../migration/migration-error';
import { AbortBody, CommitBody, ImageFileHeaders, ImageFileParams, MigrationParams, PrepareBody, RestoreBody, RoundParams, StartBody, VerifyRoundBody } from './migration-schemas';

export interface MigrationRouteDeps {
  readonly hostId: string;
  readonly incoming: IncomingMigrations;
  readonly handover: Pick<ShardHandover, 'prepareIncoming' | 'adopt' | 'discard'>;
  /** CRIU restore of an image directory into the given cgroups; resolves once the restored tree runs with all its memory in. */
  readonly restorer: { restore(dir: string, target: RestoreTarget): Promise<RestoredTree> };
  /**
   * This host's shard log directory (`<state dir>/logs`): a restored shard's stdout and stderr,
   * open on the source's files of it, are restored onto this host's instead. Absent (the
   * standalone server): the restored processes reopen the source's paths.
   */
  readonly logRoot?: string;
  /** The restart strategy's destination side (POST .../start); absent: such migrations are refused. */
  readonly restarter?: { readonly handover: RestartHandover };
  /**
   * Unpacks a state archive as the new content of a directory (both strategies), or swaps in what
   * was unpacked on arrival of the archive whose sha256 is `arrivedSha256`; default unpackState (GNU tar).
   */
  readonly unpack?: (archive: string, dir: string, tag: string, arrivedSha256?: string) => Promise<UnpackOutcome | void>;
  /**
   * Whether a state archive is unpacked while it arrives (state-arrival.ts), so that the restore
   * or start only swaps it in. False: only at the restore or start, as before (tests whose
   * `unpack` is a fake, and their state directory not a real one).
   * @default true
   */
  readonly unpackOnArrival?: boolean;
  /**
   * Why this agent must not take a shard in now (it does not hold its host's claim: another
   * agent may act for this host), or undefined. Asked before a prepare and before a restore or
   * start begins; a refusal makes the source abort and resume its copy.
   */
  readonly notActingReason?: () => string | undefined;
  /**
   * Why the fleet's journal, as this host's store holds it, does not show migration `id` of
   * `shardId` from `source` to this host about to prepare, or undefined. Asked before a new
   * prepare: the source journals `prepared` before it sends one, so a store that lacks it is not
   * the source's, and the commit's assignment would never reach this host's reconcile.
   * Absent (the standalone server, which reconciles nothing): not checked.
   */
  readonly notJournaledReason?: (id: string, source: string, shardId: string) => Promise<string | undefined>;
  /** A migration still prepared here that no request touched for this long is aborted here (ABANDON_AFTER_MS). */
  readonly abandonAfterMs?: number;
  /** An image upload that moves no byte for this long is broken off (UPLOAD_IDLE_MS). */
  readonly uploadIdleMs?: number;
}

/**
 * Far longer than a live source is usually quiet: between its requests it runs at most one CRIU
 * pre-dump or dump (seconds per GiB), or packs a state directory. A migration whose source sent
 * its own time limit (prepare's `timeoutSeconds`) is given at least that: past it, the source
 * aborts at its next step instead of going on, so the sweep never takes one it could finish.
 */
export const ABANDON_AFTER_MS = 10 * 60_000;
/** Six times the source's own idle timeout (10 s): the source gives up first on a link that stalls. */
export const UPLOAD_IDLE_MS = 60_000;

/** Largest image file accepted (CRIU's pages-*.img of a big shard). */
export const MAX_IMAGE_FILE_BYTES = 64 * 1024 ** 3;

const STATUS: Record<MigrationErrorCode, number> = {
  INVALID_MIGRATION: 400,
  NOT_FOUND: 404,
  UNREADABLE_RECORD: 500,
  REFUSED: 409,
  INVALID_TRANSITION: 409,
  JOURNAL_CONFLICT: 409,
  TRANSFER_FAILED: 422,
  TIMEOUT: 504,
};

class RequestInvalid extends Error {
  readonly statusCode = 400;
  constructor(
    readonly part: string,
    readonly errors: FieldError[],
  ) {
    super(`${part} is invalid: ${errors.map(formatFieldError).join('; ')}`);
  }
}

const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = compileSchema(schema);
  return (data: unknown) => {
    const result = check(data);
    return result.ok ? true : { error: new RequestInvalid(httpPart ?? 'request', result.errors) };
  };
};

function installErrors(app: FastifyInstance): void {
  app.setErrorHandler((error: Error, request, reply) => {
    if (error instanceof RequestInvalid) {
      return reply.status(400).send({ statusCode: 400, error: 'INVALID_REQUEST', message: error.message, errors: error.errors });
    }
    if (error instanceof MigrationError) {
      const status = STATUS[error.code];
      return reply.status(status).send({ statusCode: status, error: error.code, message: error.message });
    }
    if (error instanceof HostAgentError) {
      const status = error.code === 'SHARD_EXISTS' || error.code === 'SHARD_HELD' ? 409 : 500;
      return reply.status(status).send({ statusCode: status, error: error.code, message: error.message });
    }
    if (error instanceof CheckpointError) {
      return reply.status(500).send({ statusCode: 500, error: error.code, message: error.message });
    }
    const status = (error as FastifyError).statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      return reply.status(status).send({ statusCode: status, error: (error as FastifyError).code ?? 'BAD_REQUEST', message: error.message });
    }
    request.log.error({ err: error }, 'migration request failed');
    return reply.status(500).send({ statusCode: 500, error: 'INTERNAL', message: error.message });
  });
}

export const migrationRoutes =
  (deps: MigrationRouteDeps): FastifyPluginAsync =>
  async (app) => {
    app.setValidatorCompiler(validatorCompiler);
    installErrors(app);
    // Image files stream straight to disk: the body is handed over unparsed. Fastify checks a
    // route's bodyLimit only for bodies it reads itself, so a stream's declared length is checked here.
    app.addContentTypeParser('application/octet-stream', (request, payload, done) =>
      Number(request.headers['content-length']) > request.routeOptions.bodyLimit ? done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), undefined) : done(null, payload),
    );
    const { incoming } = deps;
    const unpack = deps.unpack ?? unpackState;

    /**
     * Starts unpacking migration `migration`'s state archive as it arrives, into the directory the
     * restore's unpack would fill (and finds there: unpackState), or undefined where nothing is
     * to gain or it would race: this host sees the source's own directory (no archive is sent), or
     * the restore or start has begun, or it was aborted (its tidy must find nothing made after it).
     * Called with no await since the state was last checked, so an abort either finds it on the
     * migration and gives it up, or came first and none starts. An earlier upload's unpack (the
     * same archive sent again) uses the same directory: it is given up, and this one starts after.
     */
    const unpackOnArrival = (migration: IncomingMigration): StateArrival | undefined => {
      if (deps.unpackOnArrival === false || migration.sharedStateDirectory || migration.restoring || migration.state !== 'prepared') return undefined;
      const earlier = migration.stateArrival?.abandon('another upload of the archive replaced it');
      const stallMs = Math.min(30_000, (deps.uploadIdleMs ?? UPLOAD_IDLE_MS) / 2);
      const arrival = new StateArrival(join(migration.desired.stateDirectory, migration.desired.shardId), migration.id, { stallMs, ...(earlier ? { after: earlier } : {}) });
      migration.stateArrival = arrival;
      return arrival;
    };

    /**
     * Unpacks migration `migration`'s state archive of round `round` (sha256 `sha256` in the
     * source's manifest) before its restore or start: taken from what arrived unpacked when that is
     * exactly this archive, else from the file.
     */
    const unpackStateOf = async (migration: IncomingMigration, round: number, sha256: string): Promise<void> => {
      await migration.stateArrival?.settle();
      await unpack(join(incoming.roundDir(migration, round), STATE_ARCHIVE), join(migration.desired.stateDirectory, migration.desired.shardId), migration.id, sha256);
    };
    const refuseIfNotActing = (): void => {
      const reason = deps.notActingReason?.();
      if (reason) throw new MigrationError('REFUSED', reason);
    };

    /**
     * Runs the prepare, restore or start of `migration`, recorded so that an abort arriving
     * meanwhile waits for it, and for anything else still settling (never only the latest).
     */
    const settle = <T>(migration: IncomingMigration, work: () => Promise<T>): Promise<T> => {
      const running = work();
      const before = migration.settling;
      const done = running.then(() => undefined, () => undefined);
      migration.settling = before ? Promise.all([before, done]) : done;
      return running;
    };

    /** The restore or start of `migration` in flight, answered to a repeated request as to the first; a failed one may be asked again. */
    const restoreOnce = <T>(migration: IncomingMigration, work: () => Promise<T>): Promise<T> => {
      const restoring = settle(migration, work);
      migration.restoring = restoring;
      restoring.catch(() => {
        if (migration.restoring === restoring) migration.restoring = undefined;
      });
      // Quiet time counts from its end: a long restore that failed is not abandoned at once.
      restoring.finally(() => incoming.heard(migration)).catch(() => undefined);
      return restoring;
    };

    app.post<{ Params: MigrationParams; Body: PrepareBody }>(
      '/v1/migrations/:id/prepare',
      { schema: { params: MigrationParams, body: PrepareBody } },
      async (request) => {
        const { shard, source, imageBytes, stateBytes, timeoutSeconds, logFiles } = request.body;
        let sharedStateDirectory = false;
        if (!incoming.get(request.params.id)) {
          refuseIfNotActing();
          const notJournaled = await deps.notJournaledReason?.(request.params.id, source, shard.shardId);
          if (notJournaled) throw new MigrationError('REFUSED', notJournaled);
          // Whether this host sees the source's own state directory: then the source sends none to
          // unpack, and the disk check leaves it out. Asked before that check, off the event loop:
          // on a network file system that hangs, only this request waits.
          sharedStateDirectory = await stat(join(shard.stateDirectory, shard.shardId, sharedStateMark(request.params.id))).then(
            () => true,
            () => false,
          );
        }
        // Read after the journal check: a repeated prepare that arrived meanwhile answers as this one.
        const before = incoming.get(request.params.id);
        const migration = incoming.prepare(request.params.id, source, { ...shard, limits: { ...shard.limits } }, { imageBytes, stateBytes, sharedStateDirectory, timeoutSeconds, sourceLogFiles: logFiles });
        if (migration === before) {
          incoming.heard(migration);
          // A repeated prepare answers as the first, once that is done: the held cgroup is made once.
          await migration.preparing;
          return { migrationId: migration.id, hostId: deps.hostId, shardId: shard.shardId, state: migration.state, sharedStateDirectory: migration.sharedStateDirectory === true, chunkedUploads: true };
        }
        // Recorded before its first await: an abort arriving meanwhile (the source's prepare timed
        // out) waits for the held cgroup and the images directory, then removes them; else they
        // would be made after the abort answered and stay, the held shard counting against capacity.
        migration.preparing = settle(migration, async () => {
          try {
            const cgroup = await deps.handover.prepareIncoming(migration.desired);
            migration.procsFiles = cgroup.procsFiles;
          } catch (error) {
            if (migration.state === 'prepared') incoming.forget(migration.id);
            throw error;
          }
          await mkdir(migration.dir, { recursive: true });
          // For the commit or abort of an agent that restarted meanwhile and forgot the migration.
          await writeIncomingRecord(migration.dir, migration.id, migration.desired);
          if (migration.state !== 'prepared') throw new MigrationError('INVALID_TRANSITION', `migration ${migration.id} was aborted while it was prepared; what it made is removed`);
          return { migrationId: migration.id, hostId: deps.hostId, shardId: shard.shardId, state: migration.state, sharedStateDirectory: migration.sharedStateDirectory === true, chunkedUploads: true };
        });
        return migration.preparing;
      },
    );

    app.put<{ Params: ImageFileParams; Headers: ImageFileHeaders; Body: Readable }>(
      '/v1/migrations/:id/rounds/:round/files/:name',
      { schema: { params: ImageFileParams, headers: ImageFileHeaders }, bodyLimit: MAX_IMAGE_FILE_BYTES },
      async (request, reply) => {
        const migration = incoming.require(request.params.id);
        if (migration.state !== 'prepared') throw new MigrationError('INVALID_TRANSITION', `migration ${migration.id} is ${migration.state}; it takes no more image files`);
        if (typeof (request.body as Readable | undefined)?.pipe !== 'function') {
          throw new RequestInvalid('headers', [{ field: 'content-type', message: 'must be application/octet-stream', value: request.headers['content-type'] }]);
        }
        const round = Number(request.params.round);
        // Absent for a file the source sends while CRIU still writes it (chunked): its size and
        // sha256 are checked at the round's verify, as for every file.
        const length = request.headers['content-length'];
        const expectedBytes = length === undefined ? undefined : Number(length);
        const expectedSha = request.headers['x-shardform-sha256'];
        const dir = incoming.roundDir(migration, round);
        await mkdir(dir, { recursive: true });
        const arrival = request.params.name === STATE_ARCHIVE ? unpackOnArrival(migration) : undefined;
        const path = join(dir, request.params.name);
        const partial = `${path}.partial`;
        const hash = createHash('sha256');
        let bytes = 0;
        // A link that stalls (cut, no RST) would hold this request, its file and its socket for
        // good: a body that moves no byte for uploadIdleMs is broken off.
        const uploadIdleMs = deps.uploadIdleMs ?? UPLOAD_IDLE_MS;
        const stalled = () => request.raw.destroy(new Error(`no byte arrived for ${uploadIdleMs} ms`));
        const idle = setTimeout(stalled, uploadIdleMs);
        const measure = new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            bytes += chunk.length;
            // A chunked body declared no length for the content-type parser to check.
            if (bytes > MAX_IMAGE_FILE_BYTES) return callback(new Error(`it is larger than the largest image file taken, ${MAX_IMAGE_FILE_BYTES} bytes`));
            hash.update(chunk);
            idle.refresh();
            incoming.heard(migration);
            // Passed on once tar took it too: the slower of the file and tar paces the body.
            if (arrival) void arrival.feed(chunk).then(() => callback(null, chunk));
            else callback(null, chunk);
          },
        });
        migration.uploads += 1;
        try {
          await pipeline(request.body, measure, createWriteStream(partial, { highWaterMark: 8 << 20 }));
        } catch (error) {
          await rm(partial, { force: true });
          await arrival?.abandon('the upload broke off');
          throw new MigrationError('TRANSFER_FAILED', `image file ${round}/${request.params.name} broke off after ${bytes} bytes: ${(error as Error).message}`);
        } finally {
          clearTimeout(idle);
          migration.uploads -= 1;
          incoming.heard(migration);
        }
        if (migration.state !== 'prepared') {
          // Aborted while this file arrived: the abort removed (or is removing) the images; this
          // request may have made their directory again, so nothing of it stays.
          await arrival?.abandon('the migration was aborted');
          await rm(incoming.dirOf(migration.id), { recursive: true, force: true });
          throw new MigrationError('INVALID_TRANSITION', `migration ${migration.id} was aborted while image file ${round}/${request.params.name} arrived; it is not kept`);
        }
        const sha256 = hash.digest('hex');
        if ((expectedBytes !== undefined && bytes !== expectedBytes) || (expectedSha !== undefined && sha256 !== expectedSha)) {
          await rm(partial, { force: true });
          await arrival?.abandon('the archive arrived other than it was sent');
          throw new MigrationError(
            'TRANSFER_FAILED',
            `image file ${round}/${request.params.name} arrived as ${bytes} bytes sha256 ${sha256}, sent as ${expectedBytes ?? '(not given)'} bytes sha256 ${expectedSha ?? '(not given)'}`,
          );
        }
        await rename(partial, path);
        migration.received.set(`${round}/${request.params.name}`, { bytes, sha256 });
        // A failed unpack on arrival costs only the time it would have saved: the restore unpacks
        // the file, and reports a broken archive as it always did.
        if (arrival && !(await arrival.finish(sha256))) {
          request.log.warn({ migration_id: migration.id, shard_id: migration.desired.shardId }, `migration ${migration.id}: state archive ${round}/${STATE_ARCHIVE} not unpacked on arrival (${arrival.problem ?? 'given up'}); the restore or start of shard ${migration.desired.shardId} unpacks it from the file`);
        }
        return reply.status(201).send({ round, name: request.params.name, bytes, sha256 });
      },
    );

    // End of a round: every file the source sent arrived with the size and sha256 it hashed while sending.
    app.post<{ Params: RoundParams; Body: VerifyRoundBody }>(
      '/v1/migrations/:id/rounds/:round/verify',
      { schema: { params: RoundParams, body: VerifyRoundBody } },
      async (request) => {
        const migration = incoming.require(request.params.id);
        incoming.heard(migration);
        const round = Number(request.params.round);
        incoming.checkComplete(migration, round, request.body.files);
        return { migrationId: migration.id, round, files: request.body.files.length, bytes: request.body.files.reduce((sum, f) => sum + f.bytes, 0) };
      },
    );

    app.post<{ Params: MigrationParams; Body: RestoreBody }>(
      '/v1/migrations/:id/restore',
      { schema: { params: MigrationParams, body: RestoreBody } },
      async (request) => {
        const migration = incoming.require(request.params.id);
        incoming.heard(migration);
        // While it is the answer: not once an abort or commit moved the migration on.
        if (migration.restoring && (migration.state === 'prepared' || migration.state === 'restored')) return migration.restoring;
        if (migration.state !== 'prepared') throw new MigrationError('INVALID_TRANSITION', `migration ${migration.id} is ${migration.state}, not prepared`);
        refuseIfNotActing();
        const { rounds } = request.body;
        for (const manifest of rounds) {
          if (manifest.parent !== null && !rounds.some((r) => r.round === manifest.parent)) {
            throw new MigrationError('INVALID_MIGRATION', `round ${manifest.round} names parent round ${manifest.parent}, which is not in the request`);
          }
          incoming.checkComplete(migration, manifest.round, manifest.files);
        }
        const final = rounds[rounds.length - 1]!;
        // Recorded before its first await: an abort arriving from here on waits for it.
        return restoreOnce(migration, async () => {
          for (const manifest of rounds) {
            if (manifest.parent === null) continue;
            const link = join(incoming.roundDir(migration, manifest.round), 'parent');
            await rm(link, { force: true });
            await symlink(join('..', String(manifest.parent)), link);
          }
          if (migration.state !== 'prepared') throw new MigrationError('INVALID_TRANSITION', `migration ${migration.id} was aborted before it was restored; nothing was restored`);
          // The shard's state directory, packed while it was frozen, is put in place first: CRIU
          // reopens its working directory and open files there by path, and on another host's
          // disk they would not exist (or be stale). A source older than that sends none.
          const archive = final.files.find((f) => f.name === STATE_ARCHIVE);
          if (archive) {
            await unpackStateOf(migration, final.round, archive.sha256);
            if (migration.state !== 'prepared') throw new MigrationError('INVALID_TRANSITION', `migration ${migration.id} was aborted while its state directory was unpacked; nothing was restored`);
          }
          // The restored processes' stdout and stderr go to this host's log files of the shard,
          // not to the paths they had on the source: another host's disk (CRIU would find no
          // such file and fail the restore), or, on a shared one, files the source prunes later.
          const from = migration.sourceLogFiles;
          const here = deps.logRoot && from ? await openShardLogs(shardLogPaths(deps.logRoot, migration.desired.shardId)) : undefined;
          let restored: RestoredTree;
          try {
            const files = here && from ? [{ dumpedPath: from.stdout, fd: here.stdout }, { dumpedPath: from.stderr, fd: here.stderr }] : undefined;
            // CRIU's runs get as long as moving the image's memory may take (memory-move-time.ts), never past the migration's own limit.
            const left = untilDeadlineMs(migration);
            restored = await deps.restorer.restore(incoming.roundDir(migration, final.round), { procsFiles: migration.procsFiles, ...(files ? { files } : {}), ...(left !== undefined ? { untilDeadlineMs: left } : {}) });
          } finally {
            await here?.close();
          }
          if (restored.lazyPagesSkipped) request.log.info({ migration: migration.id, reason: restored.lazyPagesSkipped }, 'migration: restored eagerly (every page in before the shard runs)');
          // Aborted meanwhile: the abort, waiting for this restore, destroys the copy once it returns.
          if (migration.state !== 'prepared') throw new MigrationError('INVALID_TRANSITION', `migration ${migration.id} was aborted while it was restored; the copy is destroyed`);
          migration.pid = restored.pid;
          migration.state = 'restored';
          // lazyPagesMs: how long the shard already ran here before this answer (its memory filled
          // behind it); the source counts the downtime up to when it ran, not up to this answer.
          return { migrationId: migration.id, state: migration.state, pid: migration.pid, lazyPagesMs: restored.lazyPagesMs };
        });
      },
    );

    // Restart strategy: the state directory arrived as one checked archive (or this host sees the
    // source's own, and none was sent); unpack it and start the workload.
    app.post<{ Params: MigrationParams; Body: StartBody }>(
      '/v1/migrations/:id/start',
      { schema: { params: MigrationParams, body: StartBody } },
      async (request) => {
        const migration = incoming.require(request.params.id);
        incoming.heard(migration);
        if (!deps.restarter) throw new MigrationError('REFUSED', `host ${deps.hostId} cannot start shards for the restart strategy (no shard keeper here)`);
        // While it is the answer: not once an abort or commit moved the migration on.
        if (migration.restoring && (migration.state === 'prepared' || migration.state === 'restored')) return migration.restoring;
        if (migration.state !== 'prepared') throw new MigrationError('INVALID_TRANSITION', `migration ${migration.id} is ${migration.state}, not prepared`);
        refuseIfNotActing();
        const final = request.body.rounds[request.body.rounds.length - 1];
        const archive = final?.files.find((f) => f.name === STATE_ARCHIVE);
        const archived = archive !== undefined;
        if (!archived && !migration.sharedStateDirectory) {
          throw new MigrationError('INVALID_MIGRATION', `${final ? `round ${final.round} has no ${STATE_ARCHIVE}` : `no round with a ${STATE_ARCHIVE} was sent`}, and this host does not see the source's state directory of shard ${migration.desired.shardId}`);
        }
        if (final) incoming.checkComplete(migration, final.round, final.files);
        const { desired } = migration;
        const restarter = deps.restarter;
        // Recorded before its first await: an abort arriving from here on waits for it.
        return restoreOnce(migration, async () => {
          if (final && archive) await unpackStateOf(migration, final.round, archive.sha256);
          // An abort that came during the unpack waits for this request: start nothing, it destroys the rest.
          if (migration.state !== 'prepared') throw new MigrationError('INVALID_TRANSITION', `migration ${migration.id} was aborted while its state directory was unpacked; nothing was started`);
          // Held until the commit (then adopted like a restored shard): until then the assignment
          // still names the source, and a reconcile pass here would stop an unheld run.
          const status = await restarter.handover.startHeld(desired.shardId, desired, { keepHeld: true });
          migration.pid = status.pid;
          if (migration.state !== 'prepared') throw new MigrationError('INVALID_TRANSITION', `migration ${migration.id} was aborted while its shard was started; the copy is destroyed`);
          migration.state = 'restored';
          return { migrationId: migration.id, state: migration.state, pid: migration.pid ?? null };
        });
      },
    );

    /**
     * Committed (the journal says so, and the assignment names this host): supervise the shard
     * restored here. When its run is gone — this host rebooted since the restore, or the
     * workload ended while held — there is nothing to adopt, and refusing would fail the
     * source's release at every retry (its copy stopped, this one held: running nowhere). The
     * held shard goes to reconcile instead, which starts it again here, as after any reboot.
     */
    const supervise = async (shardId: string, desired?: DesiredShard): Promise<number | undefined> => {
      try {
        return (await deps.handover.adopt(shardId, desired)).pid;
      } catch (error) {
        if (!(error instanceof HostAgentError && (error.code === 'SHARD_NOT_RUNNING' || error.code === 'SHARD_NOT_FOUND'))) throw error;
        await deps.handover.discard(shardId);
        return undefined;
      }
    };

    /**
     * The end of migration `id` here: what an unpack of it did to the shard's state directory is
     * finished at a commit (the directory it set aside goes) and undone at an abort (the set-aside
     * one is put back, this copy removed: on a shared file system the source runs on from it), then
     * the images it received go. A migration this agent forgot (it restarted) names its state
     * directory in the record prepare wrote: handled before the images directory holding that
     * record goes, so one that fails leaves it for a retry.
     */
    const tidyUp = async (id: string, ended: 'committed' | 'aborted', shardId: string, desired: Pick<DesiredShard, 'shardId' | 'stateDirectory'> | undefined, log: FastifyBaseLogger): Promise<void> => {
      const dir = incoming.dirOf(id);
      let known = desired;
      if (!known) {
        const { record, problem } = await readIncomingRecord(dir, id);
        if (problem) log.warn({ migration_id: id, shard_id: shardId }, `migration ${id}: ${problem}; what an unpack left beside the state directory stays`);
        // The journal (this request) and the record disagree on the shard, so one of them is not
        // this migration; the tidy removes directories, and does not on evidence that contradicts itself.
        if (record && record.shardId !== shardId) {
          log.warn({ migration_id: id, shard_id: shardId }, `migration ${id}: its record names shard ${record.shardId} in ${record.stateDirectory}, the request ${shardId}; nothing beside either state directory is removed`);
        } else {
          known = record;
        }
      }
      if (known) await (ended === 'committed' ? tidyStateDir : reclaimStateDir)(join(known.stateDirectory, known.shardId), id);
      await rm(dir, { recursive: true, force: true });
    };

    app.post<{ Params: MigrationParams; Body: CommitBody }>('/v1/migrations/:id/commit', { schema: { params: MigrationParams, body: CommitBody } }, async (request) => {
      const id = request.params.id;
      const migration = incoming.get(id);
      const known = incoming.status(id);
      const shardId = request.body.shardId;
      if (!known) {
        // This agent restarted after the restore (or start) and forgot the migration; the journal
        // says committed, so the shard it holds is the one to supervise now (idempotent). What
        // it received before the restart is of no use any more.
        if (!shardId) throw new MigrationError('NOT_FOUND', `no incoming migration ${id} on this host (prepare it first)`);
        const pid = await supervise(shardId);
        await tidyUp(id, 'committed', shardId, undefined, request.log);
        return { migrationId: id, state: 'committed', pid: pid ?? null };
      }
      if (shardId && shardId !== known.shardId) throw new MigrationError('INVALID_MIGRATION', `migration ${id} brings shard ${known.shardId}, not ${shardId}`);
      if (known.state !== 'restored' && known.state !== 'committed') throw new MigrationError('INVALID_TRANSITION', `migration ${id} is ${known.state}, not restored`);
      // Finished here (its entry dropped): answered as the first time, nothing done again.
      if (!migration) return { migrationId: id, state: 'committed', pid: known.pid ?? null };
      if (migration.state === 'restored') {
        // Restored (checkpoint) or started and kept held (restart): supervised from now on.
        migration.pid = await supervise(migration.desired.shardId, migration.desired);
        migration.state = 'committed';
      }
      // Also at a retry after a cleanup that failed: it runs again, and the migration finishes once it is done.
      await tidyUp(id, 'committed', migration.desired.shardId, migration.desired, request.log);
      incoming.finish(migration);
      return { migrationId: id, state: 'committed', pid: migration.pid ?? null };
    });

    /**
     * Aborts migration `id` here, idempotently, also after an agent restart forgot it: the copy and
     * the images that arrived are destroyed either way. From the source's abort, or from the sweep
     * of migrations whose source went quiet (`abandoned`).
     */
    const abortHere = async (id: string, shardId: string, log: FastifyBaseLogger, abandoned = false): Promise<{ migrationId: string; state: 'aborted' }> => {
      const migration = incoming.get(id);
      const known = incoming.status(id);
      // Also once its entry is dropped: the shard it brought runs here, and discarding by shard id would kill it.
      if (known?.state === 'committed') throw new MigrationError('INVALID_TRANSITION', `migration ${id} is committed here; it cannot be aborted`);
      if (known && known.shardId !== shardId) throw new MigrationError('INVALID_MIGRATION', `migration ${id} brings shard ${known.shardId}, not ${shardId}`);
      // Its abort finished here, copy and leftovers gone: nothing again (a later migration may be bringing the same shard).
      if (known && !migration && !('cleanupPending' in known && known.cleanupPending)) return { migrationId: id, state: 'aborted' };
      // Not known here (never prepared, or forgotten in a restart): remembered as aborted before
      // the first await, so a prepare that arrives late is refused rather than holding a cgroup.
      if (!migration) incoming.abortingUnknown(id, shardId);
      // Marked first, so a restore or start in flight stops short or, if it already started the
      // shard, is destroyed below once it returns: nothing started here outlives this answer,
      // after which the source may run again.
      if (migration) {
        migration.state = 'aborted';
        if (abandoned) migration.abandoned = true;
        // An archive still being unpacked as it arrives: its tar stopped and its directory gone
        // before the tidy below, which would otherwise race it (and the upload makes nothing more).
        await migration.stateArrival?.abandon('the migration was aborted');
        await migration.settling;
      }
      await deps.handover.discard(shardId);
      await tidyUp(id, 'aborted', shardId, migration?.desired, log);
      if (migration) incoming.finish(migration);
      else incoming.unknownAbortDone(id);
      return { migrationId: id, state: 'aborted' };
    };

    app.post<{ Params: MigrationParams; Body: AbortBody }>('/v1/migrations/:id/abort', { schema: { params: MigrationParams, body: AbortBody } }, async (request) =>
      abortHere(request.params.id, request.body.shardId, request.log),
    );

    /**
     * A source that crashed and never came back, or was cut off for good, would leave its shard
     * held here forever: a cgroup, its capacity and the images reserved. A migration still
     * prepared (nothing restored or started, so the source cannot have committed) that hears
     * nothing for `abandonAfterMs`, and for no less than the source's own time limit, is aborted
     * here as the source would have; the source, if it comes back, finds it aborted (or unknown)
     * at its next request and resumes its own copy.
     */
    const abandonAfterMs = deps.abandonAfterMs ?? ABANDON_AFTER_MS;
    const sweeping = new Set<string>();
    const sweep = () => {
      for (const migration of incoming.abandoned(abandonAfterMs)) {
        if (sweeping.has(migration.id)) continue;
        sweeping.add(migration.id);
        if (!migration.abandoned) app.log.warn({ migration_id: migration.id, shard_id: migration.desired.shardId, source: migration.source }, `migration ${migration.id} of shard ${migration.desired.shardId} from ${migration.source}: no request for ${Math.round(quietLimitMs(migration, abandonAfterMs) / 1000)} s before its restore; aborted here, its held copy and images removed`);
        abortHere(migration.id, migration.desired.shardId, app.log, true)
          .catch((error: Error) => app.log.error({ migration_id: migration.id, err: error }, `migration ${migration.id}: abort of an abandoned migration failed (retried): ${error.message}`))
          .finally(() => sweeping.delete(migration.id));
      }
    };
    const sweeper = setInterval(sweep, Math.max(10, Math.min(60_000, abandonAfterMs / 4)));
    sweeper.unref();
    app.addHook('onClose', async () => clearInterval(sweeper));

    app.get<{ Params: MigrationParams }>('/v1/migrations/:id', { schema: { params: MigrationParams } }, async (request) => {
      const migration = incoming.require(request.params.id);
      return {
        migrationId: migration.id,
        shardId: migration.desired.shardId,
        source: migration.source,
        state: migration.state,
        pid: migration.pid ?? null,
        filesReceived: migration.received.size,
        bytesReceived: [...migration.received.values()].reduce((sum, r) => sum + r.bytes, 0),
      };
    });
  };
