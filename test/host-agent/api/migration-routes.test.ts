import { createHash } from 'node:crypto';
import http from 'node:http';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildMigrationApp } from '../../../host-agent/api/migration-app';
import { MAX_IMAGE_FILE_BYTES, migrationRoutes } from '../../../host-agent/api/migration-routes';
import { packState } from '../../../host-agent/migration/state-archive';
import { shardNotFound, shardNotRunning } from '../../../host-agent/errors';
import { tempDir } from '../../helpers/cli';
import { fakeDestination, prepareBody } from '../../helpers/migration-destination-fakes';

const AUTH = { authorization: 'Bearer sekret-token' };
const sha = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

describe('migration routes (destination agent)', () => {
  const dir = tempDir('shardform-migration-routes');
  let app: FastifyInstance;
  let dest: ReturnType<typeof fakeDestination>;
  let imagesRoot: string;

  beforeEach(async () => {
    imagesRoot = join(dir.path, `images-${Math.random().toString(36).slice(2)}`);
    dest = fakeDestination(imagesRoot, { cpuCores: 2, memoryBytes: 4 * 2 ** 30 }, { cpuCores: 1.5, memoryBytes: 1 << 30 });
    app = await buildMigrationApp({ token: dest.deps.token, plugins: [migrationRoutes(dest.deps)] });
  });
  afterEach(async () => app.close());
  afterAll(() => dir.remove());

  const upload = (id: string, round: number, name: string, data: Buffer, digest = sha(data)) =>
    app.inject({
      method: 'PUT',
      url: `/v1/migrations/${id}/rounds/${round}/files/${name}`,
      headers: { ...AUTH, 'content-type': 'application/octet-stream', 'x-shardform-sha256': digest },
      payload: data,
    });

  const prepare = (id = 'mig-1', body: object = prepareBody('web-0', 1 << 30)) =>
    app.inject({ method: 'POST', url: `/v1/migrations/${id}/prepare`, headers: AUTH, payload: { ...body, shard: { ...(body as { shard: object }).shard, limits: { cpuCores: 0.5, memoryBytes: 1 << 30 } } } });

  it('refuses requests without the fleet token or with a wrong one, changing nothing', async () => {
    const none = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', payload: prepareBody() });
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ error: 'UNAUTHORIZED', message: expect.stringContaining('missing bearer token') });
    const wrong = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', headers: { authorization: 'Bearer nope' }, payload: prepareBody() });
    expect(wrong.statusCode).toBe(401);
    expect((await upload('mig-1', 1, 'pages-1.img', Buffer.from('x'))).statusCode).toBe(404);
    expect(dest.handover.calls).toEqual([]);
    expect(dest.incoming.get('mig-1')).toBeUndefined();
  });

  it('refuses malformed requests naming the field, changing nothing', async () => {
    const badId = await app.inject({ method: 'POST', url: '/v1/migrations/Bad_Id/prepare', headers: AUTH, payload: prepareBody() });
    expect(badId.statusCode).toBe(400);
    expect(badId.json().errors[0]).toMatchObject({ field: 'id', value: 'Bad_Id' });
    const noShard = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', headers: AUTH, payload: { source: 'host-1' } });
    expect(noShard.statusCode).toBe(400);
    expect(noShard.json().message).toContain('shard');
    const badSize = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', headers: AUTH, payload: { ...prepareBody(), imageBytes: 'lots' } });
    expect(badSize.statusCode).toBe(400);
    expect(badSize.json().errors[0]).toMatchObject({ field: 'imageBytes', value: 'lots' });
    // Started with spawn, which throws on a NUL byte: the destination would take the shard and never run it.
    const nul = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', headers: AUTH, payload: { ...prepareBody(), shard: { ...prepareBody().shard, command: ['/bin/sleep', 'inf\u0000'] } } });
    expect(nul.statusCode).toBe(400);
    expect(nul.json().errors[0]).toMatchObject({ field: 'shard.command[1]', message: expect.stringContaining('contains a NUL byte'), value: 'inf\u0000' });
    const traversal = await app.inject({ method: 'PUT', url: '/v1/migrations/mig-1/rounds/1/files/..%2F..%2Fetc%2Fpasswd', headers: { ...AUTH, 'content-type': 'application/octet-stream', 'x-shardform-sha256': sha('x') }, payload: 'x' });
    expect(traversal.statusCode).toBe(400);
    expect(dest.handover.calls).toEqual([]);
  });

  it('answers 413 to an image file larger than the route takes, before writing anything', async () => {
    await prepare();
    const tooBig = await app.inject({
      method: 'PUT',
      url: '/v1/migrations/mig-1/rounds/1/files/pages-1.img',
      headers: { ...AUTH, 'content-type': 'application/octet-stream', 'content-length': String(MAX_IMAGE_FILE_BYTES + 1) },
      payload: 'x',
    });
    expect(tooBig.statusCode).toBe(413);
    expect(tooBig.json()).toMatchObject({ error: 'FST_ERR_CTP_BODY_TOO_LARGE' });
    expect(existsSync(join(imagesRoot, 'mig-1', '1'))).toBe(false);
  });

  it('prepares: reserves capacity and asks the keeper for a held cgroup', async () => {
    const response = await prepare();
    expect(response.statusCode).toBe(200);
    // chunkedUploads: this destination takes image files of no announced length (sent while CRIU writes them).
    expect(response.json()).toEqual({ migrationId: 'mig-1', hostId: 'host-2', shardId: 'web-0', state: 'prepared', sharedStateDirectory: false, chunkedUploads: true });
    expect(dest.handover.calls).toEqual(['prepareIncoming web-0']);
  });

  it("says at prepare whether it sees the source's own state directory (the source's mark for this migration is in it), and a repeated prepare says the same", async () => {
    const stateDirectory = join(dir.path, `state-${Math.random().toString(36).slice(2)}`);
    const body = (shardId: string) => ({ ...prepareBody(shardId), shard: { ...prepareBody(shardId).shard, stateDirectory } });
    mkdirSync(join(stateDirectory, 'web-0'), { recursive: true });
    writeFileSync(join(stateDirectory, 'web-0', '.shardform-migrating-mig-1'), '');
    writeFileSync(join(stateDirectory, 'web-0', '.shardform-migrating-mig-0'), ''); // another migration's
    expect((await prepare('mig-1', body('web-0'))).json()).toMatchObject({ state: 'prepared', sharedStateDirectory: true });
    expect((await prepare('mig-1', body('web-0'))).json()).toMatchObject({ state: 'prepared', sharedStateDirectory: true });
    // Room for one shard at a time on this host.
    const abort = (id: string, shardId: string) => app.inject({ method: 'POST', url: `/v1/migrations/${id}/abort`, headers: AUTH, payload: { shardId, reason: 'next' } });
    await abort('mig-1', 'web-0');
    expect((await prepare('mig-2', body('web-1'))).json()).toMatchObject({ state: 'prepared', sharedStateDirectory: false });
    await abort('mig-2', 'web-1');
    mkdirSync(join(stateDirectory, 'web-3'), { recursive: true });
    writeFileSync(join(stateDirectory, 'web-3', '.shardform-migrating-mig-0'), '');
    expect((await prepare('mig-3', body('web-3'))).json()).toMatchObject({ state: 'prepared', sharedStateDirectory: false });
  });

  it('refuses prepare with the reason when the shard does not fit, and changes nothing', async () => {
    const response = await app.inject({ method: 'POST', url: '/v1/migrations/mig-9/prepare', headers: AUTH, payload: prepareBody('web-9') });
    expect(response.statusCode).toBe(409);
    expect(response.json()).toEqual({ statusCode: 409, error: 'REFUSED', message: 'out of capacity: 0.5 cpu cores free, shard web-9 needs 1' });
    expect(dest.handover.calls).toEqual([]);
    expect(dest.incoming.get('mig-9')).toBeUndefined();
  });

  it('counts capacity reserved by migrations still arriving', async () => {
    expect((await prepare('mig-1')).statusCode).toBe(200);
    const second = await app.inject({
      method: 'POST',
      url: '/v1/migrations/mig-2/prepare',
      headers: AUTH,
      payload: { ...prepareBody('web-1'), shard: { ...prepareBody('web-1').shard, limits: { cpuCores: 0.5, memoryBytes: 1 << 20 } } },
    });
    expect(second.json()).toMatchObject({ error: 'REFUSED', message: 'out of capacity: 0 cpu cores free, shard web-1 needs 0.5' });
  });

  it('refuses prepare when the image will not fit on this host\'s disk, counting the images still arriving', async () => {
    const GiB = 2 ** 30;
    const tight = fakeDestination(join(dir.path, 'tight'), { cpuCores: 8, memoryBytes: 64 * GiB }, { cpuCores: 0, memoryBytes: 0 }, 3 * GiB);
    const tightApp = await buildMigrationApp({ token: tight.deps.token, plugins: [migrationRoutes(tight.deps)] });
    try {
      const first = await tightApp.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', headers: AUTH, payload: { ...prepareBody('web-0'), imageBytes: 2 * GiB } });
      expect(first.statusCode).toBe(200);
      const second = await tightApp.inject({ method: 'POST', url: '/v1/migrations/mig-2/prepare', headers: AUTH, payload: { ...prepareBody('web-1'), imageBytes: GiB } });
      expect(second.statusCode).toBe(409);
      expect(second.json()).toMatchObject({
        error: 'REFUSED',
        message: `not enough disk under ${join(dir.path, 'tight')} for the image of shard web-1: ~1088 MiB needed (1024 MiB of memory + 64 MiB), 1024 MiB free`,
      });
      expect(tight.incoming.get('mig-2')).toBeUndefined();
      expect(tight.handover.calls).toEqual(['prepareIncoming web-0']);
      // Without a size (an older source) the disk is not checked.
      expect((await tightApp.inject({ method: 'POST', url: '/v1/migrations/mig-3/prepare', headers: AUTH, payload: prepareBody('web-2') })).statusCode).toBe(200);
    } finally {
      await tightApp.close();
    }
  });

  it("counts the state directory's archive on its disk only when it does not see the source's own directory, reserves what it counted, and checks an older source's image as before", async () => {
    const GiB = 2 ** 30;
    const root = join(dir.path, `state-disk-${Math.random().toString(36).slice(2)}`);
    const stateDirectory = join(root, 'state');
    const tight = fakeDestination(join(root, 'images'), { cpuCores: 8, memoryBytes: 64 * GiB }, { cpuCores: 0, memoryBytes: 0 }, 4 * GiB);
    const tightApp = await buildMigrationApp({ token: tight.deps.token, plugins: [migrationRoutes(tight.deps)] });
    const prepareOn = (id: string, shardId: string, sizes: { imageBytes: number; stateBytes?: number }) =>
      tightApp.inject({ method: 'POST', url: `/v1/migrations/${id}/prepare`, headers: AUTH, payload: { ...prepareBody(shardId), shard: { ...prepareBody(shardId).shard, stateDirectory }, ...sizes } });
    try {
      // Shared (the source's mark is there): 3 GiB of state on the source's NFS take nothing here.
      mkdirSync(join(stateDirectory, 'web-0'), { recursive: true });
      writeFileSync(join(stateDirectory, 'web-0', '.shardform-migrating-mig-1'), '');
      expect((await prepareOn('mig-1', 'web-0', { imageBytes: GiB, stateBytes: 3 * GiB })).json()).toMatchObject({ state: 'prepared', sharedStateDirectory: true });
      expect(tight.incoming.get('mig-1')?.diskBytes).toBe(GiB);
      // Not shared: the archive arrives and is counted, beside the 1 GiB the first one reserved.
      const own = await prepareOn('mig-2', 'web-1', { imageBytes: GiB / 2, stateBytes: 3 * GiB });
      expect(own.statusCode).toBe(409);
      expect(own.json()).toMatchObject({
        error: 'REFUSED',
        message: `not enough disk under ${join(root, 'images')} for the image of shard web-1: ~3648 MiB needed (512 MiB of memory + 3072 MiB of state directory + 64 MiB), 3072 MiB free`,
      });
      expect(tight.incoming.get('mig-2')).toBeUndefined();
      expect((await prepareOn('mig-3', 'web-2', { imageBytes: GiB / 2, stateBytes: GiB })).json()).toMatchObject({ state: 'prepared', sharedStateDirectory: false });
      expect(tight.incoming.get('mig-3')?.diskBytes).toBe(1.5 * GiB);
      // An older source sends no stateBytes: its imageBytes held the state, checked whole, mark or not.
      mkdirSync(join(stateDirectory, 'web-3'), { recursive: true });
      writeFileSync(join(stateDirectory, 'web-3', '.shardform-migrating-mig-4'), '');
      const old = await prepareOn('mig-4', 'web-3', { imageBytes: 1.5 * GiB });
      expect(old.json()).toMatchObject({ error: 'REFUSED', message: expect.stringContaining('~1600 MiB needed (1536 MiB of memory + 64 MiB), 1536 MiB free') });
      expect((await prepareOn('mig-5', 'web-3', { imageBytes: GiB })).json()).toMatchObject({ state: 'prepared', sharedStateDirectory: false });
      expect(tight.incoming.get('mig-5')?.diskBytes).toBe(GiB);
      expect(tight.handover.calls).toEqual(['prepareIncoming web-0', 'prepareIncoming web-2', 'prepareIncoming web-3']);
    } finally {
      await tightApp.close();
    }
  });

  it('refuses a stateBytes that is not a byte count, naming the field and the value, holding nothing', async () => {
    for (const stateBytes of [-1, 'lots', 2 ** 60]) {
      const response = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', headers: AUTH, payload: { ...prepareBody(), imageBytes: 1 << 20, stateBytes } });
      expect(response.statusCode).toBe(400);
      expect(response.json().errors[0]).toMatchObject({ field: 'stateBytes', value: stateBytes });
    }
    expect(dest.handover.calls).toEqual([]);
    expect(dest.incoming.get('mig-1')).toBeUndefined();
    expect(dest.incoming.status('mig-1')).toBeUndefined();
  });

  it('stores an image file whose sha256 matches, and rejects a corrupted one without keeping it', async () => {
    await prepare();
    const data = Buffer.alloc(3 << 20, 7);
    const ok = await upload('mig-1', 1, 'pages-1.img', data);
    expect(ok.statusCode).toBe(201);
    expect(ok.json()).toEqual({ round: 1, name: 'pages-1.img', bytes: data.length, sha256: sha(data) });
    const path = join(dest.incoming.get('mig-1')!.dir, '1', 'pages-1.img');
    expect(readFileSync(path).equals(data)).toBe(true);

    const corrupted = Buffer.from(data);
    corrupted[12345] = 8;
    const bad = await upload('mig-1', 2, 'pages-1.img', corrupted, sha(data));
    expect(bad.statusCode).toBe(422);
    expect(bad.json().error).toBe('TRANSFER_FAILED');
    expect(bad.json().message).toContain(`sent as ${data.length} bytes sha256 ${sha(data)}`);
    expect(existsSync(join(dest.incoming.get('mig-1')!.dir, '2', 'pages-1.img'))).toBe(false);
    expect(existsSync(join(dest.incoming.get('mig-1')!.dir, '2', 'pages-1.img.partial'))).toBe(false);
  });

  it('restores only when every file of every round arrived intact, linking rounds to their parents', async () => {
    await prepare();
    const a = Buffer.from('round one pages');
    const b = Buffer.from('final pages');
    await upload('mig-1', 1, 'pages-1.img', a);
    await upload('mig-1', 2, 'pages-1.img', b);
    const rounds = [
      { round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: a.length, sha256: sha(a) }] },
      { round: 2, parent: 1, files: [{ name: 'pages-1.img', bytes: b.length, sha256: sha(b) }, { name: 'core-1.img', bytes: 3, sha256: sha('abc') }] },
    ];
    const missing = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds } });
    expect(missing.statusCode).toBe(422);
    expect(missing.json().message).toBe('round 2: image file core-1.img never arrived');
    expect(dest.restorer.restored).toEqual([]);

    await upload('mig-1', 2, 'core-1.img', Buffer.from('abc'));
    // A lazy restore: the shard ran here 140 ms, its memory filled behind it, before the answer.
    dest.restorer.lazyPagesMs = 140;
    const restored = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds } });
    expect(restored.statusCode).toBe(200);
    expect(restored.json()).toEqual({ migrationId: 'mig-1', state: 'restored', pid: 4242, lazyPagesMs: 140 });
    const migrationDir = dest.incoming.get('mig-1')!.dir;
    expect(dest.restorer.restored).toEqual([{ dir: join(migrationDir, '2'), procsFiles: ['/fake/web-0/cgroup.procs'] }]);
    expect(readlinkSync(join(migrationDir, '2', 'parent'))).toBe('../1');

    const commit = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/commit', headers: AUTH, payload: { shardId: 'web-0' } });
    expect(commit.json()).toEqual({ migrationId: 'mig-1', state: 'committed', pid: 4242 });
    expect(dest.handover.calls).toEqual(['prepareIncoming web-0', 'adopt web-0']);
    expect(existsSync(migrationDir)).toBe(false);

    const lateAbort = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'late' } });
    expect(lateAbort.statusCode).toBe(409);
    expect(dest.handover.calls).not.toContain('discard web-0');
  });

  it('refuses a new prepare or a restore while this agent does not hold its host claim, holding nothing, and takes them once it does', async () => {
    let notActing: string | undefined = 'the agent of host host-2 does not hold its host claim now';
    await app.close();
    app = await buildMigrationApp({ token: dest.deps.token, plugins: [migrationRoutes({ ...dest.deps, notActingReason: () => notActing })] });

    const refused = await prepare();
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toEqual({ statusCode: 409, error: 'REFUSED', message: 'the agent of host host-2 does not hold its host claim now' });
    expect(dest.handover.calls).toEqual([]);
    expect(dest.incoming.get('mig-1')).toBeUndefined();

    notActing = undefined;
    expect((await prepare()).statusCode).toBe(200);
    const pages = Buffer.from('pages');
    await upload('mig-1', 1, 'pages-1.img', pages);
    const rounds = [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: pages.length, sha256: sha(pages) }] }];
    // Lost between the prepare and the restore: the restore is refused (the source aborts and resumes).
    notActing = 'the agent of host host-2 does not hold its host claim now';
    expect((await prepare()).statusCode).toBe(200); // a repeated prepare of what it holds already still answers
    const restore = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds } });
    expect(restore.statusCode).toBe(409);
    expect(restore.json().error).toBe('REFUSED');
    expect(dest.restorer.restored).toEqual([]);
    expect(dest.handover.calls).toEqual(['prepareIncoming web-0']);

    notActing = undefined;
    const again = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds } });
    expect(again.statusCode).toBe(200);
    expect(dest.restorer.restored).toHaveLength(1);
  });

  it('drops a committed migration from memory, and still answers a retried commit as committed and refuses an abort that would kill its shard', async () => {
    await prepare();
    const data = Buffer.from('pages');
    await upload('mig-1', 1, 'pages-1.img', data);
    await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds: [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: data.length, sha256: sha(data) }] }] } });
    const commit = () => app.inject({ method: 'POST', url: '/v1/migrations/mig-1/commit', headers: AUTH, payload: { shardId: 'web-0' } });
    expect((await commit()).json()).toEqual({ migrationId: 'mig-1', state: 'committed', pid: 4242 });
    expect(dest.incoming.get('mig-1')).toBeUndefined();
    expect(dest.incoming.status('mig-1')).toEqual({ shardId: 'web-0', state: 'committed', pid: 4242 });

    expect((await commit()).json()).toEqual({ migrationId: 'mig-1', state: 'committed', pid: 4242 });
    const abort = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'late' } });
    expect(abort.statusCode).toBe(409);
    expect(abort.json()).toMatchObject({ error: 'INVALID_TRANSITION', message: 'migration mig-1 is committed here; it cannot be aborted' });
    const other = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/commit', headers: AUTH, payload: { shardId: 'web-5' } });
    expect(other.json()).toMatchObject({ error: 'INVALID_MIGRATION', message: 'migration mig-1 brings shard web-0, not web-5' });
    const again = await prepare('mig-1');
    expect(again.json()).toMatchObject({ error: 'INVALID_TRANSITION', message: 'migration mig-1 is committed here; it cannot be prepared again' });
    // The retries touched nothing: one adopt, no discard.
    expect(dest.handover.calls).toEqual(['prepareIncoming web-0', 'adopt web-0']);
  });

  it('commits a migration it forgot (agent restart after the restore) by supervising the shard it holds', async () => {
    const commit = await app.inject({ method: 'POST', url: '/v1/migrations/mig-9/commit', headers: AUTH, payload: { shardId: 'web-0' } });
    expect(commit.json()).toEqual({ migrationId: 'mig-9', state: 'committed', pid: 4242 });
    expect(dest.handover.calls).toEqual(['adopt web-0']);
    const blind = await app.inject({ method: 'POST', url: '/v1/migrations/mig-8/commit', headers: AUTH, payload: {} });
    expect(blind.statusCode).toBe(404);
  });

  it('commits a restored shard whose run is gone (host rebooted, or it ended while held) by handing it to reconcile, not by failing every retry', async () => {
    await prepare();
    const data = Buffer.from('pages');
    await upload('mig-1', 1, 'pages-1.img', data);
    await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds: [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: data.length, sha256: sha(data) }] }] } });
    dest.handover.adoptFails = shardNotRunning('web-0', 'no process whose innermost NSpid is 1 in its cgroup');
    const commit = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/commit', headers: AUTH, payload: { shardId: 'web-0' } });
    expect(commit.statusCode).toBe(200);
    expect(commit.json()).toEqual({ migrationId: 'mig-1', state: 'committed', pid: null });
    expect(dest.handover.calls.slice(-2)).toEqual(['adopt web-0', 'discard web-0']);
    // The same after an agent restart that forgot the migration (the cgroup gone with the boot).
    dest.handover.adoptFails = shardNotFound('web-3', '/sys/fs/cgroup/shardform/host-2/web-3');
    const forgotten = await app.inject({ method: 'POST', url: '/v1/migrations/mig-3/commit', headers: AUTH, payload: { shardId: 'web-3' } });
    expect(forgotten.json()).toEqual({ migrationId: 'mig-3', state: 'committed', pid: null });
    expect(dest.handover.calls.slice(-2)).toEqual(['adopt web-3', 'discard web-3']);
    // Any other failure still fails the commit (the source retries).
    dest.handover.adoptFails = new Error('EIO');
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-4/commit', headers: AUTH, payload: { shardId: 'web-4' } })).statusCode).toBe(500);
    expect(dest.handover.calls).not.toContain('discard web-4');
  });

  it('removes the images a migration it forgot (agent restart) had received, at its commit or abort', async () => {
    for (const id of ['mig-5', 'mig-6']) {
      mkdirSync(join(dest.incoming.dirOf(id), '1'), { recursive: true });
      writeFileSync(join(dest.incoming.dirOf(id), '1', 'pages-1.img'), 'pages of a big shard');
    }
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-5/commit', headers: AUTH, payload: { shardId: 'web-5' } })).statusCode).toBe(200);
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-6/abort', headers: AUTH, payload: { shardId: 'web-6', reason: 'agent restarted' } })).statusCode).toBe(200);
    expect(existsSync(dest.incoming.dirOf('mig-5'))).toBe(false);
    expect(existsSync(dest.incoming.dirOf('mig-6'))).toBe(false);
  });

  /** The destination agent restarted: its incoming migrations forgotten, its images directory as it was. */
  async function restartDestination(): Promise<void> {
    await app.close();
    dest = fakeDestination(imagesRoot, { cpuCores: 8, memoryBytes: 64 * 2 ** 30 });
    app = await buildMigrationApp({ token: dest.deps.token, plugins: [migrationRoutes(dest.deps)] });
  }

  /** A shard's state directory under a temp application state directory, with `counter` in it. */
  function stateDir(stateDirectory: string, name: string, counter: string, mark?: string): string {
    const path = join(stateDirectory, name);
    mkdirSync(path, { recursive: true });
    writeFileSync(join(path, 'counter'), counter);
    if (mark) writeFileSync(join(path, `.shardform-unpacked-${mark}`), '');
    return path;
  }

  it('after a restart, tidies what an unpack left beside the state directory at the commit or abort of a migration it forgot, never the state itself', async () => {
    await restartDestination();
    const stateDirectory = join(dir.path, `state-${Math.random().toString(36).slice(2)}`);
    const body = (shardId: string) => ({ ...prepareBody(shardId), shard: { ...prepareBody(shardId).shard, stateDirectory } });
    expect((await prepare('mig-1', body('web-0'))).statusCode).toBe(200);
    expect((await prepare('mig-2', body('web-1'))).statusCode).toBe(200);
    // mig-1 stopped after its copy was swapped in (still marked), before the old one was removed;
    // mig-2 stopped while extracting, beside a state directory that is not its copy.
    stateDir(stateDirectory, 'web-0', '42', 'mig-1');
    stateDir(stateDirectory, 'web-0.previous-mig-1', '41');
    stateDir(stateDirectory, 'web-1', '41');
    stateDir(stateDirectory, 'web-1.previous-mig-2', '40');
    stateDir(stateDirectory, 'web-1.incoming-mig-2', 'half');
    await restartDestination();

    const commit = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/commit', headers: AUTH, payload: { shardId: 'web-0' } });
    expect(commit.json()).toEqual({ migrationId: 'mig-1', state: 'committed', pid: 4242 });
    const abort = await app.inject({ method: 'POST', url: '/v1/migrations/mig-2/abort', headers: AUTH, payload: { shardId: 'web-1', reason: 'agent restarted' } });
    expect(abort.json()).toEqual({ migrationId: 'mig-2', state: 'aborted' });
    expect(readdirSync(stateDirectory).sort()).toEqual(['web-0', 'web-1', 'web-1.previous-mig-2']);
    expect(readdirSync(join(stateDirectory, 'web-0'))).toEqual(['counter']);
    expect(readFileSync(join(stateDirectory, 'web-0', 'counter'), 'utf8')).toBe('42');
    expect(readFileSync(join(stateDirectory, 'web-1', 'counter'), 'utf8')).toBe('41');
    // Unmarked at web-1, the old directory may be the real state: only the source takes it back.
    expect(readFileSync(join(stateDirectory, 'web-1.previous-mig-2', 'counter'), 'utf8')).toBe('40');
    expect(existsSync(dest.incoming.dirOf('mig-1'))).toBe(false);
    expect(existsSync(dest.incoming.dirOf('mig-2'))).toBe(false);
  });

  it('after a restart, tidies nothing on a record that names another shard than the request, or that it cannot read, and still answers', async () => {
    await restartDestination();
    const stateDirectory = join(dir.path, `state-${Math.random().toString(36).slice(2)}`);
    expect((await prepare('mig-3', { ...prepareBody('web-3'), shard: { ...prepareBody('web-3').shard, stateDirectory } })).statusCode).toBe(200);
    stateDir(stateDirectory, 'web-3.incoming-mig-3', 'half');
    mkdirSync(dest.incoming.dirOf('mig-4'), { recursive: true });
    writeFileSync(join(dest.incoming.dirOf('mig-4'), 'migration.json'), '{"version":1,"migrationId":"mig-4","shardId":"web-4"');
    stateDir(stateDirectory, 'web-4.incoming-mig-4', 'half');
    await restartDestination();

    const abort = await app.inject({ method: 'POST', url: '/v1/migrations/mig-3/abort', headers: AUTH, payload: { shardId: 'web-9', reason: 'confused' } });
    expect(abort.json()).toEqual({ migrationId: 'mig-3', state: 'aborted' });
    const commit = await app.inject({ method: 'POST', url: '/v1/migrations/mig-4/commit', headers: AUTH, payload: { shardId: 'web-4' } });
    expect(commit.json()).toEqual({ migrationId: 'mig-4', state: 'committed', pid: 4242 });
    expect(readdirSync(stateDirectory).sort()).toEqual(['web-3.incoming-mig-3', 'web-4.incoming-mig-4']);
    expect(dest.handover.calls).toEqual(['discard web-9', 'adopt web-4']);
    expect(existsSync(dest.incoming.dirOf('mig-3'))).toBe(false);
    expect(existsSync(dest.incoming.dirOf('mig-4'))).toBe(false);
  });

  /** Rebuilds the app with a restart-strategy keeper whose held starts (run 777) and unpacks are the test's. */
  async function withRestarter(onStart: (shardId: string, opts?: { keepHeld?: boolean }) => void, unpack: (archive: string, into: string) => Promise<void>): Promise<void> {
    await app.close();
    app = await buildMigrationApp({
      token: dest.deps.token,
      plugins: [
        migrationRoutes({
          ...dest.deps,
          restarter: {
            handover: {
              stopHeld: async () => {},
              startHeld: async (shardId, _desired, opts) => (onStart(shardId, opts), { shardId, applicationId: 'web', state: 'held', pid: 777, restarts: 0, adopted: false, frozen: false, limits: {} }),
            },
          },
          unpack,
          // The fake unpack's state directory (/var/lib/web) is not one to make copies beside.
          unpackOnArrival: false,
        }),
      ],
    });
  }

  it('starts a restart-strategy shard only from an intact state archive, held until the commit adopts it', async () => {
    const started: { shardId: string; keepHeld?: boolean }[] = [];
    const unpacked: { archive: string; dir: string }[] = [];
    await withRestarter(
      (shardId, opts) => started.push({ shardId, ...opts }),
      async (archive, into) => void unpacked.push({ archive, dir: into }),
    );
    await prepare();
    const tar = Buffer.from('a tar of the state directory');
    const rounds = [{ round: 1, parent: null, files: [{ name: 'state.tar', bytes: tar.length, sha256: sha(tar) }] }];
    const early = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/start', headers: AUTH, payload: { rounds } });
    expect(early.statusCode).toBe(422);
    expect(early.json().message).toBe('round 1: image file state.tar never arrived');
    expect(started).toEqual([]);

    await upload('mig-1', 1, 'state.tar', tar);
    const ok = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/start', headers: AUTH, payload: { rounds } });
    expect(ok.json()).toEqual({ migrationId: 'mig-1', state: 'restored', pid: 777 });
    expect(unpacked).toEqual([{ archive: join(dest.incoming.get('mig-1')!.dir, '1', 'state.tar'), dir: '/var/lib/web/web-0' }]);
    // Held: until the commit the assignment names the source, and reconcile here must not stop it.
    expect(started).toEqual([{ shardId: 'web-0', keepHeld: true }]);
    expect(dest.handover.calls).toEqual(['prepareIncoming web-0']);
    const commit = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/commit', headers: AUTH, payload: { shardId: 'web-0' } });
    expect(commit.json()).toEqual({ migrationId: 'mig-1', state: 'committed', pid: 4242 });
    expect(dest.handover.calls).toEqual(['prepareIncoming web-0', 'adopt web-0']);
  });

  it("starts a restart-strategy shard without an archive only where prepare found the source's mark: this host sees the source's own state directory", async () => {
    const started: string[] = [];
    const unpacked: string[] = [];
    await withRestarter(
      (shardId) => started.push(shardId),
      async (archive) => void unpacked.push(archive),
    );
    const stateDirectory = join(dir.path, `state-${Math.random().toString(36).slice(2)}`);
    const body = (shardId: string) => ({ ...prepareBody(shardId), shard: { ...prepareBody(shardId).shard, stateDirectory, limits: { cpuCores: 0.5, memoryBytes: 1 << 30 } } });
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', headers: AUTH, payload: body('web-0') })).json()).toMatchObject({ sharedStateDirectory: false });
    const refused = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/start', headers: AUTH, payload: { rounds: [] } });
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toMatchObject({ error: 'INVALID_MIGRATION' });
    expect(refused.json().message).toBe("no round with a state.tar was sent, and this host does not see the source's state directory of shard web-0");
    expect(started).toEqual([]);
    await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'next' } });

    mkdirSync(join(stateDirectory, 'web-1'), { recursive: true });
    writeFileSync(join(stateDirectory, 'web-1', '.shardform-migrating-mig-2'), '');
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-2/prepare', headers: AUTH, payload: body('web-1') })).json()).toMatchObject({ sharedStateDirectory: true });
    const ok = await app.inject({ method: 'POST', url: '/v1/migrations/mig-2/start', headers: AUTH, payload: { rounds: [] } });
    expect(ok.json()).toEqual({ migrationId: 'mig-2', state: 'restored', pid: 777 });
    expect(started).toEqual(['web-1']);
    expect(unpacked).toEqual([]);
  });

  it('an abort that arrives while the state is being unpacked or started waits for it, then destroys whatever started: never a run after the abort answered', async () => {
    const events: string[] = [];
    let finishUnpack: (() => void) | undefined;
    const discard = dest.handover.discard.bind(dest.handover);
    dest.handover.discard = async (shardId: string) => (events.push(`discard ${shardId}`), discard(shardId));
    await withRestarter(
      (shardId) => events.push(`startHeld ${shardId}`),
      () => new Promise<void>((resolve) => (finishUnpack = () => (events.push('unpacked'), resolve()))),
    );
    await prepare();
    const tar = Buffer.from('a tar of the state directory');
    await upload('mig-1', 1, 'state.tar', tar);
    const rounds = [{ round: 1, parent: null, files: [{ name: 'state.tar', bytes: tar.length, sha256: sha(tar) }] }];
    const start = app.inject({ method: 'POST', url: '/v1/migrations/mig-1/start', headers: AUTH, payload: { rounds } });
    for (let i = 0; i < 100 && !finishUnpack; i += 1) await new Promise((r) => setImmediate(r));
    const abort = app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'start timed out' } }).then((r) => (events.push('abort answered'), r));
    for (let i = 0; i < 20; i += 1) await new Promise((r) => setImmediate(r));
    expect(events).toEqual([]); // the abort waits for the unpack in flight
    finishUnpack!();
    const [started, aborted] = await Promise.all([start, abort]);
    expect(aborted.statusCode).toBe(200);
    expect(started.statusCode).toBe(409);
    expect(started.json().message).toBe('migration mig-1 was aborted while its state directory was unpacked; nothing was started');
    expect(events).toEqual(['unpacked', 'discard web-0', 'abort answered']);
  });

  it('an abort that arrives while prepare makes the held cgroup waits for it, then removes it: nothing prepared outlives the abort', async () => {
    let finishPrepare: (() => void) | undefined;
    const prepareIncoming = dest.handover.prepareIncoming.bind(dest.handover);
    dest.handover.prepareIncoming = (desired) => new Promise((resolve) => (finishPrepare = () => resolve(prepareIncoming(desired))));
    const prepared = prepare();
    // Prepare first looks for the source's mark on disk (a thread-pool round trip, slow on a busy
    // machine): wait in time, not in event-loop turns, until it makes the held cgroup.
    for (let i = 0; i < 1000 && !finishPrepare; i += 1) await new Promise((r) => setTimeout(r, 5));
    expect(finishPrepare).toBeDefined();
    const abort = app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'prepare timed out' } }).then((r) => (dest.handover.calls.push('abort answered'), r));
    for (let i = 0; i < 20; i += 1) await new Promise((r) => setImmediate(r));
    expect(dest.handover.calls).toEqual([]);
    finishPrepare!();
    const [late, aborted] = await Promise.all([prepared, abort]);
    expect(aborted.statusCode).toBe(200);
    expect(late.statusCode).toBe(409);
    expect(late.json().message).toBe('migration mig-1 was aborted while it was prepared; what it made is removed');
    expect(dest.handover.calls).toEqual(['prepareIncoming web-0', 'discard web-0', 'abort answered']);
    expect(existsSync(dest.incoming.dirOf('mig-1'))).toBe(false);
  });

  it('takes an image file of no announced length (sent while CRIU wrote it), and checks its size and sha256 at the round\'s verify', async () => {
    await prepare();
    const { PassThrough } = await import('node:stream');
    const data = Buffer.alloc(300_000, 9);
    const send = async (name: string) => {
      const body = new PassThrough();
      const uploading = app.inject({ method: 'PUT', url: `/v1/migrations/mig-1/rounds/1/files/${name}`, headers: { ...AUTH, 'content-type': 'application/octet-stream' }, payload: body });
      body.write(data.subarray(0, 1000));
      body.end(data.subarray(1000));
      return uploading;
    };
    const arrived = await send('pages-1.img');
    expect(arrived.statusCode).toBe(201);
    expect(arrived.json()).toEqual({ round: 1, name: 'pages-1.img', bytes: data.length, sha256: sha(data) });
    const verify = (sha256: string, bytes = data.length) =>
      app.inject({ method: 'POST', url: '/v1/migrations/mig-1/rounds/1/verify', headers: AUTH, payload: { files: [{ name: 'pages-1.img', bytes, sha256 }] } });
    // What the source hashed differs from what arrived (changed on the way): refused, naming the file and both figures.
    const wrong = await verify(sha(Buffer.from('other')));
    expect(wrong.statusCode).toBeGreaterThanOrEqual(400);
    expect(wrong.json()).toMatchObject({ error: 'TRANSFER_FAILED', message: expect.stringContaining(`image file pages-1.img arrived as ${data.length} bytes sha256 ${sha(data)}`) });
    expect((await verify(sha(data), data.length + 1)).json()).toMatchObject({ error: 'TRANSFER_FAILED' });
    expect((await verify(sha(data))).statusCode).toBe(200);
  });

  it('an image file that was still arriving when the abort came is not kept, even where it made the directory again', async () => {
    await prepare();
    const data = Buffer.alloc(1 << 20, 3);
    // The body arrives slowly: the abort answers while it streams.
    const { PassThrough } = await import('node:stream');
    const body = new PassThrough();
    const uploading = app.inject({
      method: 'PUT',
      url: '/v1/migrations/mig-1/rounds/1/files/pages-1.img',
      headers: { ...AUTH, 'content-type': 'application/octet-stream', 'content-length': String(data.length), 'x-shardform-sha256': sha(data) },
      payload: body,
    });
    body.write(data.subarray(0, 1000));
    const partial = join(dest.incoming.dirOf('mig-1'), '1', 'pages-1.img.partial');
    for (let i = 0; i < 200 && !existsSync(partial); i += 1) await new Promise((r) => setTimeout(r, 5));
    expect(existsSync(partial)).toBe(true);
    const aborted = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'source gave up' } });
    expect(aborted.statusCode).toBe(200);
    body.end(data.subarray(1000));
    const late = await uploading;
    expect(late.statusCode).toBe(409);
    expect(late.json().message).toBe('migration mig-1 was aborted while image file 1/pages-1.img arrived; it is not kept');
    expect(existsSync(dest.incoming.dirOf('mig-1'))).toBe(false);
  });

  it('a repeated prepare or restore during a restore neither makes the held cgroup again, nor restores twice, nor lets an abort answer before the restore is done', async () => {
    const events: string[] = [];
    let finishRestore: (() => void) | undefined;
    const discard = dest.handover.discard.bind(dest.handover);
    dest.handover.discard = async (shardId: string) => (events.push(`discard ${shardId}`), discard(shardId));
    dest.restorer.restore = () => new Promise((resolve) => (events.push('restore started'), (finishRestore = () => (events.push('restored'), resolve({ pid: 4242, lazyPagesMs: 0 })))));
    await prepare();
    const data = Buffer.from('pages');
    await upload('mig-1', 1, 'pages-1.img', data);
    const body = { rounds: [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: data.length, sha256: sha(data) }] }] };
    const restore = app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: body });
    for (let i = 0; i < 100 && !finishRestore; i += 1) await new Promise((r) => setImmediate(r));
    const again = await prepare(); // a retried prepare, arriving late
    expect(again.statusCode).toBe(200);
    const restoreAgain = app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: body });
    const abort = app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'restore timed out' } }).then((r) => (events.push('abort answered'), r));
    for (let i = 0; i < 20; i += 1) await new Promise((r) => setImmediate(r));
    expect(events).toEqual(['restore started']);
    finishRestore!();
    const [first, second, aborted] = await Promise.all([restore, restoreAgain, abort]);
    expect(aborted.statusCode).toBe(200);
    expect([first.statusCode, second.statusCode]).toEqual([409, 409]);
    expect(events).toEqual(['restore started', 'restored', 'discard web-0', 'abort answered']);
    expect(dest.handover.calls.filter((c) => c.startsWith('prepareIncoming'))).toEqual(['prepareIncoming web-0']);
  });

  it('a repeated restore after an abort whose cleanup failed is refused, not answered with the destroyed copy', async () => {
    await prepare();
    const data = Buffer.from('pages');
    await upload('mig-1', 1, 'pages-1.img', data);
    const body = { rounds: [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: data.length, sha256: sha(data) }] }] };
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: body })).statusCode).toBe(200);
    const discard = dest.handover.discard.bind(dest.handover);
    dest.handover.discard = async (shardId: string) => {
      await discard(shardId);
      throw Object.assign(new Error('cgroup busy'), { code: 'EBUSY' });
    };
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'x' } })).statusCode).toBe(500);
    const again = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: body });
    expect(again.statusCode).toBe(409);
    expect(again.json().message).toBe('migration mig-1 is aborted, not prepared');
  });

  it('a prepare that arrives after its abort (the source\'s prepare timed out first) is refused and holds nothing', async () => {
    const aborted = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'prepare timed out' } });
    expect(aborted.statusCode).toBe(200);
    const late = await prepare();
    expect(late.statusCode).toBe(409);
    expect(late.json()).toMatchObject({ error: 'INVALID_TRANSITION', message: 'migration mig-1 is aborted here; it cannot be prepared again' });
    expect(dest.handover.calls).toEqual(['discard web-0']);
    // The shard itself may still come, by a migration of its own.
    expect((await prepare('mig-2')).statusCode).toBe(200);
  });

  it('an abort that arrives while CRIU restores waits for the restore, then destroys the restored copy', async () => {
    const events: string[] = [];
    let finishRestore: (() => void) | undefined;
    const discard = dest.handover.discard.bind(dest.handover);
    dest.handover.discard = async (shardId: string) => (events.push(`discard ${shardId}`), discard(shardId));
    dest.restorer.restore = () => new Promise((resolve) => (finishRestore = () => (events.push('restored'), resolve({ pid: 4242, lazyPagesMs: 0 }))));
    await prepare();
    const data = Buffer.from('pages');
    await upload('mig-1', 1, 'pages-1.img', data);
    const restore = app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds: [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: data.length, sha256: sha(data) }] }] } });
    for (let i = 0; i < 100 && !finishRestore; i += 1) await new Promise((r) => setImmediate(r));
    const abort = app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'restore timed out' } }).then((r) => (events.push('abort answered'), r));
    for (let i = 0; i < 20; i += 1) await new Promise((r) => setImmediate(r));
    expect(events).toEqual([]);
    finishRestore!();
    const [restored, aborted] = await Promise.all([restore, abort]);
    expect(aborted.statusCode).toBe(200);
    expect(restored.statusCode).toBe(409);
    expect(restored.json().message).toBe('migration mig-1 was aborted while it was restored; the copy is destroyed');
    expect(events).toEqual(['restored', 'discard web-0', 'abort answered']);
    // The late restore did not undo the abort: a commit is refused.
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/commit', headers: AUTH, payload: { shardId: 'web-0' } })).statusCode).toBe(409);
  });

  it("restores a checkpointed shard in its own state directory: the archive sent with the image is unpacked before CRIU restores, kept at the commit, undone at an abort", async () => {
    const stateDirectory = join(dir.path, `state-${Math.random().toString(36).slice(2)}`);
    const from = stateDir(join(dir.path, `source-${Math.random().toString(36).slice(2)}`), 'web-0', '42');
    const archive = join(dir.path, `state-${Math.random().toString(36).slice(2)}.tar`);
    await packState(from, archive);
    const tar = readFileSync(archive);
    const old = stateDir(stateDirectory, 'web-0', '41');
    const oldInode = statSync(old).ino;
    const seenByRestore: string[] = [];
    await app.close();
    app = await buildMigrationApp({
      token: dest.deps.token,
      plugins: [migrationRoutes({ ...dest.deps, restorer: { restore: async (d, t) => (seenByRestore.push(readFileSync(join(old, 'counter'), 'utf8')), dest.restorer.restore(d, t)) } })],
    });
    const body = { ...prepareBody('web-0'), shard: { ...prepareBody('web-0').shard, stateDirectory } };
    const image = Buffer.from('pages');
    const rounds = [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: image.length, sha256: sha(image) }, { name: 'state.tar', bytes: tar.length, sha256: sha(tar) }] }];
    const restoreOne = async (id: string) => {
      expect((await prepare(id, body)).statusCode).toBe(200);
      await upload(id, 1, 'pages-1.img', image);
      await upload(id, 1, 'state.tar', tar);
      return app.inject({ method: 'POST', url: `/v1/migrations/${id}/restore`, headers: AUTH, payload: { rounds } });
    };

    expect((await restoreOne('mig-1')).statusCode).toBe(200);
    expect(seenByRestore).toEqual(['42']);
    const abort = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'restored: commit failed' } });
    expect(abort.json()).toEqual({ migrationId: 'mig-1', state: 'aborted' });
    // On a shared file system that is the source's own directory, which its frozen copy holds open.
    expect(statSync(old).ino).toBe(oldInode);
    expect(readFileSync(join(old, 'counter'), 'utf8')).toBe('41');
    expect(readdirSync(stateDirectory)).toEqual(['web-0']);

    expect((await restoreOne('mig-2')).statusCode).toBe(200);
    const commit = await app.inject({ method: 'POST', url: '/v1/migrations/mig-2/commit', headers: AUTH, payload: { shardId: 'web-0' } });
    expect(commit.json()).toMatchObject({ migrationId: 'mig-2', state: 'committed' });
    expect(readdirSync(stateDirectory)).toEqual(['web-0']);
    expect(readdirSync(old)).toEqual(['counter']);
    expect(readFileSync(join(old, 'counter'), 'utf8')).toBe('42');
  });

  it('after a restart, undoes at the abort of a migration it forgot the state directory its unpack had swapped in', async () => {
    await restartDestination();
    const stateDirectory = join(dir.path, `state-${Math.random().toString(36).slice(2)}`);
    expect((await prepare('mig-5', { ...prepareBody('web-5'), shard: { ...prepareBody('web-5').shard, stateDirectory } })).statusCode).toBe(200);
    stateDir(stateDirectory, 'web-5', '42', 'mig-5');
    stateDir(stateDirectory, 'web-5.previous-mig-5', '41');
    await restartDestination();
    const abort = await app.inject({ method: 'POST', url: '/v1/migrations/mig-5/abort', headers: AUTH, payload: { shardId: 'web-5', reason: 'agent restarted' } });
    expect(abort.json()).toEqual({ migrationId: 'mig-5', state: 'aborted' });
    expect(readdirSync(stateDirectory)).toEqual(['web-5']);
    expect(readFileSync(join(stateDirectory, 'web-5', 'counter'), 'utf8')).toBe('41');
  });

  it("restores the shard's stdout and stderr onto this host's log files of it, not the source's paths", async () => {
    await app.close();
    const logRoot = join(dir.path, `logs-${Math.random().toString(36).slice(2)}`);
    app = await buildMigrationApp({ token: dest.deps.token, plugins: [migrationRoutes({ ...dest.deps, logRoot })] });
    const sourceLogs = { stdout: '/var/lib/shardform/host-1/logs/web-0/stdout.log', stderr: '/var/lib/shardform/host-1/logs/web-0/stderr.log' };
    const relative = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', headers: AUTH, payload: { ...prepareBody('web-0'), logFiles: { ...sourceLogs, stdout: 'logs/stdout.log' } } });
    expect(relative.json().errors[0]).toMatchObject({ field: 'logFiles.stdout', value: 'logs/stdout.log' });
    const small = { ...prepareBody('web-0'), shard: { ...prepareBody('web-0').shard, limits: { cpuCores: 0.5, memoryBytes: 1 << 30 } } };
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', headers: AUTH, payload: { ...small, logFiles: sourceLogs } })).statusCode).toBe(200);
    const data = Buffer.from('pages');
    await upload('mig-1', 1, 'pages-1.img', data);
    const restored = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds: [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: data.length, sha256: sha(data) }] }] } });
    expect(restored.statusCode).toBe(200);
    expect(dest.restorer.restored[0]!.files).toEqual([
      { dumpedPath: sourceLogs.stdout, openOn: join(logRoot, 'web-0', 'stdout.log') },
      { dumpedPath: sourceLogs.stderr, openOn: join(logRoot, 'web-0', 'stderr.log') },
    ]);
  });

  it('refuses to start a restart-strategy shard on a host without a shard keeper', async () => {
    await prepare();
    const refused = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/start', headers: AUTH, payload: { rounds: [{ round: 1, parent: null, files: [{ name: 'state.tar', bytes: 1, sha256: sha('x') }] }] } });
    expect(refused.statusCode).toBe(409);
    expect(refused.json().message).toBe('host host-2 cannot start shards for the restart strategy (no shard keeper here)');
  });

  it('aborts idempotently, discarding the copy even for a migration it no longer knows', async () => {
    await prepare();
    const abort = () => app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'transfer broke' } });
    const discard = dest.handover.discard.bind(dest.handover);
    dest.handover.discard = async (shardId: string) => {
      await discard(shardId);
      if (dest.handover.calls.filter((c) => c === 'discard web-0').length === 1) throw new Error('EBUSY');
    };
    // The first discard fails: the abort is not finished, and its retry does it all again.
    expect((await abort()).statusCode).toBe(500);
    expect(dest.incoming.get('mig-1')?.state).toBe('aborted');
    expect((await abort()).json()).toEqual({ migrationId: 'mig-1', state: 'aborted' });
    expect(dest.incoming.get('mig-1')).toBeUndefined();
    // Finished: a retry answers the same and discards nothing (a later migration may bring web-0).
    expect((await abort()).json()).toEqual({ migrationId: 'mig-1', state: 'aborted' });
    expect(dest.handover.calls).toEqual(['prepareIncoming web-0', 'discard web-0', 'discard web-0']);
    expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/commit', headers: AUTH, payload: { shardId: 'web-0' } })).json()).toMatchObject({ error: 'INVALID_TRANSITION', message: 'migration mig-1 is aborted, not restored' });
    const unknown = await app.inject({ method: 'POST', url: '/v1/migrations/mig-7/abort', headers: AUTH, payload: { shardId: 'web-7', reason: 'agent restarted' } });
    expect(unknown.statusCode).toBe(200);
    expect(dest.handover.calls).toContain('discard web-7');
  });

  it('verifies a round sent without per-file hashes against the manifest hashed while sending', async () => {
    await prepare();
    const data = Buffer.from('pages of round one');
    const put = await app.inject({
      method: 'PUT',
      url: '/v1/migrations/mig-1/rounds/1/files/pages-1.img',
      headers: { ...AUTH, 'content-type': 'application/octet-stream' },
      payload: data,
    });
    expect(put.statusCode).toBe(201);
    const verify = (sha256: string) =>
      app.inject({ method: 'POST', url: '/v1/migrations/mig-1/rounds/1/verify', headers: AUTH, payload: { files: [{ name: 'pages-1.img', bytes: data.length, sha256 }] } });
    expect((await verify(sha(data))).json()).toEqual({ migrationId: 'mig-1', round: 1, files: 1, bytes: data.length });
    const mismatch = await verify(sha('something else'));
    expect(mismatch.statusCode).toBe(422);
    expect(mismatch.json().message).toBe(`round 1: image file pages-1.img arrived as ${data.length} bytes sha256 ${sha(data)}, expected ${data.length} bytes sha256 ${sha('something else')}`);
  });

  it('refuses image files for an unknown migration or one already restored', async () => {
    expect((await upload('nope', 1, 'pages-1.img', Buffer.from('x'))).json()).toMatchObject({ statusCode: 404, error: 'NOT_FOUND' });
  });
});

