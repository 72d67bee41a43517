/**
 * Unpacking the state archive while it arrives (the destination's upload of `state.tar`), so that
 * the restore or start, with the shard stopped on both hosts, only swaps the copy in. The bytes the
 * upload writes to its file are fed, with backpressure, to the same `tar --extract` the restore
 * would run (state-archive.ts extractArguments), into the same incoming directory; when the whole
 * body arrived and tar exited 0, a record of the archive's sha256 is written there
 * (arrivalRecord), which unpackState trusts only for exactly the archive the source's manifest
 * names. Any failure here costs nothing but the time saved: the incoming directory is removed,
 * and the restore unpacks from the file as it always did (and reports a broken archive as it did).
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { arrivalRecord, extractArguments, incomingStateDir, writeOwnFile } from './state-archive';

export interface StateArrivalOptions {
  /**
   * How long tar may take to accept one chunk (or to exit once the body ended) before this unpack
   * is given up and the upload goes on without it: a tar stuck on a hung file system must not
   * stall the upload into its own idle limit.
   * @default 30_000
   */
  readonly stallMs?: number;
  /** What must be finished first: the unpack of an earlier upload of this archive, which uses the same directory. */
  readonly after?: Promise<unknown>;
}

/** Enough of tar's complaints to say why it failed, never a whole flood of them in memory. */
const STDERR_KEPT_BYTES = 4096;

export class StateArrival {
  /** `<dir>.incoming-<tag>`, where unpackState looks for it. */
  readonly incoming: string;
  private readonly stallMs: number;
  /** Why this unpack was given up, once it was. */
  private failure?: string;
  private tar?: ChildProcessByStdio<Writable, null, Readable>;
  private exited?: Promise<void>;
  private stderr = '';
  /** Settles once the incoming directory is fresh and tar runs, or this unpack was given up before. */
  private readonly ready: Promise<void>;
  /** The one ending (completed or given up): whatever asks to end it later waits for that one. */
  private ending?: Promise<boolean>;

  /**
   * Starts unpacking migration `tag`'s archive as the new content of `dir` (the shard's state
   * directory): the incoming directory is made afresh, then tar waits on its standard input.
   */
  constructor(dir: string, private readonly tag: string, options: StateArrivalOptions = {}) {
    this.incoming = incomingStateDir(dir, tag);
    this.stallMs = options.stallMs ?? 30_000;
    this.ready = this.begin(options.after);
  }

  /** Why it was given up (tar failed, stalled, the upload broke off, the migration was aborted), or undefined. */
  get problem(): string | undefined {
    return this.failure;
  }

  private async begin(after: Promise<unknown> | undefined): Promise<void> {
    await after?.catch(() => undefined);
    if (this.failure) return;
    try {
      await rm(this.incoming, { recursive: true, force: true });
      await mkdir(this.incoming, { recursive: true });
    } catch (error) {
      this.failure ??= `cannot make ${this.incoming}: ${(error as Error).message}`;
      return;
    }
    // Given up while the directory was made: no tar starts, and the ending removes the directory.
    if (this.failure) return;
    const tar = spawn('tar', extractArguments('-', this.incoming), { stdio: ['pipe', 'ignore', 'pipe'] });
    this.tar = tar;
    tar.stderr.setEncoding('utf8');
    tar.stderr.on('data', (text: string) => {
      if (this.stderr.length < STDERR_KEPT_BYTES) this.stderr += text.slice(0, STDERR_KEPT_BYTES - this.stderr.length);
    });
    // EPIPE once tar exited early (a broken archive): the exit says why.
    tar.stdin.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      tar.once('error', (error) => {
        this.failure ??= `cannot run tar: ${error.message}`;
        resolve();
      });
      tar.once('close', (code, signal) => {
        if (code !== 0) this.failure ??= `tar exited with ${code ?? signal}${this.stderr ? `: ${this.stderr.trim()}` : ''}`;
        resolve();
      });
    });
  }

  /**
   * Hands `chunk` to tar, resolving once tar took it (backpressure for the upload) or this unpack
   * was given up; never rejects, so the upload never fails for it.
   */
  async feed(chunk: Buffer): Promise<void> {
    await this.ready;
    const { tar, exited } = this;
    if (this.failure || this.ending || !tar || !exited || tar.exitCode !== null) return;
    if (tar.stdin.write(chunk)) return;
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<'stalled'>((resolve) => (timer = setTimeout(() => resolve('stalled'), this.stallMs)));
    const drained = new Promise<void>((resolve) => tar.stdin.once('drain', resolve));
    try {
      if ((await Promise.race([drained, exited, stalled])) === 'stalled') await this.abandon(`tar took no byte for ${this.stallMs} ms`);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The whole archive arrived, and its sha256 (hashed while it was written) is `sha256`: waits for
   * tar, then records which archive the incoming directory holds. Resolves to whether it did;
   * false when this unpack was given up (the incoming directory is then removed).
   */
  finish(sha256: string): Promise<boolean> {
    this.ending ??= this.complete(sha256);
    return this.ending;
  }

  private async complete(sha256: string): Promise<boolean> {
    await this.ready;
    if (this.tar && this.exited && !this.failure) {
      this.tar.stdin.end();
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<'stalled'>((resolve) => (timer = setTimeout(() => resolve('stalled'), this.stallMs)));
      try {
        if ((await Promise.race([this.exited, stalled])) === 'stalled') this.failure ??= `tar did not exit within ${this.stallMs} ms of the archive's end`;
      } finally {
        clearTimeout(timer);
      }
    }
    if (!this.failure) {
      try {
        // The archive may hold a member of this name (it is the shard's directory).
        await writeOwnFile(join(this.incoming, arrivalRecord(this.tag)), `${sha256}\n`);
        return true;
      } catch (error) {
        this.failure ??= `cannot record the unpack: ${(error as Error).message}`;
      }
    }
    await this.discard();
    return false;
  }

  /**
   * Gives this unpack up for `reason` (the upload broke off or was refused, another upload of the
   * archive replaced it, the migration was aborted): tar is killed and waited for, and the
   * incoming directory removed. Idempotent. One that had already finished is left as it is: a
   * restore may be swapping it in this moment; what replaces it (the next upload's unpack) or
   * ends the migration (tidyStateDir, reclaimStateDir) removes it.
   */
  async abandon(reason: string): Promise<void> {
    this.failure ??= reason;
    if (this.tar && this.tar.exitCode === null && this.tar.signalCode === null) this.tar.kill('SIGKILL');
    this.ending ??= this.discard();
    await this.ending;
  }

  /**
   * What the restore or start asks before it unpacks: an unpack whose upload has not ended yet (a
   * repeated upload of the archive still in flight) is given up rather than waited for; a
   * finished one is left for unpackState to take.
   */
  async settle(): Promise<void> {
    if (this.ending) await this.ending;
    else await this.abandon('the restore began before this upload of the archive ended');
  }

  private async discard(): Promise<boolean> {
    await this.ready;
    if (this.tar && this.tar.exitCode === null && this.tar.signalCode === null) this.tar.kill('SIGKILL');
    await this.exited;
    await this.removeIncoming();
    return false;
  }

  /**
   * Never fails the upload: what stays (no record in it, or a migration already aborted) is
   * removed again by the restore's unpack, or by the end of the migration (tidyStateDir,
   * reclaimStateDir), which report their own failures.
   */
  private async removeIncoming(): Promise<void> {
    await rm(this.incoming, { recursive: true, force: true }).catch((error: Error) => {
      this.failure ??= `cannot remove ${this.incoming}: ${error.message}`;
    });
  }
}
