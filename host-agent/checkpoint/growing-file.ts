/**
 * A file that another process is still appending to, read as a stream: CRIU writing a pages
 * file while the source already sends it. The stream reads what the file holds, waits for more
 * while the writer works, and ends at the file's end once told the writer is done with it. The
 * kernel raises a regular file's size only after the bytes below it are in the page cache, so
 * everything below the size read is final data (CRIU only appends to a pages file).
 */
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';

export interface GrowingFileOptions {
  /** Bytes per read (and per chunk of the stream); default 1 MiB. */
  readonly chunkBytes?: number;
  /** How often the size is looked at while the writer works; default 2 ms. */
  readonly pollMs?: number;
}

export class GrowingFile {
  readonly stream: Readable;
  private writerDone = false;
  private writerError: Error | undefined;
  private wake: (() => void) | undefined;
  private caughtUp = false;
  private read = 0;

  constructor(
    readonly path: string,
    opts: GrowingFileOptions = {},
  ) {
    const chunkBytes = opts.chunkBytes ?? 1 << 20;
    const pollMs = opts.pollMs ?? 2;
    this.stream = Readable.from(this.chunks(chunkBytes, pollMs), { objectMode: false, highWaterMark: chunkBytes });
  }

  /** The writer is done with the file: the stream reads it to its end, then ends. */
  finish(): void {
    this.writerDone = true;
    this.wake?.();
  }

  /** The writer failed: the stream fails with `error` (what it already gave stays given). */
  fail(error: Error): void {
    this.writerError ??= error;
    this.wake?.();
  }

  /** Whether the stream has read all the file holds and waits for the writer (no reader is stuck). */
  get waitingForWriter(): boolean {
    return this.caughtUp && !this.writerDone && !this.writerError && !this.stream.destroyed;
  }

  /** Bytes read from the file so far. */
  get bytesRead(): number {
    return this.read;
  }

  private async *chunks(chunkBytes: number, pollMs: number): AsyncGenerator<Buffer> {
    const handle = await open(this.path, 'r');
    try {
      for (;;) {
        if (this.writerError) throw this.writerError;
        // Its reader gave up (an upload that failed destroys its body): nothing to wait for. The
        // stream's destroy only asks the generator to return at its next yield, and one that waits
        // for the writer yields nothing until the writer is done: it would poll, the file open, till
        // then. Thrown, not returned: a return ends the destroyed stream with 'end', which a pipe
        // would pass on as the end of the file, cut short.
        if (this.stream.destroyed) throw new Error(`the reader of ${this.path} stopped reading`);
        // Noted before the size is read: a size read after the writer was done is the final one.
        const done = this.writerDone;
        const { size } = await handle.stat();
        // While the writer works, whole chunks only (fewer, larger HTTP chunks); its tail once it is done.
        while (size - this.read >= (done ? 1 : chunkBytes)) {
          const buffer = Buffer.allocUnsafe(Math.min(chunkBytes, size - this.read));
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.read);
          if (bytesRead === 0) break; // truncated under us: the size check after the dump sees it
          this.read += bytesRead;
          this.caughtUp = false;
          yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
        }
        if (done) return;
        this.caughtUp = true;
        await Promise.race([delay(pollMs), new Promise<void>((resolve) => (this.wake = resolve))]);
        this.wake = undefined;
      }
    } finally {
      await handle.close();
    }
  }
}
