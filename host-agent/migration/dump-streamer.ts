/**
 * Sends a final dump's pages files to the destination while CRIU is still writing them, so
 * that most of the image has arrived when the dump ends instead of only starting to move then
 * (both are in the shard's downtime). Only to a destination that takes chunked uploads.
 *
 * CRIU writes one process's pages file whole before it opens the next (it dumps the tree one
 * process at a time), so a new pages file means the ones seen before are complete; the last
 * ones are complete when CRIU exits 0. That order is relied on only for speed: once the dump is
 * done, every streamed file's size is compared with the file's, and one that differs is not
 * counted as sent (the transfer sends it again, whole). What a file gave is hashed as it goes,
 * and the destination checks every file's size and sha256 at the round's verify.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { GrowingFile } from '../checkpoint/growing-file';
// Only the pages files are followed: the other image files are small and go after the dump.
import { PAGES_FILE, type ImageFile } from '../checkpoint/image-manifest';
import { UPLOAD_CONCURRENCY, type MigrationClient } from './migration-client';


/** N of pages-N.img. */
function pagesNumber(name: string): number {
  return Number(name.slice('pages-'.length, -'.img'.length));
}

export interface DumpStreamerOptions {
  readonly client: Pick<MigrationClient, 'uploadGrowingFile'>;
  readonly migrationId: string;
  readonly round: number;
  /** The directory CRIU dumps into. */
  readonly dir: string;
  /** How often the directory is looked at for a new pages file; default 5 ms. */
  readonly scanMs?: number;
  /** How often a followed file's size is looked at; default 2 ms. */
  readonly pollMs?: number;
}

interface Followed {
  readonly file: GrowingFile;
  readonly upload: Promise<ImageFile>;
}

export class DumpStreamer {
  private readonly followed = new Map<string, Followed>();
  /** Cancels the uploads in flight: the first failure, or the dump's. */
  private readonly stop = new AbortController();
  private failure: { error: unknown } | undefined;
  private ended = false;
  /** Ends the scan's wait between looks once the dump ended. */
  private readonly endScan = new AbortController();
  private readonly scanning: Promise<void>;
  /** Uploads running, and those waiting for one of them to end (UPLOAD_CONCURRENCY at a time). */
  private running = 0;
  private readonly queued: (() => void)[] = [];

  constructor(private readonly opts: DumpStreamerOptions) {
    this.scanning = this.scan();
  }

  /** Bytes read from the dump's pages files so far (sent, or on their way). */
  get bytesStreamed(): number {
    let bytes = 0;
    for (const { file } of this.followed.values()) bytes += file.bytesRead;
    return bytes;
  }

  private async scan(): Promise<void> {
    while (!this.ended && !this.stop.signal.aborted) {
      await this.look();
      await delay(this.opts.scanMs ?? 5, undefined, { signal: this.endScan.signal }).catch(() => undefined);
    }
  }

  private async look(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.opts.dir)).filter((name) => PAGES_FILE.test(name) && !this.followed.has(name));
    } catch {
      return; // not made yet; the dump makes it
    }
    if (names.length === 0 || this.stop.signal.aborted) return;
    // A new pages file: CRIU is done with the ones it wrote before.
    for (const { file } of this.followed.values()) file.finish();
    // By number, the order CRIU opens them in (as text, pages-10 would come before pages-9).
    names.sort((a, b) => pagesNumber(a) - pagesNumber(b));
    for (const [i, name] of names.entries()) {
      const file = new GrowingFile(join(this.opts.dir, name), this.opts.pollMs !== undefined ? { pollMs: this.opts.pollMs } : {});
      // Several new between two looks (small processes dump in less than a look's interval): all
      // but the newest are done too. Left open, each would wait, moving no byte, until the next
      // look that finds a newer file or the dump's end, and a large process's dump can outlast
      // the destination's UPLOAD_IDLE_MS, which breaks such an upload off.
      if (i < names.length - 1) file.finish();
      const upload = this.upload(file);
      upload.catch((error: unknown) => {
        this.failure ??= { error };
        this.stop.abort(error);
        file.fail(error instanceof Error ? error : new Error(String(error)));
      });
      this.followed.set(name, { file, upload });
    }
  }

  /**
   * Uploads `file` once fewer than UPLOAD_CONCURRENCY uploads run: a link slower than CRIU would
   * otherwise have a socket and a file open per process of a large tree. A file waiting its turn
   * is not read yet; CRIU is usually done with it by then.
   */
  private async upload(file: GrowingFile): Promise<ImageFile> {
    if (this.running < UPLOAD_CONCURRENCY) this.running += 1;
    else await new Promise<void>((resolve) => this.queued.push(resolve)); // handed the slot of one that ended
    try {
      if (this.stop.signal.aborted) throw this.stop.signal.reason;
      return await this.opts.client.uploadGrowingFile(this.opts.migrationId, this.opts.round, file, this.stop.signal);
    } finally {
      const next = this.queued.shift();
      if (next) next();
      else this.running -= 1;
    }
  }

  /**
   * CRIU exited 0. Resolves, once every upload has ended, to the files sent whole (each one's
   * size compared with the file's now); fails with the first upload's failure.
   */
  async dumpDone(): Promise<ImageFile[]> {
    this.ended = true;
    this.endScan.abort();
    await this.scanning;
    await this.look(); // a pages file made at the very end
    for (const { file } of this.followed.values()) file.finish();
    const settled = await Promise.allSettled([...this.followed.values()].map((f) => f.upload));
    if (this.failure) throw this.failure.error;
    const sent: ImageFile[] = [];
    for (const result of settled) {
      if (result.status === 'rejected') throw result.reason;
      const { size } = await stat(join(this.opts.dir, result.value.name));
      if (size === result.value.bytes) sent.push(result.value);
    }
    return sent.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The dump failed (or the migration stops): the uploads are broken off, and waited for. */
  async cancel(reason: Error): Promise<void> {
    this.ended = true;
    this.endScan.abort();
    this.stop.abort(reason);
    for (const { file } of this.followed.values()) file.fail(reason);
    await this.scanning;
    await Promise.allSettled([...this.followed.values()].map((f) => f.upload));
  }
}
