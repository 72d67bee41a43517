import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { GrowingFile } from '../../../host-agent/checkpoint/growing-file';
import { DumpStreamer } from '../../../host-agent/migration/dump-streamer';
import { MigrationClient, UPLOAD_CONCURRENCY } from '../../../host-agent/migration/migration-client';
import { tempDir } from '../../helpers/cli';

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i += 1) {
    if (condition()) return;
    await delay(5);
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** A loopback destination that takes chunked uploads and records, per file, the bytes and how they came. */
async function startDestination(): Promise<{ server: Server; url: string; got: Map<string, { data: Buffer; chunked: boolean }>; arriving: Map<string, number> }> {
  const got = new Map<string, { data: Buffer; chunked: boolean }>();
  const arriving = new Map<string, number>();
  const server = createServer((request, response) => {
    const name = decodeURIComponent(request.url!.split('/').pop()!);
    const chunks: Buffer[] = [];
    arriving.set(name, 0);
    request.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      arriving.set(name, arriving.get(name)! + chunk.length);
    });
    request.on('end', () => {
      got.set(name, { data: Buffer.concat(chunks), chunked: request.headers['transfer-encoding'] === 'chunked' && request.headers['content-length'] === undefined });
      response.writeHead(201, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got, arriving };
}

async function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

describe('pages sent while CRIU dumps them', () => {
  const root = tempDir('shardform-dump-streamer');
  afterAll(() => root.remove());
  let n = 0;
  const dumpDir = () => {
    const dir = join(root.path, `dump-${(n += 1)}`);
    mkdirSync(dir);
    return dir;
  };

  it('sends each pages file as it grows, one process after another, and resolves to what was sent whole with its sha256', async () => {
    const destination = await startDestination();
    try {
      const dir = dumpDir();
      const client = new MigrationClient({ baseUrl: destination.url, token: 't' });
      const streamer = new DumpStreamer({ client, migrationId: 'm1', round: 1, dir, scanMs: 1, pollMs: 1 });
      // Like CRIU: process 1's pages, written in pieces; then process 2's; small files besides, never streamed.
      const first = Buffer.alloc(3 * 2 ** 20, 1);
      writeFileSync(join(dir, 'pages-1.img'), first.subarray(0, 2 ** 20 + 10));
      writeFileSync(join(dir, 'pagemap-1.img'), 'pagemap');
      await until(() => (destination.arriving.get('pages-1.img') ?? 0) >= 2 ** 20, 'the first MiB of pages-1.img arrived while it was written');
      appendFileSync(join(dir, 'pages-1.img'), first.subarray(2 ** 20 + 10));
      const second = Buffer.alloc(100_000, 2);
      writeFileSync(join(dir, 'pages-2.img'), second);
      // A new pages file: the first is complete and arrives whole before the dump is done.
      await until(() => destination.got.has('pages-1.img'), 'pages-1.img arrived whole');
      expect(destination.got.has('pages-2.img')).toBe(false); // the last one waits for the dump's end
      const sent = await streamer.dumpDone();
      expect(sent).toEqual([
        { name: 'pages-1.img', bytes: first.length, sha256: sha(first) },
        { name: 'pages-2.img', bytes: second.length, sha256: sha(second) },
      ]);
      // Compared with equals: a deep compare of megabytes takes jest seconds.
      for (const [name, data] of [['pages-1.img', first], ['pages-2.img', second]] as const) {
        expect(destination.got.get(name)?.chunked).toBe(true);
        expect(destination.got.get(name)?.data.equals(data)).toBe(true);
      }
      expect(destination.got.has('pagemap-1.img')).toBe(false);
      expect(streamer.bytesStreamed).toBe(first.length + second.length);
    } finally {
      await stop(destination.server);
    }
  });

  it('leaves out a file that grew after it was taken as complete, for the transfer to send again whole', async () => {
    const dir = dumpDir();
    const uploaded: string[] = [];
    // A client that reads each stream to its end, as the real one would send it.
    const client = {
      uploadGrowingFile: async (_id: string, _round: number, file: GrowingFile) => {
        const chunks: Buffer[] = [];
        for await (const chunk of file.stream) chunks.push(chunk as Buffer);
        const data = Buffer.concat(chunks);
        uploaded.push(file.path);
        return { name: file.path.split('/').pop()!, bytes: data.length, sha256: sha(data) };
      },
    };
    const streamer = new DumpStreamer({ client, migrationId: 'm2', round: 1, dir, scanMs: 1, pollMs: 1 });
    writeFileSync(join(dir, 'pages-1.img'), Buffer.alloc(500, 1));
    await delay(10);
    writeFileSync(join(dir, 'pages-2.img'), Buffer.alloc(10, 2));
    await until(() => uploaded.length === 1, 'pages-1.img was taken as complete');
    // The order CRIU keeps, broken: process 1's file grows after process 2's appeared.
    appendFileSync(join(dir, 'pages-1.img'), Buffer.alloc(100, 3));
    const sent = await streamer.dumpDone();
    expect(sent.map((f) => f.name)).toEqual(['pages-2.img']);
  });

  it('takes every pages file but the newest as complete when several appear between two looks (CRIU opened the later ones after them)', async () => {
    const dir = dumpDir();
    const ended: string[] = [];
    const client = {
      uploadGrowingFile: async (_id: string, _round: number, file: GrowingFile) => {
        const chunks: Buffer[] = [];
        for await (const chunk of file.stream) chunks.push(chunk as Buffer);
        const data = Buffer.concat(chunks);
        ended.push(file.path.split('/').pop()!);
        return { name: file.path.split('/').pop()!, bytes: data.length, sha256: sha(data) };
      },
    };
    // A small process (the namespace's init) dumped within one look, then a large one: pages-9
    // and pages-10 of a tree of ten (numbered, not sorted as text).
    for (let i = 1; i <= 9; i += 1) writeFileSync(join(dir, `pages-${i}.img`), Buffer.alloc(100, i));
    writeFileSync(join(dir, 'pages-10.img'), Buffer.alloc(10, 10));
    const streamer = new DumpStreamer({ client, migrationId: 'm5', round: 1, dir, scanMs: 1, pollMs: 1 });
    // Not left waiting for the dump's end (a large process's dump can outlast the destination's
    // UPLOAD_IDLE_MS while a file it takes for growing moves no byte).
    await until(() => ended.length === 9, 'the nine complete pages files were sent whole');
    expect(ended.sort()).toEqual(['pages-1.img', 'pages-2.img', 'pages-3.img', 'pages-4.img', 'pages-5.img', 'pages-6.img', 'pages-7.img', 'pages-8.img', 'pages-9.img']);
    const sent = await streamer.dumpDone();
    expect(sent.map((f) => f.name)).toContain('pages-10.img');
    expect(sent).toHaveLength(10);
  });

  it('sends at most UPLOAD_CONCURRENCY files at once: a link slower than CRIU does not open a socket per process', async () => {
    const dir = dumpDir();
    let running = 0;
    let peak = 0;
    const order: string[] = [];
    const client = {
      uploadGrowingFile: async (_id: string, _round: number, file: GrowingFile) => {
        running += 1;
        peak = Math.max(peak, running);
        const chunks: Buffer[] = [];
        for await (const chunk of file.stream) chunks.push(chunk as Buffer);
        await delay(20); // a slow link
        running -= 1;
        const name = file.path.split('/').pop()!;
        order.push(name);
        return { name, bytes: Buffer.concat(chunks).length, sha256: sha(Buffer.concat(chunks)) };
      },
    };
    const streamer = new DumpStreamer({ client, migrationId: 'm5', round: 1, dir, scanMs: 1, pollMs: 1 });
    // Twelve processes dumped one after another, faster than the link takes them.
    for (let i = 1; i <= 12; i += 1) {
      writeFileSync(join(dir, `pages-${i}.img`), Buffer.alloc(100 * i, i));
      await delay(3);
    }
    const sent = await streamer.dumpDone();
    expect(sent.map((f) => f.bytes).sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => 100 * (i + 1)));
    expect(peak).toBe(UPLOAD_CONCURRENCY);
    expect(order).toHaveLength(12);
  });

  it('fails with the first upload failure once every upload has ended', async () => {
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => response.writeHead(409, { 'content-type': 'application/json' }).end('{"error":"INVALID_TRANSITION","message":"migration m3 is aborted"}'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const dir = dumpDir();
      const client = new MigrationClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' });
      const streamer = new DumpStreamer({ client, migrationId: 'm3', round: 1, dir, scanMs: 1, pollMs: 1 });
      writeFileSync(join(dir, 'pages-1.img'), Buffer.alloc(1000, 1));
      await delay(20);
      await expect(streamer.dumpDone()).rejects.toMatchObject({ code: 'INVALID_TRANSITION', message: expect.stringContaining('upload 1/pages-1.img') });
    } finally {
      await stop(server);
    }
  });

  it('breaks off the uploads when the dump fails, and starts none after', async () => {
    const destination = await startDestination();
    const closed: string[] = [];
    destination.server.on('request', (request) => request.on('close', () => closed.push(request.url!)));
    try {
      const dir = dumpDir();
      const client = new MigrationClient({ baseUrl: destination.url, token: 't' });
      const streamer = new DumpStreamer({ client, migrationId: 'm4', round: 1, dir, scanMs: 1, pollMs: 1 });
      writeFileSync(join(dir, 'pages-1.img'), Buffer.alloc(2 ** 20 + 5, 1));
      await until(() => (destination.arriving.get('pages-1.img') ?? 0) >= 2 ** 20, 'pages-1.img is on its way');
      await streamer.cancel(new Error('criu dump exited 1'));
      writeFileSync(join(dir, 'pages-2.img'), Buffer.alloc(10, 2));
      await delay(30);
      await until(() => closed.length === 1, 'the destination saw the upload broken off');
      expect(destination.got.has('pages-1.img')).toBe(false); // never arrived whole
      expect(destination.arriving.has('pages-2.img')).toBe(false);
    } finally {
      await stop(destination.server);
    }
  });
});
