/**
 * The destination unpacks the state archive while it arrives (real GNU tar, temp directories), so
 * that the restore or start, the shard stopped, only swaps the copy in; every way the arrival can
 * go wrong (a broken archive, an upload broken off or sent again, an abort) leaves the restore
 * doing what it did before, and no copy behind.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildMigrationApp } from '../../../host-agent/api/migration-app';
import { migrationRoutes, type MigrationRouteDeps } from '../../../host-agent/api/migration-routes';
import { packState, unpackState } from '../../../host-agent/migration/state-archive';
import { tempDir } from '../../helpers/cli';
import { fakeDestination, prepareBody } from '../../helpers/migration-destination-fakes';

const AUTH = { authorization: 'Bearer sekret-token' };
const sha = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('migration routes: the state archive unpacked on arrival', () => {
  const dir = tempDir('shardform-state-arrival');
  let app: FastifyInstance;
  let dest: ReturnType<typeof fakeDestination>;
  /** The application's state directory on this host; the shard's is `<stateDirectory>/web-0`. */
  let stateDirectory: string;
  /** Per unpack at a restore or start: whether it ran tar (false: it swapped in what arrived unpacked). */
  let extracted: boolean[];
  let started: string[];

  beforeEach(async () => {
    const unique = Math.random().toString(36).slice(2);
    stateDirectory = join(dir.path, `state-${unique}`);
    dest = fakeDestination(join(dir.path, `images-${unique}`));
    extracted = [];
    started = [];
    const deps: MigrationRouteDeps = {
      ...dest.deps,
      unpack: async (archive, into, tag, arrivedSha256) => {
        const outcome = await unpackState(archive, into, tag, arrivedSha256);
        extracted.push(outcome.extracted);
        return outcome;
      },
      restarter: {
        handover: {
          stopHeld: async () => {},
          startHeld: async (shardId) => (started.push(shardId), { shardId, applicationId: 'web', state: 'held', pid: 777, restarts: 0, adopted: false, frozen: false, limits: {} }),
        },
      },
    };
    app = await buildMigrationApp({ token: dest.deps.token, plugins: [migrationRoutes(deps)] });
  });
  afterEach(async () => app.close());
  afterAll(() => dir.remove());

  const shardDir = () => join(stateDirectory, 'web-0');
  const incomingDir = (id: string) => `${shardDir()}.incoming-${id}`;

  const prepare = (id: string) =>
    app.inject({ method: 'POST', url: `/v1/migrations/${id}/prepare`, headers: AUTH, payload: { ...prepareBody('web-0'), shard: { ...prepareBody('web-0').shard, stateDirectory } } });

  const upload = (id: string, name: string, data: Buffer) =>
    app.inject({ method: 'PUT', url: `/v1/migrations/${id}/rounds/1/files/${name}`, headers: { ...AUTH, 'content-type': 'application/octet-stream', 'x-shardform-sha256': sha(data) }, payload: data });

  const roundOf = (...files: [string, Buffer][]) => [{ round: 1, parent: null, files: files.map(([name, data]) => ({ name, bytes: data.length, sha256: sha(data) })) }];

  let archives = 0;
  /** The archive a source packs of a state directory holding `files`. */
  async function archiveOf(files: Record<string, string>): Promise<Buffer> {
    archives += 1;
    const from = join(dir.path, `source-${archives}`);
    mkdirSync(from, { recursive: true });
    for (const [name, content] of Object.entries(files)) writeFileSync(join(from, name), content);
    await packState(from, join(dir.path, `source-${archives}.tar`));
    return readFileSync(join(dir.path, `source-${archives}.tar`));
  }

  it('restores a checkpointed shard without running tar at the restore: the copy made on arrival is swapped in, its record not in it', async () => {
    mkdirSync(shardDir(), { recursive: true });
    writeFileSync(join(shardDir(), 'counter'), '41');
    const tar = await archiveOf({ counter: '42', wal: 'w'.repeat(300_000) });
    const image = Buffer.from('pages');
    expect((await prepare('mig-1')).json()).toMatchObject({ sharedStateDirectory: false });
    expect((await upload('mig-1', 'pages-1.img', image)).statusCode).toBe(201);
    expect((await upload('mig-1', 'state.tar', tar)).statusCode).toBe(201);
    // Unpacked before the restore was asked for.
    expect(readFileSync(join(incomingDir('mig-1'), 'counter'), 'utf8')).toBe('42');
    const restored = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds: roundOf(['pages-1.img', image], ['state.tar', tar]) } });
    expect(restored.statusCode).toBe(200);
    expect(extracted).toEqual([false]);
    expect(readFileSync(join(shardDir(), 'counter'), 'utf8')).toBe('42');
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/commit', headers: AUTH, payload: { shardId: 'web-0' } })).statusCode).toBe(200);
    expect(readdirSync(stateDirectory)).toEqual(['web-0']);
    expect(readdirSync(shardDir()).sort()).toEqual(['counter', 'wal']);
  });

  it('starts a restart-strategy shard the same way, without running tar at the start', async () => {
    const tar = await archiveOf({ counter: '42' });
    await prepare('mig-1');
    expect((await upload('mig-1', 'state.tar', tar)).statusCode).toBe(201);
    const start = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/start', headers: AUTH, payload: { rounds: roundOf(['state.tar', tar]) } });
    expect(start.json()).toMatchObject({ state: 'restored', pid: 777 });
    expect(extracted).toEqual([false]);
    expect(started).toEqual(['web-0']);
    expect(readdirSync(shardDir()).filter((n) => !n.startsWith('.shardform-unpacked-'))).toEqual(['counter']);
  });

  it('takes the archive of the last upload when it was sent twice with another content', async () => {
    const first = await archiveOf({ counter: '42', only_in_first: 'x' });
    const second = await archiveOf({ counter: '43' });
    await prepare('mig-1');
    await upload('mig-1', 'state.tar', first);
    await upload('mig-1', 'state.tar', second);
    const start = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/start', headers: AUTH, payload: { rounds: roundOf(['state.tar', second]) } });
    expect(start.statusCode).toBe(200);
    expect(readFileSync(join(shardDir(), 'counter'), 'utf8')).toBe('43');
    expect(existsSync(join(shardDir(), 'only_in_first'))).toBe(false);
  });

  it('unpacks from the file at the start when a second upload of the archive, of another content, broke off: no copy of it is left to be used', async () => {
    const kept = await archiveOf({ counter: '42' });
    const other = await archiveOf({ counter: '43', big: 'b'.repeat(1 << 20) });
    await prepare('mig-1');
    expect((await upload('mig-1', 'state.tar', kept)).statusCode).toBe(201);
    const body = new PassThrough();
    const second = app.inject({ method: 'PUT', url: '/v1/migrations/mig-1/rounds/1/files/state.tar', headers: { ...AUTH, 'content-type': 'application/octet-stream', 'content-length': String(other.length) }, payload: body });
    body.write(other.subarray(0, 600_000));
    for (let i = 0; i < 400 && !existsSync(join(incomingDir('mig-1'), 'big')); i += 1) await sleep(5);
    expect(existsSync(join(incomingDir('mig-1'), 'counter'))).toBe(true);
    body.end(); // short of its content-length: broken off
    expect((await second).statusCode).toBe(422);
    expect(existsSync(incomingDir('mig-1'))).toBe(false);
    const start = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/start', headers: AUTH, payload: { rounds: roundOf(['state.tar', kept]) } });
    expect(start.statusCode).toBe(200);
    expect(extracted).toEqual([true]);
    expect(readFileSync(join(shardDir(), 'counter'), 'utf8')).toBe('42');
  });

  it('takes a broken archive (201) without a copy, and the restore fails as it always did', async () => {
    const junk = Buffer.alloc(64 * 1024, 7);
    const image = Buffer.from('pages');
    await prepare('mig-1');
    await upload('mig-1', 'pages-1.img', image);
    expect((await upload('mig-1', 'state.tar', junk)).statusCode).toBe(201);
    expect(existsSync(incomingDir('mig-1'))).toBe(false);
    const restored = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds: roundOf(['pages-1.img', image], ['state.tar', junk]) } });
    expect(restored.statusCode).toBe(422);
    expect(restored.json()).toMatchObject({ error: 'TRANSFER_FAILED', message: expect.stringContaining(`cannot unpack the state directory into ${shardDir()}`) });
    expect(dest.restorer.restored).toEqual([]);
  });

  it('an abort while the archive arrives stops its unpack and leaves no copy, also once the rest of the body came', async () => {
    const tar = await archiveOf({ counter: '42', big: 'b'.repeat(1 << 20) });
    await prepare('mig-1');
    const body = new PassThrough();
    const uploading = app.inject({ method: 'PUT', url: '/v1/migrations/mig-1/rounds/1/files/state.tar', headers: { ...AUTH, 'content-type': 'application/octet-stream', 'content-length': String(tar.length) }, payload: body });
    body.write(tar.subarray(0, 600_000));
    for (let i = 0; i < 400 && !existsSync(join(incomingDir('mig-1'), 'big')); i += 1) await sleep(5);
    expect(existsSync(join(incomingDir('mig-1'), 'big'))).toBe(true); // unpacking as it arrives
    const aborted = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'source gave up' } });
    expect(aborted.statusCode).toBe(200);
    expect(existsSync(incomingDir('mig-1'))).toBe(false);
    body.end(tar.subarray(600_000));
    expect((await uploading).statusCode).toBe(409);
    expect(readdirSync(stateDirectory)).toEqual([]);
  });

  it("unpacks nothing on arrival where this host sees the source's own state directory", async () => {
    mkdirSync(shardDir(), { recursive: true });
    writeFileSync(join(shardDir(), '.shardform-migrating-mig-1'), '');
    expect((await prepare('mig-1')).json()).toMatchObject({ sharedStateDirectory: true });
    expect((await upload('mig-1', 'state.tar', await archiveOf({ counter: '42' }))).statusCode).toBe(201);
    expect(readdirSync(stateDirectory)).toEqual(['web-0']);
  });
});
