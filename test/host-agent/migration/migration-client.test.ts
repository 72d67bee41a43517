import { createHash } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { MigrationClient, SMALL_FILE_BYTES, SMALL_UPLOAD_CONCURRENCY, UPLOAD_CONCURRENCY } from '../../../host-agent/migration/migration-client';
import { tempDir } from '../../helpers/cli';
import { GrowingFile } from '../../../host-agent/checkpoint/growing-file';

/** A loopback destination that holds every upload for a moment and records how many were in flight, by size. */
function startRecorder(): Promise<{ server: Server; url: string; peak: { large: number; small: number }; received: Map<string, string> }> {
  const inFlight = { large: 0, small: 0 };
  const peak = { large: 0, small: 0 };
  const received = new Map<string, string>();
  const server = createServer((request: IncomingMessage, response) => {
    const kind = Number(request.headers['content-length']) >= SMALL_FILE_BYTES ? 'large' : 'small';
    inFlight[kind] += 1;
    peak[kind] = Math.max(peak[kind], inFlight[kind]);
    const hash = createHash('sha256');
    request.on('data', (chunk: Buffer) => hash.update(chunk));
    request.on('end', () =>
      setTimeout(() => {
        inFlight[kind] -= 1;
        received.set(decodeURIComponent(request.url!.split('/').pop()!), hash.digest('hex'));
        response.writeHead(201, { 'content-type': 'application/json' }).end('{}');
      }, 30),
    );
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, peak, received })));
}

