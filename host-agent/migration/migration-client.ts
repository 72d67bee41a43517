/**
 * The source agent's side of the migration routes: axios against the destination agent with
 * the fleet token. Image files are streamed from disk (never read whole into memory), each
 * with its sha256 in a header so the destination verifies it while writing. A transfer that
 * makes no progress for `idleTimeoutMs` (a cut link) is aborted instead of hanging.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import axios, { AxiosError, type AxiosInstance } from 'axios';
import type { GrowingFile } from '../checkpoint/growing-file';
import type { ImageFile, ImageManifest } from '../checkpoint/image-manifest';
import type { PrepareBody, RoundManifest } from '../api/migration-schemas';
import { PREDICTOR_STATE_MAX_BYTES } from '../api/routes/prediction-routes';
import { MigrationError, type MigrationErrorCode } from './migration-error';
import { memoryImageBytes, memoryMoveLimitMs } from '../checkpoint/memory-move-time';
import { STATE_ARCHIVE, unpackAllowanceMs } from './state-archive';

export interface MigrationClientOptions {
  /** `http://10.213.40.12:7100`. */
  baseUrl: string;
  token: string;
  /** Per control request (prepare, restore, commit, abort); default 60 s. */
  requestTimeoutMs?: number;
  /** An upload that moves no byte for this long is aborted; default 10 s. */
  idleTimeoutMs?: number;
}

/** Large image files (pages) sent at once: enough to fill the link, few enough not to thrash the destination's disk. */
export const UPLOAD_CONCURRENCY = 4;
/** Small image files (process state, a dozen per final image) sent at once besides: each costs a request, not bandwidth. */
export const SMALL_UPLOAD_CONCURRENCY = 12;
/** Files below this size count as small. */
export const SMALL_FILE_BYTES = 1 << 20;

/**
 * The destination's codes taken as they are. Not JOURNAL_CONFLICT: to the source's driver it
 * means "another driver advanced this migration", on which it stops without aborting or
 * resuming; from a destination's answer it would leave the shard frozen until recovery.
 */
const CODES: readonly MigrationErrorCode[] = ['INVALID_MIGRATION', 'INVALID_TRANSITION', 'NOT_FOUND', 'REFUSED', 'TRANSFER_FAILED', 'TIMEOUT'];

/** What a destination's prepare answer tells the source beyond "prepared". */
export interface PrepareAnswer {
  readonly sharedStateDirectory: boolean;
  readonly chunkedUploads: boolean;
}

export class MigrationClient {
  private readonly http: AxiosInstance;
  private readonly idleTimeoutMs: number;

  constructor(private readonly opts: MigrationClientOptions) {
    this.http = axios.create({
      baseURL: opts.baseUrl,
      timeout: opts.requestTimeoutMs ?? 60_000,
      headers: { authorization: `Bearer ${opts.token}` },
      // No proxies: agents talk to each other directly.
      proxy: false,
      // No redirects either: axios' redirect-following transport (follow-redirects) keeps every
      // byte of a streamed body in memory so that it could replay it; an image upload must not.
      maxRedirects: 0,
    });
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 10_000;
  }

  /**
   * Resolves to what the destination said: `sharedStateDirectory` true when it found the
   * source's mark in the shard's state directory; `chunkedUploads` true when it takes image
   * files of no announced length (uploadGrowingFile). An older destination says neither: false.
   */
  async prepare(migrationId: string, body: PrepareBody): Promise<PrepareAnswer> {
    const response = await this.call('prepare', () => this.http.post(`/v1/migrations/${migrationId}/prepare`, body));
    const answer = response.data as { sharedStateDirectory?: unknown; chunkedUploads?: unknown } | undefined;
    return { sharedStateDirectory: answer?.sharedStateDirectory === true, chunkedUploads: answer?.chunkedUploads === true };
  }

  /**
   * Streams one file of an image round, hashing it on the way (no separate pass over the file);
   * resolves to its size and sha256. With `file.sha256` known beforehand, the destination checks
   * it as soon as the file has arrived; otherwise at the round's verify.
   */
  async uploadFile(migrationId: string, round: number, dir: string, file: { name: string; bytes: number; sha256?: string }, signal?: AbortSignal): Promise<ImageFile> {
    return this.upload(migrationId, round, file.name, createReadStream(join(dir, file.name), { highWaterMark: 1 << 20 }), {
      headers: { 'content-length': String(file.bytes), ...(file.sha256 ? { 'x-shardform-sha256': file.sha256 } : {}) },
      ...(signal ? { signal } : {}),
    });
  }