describe('migration routes: a source that goes quiet', () => {
  const dir = tempDir('shardform-migration-quiet');
  afterAll(() => dir.remove());
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  async function destination(opts: { abandonAfterMs?: number; uploadIdleMs?: number }) {
    const dest = fakeDestination(join(dir.path, `images-${Math.random().toString(36).slice(2)}`), { cpuCores: 1, memoryBytes: 4 * 2 ** 30 });
    const app = await buildMigrationApp({ token: dest.deps.token, plugins: [migrationRoutes({ ...dest.deps, ...opts })] });
    const prepare = (id: string, shardId: string) => app.inject({ method: 'POST', url: `/v1/migrations/${id}/prepare`, headers: AUTH, payload: prepareBody(shardId) });
    const upload = (id: string, data: Buffer) =>
      app.inject({ method: 'PUT', url: `/v1/migrations/${id}/rounds/1/files/pages-1.img`, headers: { ...AUTH, 'content-type': 'application/octet-stream', 'x-shardform-sha256': sha(data) }, payload: data });
    return { dest, app, prepare, upload };
  }

  it('aborts a prepared migration no request touched for abandonAfterMs: held copy, images and capacity freed; the source finds it aborted', async () => {
    const { dest, app, prepare, upload } = await destination({ abandonAfterMs: 60 });
    try {
      expect((await prepare('mig-1', 'web-0')).statusCode).toBe(200);
      const data = Buffer.from('pages');
      expect((await upload('mig-1', data)).statusCode).toBe(201);
      const images = dest.incoming.dirOf('mig-1');
      expect(existsSync(images)).toBe(true);
      // The whole host's cpu is reserved by the quiet migration.
      expect((await prepare('mig-2', 'web-1')).json()).toMatchObject({ error: 'REFUSED' });
      for (let i = 0; i < 200 && dest.incoming.get('mig-1'); i += 1) await sleep(10);
      expect(dest.incoming.get('mig-1')).toBeUndefined();
      expect(dest.handover.calls).toEqual(['prepareIncoming web-0', 'discard web-0']);
      expect(existsSync(images)).toBe(false);
      // The source comes back: nothing is restored, its abort is answered as done, and the room is free again.
      const restore = await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds: [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: data.length, sha256: sha(data) }] }] } });
      expect(restore.statusCode).toBe(404);
      expect(dest.restorer.restored).toEqual([]);
      expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/abort', headers: AUTH, payload: { shardId: 'web-0', reason: 'source restarted' } })).json()).toEqual({ migrationId: 'mig-1', state: 'aborted' });
      expect((await prepare('mig-1', 'web-0')).json()).toMatchObject({ error: 'INVALID_TRANSITION' });
      expect((await prepare('mig-2', 'web-1')).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('waits at least the time limit the source sent with its prepare, past which the source itself gives up', async () => {
    const { dest, app } = await destination({ abandonAfterMs: 40 });
    try {
      const body = { ...prepareBody('web-0'), timeoutSeconds: 1 };
      expect((await app.inject({ method: 'POST', url: '/v1/migrations/mig-1/prepare', headers: AUTH, payload: body })).statusCode).toBe(200);
      await sleep(500);
      expect(dest.incoming.get('mig-1')?.state).toBe('prepared');
      for (let i = 0; i < 300 && dest.incoming.get('mig-1'); i += 1) await sleep(10);
      expect(dest.incoming.get('mig-1')).toBeUndefined();
      expect(dest.handover.calls).toEqual(['prepareIncoming web-0', 'discard web-0']);
      const bad = await app.inject({ method: 'POST', url: '/v1/migrations/mig-2/prepare', headers: AUTH, payload: { ...prepareBody('web-1'), timeoutSeconds: 0 } });
      expect(bad.json().errors[0]).toMatchObject({ field: 'timeoutSeconds', value: 0 });
    } finally {
      await app.close();
    }
  });

  it('keeps a migration whose source keeps talking, or whose restore is in flight, and a restored one', async () => {
    const { dest, app, prepare, upload } = await destination({ abandonAfterMs: 80 });
    try {
      await prepare('mig-1', 'web-0');
      const data = Buffer.from('pages');
      for (let i = 0; i < 8; i += 1) {
        await sleep(30);
        expect((await upload('mig-1', data)).statusCode).toBe(201);
      }
      expect(dest.incoming.get('mig-1')?.state).toBe('prepared');
      let finishRestore: (() => void) | undefined;
      dest.restorer.restore = () => new Promise((resolve) => (finishRestore = () => resolve({ pid: 4242, lazyPagesMs: 0 })));
      const rounds = [{ round: 1, parent: null, files: [{ name: 'pages-1.img', bytes: data.length, sha256: sha(data) }] }];
      const restore = app.inject({ method: 'POST', url: '/v1/migrations/mig-1/restore', headers: AUTH, payload: { rounds } });
      await sleep(300);
      expect(dest.handover.calls).toEqual(['prepareIncoming web-0']);
      finishRestore!();
      expect((await restore).json()).toEqual({ migrationId: 'mig-1', state: 'restored', pid: 4242, lazyPagesMs: 0 });
      // Restored: only the source may decide now (it may have committed), so the copy stays however long it is quiet.
      await sleep(300);
      expect(dest.incoming.get('mig-1')?.state).toBe('restored');
      expect(dest.handover.calls).toEqual(['prepareIncoming web-0']);
    } finally {
      await app.close();
    }
  });

  it('breaks off an image upload that moves no byte for uploadIdleMs, keeping nothing of it', async () => {
    const { dest, app, prepare } = await destination({ uploadIdleMs: 100 });
    try {
      await prepare('mig-1', 'web-0');
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as { port: number };
      const closed = await new Promise<string>((resolve) => {
        const request = http.request({ host: '127.0.0.1', port, method: 'PUT', path: '/v1/migrations/mig-1/rounds/1/files/pages-1.img', headers: { ...AUTH, 'content-type': 'application/octet-stream', 'content-length': '1000' } });
        request.on('error', (error) => resolve(`error ${error.message}`));
        request.on('response', (response) => resolve(`response ${response.statusCode}`));
        request.write(Buffer.alloc(10)); // and nothing more: a stalled link
      });
      expect(closed).toBe('error socket hang up');
      for (let i = 0; i < 100 && dest.incoming.get('mig-1')!.uploads > 0; i += 1) await sleep(10);
      expect(dest.incoming.get('mig-1')!.uploads).toBe(0);
      expect(readdirSync(join(dest.incoming.dirOf('mig-1'), '1'))).toEqual([]);
    } finally {
      await app.close();
    }
  });

  it('keeps nothing of a chunked image upload whose source went away mid-file (no last chunk): it is not taken as the whole file', async () => {
    const { dest, app, prepare } = await destination({});
    try {
      await prepare('mig-1', 'web-0');
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as { port: number };
      const request = http.request({ host: '127.0.0.1', port, method: 'PUT', path: '/v1/migrations/mig-1/rounds/1/files/pages-1.img', headers: { ...AUTH, 'content-type': 'application/octet-stream' } });
      request.on('error', () => undefined);
      request.write(Buffer.alloc(5000, 1));
      for (let i = 0; i < 100 && dest.incoming.get('mig-1')!.uploads === 0; i += 1) await sleep(10);
      expect(dest.incoming.get('mig-1')!.uploads).toBe(1);
      // The source agent ended (killed mid-dump): its socket closes without the chunked body's end.
      request.socket!.destroy();
      for (let i = 0; i < 100 && dest.incoming.get('mig-1')!.uploads > 0; i += 1) await sleep(10);
      expect(dest.incoming.get('mig-1')!.uploads).toBe(0);
      expect(readdirSync(join(dest.incoming.dirOf('mig-1'), '1'))).toEqual([]);
      expect(dest.incoming.get('mig-1')!.received.size).toBe(0);
    } finally {
      await app.close();
    }
  });
});
