import { appendFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { GrowingFile } from '../../../host-agent/checkpoint/growing-file';
import { tempDir } from '../../helpers/cli';

/** Reads `file`'s stream into chunks, noting how many bytes had arrived at each moment asked. */
function collect(file: GrowingFile): { chunks: Buffer[]; done: Promise<Buffer> } {
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    file.stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    file.stream.on('end', () => resolve(Buffer.concat(chunks)));
    file.stream.on('error', reject);
  });
  return { chunks, done };
}

const received = (chunks: readonly Buffer[]) => chunks.reduce((sum, c) => sum + c.length, 0);

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    if (condition()) return;
    await delay(5);
  }
  throw new Error(`timed out waiting until ${what}`);
}

describe('a file read while another writer appends to it', () => {
  const dir = tempDir('shardform-growing');
  afterAll(() => dir.remove());

  it('gives whole chunks while the writer works, waits for it, and ends with every byte once it is done', async () => {
    const path = join(dir.path, 'pages-1.img');
    writeFileSync(path, Buffer.alloc(0));
    const file = new GrowingFile(path, { chunkBytes: 1000, pollMs: 1 });
    const { chunks, done } = collect(file);
    const written: Buffer[] = [];
    const write = (bytes: number, fill: number) => {
      const piece = Buffer.alloc(bytes, fill);
      written.push(piece);
      appendFileSync(path, piece);
    };
    write(2500, 1);
    await until(() => received(chunks) === 2000, 'two whole chunks arrived');
    await until(() => file.waitingForWriter, 'it waits for the writer');
    await delay(20);
    // The last 500 bytes are not a whole chunk: they wait for more, or for the writer's end.
    expect(received(chunks)).toBe(2000);
    expect(chunks.every((c) => c.length === 1000)).toBe(true);
    write(700, 2);
    await until(() => received(chunks) === 3000, 'a third whole chunk arrived');
    write(123, 3);
    file.finish();
    expect(file.waitingForWriter).toBe(false);
    const all = await done;
    expect(all.equals(Buffer.concat(written))).toBe(true);
    expect(file.bytesRead).toBe(3323);
  });

  it('reads a file the writer is already done with to its end at once', async () => {
    const path = join(dir.path, 'pages-2.img');
    writeFileSync(path, Buffer.alloc(5555, 7));
    const file = new GrowingFile(path, { chunkBytes: 1024 });
    file.finish();
    const { done } = collect(file);
    expect((await done).equals(Buffer.alloc(5555, 7))).toBe(true);
  });

  it('fails with the writer\'s error, having given what it had read', async () => {
    const path = join(dir.path, 'pages-3.img');
    writeFileSync(path, Buffer.alloc(3000, 1));
    const file = new GrowingFile(path, { chunkBytes: 1000, pollMs: 1 });
    const { chunks, done } = collect(file);
    await until(() => received(chunks) === 3000, 'what the file held arrived');
    file.fail(new Error('criu dump exited 1'));
    await expect(done).rejects.toThrow('criu dump exited 1');
  });

  it('stops waiting for the writer, and closes the file, once its reader destroys the stream (an upload that failed)', async () => {
    const path = join(dir.path, 'pages-5.img');
    writeFileSync(path, Buffer.alloc(300, 5));
    const file = new GrowingFile(path, { chunkBytes: 1000, pollMs: 1 });
    let ended = false;
    file.stream.on('data', () => undefined);
    file.stream.on('end', () => (ended = true));
    await until(() => file.waitingForWriter, 'it waits for the writer');
    const closed = new Promise<void>((resolve) => file.stream.once('close', resolve));
    file.stream.destroy();
    // Neither finish() nor fail() comes: the reader alone ended it.
    let isClosed = false;
    void closed.then(() => (isClosed = true));
    await until(() => isClosed, 'the stream closed');
    expect(file.waitingForWriter).toBe(false);
    // Not ended as if whole: a pipe would pass that on as the end of the file.
    expect(ended).toBe(false);
  });

  it('fails when the file is not there', async () => {
    const file = new GrowingFile(join(dir.path, 'missing.img'));
    await expect(collect(file).done).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('keeps what it gave when the file shrinks under it (the size check after the dump catches that)', async () => {
    const path = join(dir.path, 'pages-4.img');
    writeFileSync(path, Buffer.alloc(2000, 4));
    const file = new GrowingFile(path, { chunkBytes: 1000, pollMs: 1 });
    const { chunks, done } = collect(file);
    await until(() => received(chunks) === 2000, 'the file arrived');
    truncateSync(path, 500);
    file.finish();
    // What was read stays read: the size check after the dump (dump-streamer.ts) catches the difference.
    expect((await done).length).toBe(2000);
  });
});