  /**
   * Streams a file that is still being written (a pages file CRIU is dumping), as chunked HTTP
   * without a length: only to a destination that said it takes such uploads (`chunkedUploads`
   * in its prepare answer). Resolves to the bytes sent and their sha256, which the round's
   * verify checks at the destination like any other file's. Time spent waiting for the writer
   * does not count as a stalled link.
   */
  async uploadGrowingFile(migrationId: string, round: number, file: GrowingFile, signal?: AbortSignal): Promise<ImageFile> {
    return this.upload(migrationId, round, basename(file.path), file.stream, { waitingForWriter: () => file.waitingForWriter, ...(signal ? { signal } : {}) });
  }

  /** PUTs `body` as image file `name` of `round`, hashing it on the way; aborted when no byte moves for `idleTimeoutMs`. */
  private async upload(
    migrationId: string,
    round: number,
    name: string,
    body: Readable,
    opts: { headers?: Record<string, string>; waitingForWriter?: () => boolean; signal?: AbortSignal },
  ): Promise<ImageFile> {
    const controller = new AbortController();
    const hash = createHash('sha256');
    let bytes = 0;
    body.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => {
        if (opts.waitingForWriter?.()) arm();
        else controller.abort(new Error(`no progress for ${this.idleTimeoutMs} ms`));
      }, this.idleTimeoutMs);
    };
    body.on('data', arm);
    arm();
    try {
      await this.call(`upload ${round}/${name}`, () =>
        this.http.put(`/v1/migrations/${migrationId}/rounds/${round}/files/${encodeURIComponent(name)}`, body, {
          headers: { 'content-type': 'application/octet-stream', ...opts.headers },
          // -1, not Infinity: axios then pipes the body straight into the request, without a
          // counting stage per chunk (the destination limits the size it takes).
          maxBodyLength: -1,
          maxContentLength: 1 << 20,
          timeout: 0,
          // Cancelled with the rest of its round (another file failed): the migration aborts sooner.
          signal: opts.signal ? AbortSignal.any([controller.signal, opts.signal]) : controller.signal,
        }),
      );
    } finally {
      if (idle) clearTimeout(idle);
      body.destroy();
    }
    return { name, bytes, sha256: hash.digest('hex') };
  }

  /**
   * Streams files of a round: large ones `UPLOAD_CONCURRENCY` at a time and, beside them, small
   * ones `SMALL_UPLOAD_CONCURRENCY` at a time (a final image is a dozen small files beside the
   * pages, and each is a request, whose latency is what they cost while the shard is frozen);
   * resolves to what was sent, in `files` order. The first failure cancels the uploads in flight
   * and the files not yet started (and so does `signal`), then fails the call with that failure:
   * a migration that is going to abort should resume its shard without waiting for the rest.
   */
  async uploadFiles(
    migrationId: string,
    round: number,
    dir: string,
    files: readonly { name: string; bytes: number; sha256?: string }[],
    signal?: AbortSignal,
  ): Promise<ImageFile[]> {
    const sent: ImageFile[] = new Array(files.length);
    const stop = new AbortController();
    const stopped = signal ? AbortSignal.any([stop.signal, signal]) : stop.signal;
    let failure: { error: unknown } | undefined;
    const pool = (queue: number[], width: number) => {
      const worker = async () => {
        for (let index = queue.shift(); index !== undefined && !stopped.aborted; index = queue.shift()) {
          try {
            sent[index] = await this.uploadFile(migrationId, round, dir, files[index]!, stopped);
          } catch (error) {
            // Cancelled from outside: that reason is the cause, not the cancellation it caused here.
            failure ??= { error: signal?.aborted ? signal.reason : error };
            stop.abort(error);
          }
        }
      };
      return Array.from({ length: Math.min(width, queue.length) }, worker);
    };
    const indices = files.map((_, index) => index);
    const large = indices.filter((i) => files[i]!.bytes >= SMALL_FILE_BYTES);
    const small = indices.filter((i) => files[i]!.bytes < SMALL_FILE_BYTES);
    await Promise.all([...pool(large, UPLOAD_CONCURRENCY), ...pool(small, SMALL_UPLOAD_CONCURRENCY)]);
    if (failure) throw failure.error;
    if (signal?.aborted) throw signal.reason; // cancelled before any upload failed
    return sent;
  }

  /** Has the destination check every file of a round against what the source hashed while sending. */
  async verifyRound(migrationId: string, round: number, sent: readonly ImageFile[]): Promise<ImageManifest> {
    await this.call(`verify round ${round}`, () => this.http.post(`/v1/migrations/${migrationId}/rounds/${round}/verify`, { files: sent }));
    return { files: sent, totalBytes: sent.reduce((sum, f) => sum + f.bytes, 0) };
  }

  /** Streams every file of a round, then has the destination verify them; resolves to the manifest sent. */
  async uploadRound(migrationId: string, round: number, dir: string, files: readonly { name: string; bytes: number; sha256?: string }[]): Promise<ImageManifest> {
    return this.verifyRound(migrationId, round, await this.uploadFiles(migrationId, round, dir, files));
  }

  /**
   * The destination unpacks the state archive of `rounds` (when the final round has one), then
   * CRIU restores; resolves to the restored pid, and how long the shard already ran there while
   * its memory was filled lazily (0 when the destination did not say, or said something that is
   * not a number of ms from 0 to 1 day: it only shortens the downtime reported). The request waits
   * as restoreTimeoutMs says: a large memory image or state directory must not make the source
   * give up while the destination is still restoring it (its abort would then wait for that
   * restore, and the shard stay frozen all along). `untilDeadlineMs`: time left before the
   * migration's own time limit, which the memory's share never reaches past.
   */
  async restore(migrationId: string, rounds: readonly RoundManifest[], untilDeadlineMs?: number): Promise<{ pid: number; lazyPagesMs: number }> {
    const response = await this.call('restore', () => this.http.post(`/v1/migrations/${migrationId}/restore`, { rounds }, { timeout: this.restoreTimeoutMs(rounds, untilDeadlineMs) }));
    const { pid, lazyPagesMs } = response.data as { pid: number; lazyPagesMs?: unknown };
    const lazy = typeof lazyPagesMs === 'number' && Number.isFinite(lazyPagesMs) && lazyPagesMs >= 0 && lazyPagesMs <= 86_400_000 ? Math.round(lazyPagesMs) : 0;
    return { pid, lazyPagesMs: lazy };
  }

  /** Restart strategy: the destination unpacks the state archive of `rounds` and starts the shard; resolves to its pid. */
  async start(migrationId: string, rounds: readonly RoundManifest[]): Promise<number> {
    const response = await this.call('start', () => this.http.post(`/v1/migrations/${migrationId}/start`, { rounds }, { timeout: this.restoreTimeoutMs(rounds) }));
    return (response.data as { pid: number }).pid;
  }

  /**
   * How long a restore (or start) of `rounds` may take at the destination: the control timeout,
   * or what moving the memory of every round's pages files may take when that is longer (an eager
   * restore copies it all before it answers, a lazy one answers once its fill is complete; the
   * destination's CRIU has the same limit, memory-move-time.ts), plus the unpack allowance of the
   * final round's state archive (the destination unpacks it first).
   */
  restoreTimeoutMs(rounds: readonly RoundManifest[], untilDeadlineMs?: number): number {
    const archive = rounds[rounds.length - 1]?.files.find((f) => f.name === STATE_ARCHIVE);
    const memoryBytes = memoryImageBytes(rounds.flatMap((round) => round.files));
    return memoryMoveLimitMs({ memoryBytes, floorMs: this.opts.requestTimeoutMs ?? 60_000, untilDeadlineMs }) + (archive ? unpackAllowanceMs(archive.bytes) : 0);
  }

  async commit(migrationId: string, shardId?: string): Promise<void> {
    await this.call('commit', () => this.http.post(`/v1/migrations/${migrationId}/commit`, shardId ? { shardId } : {}));
  }

  async abort(migrationId: string, shardId: string, reason: string): Promise<void> {
    await this.call('abort', () => this.http.post(`/v1/migrations/${migrationId}/abort`, { shardId, reason: reason.slice(0, 1000) }));
  }

  /**
   * Hands a migrated shard's predictor state to the destination (after `done`, best effort:
   * host-agent/prediction/forecast-loop.ts `importState` takes it there).
   */
  async handOverPredictor(shardId: string, state: unknown): Promise<void> {
    await this.call('predictor hand-over', () => this.http.put(`/v1/predictions/shards/${shardId}/state`, state, { maxBodyLength: PREDICTOR_STATE_MAX_BYTES }));
  }

  /** Runs a request; turns the destination's refusal or a network failure into a MigrationError. */
  private async call<T>(what: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      throw this.translate(what, error);
    }
  }

  private translate(what: string, error: unknown): MigrationError {
    const where = this.opts.baseUrl;
    if (error instanceof AxiosError && error.response) {
      const body = error.response.data as { error?: string; message?: string } | undefined;
      const code = CODES.includes(body?.error as MigrationErrorCode) ? (body?.error as MigrationErrorCode) : 'TRANSFER_FAILED';
      return new MigrationError(code, `${what} at ${where}: ${error.response.status} ${body?.error ?? ''} ${body?.message ?? error.message}`.replace(/\s+/g, ' ').trim());
    }
    const cause = error instanceof AxiosError ? (error.cause?.message ?? error.code ?? error.message) : (error as Error).message;
    return new MigrationError('TRANSFER_FAILED', `${what} at ${where} failed: ${cause}`);
  }
}
