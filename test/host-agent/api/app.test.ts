import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiFixture, AUTH, GiB, stalledRequest, TOKEN, type ApiFixture } from './api-fixture';
import { usage } from '../../helpers/agent-fakes';
import { createLogger, memoryLogDestination } from '../../../host-agent/log';
import { memoryInUse } from '../../../host-agent/errors';

const packageVersion = (JSON.parse(readFileSync(join(__dirname, '../../../package.json'), 'utf8')) as { version: string }).version;

describe('agent API', () => {
  let f: ApiFixture;
  beforeEach(async () => {
    f = await apiFixture();
  });
  afterEach(async () => {
    await f.app.close();
  });

  describe('authentication', () => {
    it('serves /healthz without a token', async () => {
      const res = await f.app.inject({ method: 'GET', url: '/healthz' });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ status: 'ok', hostId: 'host-a', version: packageVersion, cgroupLayout: 'hybrid', generation: 1, drained: false });
    });

    it.each(['/v1/plan', '/v1/shards', '/v1/shards/web-0', '/v1/shards/web-0/history', '/v1/events', '/metrics'])('answers 401 on %s without a token', async (url) => {
      const res = await f.app.inject({ method: 'GET', url });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ error: 'UNAUTHORIZED', message: expect.stringContaining('missing bearer token') });
    });

    it('answers 401 to a wrong token, a token of another length and a non-bearer scheme', async () => {
      for (const authorization of [`Bearer ${TOKEN.slice(0, -1)}x`, `Bearer ${TOKEN}extra`, `Basic ${TOKEN}`, 'Bearer']) {
        const res = await f.app.inject({ method: 'GET', url: '/v1/shards', headers: { authorization } });
        expect(res.statusCode).toBe(401);
      }
    });

    it('refuses a resize without a token before touching the shard', async () => {
      const res = await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', payload: { cpuCores: 1 } });
      expect(res.statusCode).toBe(401);
      expect(f.manager.calls.filter((c) => c.method === 'resize')).toEqual([]);
    });

    it('answers 401 to every caller when the agent has no token', async () => {
      const g = await apiFixture({ token: () => undefined });
      const res = await g.app.inject({ method: 'GET', url: '/v1/shards', headers: AUTH });
      expect(res.statusCode).toBe(401);
      await g.app.close();
    });
  });

  describe('shards', () => {
    it('lists the shards of this host with their limits and state', async () => {
      const res = await f.app.inject({ method: 'GET', url: '/v1/shards', headers: AUTH });
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.shards.map((s: { shardId: string }) => s.shardId)).toEqual(['web-0', 'web-1']);
      expect(body.shards[0]).toMatchObject({ applicationId: 'web', state: 'running', limits: { cpuCores: 0.5, memoryBytes: GiB } });
    });

    it('returns one shard with live usage from the driver', async () => {
      f.driver.readings.set('web-0', usage({ cpuUsageSeconds: 12.5, memoryCurrentBytes: 1234 }));
      const res = await f.app.inject({ method: 'GET', url: '/v1/shards/web-0', headers: AUTH });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ shardId: 'web-0', usage: { cpuUsageSeconds: 12.5, memoryCurrentBytes: 1234 } });
    });

    it('answers 404 naming the id for a shard that is not on this host', async () => {
      const res = await f.app.inject({ method: 'GET', url: '/v1/shards/db-0', headers: AUTH });
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({ error: 'UNKNOWN_SHARD', errors: [{ field: 'params.id', value: 'db-0' }] });
    });

    it.each([
      ['%2E%2E%2F%2E%2E%2Fetc', '../../etc'],
      ['..%2Fweb-0', '../web-0'],
      ['Web-0', 'Web-0'],
      ['-web', '-web'],
      ['a'.repeat(64), 'a'.repeat(64)],
    ])('rejects the shard id %s with 400 before anything reads the filesystem', async (encoded, decoded) => {
      for (const url of [`/v1/shards/${encoded}`, `/v1/shards/${encoded}/history`]) {
        const res = await f.app.inject({ method: 'GET', url, headers: AUTH });
        expect(res.statusCode).toBe(400);
        expect(res.json().errors[0]).toMatchObject({ field: 'params.id', value: decoded, message: expect.stringContaining('must match pattern') });
      }
      const res = await f.app.inject({ method: 'POST', url: `/v1/shards/${encoded}/resize`, headers: AUTH, payload: { cpuCores: 1 } });
      expect(res.statusCode).toBe(400);
      expect(f.driver.calls).toEqual([]);
      expect(f.manager.calls).toEqual([]);
    });
  });

  describe('resize', () => {
    it('resizes in place and records the size as the shard assignment so reconcile keeps it', async () => {
      const res = await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: AUTH, payload: { cpuCores: 1, memoryBytes: 2 * GiB } });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ shardId: 'web-0', state: 'running', limits: { cpuCores: 1, memoryBytes: 2 * GiB } });
      expect(f.manager.calls).toEqual([{ method: 'resize', args: ['web-0', { cpuCores: 1, memoryBytes: 2 * GiB }] }]);
      const record = JSON.parse((await f.kv.get('/fleet/test-fleet/assignments/web-0'))!.value);
      expect(record).toEqual({ shardId: 'web-0', applicationId: 'web', hostId: 'host-a', limits: { cpuCores: 1, memoryBytes: 2 * GiB }, by: 'api', at: '2026-11-25T01:00:00.000Z' });
    });

    it.each([
      [{}, 'body', 'must NOT have fewer than 1 properties'],
      [{ cpuCores: -1 }, 'body.cpuCores', 'must be > 0'],
      [{ cpuCores: '1' }, 'body.cpuCores', 'must be number'],
      [{ memoryBytes: 1.5 }, 'body.memoryBytes', 'must be integer'],
      [{ cpu: 1 }, 'body.cpu', 'is not a known field'],
    ])('answers 400 to the body %j naming %s', async (payload, field, message) => {
      const res = await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: AUTH, payload });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: 'INVALID_REQUEST', errors: expect.arrayContaining([expect.objectContaining({ field, message })]) });
      expect(res.json().message).toContain(field);
      expect(f.manager.calls).toEqual([]);
      expect(f.kv.data.size).toBe(0);
    });

    it('answers 400 to a body that is not JSON', async () => {
      const res = await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: { ...AUTH, 'content-type': 'application/json' }, payload: '{cpu' });
      expect(res.statusCode).toBe(400);
      expect(f.manager.calls).toEqual([]);
    });

    it('refuses a size that is not a multiple of the granularity, saying what would be valid', async () => {
      const res = await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: AUTH, payload: { cpuCores: 0.7 } });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({
        error: 'INVALID_ARGUMENT',
        message: "cpuCores: 0.7 is not a whole multiple of web's granularity (0.5 cores); use e.g. 0.5 cores or 1 cores",
        errors: [{ field: 'cpuCores', value: 0.7 }],
      });
      expect(f.manager.calls).toEqual([]);
      expect(f.kv.data.size).toBe(0);
    });

    it.each([
      // 1e-7 cores is 2e-7 units of 0.5: within the float tolerance of 0 units, which is no size at all.
      [{ cpuCores: 1e-7 }, 'cpuCores', "cpuCores: 1e-7 is not a whole multiple of web's granularity (0.5 cores); use e.g. 0.5 cores or 1 cores"],
      // Bytes are integers: one byte over 1 GiB is not a multiple, however small the fraction.
      [{ memoryBytes: GiB + 512 }, 'memoryBytes', `memoryBytes: ${GiB + 512} is not a whole multiple of web's granularity (${GiB} bytes); use e.g. ${GiB} bytes or ${2 * GiB} bytes`],
    ])('refuses %j (no whole multiple of at least one quantum) before recording or applying anything', async (payload, field, message) => {
      const res = await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: AUTH, payload });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: 'INVALID_ARGUMENT', message, errors: [{ field }] });
      expect(f.manager.calls).toEqual([]);
      expect(f.kv.data.size).toBe(0);
    });

    it('a resize the kernel refuses puts the recorded assignment back, so reconcile does not retry it on every pass', async () => {
      await f.kv.put('/fleet/test-fleet/assignments/web-0', JSON.stringify({ shardId: 'web-0', applicationId: 'web', hostId: 'host-a', limits: { memoryBytes: 2 * GiB }, by: 'api', at: '2026-11-25T00:00:00.000Z' }));
      const before = await f.kv.get('/fleet/test-fleet/assignments/web-0');
      const refused = memoryInUse('web-0', '/sys/fs/cgroup/memory/shardform/host-a/web-0/memory.limit_in_bytes', GiB, undefined);
      jest.spyOn(f.manager, 'resize').mockRejectedValueOnce(refused);
      const res = await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: AUTH, payload: { memoryBytes: GiB } });
      // The caller's to fix (free memory, or a larger size), not the agent's failure.
      expect(res.statusCode).toBe(409);
      expect(res.json()).toMatchObject({ error: 'MEMORY_IN_USE', message: expect.stringContaining('a memory limit of 1073741824 bytes is below what it uses: the kernel refused it (EBUSY)') });
      expect((await f.kv.get('/fleet/test-fleet/assignments/web-0'))?.value).toBe(before?.value);

      // With no assignment before, none is left behind.
      jest.spyOn(f.manager, 'resize').mockRejectedValueOnce(refused);
      await f.app.inject({ method: 'POST', url: '/v1/shards/web-1/resize', headers: AUTH, payload: { memoryBytes: GiB } });
      expect(await f.kv.get('/fleet/test-fleet/assignments/web-1')).toBeUndefined();
    });

    it('refuses to resize a shard a migration holds, and one the store assigns to another host, changing nothing', async () => {
      f.manager.seed('web-2', 'web', { cpuCores: 0.5, memoryBytes: GiB }, { state: 'held' });
      const held = await f.app.inject({ method: 'POST', url: '/v1/shards/web-2/resize', headers: AUTH, payload: { cpuCores: 1 } });
      expect(held.statusCode).toBe(409);
      expect(held.json()).toMatchObject({ error: 'SHARD_HELD', message: expect.stringContaining('held by migration; cannot resize it') });

      const moved = JSON.stringify({ shardId: 'web-1', applicationId: 'web', hostId: 'host-b', limits: { cpuCores: 0.5 }, by: 'migration', at: '2026-11-25T00:00:00.000Z' });
      await f.kv.put('/fleet/test-fleet/assignments/web-1', moved);
      const elsewhere = await f.app.inject({ method: 'POST', url: '/v1/shards/web-1/resize', headers: AUTH, payload: { cpuCores: 1 } });
      expect(elsewhere.statusCode).toBe(409);
      expect(elsewhere.json()).toMatchObject({ error: 'CONFLICT', message: 'shard "web-1" is assigned to host host-b (by migration); resize it through that host\'s agent' });
      expect((await f.kv.get('/fleet/test-fleet/assignments/web-1'))?.value).toBe(moved);
      expect(f.kv.data.has('/fleet/test-fleet/assignments/web-2')).toBe(false);
      expect(f.manager.calls).toEqual([]);
    });

    it('refuses to grow a shard past what the host has beside its other shards, and always lets one shrink', async () => {
      // host-a: 2 cores, 8 GiB; web-1 holds 0.5 core and 1 GiB, so web-0 may grow to 1.5 cores and 7 GiB.
      const tooBig = await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: AUTH, payload: { cpuCores: 2 } });
      expect(tooBig.statusCode).toBe(409);
      expect(tooBig.json()).toMatchObject({
        error: 'CONFLICT',
        message: 'host host-a cannot hold shard web-0 at 2 cpu cores: its capacity is 2, its other shards hold 0.5, so at most 1.5 is free for it; migrate a shard away first',
      });
      const tooMuchMemory = await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: AUTH, payload: { cpuCores: 1, memoryBytes: 8 * GiB } });
      expect(tooMuchMemory.json()).toMatchObject({ error: 'CONFLICT', message: expect.stringContaining(`at ${8 * GiB} memory bytes`) });
      expect(f.manager.calls).toEqual([]);
      expect(f.kv.data.size).toBe(0);

      expect((await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: AUTH, payload: { cpuCores: 1.5, memoryBytes: 7 * GiB } })).statusCode).toBe(200);
      // Over capacity already (another shard arrived): shrinking still goes through.
      f.manager.seed('web-2', 'web', { cpuCores: 1, memoryBytes: GiB });
      expect((await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: AUTH, payload: { cpuCores: 1 } })).statusCode).toBe(200);
    });

    it('checks concurrent resizes one after the other, so two that fit alone cannot oversubscribe the host together', async () => {
      // Free beside the other: web-0 may go to 1.5 cores, web-1 too — but not both at once (2 cores in all).
      // The kernel write takes a while, as it can: the second check must wait for the first resize.
      const resize = f.manager.resize.bind(f.manager);
      jest.spyOn(f.manager, 'resize').mockImplementation(async (...args) => {
        await new Promise((resolve) => setTimeout(resolve, 50));
        return resize(...args);
      });
      const answers = await Promise.all(['web-0', 'web-1'].map((id) => f.app.inject({ method: 'POST', url: `/v1/shards/${id}/resize`, headers: AUTH, payload: { cpuCores: 1.5 } })));
      expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 409]);
    });

    it('never writes over a migration that commits the shard elsewhere between its read and its write', async () => {
      const key = '/fleet/test-fleet/assignments/web-0';
      const committed = JSON.stringify({ shardId: 'web-0', applicationId: 'web', hostId: 'host-b', limits: { cpuCores: 0.5 }, by: 'migration', at: '2026-11-25T00:00:01.000Z' });
      const get = f.kv.get.bind(f.kv);
      // The commit lands right after the resize read the (absent) assignment.
      jest.spyOn(f.kv, 'get').mockImplementationOnce(async (k: string) => {
        const read = await get(k);
        await f.kv.put(key, committed);
        return read;
      });
      const res = await f.app.inject({ method: 'POST', url: '/v1/shards/web-0/resize', headers: AUTH, payload: { cpuCores: 1 } });
      expect(res.statusCode).toBe(409);
      expect(res.json()).toMatchObject({ error: 'CONFLICT', message: expect.stringContaining('changed while it was resized') });
      expect((await f.kv.get(key))?.value).toBe(committed);
      expect(f.manager.calls).toEqual([]);
    });

    it('answers 404 for resizing a shard that is not here', async () => {
      const res = await f.app.inject({ method: 'POST', url: '/v1/shards/web-9/resize', headers: AUTH, payload: { cpuCores: 1 } });
      expect(res.statusCode).toBe(404);
      expect(f.kv.data.size).toBe(0);
    });
  });

  describe('history', () => {
    const sample = (atSeconds: number, shardId = 'web-0') => ({
      atSeconds, shardId, applicationId: 'web', cpuCores: 0.25, cpuThrottledRatio: 0, memoryBytes: 100, readOps: 0, writeOps: 0, readBytesPerSecond: 0, writeBytesPerSecond: 0,
    });

    it('returns the shard\'s samples in the window (default: the last hour)', async () => {
      f.history.append([sample(1_800_000_000 - 7200), sample(1_799_999_000), sample(1_799_999_500, 'web-1'), sample(1_800_000_000)]);
      const res = await f.app.inject({ method: 'GET', url: '/v1/shards/web-0/history', headers: AUTH });
      expect(res.statusCode).toBe(200);
      expect(res.json().samples.map((s: { atSeconds: number }) => s.atSeconds)).toEqual([1_799_999_000, 1_800_000_000]);
      const window = await f.app.inject({ method: 'GET', url: '/v1/shards/web-0/history?from=1799990000&to=1799999999&resolution=5m', headers: AUTH });
      expect(window.json()).toMatchObject({ fromSeconds: 1_799_990_000, toSeconds: 1_799_999_999, resolutionSeconds: 300 });
      expect(window.json().samples.map((s: { atSeconds: number }) => s.atSeconds)).toEqual([1_799_992_800, 1_799_999_000]);
    });

    it.each([
      ['from=yesterday', 'query.from'],
      ['to=-5', 'query.to'],
      ['resolution=5 minutes', 'query.resolution'],
      ['step=5', 'query.step'],
      ['resolution=0', 'query.resolution'],
      ['resolution=0m', 'query.resolution'],
    ])('answers 400 to ?%s naming %s', async (query, field) => {
      const res = await f.app.inject({ method: 'GET', url: `/v1/shards/web-0/history?${query}`, headers: AUTH });
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].field).toBe(field);
    });

    it('answers 400 when from is after to', async () => {
      const res = await f.app.inject({ method: 'GET', url: '/v1/shards/web-0/history?from=200&to=100', headers: AUTH });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ errors: [{ field: 'query.from', value: '200', message: 'must not be after to (100)' }] });
    });
  });

  describe('events', () => {
    it('returns events after the cursor, with the next cursor', async () => {
      for (const type of ['created', 'started', 'oom-killed'] as const)
        f.events.emit({ type, shardId: 'web-0', applicationId: 'web', at: '2026-11-25T00:00:00.000Z', detail: {} });
      const all = await f.app.inject({ method: 'GET', url: '/v1/events', headers: AUTH });
      expect(all.json().events.map((e: { type: string }) => e.type)).toEqual(['created', 'started', 'oom-killed']);
      expect(all.json().lastSeq).toBe(3);
      const later = await f.app.inject({ method: 'GET', url: '/v1/events?since=2', headers: AUTH });
      expect(later.json().events).toEqual([expect.objectContaining({ seq: 3, type: 'oom-killed', shardId: 'web-0' })]);
      const none = await f.app.inject({ method: 'GET', url: '/v1/events?since=3', headers: AUTH });
      expect(none.json()).toMatchObject({ events: [], lastSeq: 3 });
    });

    it('answers 400 to a cursor that is not a number', async () => {
      const res = await f.app.inject({ method: 'GET', url: '/v1/events?since=-1', headers: AUTH });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ errors: [{ field: 'query.since', value: '-1' }] });
    });
  });

  describe('plan, metrics and drain', () => {
    it('reports the running plan', async () => {
      const res = await f.app.inject({ method: 'GET', url: '/v1/plan', headers: AUTH });
      expect(res.json()).toMatchObject({ generation: 1, digest: f.plan.digest, fleet: 'test-fleet', lastRejection: null, rejectedTotal: 0 });
    });

    it('serves Prometheus text with the shard metrics', async () => {
      f.metrics.observeShard({ shardId: 'web-0', applicationId: 'web', usage: usage({ cpuUsageSeconds: 3.5, memoryCurrentBytes: 4096 }), limits: { cpuCores: 0.5, memoryBytes: GiB }, restarts: 2 });
      const res = await f.app.inject({ method: 'GET', url: '/metrics', headers: AUTH });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toContain('text/plain');
      expect(res.body).toContain('shardform_shard_cpu_usage_seconds_total{shard_id="web-0",application_id="web"} 3.5');
      expect(res.body).toContain('shardform_shard_restarts_total{shard_id="web-0",application_id="web"} 2');
    });

    it('drains the host and lifts the drain', async () => {
      const res = await f.app.inject({ method: 'POST', url: '/v1/drain', headers: AUTH, payload: {} });
      expect(res.json()).toMatchObject({ drained: true, actions: [{ kind: 'stop', shardId: 'web-0', ok: true }, { kind: 'stop', shardId: 'web-1', ok: true }] });
      expect(f.drained.value).toBe(true);
      const undo = await f.app.inject({ method: 'POST', url: '/v1/drain', headers: AUTH, payload: { undo: true } });
      expect(undo.json()).toMatchObject({ drained: false });
      const bad = await f.app.inject({ method: 'POST', url: '/v1/drain', headers: AUTH, payload: { undo: 'yes' } });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().errors[0]).toMatchObject({ field: 'body.undo', value: 'yes' });
    });

    it('answers 500 to an unexpected failure and logs it (no request logging otherwise)', async () => {
      const logs = memoryLogDestination();
      const g = await apiFixture({
        logger: createLogger({ destination: logs }),
        manager: { status: () => { throw new Error('keeper state unreadable'); } },
      });
      expect((await g.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      const res = await g.app.inject({ method: 'GET', url: '/v1/shards', headers: AUTH });
      expect(res.statusCode).toBe(500);
      expect(res.json()).toMatchObject({ error: 'INTERNAL', message: 'keeper state unreadable' });
      expect(logs.lines()).toEqual([expect.objectContaining({ level: 'error', part: 'api', url: '/v1/shards', msg: 'request failed' })]);
      await g.app.close();
    });

    it('closes with a caller stalled in the middle of a body (the agent\'s stop does not wait for it)', async () => {
      const g = await apiFixture();
      const socket = await stalledRequest(g.app, `POST /v1/shards/web-0/resize HTTP/1.1\r\nHost: agent\r\nAuthorization: ${AUTH.authorization}\r\nContent-Type: application/json\r\n`);
      const dropped = new Promise((resolve) => socket.once('close', resolve));
      await g.app.close();
      await dropped;
    });

    it('registers extra route groups (migration) inside the authenticated scope', async () => {
      const g = await apiFixture({ plugins: [async (scope) => void scope.get('/v1/migrations', async () => ({ migrations: [] }))] });
      expect((await g.app.inject({ method: 'GET', url: '/v1/migrations' })).statusCode).toBe(401);
      expect((await g.app.inject({ method: 'GET', url: '/v1/migrations', headers: AUTH })).json()).toEqual({ migrations: [] });
      await g.app.close();
    });
  });
});