describe('migration client uploads', () => {
  const dir = tempDir('shardform-upload');
  afterAll(() => dir.remove());

  it('sends large files a few at a time and the small ones beside them, every file hashed as sent and listed in order', async () => {
    const recorder = await startRecorder();
    try {
      const files: { name: string; bytes: number }[] = [];
      for (let i = 0; i < 6; i += 1) files.push({ name: `pages-${i}.img`, bytes: SMALL_FILE_BYTES + i });
      for (let i = 0; i < 20; i += 1) files.push({ name: `core-${i}.img`, bytes: 100 + i });
      for (const f of files) writeFileSync(join(dir.path, f.name), Buffer.alloc(f.bytes, f.bytes % 251));
      const client = new MigrationClient({ baseUrl: recorder.url, token: 't' });
      const sent = await client.uploadFiles('m1', 1, dir.path, files);
      expect(sent.map((f) => f.name)).toEqual(files.map((f) => f.name));
      for (const f of sent) expect(recorder.received.get(f.name)).toBe(f.sha256);
      expect(sent[0]!.sha256).toBe(createHash('sha256').update(Buffer.alloc(files[0]!.bytes, files[0]!.bytes % 251)).digest('hex'));
      expect(recorder.peak.large).toBeLessThanOrEqual(UPLOAD_CONCURRENCY);
      expect(recorder.peak.small).toBeLessThanOrEqual(SMALL_UPLOAD_CONCURRENCY);
      expect(recorder.peak.small).toBeGreaterThan(UPLOAD_CONCURRENCY); // small files are not held behind the large ones' limit
    } finally {
      recorder.server.closeAllConnections();
      await new Promise((resolve) => recorder.server.close(resolve));
    }
  });

  it('cancels the uploads in flight and those not started when one is refused, and fails with that refusal', async () => {
    const held = new Set<string>();
    const cancelled: string[] = [];
    const started: string[] = [];
    const server = createServer((request, response) => {
      const name = decodeURIComponent(request.url!.split('/').pop()!);
      started.push(name);
      request.resume();
      if (name === 'bad.img') {
        request.on('end', () => response.writeHead(409, { 'content-type': 'application/json' }).end('{"error":"INVALID_TRANSITION","message":"migration m1 is aborted"}'));
        return;
      }
      // Never answered: only the client giving up ends these (else the call, and this test, hang).
      held.add(name);
      request.on('close', () => cancelled.push(name));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const files = [{ name: 'held-0.img', bytes: 1 }, { name: 'held-1.img', bytes: 1 }, { name: 'bad.img', bytes: 1 }];
      for (let i = 0; i < 30; i += 1) files.push({ name: `later-${i}.img`, bytes: 1 });
      for (const f of files) writeFileSync(join(dir.path, f.name), 'x');
      const client = new MigrationClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' });
      await expect(client.uploadFiles('m1', 1, dir.path, files)).rejects.toMatchObject({ code: 'INVALID_TRANSITION', message: expect.stringContaining('upload 1/bad.img') });
      // The server sees the cancelled requests close (bounded wait).
      for (let i = 0; i < 100 && cancelled.length < held.size; i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(cancelled.sort()).toEqual([...held].sort()); // every request left hanging was cancelled by the client
      expect(started.length).toBeLessThan(files.length); // and the files after the refusal were not sent
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('sends nothing when its round is cancelled already, and fails with the reason', async () => {
    const client = new MigrationClient({ baseUrl: 'http://127.0.0.1:9', token: 't' });
    const stop = new AbortController();
    stop.abort(new Error('the rewrite failed'));
    writeFileSync(join(dir.path, 'x.img'), 'x');
    await expect(client.uploadFiles('m1', 1, dir.path, [{ name: 'x.img', bytes: 1 }], stop.signal)).rejects.toThrow('the rewrite failed');
  });

  it('fails the whole call when one upload is refused, after the others settle', async () => {
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        if (request.url!.endsWith('bad.img')) response.writeHead(409, { 'content-type': 'application/json' }).end('{"error":"INVALID_TRANSITION","message":"migration m1 is aborted"}');
        else response.writeHead(201).end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      writeFileSync(join(dir.path, 'bad.img'), 'x');
      writeFileSync(join(dir.path, 'good.img'), 'y');
      const client = new MigrationClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' });
      await expect(client.uploadFiles('m1', 1, dir.path, [{ name: 'good.img', bytes: 1 }, { name: 'bad.img', bytes: 1 }])).rejects.toMatchObject({
        code: 'INVALID_TRANSITION',
        message: expect.stringContaining('upload 1/bad.img'),
      });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('migration client: a file still being written', () => {
  const dir = tempDir('shardform-upload-growing');
  afterAll(() => dir.remove());

  it('sends it as chunked HTTP and does not take the wait for its writer for a stalled link', async () => {
    const got: { chunked?: boolean; sha?: string } = {};
    const server = createServer((request, response) => {
      const hash = createHash('sha256');
      request.on('data', (chunk: Buffer) => hash.update(chunk));
      request.on('end', () => {
        Object.assign(got, { chunked: request.headers['transfer-encoding'] === 'chunked' && request.headers['content-length'] === undefined, sha: hash.digest('hex') });
        response.writeHead(201, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const path = join(dir.path, 'pages-1.img');
      writeFileSync(path, Buffer.alloc(1000, 1));
      const file = new GrowingFile(path, { chunkBytes: 512, pollMs: 1 });
      const client = new MigrationClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't', idleTimeoutMs: 40 });
      const upload = client.uploadGrowingFile('m1', 1, file);
      // The writer pauses for several idle timeouts: the upload waits with it.
      await new Promise((resolve) => setTimeout(resolve, 200));
      appendFileSync(path, Buffer.alloc(700, 2));
      file.finish();
      const whole = Buffer.concat([Buffer.alloc(1000, 1), Buffer.alloc(700, 2)]);
      expect(await upload).toEqual({ name: 'pages-1.img', bytes: 1700, sha256: createHash('sha256').update(whole).digest('hex') });
      expect(got).toEqual({ chunked: true, sha: createHash('sha256').update(whole).digest('hex') });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('breaks off when the link stalls with bytes to send', async () => {
    // Reads nothing and never answers: the socket fills up, the file's bytes wait to be sent.
    const server = createServer((request) => request.pause());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const path = join(dir.path, 'pages-2.img');
      writeFileSync(path, Buffer.alloc(32 << 20, 1));
      const file = new GrowingFile(path, { pollMs: 1 });
      const client = new MigrationClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't', idleTimeoutMs: 100 });
      await expect(client.uploadGrowingFile('m1', 1, file)).rejects.toMatchObject({ code: 'TRANSFER_FAILED', message: expect.stringContaining('upload 1/pages-2.img') });
      expect(file.bytesRead).toBeLessThan(32 << 20);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('breaks off, once the writer is done, an upload to a destination that went silent while it waited for the writer', async () => {
    // Takes the request and then nothing: a destination that died (no reset) while CRIU still wrote.
    const server = createServer((request) => request.pause());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const path = join(dir.path, 'pages-3.img');
      writeFileSync(path, Buffer.alloc(300, 3));
      const file = new GrowingFile(path, { pollMs: 1 });
      const client = new MigrationClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't', idleTimeoutMs: 50 });
      let settled = false;
      const upload = client.uploadGrowingFile('m1', 1, file);
      upload.then(() => (settled = true), () => (settled = true));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(settled).toBe(false); // waiting for the writer is no stalled link
      file.finish();
      await expect(upload).rejects.toMatchObject({ code: 'TRANSFER_FAILED', message: expect.stringContaining('upload 1/pages-3.img') });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('migration client errors', () => {
  it("takes a destination's code as it is, except the source's own journal conflict, which from a destination is a failed transfer", async () => {
    let code = 'REFUSED';
    const server = createServer((_request, response) => response.writeHead(409, { 'content-type': 'application/json' }).end(JSON.stringify({ statusCode: 409, error: code, message: 'no' })));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const client = new MigrationClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' });
      await expect(client.commit('m1')).rejects.toMatchObject({ code: 'REFUSED' });
      // The driver stops on JOURNAL_CONFLICT without aborting or resuming (another driver has the
      // migration): taken from a destination, it would leave the shard frozen until recovery.
      code = 'JOURNAL_CONFLICT';
      await expect(client.commit('m1')).rejects.toMatchObject({ code: 'TRANSFER_FAILED', message: expect.stringContaining('409 JOURNAL_CONFLICT no') });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('migration client restore and start', () => {
  it('waits for the unpack of a state archive beyond the control timeout, in proportion to its size', async () => {
    // A destination that answers a restore or start after 1 s, as one unpacking ~20 MiB would.
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => setTimeout(() => response.writeHead(200, { 'content-type': 'application/json' }).end('{"pid":77}'), 1000));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    try {
      const client = new MigrationClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't', requestTimeoutMs: 200 });
      const rounds = (archiveBytes?: number) => [
        // No memory image (a restart's start; the memory's share is tested below): the archive alone counts.
        { round: 1, parent: null, files: [{ name: 'core-1.img', bytes: 4096, sha256: 'a'.repeat(64) }, ...(archiveBytes !== undefined ? [{ name: 'state.tar', bytes: archiveBytes, sha256: 'b'.repeat(64) }] : [])] },
      ];
      // 100 MiB of state: 5 s allowed beyond the 200 ms.
      expect(client.restoreTimeoutMs(rounds(100 * 2 ** 20))).toBe(5200);
      expect(client.restoreTimeoutMs(rounds())).toBe(200);
      expect(await client.restore('m1', rounds(100 * 2 ** 20))).toEqual({ pid: 77, lazyPagesMs: 0 });
      expect(await client.start('m1', rounds(100 * 2 ** 20))).toBe(77);
      await expect(client.restore('m1', rounds())).rejects.toMatchObject({ code: 'TRANSFER_FAILED', message: expect.stringContaining('restore at') });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('waits as long as moving the memory of every round may take at 64 MiB/s, beyond the control timeout only for images past ~1.9 GiB, and never past the migration\'s deadline', () => {
    const client = new MigrationClient({ baseUrl: 'http://127.0.0.1:9', token: 't' });
    const GiB = 2 ** 30;
    const round = (n: number, pagesBytes: number, parent: number | null = null) => ({
      round: n,
      parent,
      files: [
        { name: `pages-${n}.img`, bytes: pagesBytes, sha256: 'a'.repeat(64) },
        { name: 'pagemap-1.img', bytes: pagesBytes / 512, sha256: 'c'.repeat(64) },
        { name: 'core-1.img', bytes: 4096, sha256: 'd'.repeat(64) },
      ],
    });
    // The 256 MiB test shards: the control timeout, as before.
    expect(client.restoreTimeoutMs([round(1, 256 * 2 ** 20)])).toBe(60_000);
    // 64 GiB: an eager restore copies it all, a lazy one answers once it is all in; at 64 MiB/s
    // that alone takes 1024 s, and the request waits 30 s more (it used to give up at 60 s).
    const big = client.restoreTimeoutMs([round(1, 64 * GiB)]);
    expect(big).toBe(1_054_000);
    expect(big).toBeGreaterThan(((64 * GiB) / (64 * 2 ** 20)) * 1000);
    // A pre-copy chain: the pages of every round (the restore reads the parents too).
    expect(client.restoreTimeoutMs([round(1, 32 * GiB), round(2, 32 * GiB, 1)])).toBe(1_054_000);
    // Plus the state archive's unpack, which comes first.
    const withArchive = [{ ...round(1, 64 * GiB), files: [...round(1, 64 * GiB).files, { name: 'state.tar', bytes: 200 * 2 ** 20, sha256: 'b'.repeat(64) }] }];
    expect(client.restoreTimeoutMs(withArchive)).toBe(1_064_000);
    // The migration's own time limit is the user's: 300 s left cuts the memory's share there, never below the control timeout.
    expect(client.restoreTimeoutMs([round(1, 64 * GiB)], 300_000)).toBe(300_000);
    expect(client.restoreTimeoutMs([round(1, 64 * GiB)], 5_000)).toBe(60_000);
  });

  it("takes the destination's lazy fill time only when it is a number of ms from 0 to a day (it only shortens the downtime reported)", async () => {
    let answer = '';
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end(answer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    try {
      const client = new MigrationClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' });
      const rounds = [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: 1, sha256: 'a'.repeat(64) }] }];
      const cases: [string, number][] = [
        ['{"pid":7,"lazyPagesMs":181.6}', 182],
        ['{"pid":7,"lazyPagesMs":0}', 0],
        ['{"pid":7}', 0],
        ['{"pid":7,"lazyPagesMs":-5}', 0],
        ['{"pid":7,"lazyPagesMs":"180"}', 0],
        ['{"pid":7,"lazyPagesMs":1e12}', 0],
      ];
      for (const [body, lazy] of cases) {
        answer = body;
        expect(await client.restore('m1', rounds)).toEqual({ pid: 7, lazyPagesMs: lazy });
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
