import { execFile, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { readProcStat } from '../../../host-agent/runner/proc-info';
import { basename, join } from 'node:path';
import type { GrowingFile } from '../../../host-agent/checkpoint/growing-file';
import { CheckpointMigrationEffects, pastTimeLimit } from '../../../host-agent/migration/checkpoint-migration-effects';
import type { MigrationClient } from '../../../host-agent/migration/migration-client';
import { advance, planMigration, type MigrationRecord } from '../../../host-agent/migration/migration-record';
import type { Shadow, ShadowPreCopy } from '../../../host-agent/migration/memory-shadow';
import type { PrepareBody } from '../../../host-agent/api/migration-schemas';
import { tempDir } from '../../helpers/cli';
import type { FastifyInstance } from 'fastify';
import { buildMigrationApp } from '../../../host-agent/api/migration-app';
import { migrationRoutes } from '../../../host-agent/api/migration-routes';
import { MigrationDriver } from '../../../host-agent/migration/migration-driver';
import { MigrationJournal } from '../../../host-agent/migration/migration-journal';
import { fakeDestination } from '../../helpers/migration-destination-fakes';
import { MemoryJournalStore } from '../../helpers/migration-fakes';

/** A shadow pre-copy that writes small fake round files and records what it was asked. */
function fakeShadow(calls: string[], available = true, failFrozen?: number): ShadowPreCopy {
  return {
    available: () => (available ? { ok: true } : { ok: false, reason: '/proc/self/pagemap is missing' }),
    processes: async (rootPid, pids) => (calls.push(`shadow.processes ${rootPid} ${pids.join(',')}`), [{ pid: 4242, vpid: 1 }, { pid: 4243, vpid: 2 }]),
    capture: async ({ pid, vpid, round, dir, previous }) => {
      calls.push(`shadow.capture ${pid} ${vpid} round ${round} previous ${previous ? previous.round : '-'}`);
      writeFileSync(join(dir, `shadow-${vpid}.img`), Buffer.alloc(50));
      writeFileSync(join(dir, `pagemap-${vpid}.img`), Buffer.alloc(3));
      writeFileSync(join(dir, `pages-${vpid}.img`), Buffer.alloc(round === 1 ? 50 : 7));
      const shadow: Shadow = { vpid, round, path: join(dir, `shadow-${vpid}.img`), runs: [] };
      return { shadow, upload: [`pagemap-${vpid}.img`, `pages-${vpid}.img`], pagesBytes: round === 1 ? 50 : 7 };
    },
    compareFrozen: async ({ pid, shadow }) => {
      calls.push(`shadow.compareFrozen ${pid} ${shadow.vpid} against round ${shadow.round}`);
      if (pid === failFrozen) throw new Error(`cannot open /proc/${pid}/mem: ENOENT`);
      return { vpid: shadow.vpid, round: shadow.round, unchanged: [] };
    },
    diff: async (dumpDir, shadows, round, frozen) => {
      calls.push(`shadow.diff ${[...shadows.keys()].join(',')} against round ${round}, compared while frozen: ${[...(frozen ?? new Map()).keys()].join(',') || '-'}`);
      // Like the real one: a partial file first, renamed over the pages once compared.
      writeFileSync(join(dumpDir, 'pages-1.img.partial'), Buffer.alloc(2));
      await new Promise((resolve) => setImmediate(resolve));
      renameSync(join(dumpDir, 'pages-1.img.partial'), join(dumpDir, 'pages-1.img'));
      return { rewritten: [{ file: 'pages-1.img', dumpedBytes: 10, sentBytes: 2 }] };
    },
  };
}

const AT = '2026-11-25T05:00:00.000Z';
const AUTH = { authorization: 'Bearer sekret-token' };

const GiB = 2 ** 30;

/** The destination routes, when a test wants the real one behind the client's prepare and abort. */
type Destination = Pick<FastifyInstance, 'inject'>;

function setUp(root: string, opts: { destination?: Destination; sharedStateDirectory?: boolean; stateDirectory?: string | null | Error; thawSees?: string; pack?: (dir: string, archive: string) => Promise<void>; shadow?: ShadowPreCopy; dumpFails?: string; freeBytes?: number; imageBytes?: number; stateBytes?: number; cgroup?: boolean; root?: boolean; criuAtWork?: () => { pid: number; ageSeconds?: number; startTime?: number; timeLimitMs?: number; environmentUnreadable?: true }[]; chunkedUploads?: boolean; streamDump?: boolean; dumpFailsAfterPages?: string; awaitStream?: boolean } = {}) {
  const calls: string[] = [];
  let stateWalks = 0;
  const prepared: PrepareBody[] = [];
  const client = {
    prepare: async (id: string, body: PrepareBody) => {
      prepared.push(body);
      calls.push(`client.prepare ${id} ${body.shard.shardId} ${JSON.stringify(body.shard.limits)}`);
      if (!opts.destination) return { sharedStateDirectory: opts.sharedStateDirectory ?? false, chunkedUploads: opts.chunkedUploads ?? false };
      const answer = await opts.destination.inject({ method: 'POST', url: `/v1/migrations/${id}/prepare`, headers: AUTH, payload: body });
      if (answer.statusCode !== 200) throw new Error(`prepare answered ${answer.statusCode}: ${answer.body}`);
      return { sharedStateDirectory: answer.json().sharedStateDirectory === true, chunkedUploads: opts.chunkedUploads ?? false };
    },
    // Reads the growing file to its end, as the real client sends it.
    uploadGrowingFile: async (id: string, round: number, file: GrowingFile) => {
      const name = basename(file.path);
      calls.push(`client.uploadGrowingFile ${id} ${round} ${name}`);
      let bytes = 0;
      try {
        for await (const chunk of file.stream) bytes += (chunk as Buffer).length;
      } catch (error) {
        calls.push(`client.uploadGrowingFile ${name} broken off: ${(error as Error).message}`);
        throw error;
      }
      calls.push(`client.uploadGrowingFile ${name} sent ${bytes} bytes`);
      return { name, bytes, sha256: 'b'.repeat(64) };
    },
    uploadFiles: async (id: string, round: number, _dir: string, files: { name: string; bytes: number }[]) => {
      calls.push(`client.uploadFiles ${id} ${round} ${files.map((f) => f.name).join(',')}`);
      return files.map((f) => ({ ...f, sha256: 'a'.repeat(64) }));
    },
    verifyRound: async (id: string, round: number, sent: { name: string; bytes: number }[]) => {
      calls.push(`client.verifyRound ${id} ${round} ${sent.map((f) => f.name).join(',')}`);
      return { files: sent, totalBytes: sent.reduce((s, f) => s + f.bytes, 0) };
    },
    restore: async (id: string, rounds: { round: number; parent: number | null }[]) => {
      calls.push(`client.restore ${id} ${JSON.stringify(rounds.map((r) => [r.round, r.parent]))}`);
      return { pid: 99, lazyPagesMs: 0 };
    },
    commit: async (id: string) => void calls.push(`client.commit ${id}`),
    abort: async (id: string, shardId: string, reason: string) => {
      calls.push(`client.abort ${id} ${shardId} ${reason}`);
      const answer = await opts.destination?.inject({ method: 'POST', url: `/v1/migrations/${id}/abort`, headers: AUTH, payload: { shardId, reason } });
      if (answer && answer.statusCode !== 200) throw new Error(`abort answered ${answer.statusCode}: ${answer.body}`);
    },
  } as unknown as MigrationClient;
  const effects = new CheckpointMigrationEffects({
    driver: {
      freeze: async (id) => void calls.push(`driver.freeze ${id}`),
      thaw: async (id) => void calls.push(`driver.thaw ${id}${opts.thawSees ? ` (counter ${readFileSync(opts.thawSees, 'utf8')})` : ''}`),
      pids: async () => [],
      exists: async () => opts.cgroup ?? true,
      paths: () => ({ freezer: '/sys/fs/cgroup/freezer/shardform/host-1/web-0', unified: '/u' }),
    },
    handover: {
      release: async (id) => (calls.push(`handover.release ${id}`), {}),
      adopt: async (id) => (calls.push(`handover.adopt ${id}`), {} as never),
      discard: async (id) => void calls.push(`handover.discard ${id}`),
    },
    checkpointer: {
      supportsPreCopy: async () => ({ ok: false, reason: 'no soft-dirty' }),
      preDump: async (_t, dir) => {
        calls.push(`criu.preDump ${dir.slice(root.length)}`);
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, 'pages-1.img'), Buffer.alloc(100));
      },
      dump: async (t, dir, prev) => {
        calls.push(`criu.dump ${t.rootPid} ${t.freezeCgroup} ${dir.slice(root.length)} ${prev?.slice(root.length) ?? '-'}`);
        if (opts.dumpFails) {
          await new Promise((resolve) => setTimeout(resolve, 20)); // a dump that fails part-way, once the comparison is under way
          throw new Error(opts.dumpFails);
        }
        mkdirSync(dir, { recursive: true });
        // The pages a moment apart, as CRIU writes them; a failure part-way is seen by the stream.
        writeFileSync(join(dir, 'pages-1.img'), Buffer.alloc(4));
        // (bounded) until the pages are on their way, where the test expects them to be
        for (let i = 0; opts.awaitStream && i < 400 && !calls.some((c) => c.endsWith(' 1 pages-1.img') && c.startsWith('client.uploadGrowingFile ')); i += 1) await new Promise((resolve) => setTimeout(resolve, 5));
        await new Promise((resolve) => setTimeout(resolve, 30));
        if (opts.dumpFailsAfterPages) throw new Error(opts.dumpFailsAfterPages);
        appendFileSync(join(dir, 'pages-1.img'), Buffer.alloc(6));
        writeFileSync(join(dir, 'core-1.img'), Buffer.alloc(5));
        writeFileSync(join(dir, 'criu-dump.log'), 'log');
        calls.push('criu.dump done');
      },
    },
    // A destination behind the real routes takes only a memory limit a shard can have.
    describe: async (shardId) => ({ shardId, applicationId: 'web', limits: { cpuCores: 1, memoryBytes: opts.destination ? GiB : 1024 }, command: ['x'], env: {}, stateDirectory: '/s' }),
    stateDirectoryOf: async () => {
      if (opts.stateDirectory instanceof Error) throw opts.stateDirectory;
      return opts.stateDirectory === null ? undefined : (opts.stateDirectory ?? join(root, 'apps'));
    },
    ...(opts.pack ? { pack: opts.pack } : {}),
    client: () => client,
    imagesRoot: root,
    logRoot: '/var/lib/shardform/host-1/logs',
    findRoot: async () => (opts.root === false ? undefined : { pid: 4242 }),
    criuAtWork: async (target) => (calls.push(`criuAtWork ${target.rootPid ?? '-'} ${target.freezeCgroup ?? '-'}`), opts.criuAtWork?.() ?? []),
    ...(opts.shadow ? { shadow: opts.shadow } : {}),
    streamDump: opts.streamDump ?? true,
    space: { free: () => opts.freeBytes ?? 100 * GiB, imageBytes: async () => opts.imageBytes ?? GiB, stateBytes: async () => ((stateWalks += 1), opts.stateBytes ?? 0) },
  });
  return { calls, effects, prepared, stateWalks: () => stateWalks };
}

/** A shadow migration of `shardId` through one pre-copy round, the freeze, the final dump and the transfer; resolves to the round. */
async function oneShadowRoundThenTransfer(effects: CheckpointMigrationEffects, id: string, shardId: string) {
  let record: MigrationRecord = { ...planMigration({ id, fleet: 'f', shardId, applicationId: 'web', source: 'host-1', destination: 'host-2', preCopy: true }, AT), preCopyMethod: 'shadow' };
  await effects.prepare(record);
  const one = await effects.preCopyRound(record, 1);
  record = { ...advance(advance(record, 'prepared', AT), 'pre-copy', AT), rounds: [{ round: 1, bytes: one.bytes }] };
  await effects.freeze(record);
  await effects.dump(record);
  await effects.transfer(record);
  return one;
}

describe('checkpoint migration effects (source side)', () => {
  const dir = tempDir('shardform-effects');
  afterAll(() => dir.remove());

  it('prepares, freezes after releasing the keeper, dumps relative to the last pre-copy round, sends and restores every round', async () => {
    const root = join(dir.path, 'a');
    const { calls, effects } = setUp(root);
    mkdirSync(join(root, 'apps', 'web-0'), { recursive: true });
    writeFileSync(join(root, 'apps', 'web-0', 'counter'), '41');
    let record: MigrationRecord = planMigration({ id: 'm1', fleet: 'f', shardId: 'web-0', applicationId: 'web', source: 'host-1', destination: 'host-2', preCopy: true }, AT);
    await effects.prepare(record);
    const round = await effects.preCopyRound(record, 1);
    record = { ...advance(advance(record, 'prepared', AT), 'pre-copy', AT), rounds: [{ round: 1, bytes: round.bytes }] };
    await effects.freeze(record);
    const dumped = await effects.dump(record);
    // The state directory, packed beside the final image while the shard is frozen.
    const archive = join(root, 'm1', '2', 'state.tar');
    const { stdout: listing } = await promisify(execFile)('tar', ['--list', '--file', archive]);
    expect(listing.split('\n')).toContain('./counter');
    // The mark asked the destination whether it sees this directory; it is not the shard's state.
    expect(readdirSync(join(root, 'apps', 'web-0')).sort()).toEqual(['.shardform-migrating-m1', 'counter']);
    expect(listing.split('\n').filter((name) => name.includes('shardform'))).toEqual([]);
    const archiveBytes = statSync(archive).size;
    const sent = await effects.transfer(record);
    await effects.restore(record);
    await effects.releaseSource(record);
    expect(readdirSync(join(root, 'apps', 'web-0'))).toEqual(['counter']);
    expect(round.bytes).toBe(100);
    expect(dumped.bytes).toBe(15 + archiveBytes); // the log is not part of the image
    expect(sent.bytes).toBe(15 + archiveBytes);
    expect(calls).toEqual([
      'client.prepare m1 web-0 {"cpuCores":1,"memoryBytes":1024}',
      'criu.preDump /m1/1',
      'client.uploadFiles m1 1 pages-1.img',
      'client.verifyRound m1 1 pages-1.img',
      'handover.release web-0',
      'driver.freeze web-0',
      'criu.dump 4242 /sys/fs/cgroup/freezer/shardform/host-1/web-0 /m1/2 /m1/1',
      'criu.dump done',
      'client.uploadFiles m1 2 core-1.img,pages-1.img,state.tar',
      'client.verifyRound m1 2 core-1.img,pages-1.img,state.tar',
      'client.restore m1 [[1,null],[2,1]]',
      'client.commit m1',
      'handover.discard web-0',
    ]);
  });

  it('packs nothing when the destination sees this very state directory (its prepare found the mark): a shared file system', async () => {
    const root = join(dir.path, 'shared');
    const { calls, effects } = setUp(root, { sharedStateDirectory: true });
    mkdirSync(join(root, 'apps', 'web-3'), { recursive: true });
    writeFileSync(join(root, 'apps', 'web-3', 'counter'), '41');
    const record: MigrationRecord = planMigration({ id: 'm3', fleet: 'f', shardId: 'web-3', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT);
    await effects.prepare(record);
    await effects.freeze(record);
    await effects.dump(record);
    await effects.transfer(record);
    expect(calls).toContain('client.uploadFiles m3 1 core-1.img,pages-1.img');
    expect(existsSync(join(root, 'm3', '1', 'state.tar'))).toBe(false);
    await effects.restore(record);
    await effects.releaseSource(record);
    expect(readdirSync(join(root, 'apps', 'web-3'))).toEqual(['counter']);
  });

  describe('to a destination that takes chunked uploads', () => {
    const plain = (id: string) => planMigration({ id, fleet: 'f', shardId: 'web-20', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT);

    it('sends the pages while CRIU writes them; the transfer sends the rest and has every file verified', async () => {
      const root = join(dir.path, 'streamed');
      const { calls, effects } = setUp(root, { chunkedUploads: true, awaitStream: true });
      const record = plain('m20');
      await effects.prepare(record);
      await effects.freeze(record);
      await effects.dump(record);
      const sent = await effects.transfer(record);
      expect(calls.slice(calls.indexOf('driver.freeze web-20'))).toEqual([
        'driver.freeze web-20',
        'criu.dump 4242 /sys/fs/cgroup/freezer/shardform/host-1/web-0 /m20/1 -',
        'client.uploadGrowingFile m20 1 pages-1.img', // before the dump is done
        'criu.dump done',
        'client.uploadGrowingFile pages-1.img sent 10 bytes', // to its end, once CRIU is done
        'client.uploadFiles m20 1 core-1.img,state.tar',
        'client.verifyRound m20 1 pages-1.img,core-1.img,state.tar',
      ]);
      expect(sent.bytes).toBe(10 + 5 + statSync(join(root, 'm20', '1', 'state.tar')).size);
    });

    it('ends the last pages upload when CRIU exits, not once the state directory is packed too (a long pack would leave it idle past the destination\'s UPLOAD_IDLE_MS)', async () => {
      let calls: string[] = [];
      const set = setUp(join(dir.path, 'streamed-long-pack'), {
        chunkedUploads: true,
        awaitStream: true,
        // A large state directory: packed for longer than CRIU dumps (bounded here, long in life).
        pack: async (_dir, archive) => {
          for (let i = 0; i < 200 && !calls.some((c) => c.startsWith('client.uploadGrowingFile pages-1.img sent')); i += 1) await new Promise((resolve) => setTimeout(resolve, 5));
          writeFileSync(archive, 'tar');
          calls.push('pack done');
        },
      });
      calls = set.calls;
      const record = plain('m23');
      await set.effects.prepare(record);
      await set.effects.freeze(record);
      await set.effects.dump(record);
      expect(calls.filter((c) => c === 'criu.dump done' || c === 'pack done' || c.startsWith('client.uploadGrowingFile pages-1.img'))).toEqual([
        'criu.dump done',
        'client.uploadGrowingFile pages-1.img sent 10 bytes',
        'pack done',
      ]);
    });

    it('streams nothing when switched off (SHARDFORM_CRIU_STREAM_DUMP=off), nor to a destination that did not say it takes chunked uploads', async () => {
      for (const [name, opts] of [['switched-off', { chunkedUploads: true, streamDump: false }], ['older-destination', { chunkedUploads: false }]] as const) {
        const { calls, effects } = setUp(join(dir.path, name), opts);
        const record = plain(`m21-${name}`);
        await effects.prepare(record);
        await effects.freeze(record);
        await effects.dump(record);
        await effects.transfer(record);
        expect(calls.filter((c) => c.startsWith('client.upload'))).toEqual([`client.uploadFiles m21-${name} 1 core-1.img,pages-1.img,state.tar`]);
      }
    });

    it('breaks the pages upload off with the dump\'s failure before the dump step fails (nothing is still arriving at the abort)', async () => {
      const { calls, effects } = setUp(join(dir.path, 'streamed-fails'), { chunkedUploads: true, awaitStream: true, dumpFailsAfterPages: "criu dump failed (exit 1): Can't dump" });
      const record = plain('m22');
      await effects.prepare(record);
      await effects.freeze(record);
      await expect(effects.dump(record)).rejects.toThrow("Can't dump");
      expect(calls).toContain("client.uploadGrowingFile pages-1.img broken off: criu dump failed (exit 1): Can't dump");
    });
  });

  it('removes its mark from the state directory when the migration aborts and the source resumes', async () => {
    const root = join(dir.path, 'mark-on-abort');
    const { effects } = setUp(root);
    const record: MigrationRecord = planMigration({ id: 'm4', fleet: 'f', shardId: 'web-4', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT);
    await effects.prepare(record);
    expect(readdirSync(join(root, 'apps', 'web-4'))).toEqual(['.shardform-migrating-m4']);
    await effects.resumeSource({ ...record, state: 'aborted', abort: { reason: 'prepared: refused', from: 'prepared', cleanup: 'pending' } });
    expect(readdirSync(join(root, 'apps', 'web-4'))).toEqual([]);
  });

  it('pre-copies by shadow where CRIU cannot track dirty pages: only the shadow\'s image files go out, the final dump is full and then compared', async () => {
    const root = join(dir.path, 'shadow');
    const calls: string[] = [];
    // The destination takes chunked uploads, but the final dump's pages are rewritten before they go: not streamed.
    const { calls: effectCalls, effects } = setUp(root, { shadow: fakeShadow(calls), chunkedUploads: true });
    let record: MigrationRecord = { ...planMigration({ id: 'm5', fleet: 'f', shardId: 'web-5', applicationId: 'web', source: 'host-1', destination: 'host-2', preCopy: true }, AT), preCopyMethod: 'shadow' };
    expect(await effects.preCopySupport(record)).toEqual({ ok: true, method: 'shadow' });
    await effects.prepare(record);
    const one = await effects.preCopyRound(record, 1);
    const two = await effects.preCopyRound(record, 2);
    record = { ...advance(advance(record, 'prepared', AT), 'pre-copy', AT), rounds: [{ round: 1, bytes: one.bytes }, { round: 2, bytes: two.bytes }] };
    await effects.freeze(record);
    await effects.dump(record);
    const sent = await effects.transfer(record);
    await effects.restore(record);
    expect(one.bytes).toBe(2 * (3 + 50)); // two processes, pagemap + every page; never the local shadow
    expect(two.bytes).toBe(2 * (3 + 7));
    expect(sent.bytes).toBe(2 + 5 + statSync(join(root, 'm5', '3', 'state.tar')).size); // the compared pages file, the core image, the state directory
    expect(calls).toEqual([
      'shadow.processes 4242 ',
      'shadow.capture 4242 1 round 1 previous -',
      'shadow.capture 4243 2 round 1 previous -',
      'shadow.processes 4242 ',
      'shadow.capture 4242 1 round 2 previous 1',
      'shadow.capture 4243 2 round 2 previous 1',
      'shadow.processes 4242 ', // the frozen tree, compared while CRIU dumps it
      'shadow.compareFrozen 4242 1 against round 2',
      'shadow.compareFrozen 4243 2 against round 2',
      'shadow.diff 1,2 against round 2, compared while frozen: 1,2',
    ]);
    expect(effectCalls).toEqual([
      'client.prepare m5 web-5 {"cpuCores":1,"memoryBytes":1024}',
      'client.uploadFiles m5 1 pagemap-1.img,pagemap-2.img,pages-1.img,pages-2.img',
      'client.verifyRound m5 1 pagemap-1.img,pagemap-2.img,pages-1.img,pages-2.img',
      'client.uploadFiles m5 2 pagemap-1.img,pagemap-2.img,pages-1.img,pages-2.img',
      'client.verifyRound m5 2 pagemap-1.img,pagemap-2.img,pages-1.img,pages-2.img',
      'handover.release web-5',
      'driver.freeze web-5',
      'criu.dump 4242 /sys/fs/cgroup/freezer/shardform/host-1/web-0 /m5/3 -', // (the fake driver's fixed path) full dump: no CRIU parent to track dirty pages against
      'criu.dump done',
      'client.uploadFiles m5 3 core-1.img,state.tar', // sent while the memory images are compared
      'client.uploadFiles m5 3 pages-1.img', // the compared pages, after
      'client.verifyRound m5 3 core-1.img,state.tar,pages-1.img',
      'client.restore m5 [[1,null],[2,1],[3,2]]',
    ]);
  });

  it('does not fail the dump when a frozen process cannot be compared: the dump is compared with the shadows instead', async () => {
    const calls: string[] = [];
    const { effects } = setUp(join(dir.path, 'frozen-fails'), { shadow: fakeShadow(calls, true, 4243) });
    await oneShadowRoundThenTransfer(effects, 'm6', 'web-6');
    expect(calls.slice(-3)).toEqual([
      'shadow.compareFrozen 4242 1 against round 1',
      'shadow.compareFrozen 4243 2 against round 1',
      'shadow.diff 1,2 against round 1, compared while frozen: 1', // process 2 is compared against the dump
    ]);
  });

  it('goes on with a shadow round when a process ended before it was read: the others are sent, it has no shadow', async () => {
    const calls: string[] = [];
    const base = fakeShadow(calls);
    const shadow: ShadowPreCopy = { ...base, capture: async (opts) => (opts.pid === 4243 ? (calls.push('shadow.capture 4243 ended'), undefined) : base.capture(opts)) };
    const { effects, calls: effectCalls } = setUp(join(dir.path, 'ended'), { shadow });
    const one = await oneShadowRoundThenTransfer(effects, 'm8', 'web-8');
    expect(one.bytes).toBe(3 + 50);
    expect(effectCalls).toContain('client.verifyRound m8 1 pagemap-1.img,pages-1.img');
    expect(calls.slice(-2)).toEqual(['shadow.compareFrozen 4242 1 against round 1', 'shadow.diff 1 against round 1, compared while frozen: 1']);
  });

  it('stops the frozen comparison when CRIU\'s dump fails, so the shard is resumed without waiting for it', async () => {
    const calls: string[] = [];
    const shadow: ShadowPreCopy = {
      ...fakeShadow(calls),
      compareFrozen: async ({ pid, signal }) => {
        // A comparison that would take long: it ends only when told to stop (bounded by the test's timeout).
        await new Promise<void>((resolve) => (signal?.aborted ? resolve() : signal?.addEventListener('abort', () => resolve())));
        calls.push(`shadow.compareFrozen ${pid} stopped: ${String(signal?.aborted)}`);
        throw signal?.reason;
      },
    };
    const { effects } = setUp(join(dir.path, 'dump-fails'), { shadow, dumpFails: 'criu dump failed (exit 1): Can\'t dump' });
    let record: MigrationRecord = { ...planMigration({ id: 'm7', fleet: 'f', shardId: 'web-7', applicationId: 'web', source: 'host-1', destination: 'host-2', preCopy: true }, AT), preCopyMethod: 'shadow' };
    await effects.prepare(record);
    const one = await effects.preCopyRound(record, 1);
    record = { ...advance(advance(record, 'prepared', AT), 'pre-copy', AT), rounds: [{ round: 1, bytes: one.bytes }] };
    await effects.freeze(record);
    await expect(effects.dump(record)).rejects.toThrow("criu dump failed (exit 1): Can't dump");
    expect(calls.slice(-1)).toEqual(['shadow.compareFrozen 4242 stopped: true']);
  });

  it('refuses before freezing anything when this host\'s disk cannot hold the dump, and tells the destination the image size otherwise', async () => {
    const record = planMigration({ id: 'm10', fleet: 'f', shardId: 'web-10', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT);
    const full = setUp(join(dir.path, 'disk-full'), { freeBytes: GiB, imageBytes: GiB });
    await expect(full.effects.prepare(record)).rejects.toMatchObject({
      code: 'REFUSED',
      message: `not enough disk under ${join(dir.path, 'disk-full')} for the dump of shard web-10: ~1088 MiB needed (1024 MiB of memory + 64 MiB), 1024 MiB free`,
    });
    expect(full.calls).toEqual([]); // the destination was not asked

    const roomy = setUp(join(dir.path, 'disk-roomy'), { freeBytes: 2 * GiB, imageBytes: GiB });
    await roomy.effects.prepare(record);
    expect(roomy.prepared.map((b) => b.imageBytes)).toEqual([GiB]);
    // And its own time limit: the destination's sweep of quiet migrations waits at least that long.
    expect(roomy.prepared.map((b) => b.timeoutSeconds)).toEqual([record.timeoutSeconds]);
    // And the shard's log files here, which its processes hold open: the destination restores them onto its own.
    expect(roomy.prepared.map((b) => b.logFiles)).toEqual([{ stdout: `/var/lib/shardform/host-1/logs/${record.shardId}/stdout.log`, stderr: `/var/lib/shardform/host-1/logs/${record.shardId}/stderr.log` }]);
  });

  it("tells the destination the memory and the state directory apart, and is not refused for a state directory it will not pack: the destination sees it (a shared file system)", async () => {
    const record = planMigration({ id: 'm12', fleet: 'f', shardId: 'web-12', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT);
    // A small process with a large database in its state directory, on NFS: the memory fits this disk, the state does not, and needs not.
    const shared = setUp(join(dir.path, 'state-shared'), { freeBytes: 2 * GiB, imageBytes: GiB / 4, stateBytes: 3 * GiB, sharedStateDirectory: true });
    await shared.effects.prepare(record);
    expect(shared.calls).toEqual(['client.prepare m12 web-12 {"cpuCores":1,"memoryBytes":1024}']);
    expect(shared.prepared.map((b) => [b.imageBytes, b.stateBytes])).toEqual([[GiB / 4, 3 * GiB]]);
    // Without a state directory nothing is said of it (a destination older than the field would refuse the body).
    const stateless = setUp(join(dir.path, 'stateless'), { freeBytes: 2 * GiB, imageBytes: GiB / 4, stateBytes: 0 });
    await stateless.effects.prepare(record);
    expect(stateless.prepared.map((b) => [b.imageBytes, 'stateBytes' in b])).toEqual([[GiB / 4, false]]);
    // The memory alone still refuses before the destination is asked.
    const full = setUp(join(dir.path, 'memory-full'), { freeBytes: GiB / 4, imageBytes: GiB / 4, stateBytes: 3 * GiB, sharedStateDirectory: true });
    await expect(full.effects.prepare(record)).rejects.toMatchObject({ code: 'REFUSED', message: expect.stringContaining('~320 MiB needed (256 MiB of memory + 64 MiB), 256 MiB free') });
    expect(full.calls).toEqual([]); // the destination was not asked
  });

  it('refuses after the prepare when the destination does not see the state directory and this disk cannot hold its archive beside the dump; the abort frees the destination', async () => {
    const root = join(dir.path, 'state-own');
    const destination = fakeDestination(join(root, 'destination'), { cpuCores: 8, memoryBytes: 64 * GiB }, { cpuCores: 0, memoryBytes: 0 }, 100 * GiB);
    const app = await buildMigrationApp({ token: destination.deps.token, plugins: [migrationRoutes(destination.deps)] });
    try {
      const source = setUp(root, { destination: app, freeBytes: 2 * GiB, imageBytes: GiB / 4, stateBytes: 3 * GiB });
      const journal = new MigrationJournal(new MemoryJournalStore());
      const driver = new MigrationDriver({ journal, effects: source.effects, now: () => new Date(AT) });
      const record = await driver.migrate({ id: 'm14', fleet: 'f', shardId: 'web-14', applicationId: 'web', source: 'host-1', destination: 'host-2', timeoutSeconds: 60 });
      expect(record.state).toBe('aborted');
      expect(record.abort).toMatchObject({
        from: 'prepared',
        cleanup: 'complete',
        reason: `prepared: not enough disk under ${root} for the dump of shard web-14: ~3392 MiB needed (256 MiB of memory + 3072 MiB of state directory + 64 MiB), 2048 MiB free`,
      });
      // The destination was asked (memory and state apart, its own disk holds both), then its prepared copy aborted.
      expect(source.prepared.map((b) => [b.imageBytes, b.stateBytes])).toEqual([[GiB / 4, 3 * GiB]]);
      expect(source.calls.filter((c) => c.startsWith('client.'))).toEqual([`client.prepare m14 web-14 {"cpuCores":1,"memoryBytes":${GiB}}`, `client.abort m14 web-14 ${record.abort?.reason}`]);
      expect(destination.handover.calls).toEqual(['prepareIncoming web-14', 'discard web-14']);
      expect(destination.incoming.status('m14')).toEqual({ shardId: 'web-14', state: 'aborted' });
      expect(existsSync(join(root, 'destination', 'm14'))).toBe(false);
      // Its mark is gone from the state directory, and the shard runs on here.
      expect(readdirSync(join(root, 'apps', 'web-14'))).toEqual([]);
      expect(source.calls).toContain('handover.adopt web-14');
    } finally {
      await app.close();
    }
  });

  it('walks the state directory once per migration, and counts none of it where the destination sees that very directory', async () => {
    const record = planMigration({ id: 'm13', fleet: 'f', shardId: 'web-13', applicationId: 'web', source: 'host-1', destination: 'host-2', preCopy: true }, AT);
    const own = setUp(join(dir.path, 'walk-once'), { shadow: fakeShadow([]), freeBytes: 3.5 * GiB, imageBytes: GiB, stateBytes: GiB });
    await own.effects.prepare(record);
    // 3 x 1 GiB of memory and 1 GiB of state do not fit in 3.5 GiB: no shadow.
    expect(await own.effects.preCopySupport(record)).toMatchObject({ ok: false });
    expect(own.stateWalks()).toBe(1);
    const shared = setUp(join(dir.path, 'walk-shared'), { shadow: fakeShadow([]), freeBytes: 3.5 * GiB, imageBytes: GiB, stateBytes: GiB, sharedStateDirectory: true });
    await shared.effects.prepare(record);
    expect(await shared.effects.preCopySupport(record)).toEqual({ ok: true, method: 'shadow' });
  });

  it('skips shadow pre-copy, with the reason, when the disk holds the dump but not a shadow beside it', async () => {
    const record = planMigration({ id: 'm11', fleet: 'f', shardId: 'web-11', applicationId: 'web', source: 'host-1', destination: 'host-2', preCopy: true }, AT);
    const { effects: oneCopy } = setUp(join(dir.path, 'one-copy'), { shadow: fakeShadow([]), freeBytes: 2.5 * GiB, imageBytes: GiB });
    expect(await oneCopy.preCopySupport(record)).toEqual({
      ok: false,
      reason: `no soft-dirty, and not enough disk under ${join(dir.path, 'one-copy')} for a shadow beside the final dump and its rewrite: ~3136 MiB needed (3 x 1024 MiB of memory + 64 MiB), 2560 MiB free`,
    });
    const { effects: roomy } = setUp(join(dir.path, 'three-copies'), { shadow: fakeShadow([]), freeBytes: 4 * GiB, imageBytes: GiB });
    expect(await roomy.preCopySupport(record)).toEqual({ ok: true, method: 'shadow' });
  });

  it('says why it cannot pre-copy at all when neither CRIU nor the shadow can', async () => {
    const { effects } = setUp(join(dir.path, 'none'), { shadow: fakeShadow([], false) });
    const record = planMigration({ id: 'm9', fleet: 'f', shardId: 'web-9', applicationId: 'web', source: 'host-1', destination: 'host-2', preCopy: true }, AT);
    expect(await effects.preCopySupport(record)).toEqual({ ok: false, reason: 'no soft-dirty; /proc/self/pagemap is missing' });
  });

  it('undoes with what the journal and the cgroup say: abort the destination copy; thaw, continue and re-adopt the source', async () => {
    const { calls, effects } = setUp(join(dir.path, 'b'));
    const record = { ...planMigration({ id: 'm2', fleet: 'f', shardId: 'web-1', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT), abort: { reason: 'dumped: boom', from: 'dumped' as const, cleanup: 'pending' as const } };
    await effects.destroyDestination(record);
    await effects.resumeSource(record);
    expect(calls).toEqual(['client.abort m2 web-1 dumped: boom', 'criuAtWork 4242 /sys/fs/cgroup/freezer/shardform/host-1/web-0', 'driver.thaw web-1', 'handover.adopt web-1']);
  });

  it('puts the state directory back before it thaws the source, where a destination on the same file system died with its copy swapped in', async () => {
    const root = join(dir.path, 'reclaim');
    const { calls, effects } = setUp(root, { thawSees: join(root, 'apps', 'web-1', 'counter') });
    const state = join(root, 'apps', 'web-1');
    // What the destination's unpack left: the shard's own directory aside, its marked copy in place.
    mkdirSync(`${state}.previous-m2`, { recursive: true });
    writeFileSync(join(`${state}.previous-m2`, 'counter'), '41');
    mkdirSync(state);
    writeFileSync(join(state, 'counter'), '40');
    writeFileSync(join(state, '.shardform-unpacked-m2'), '');
    const record = { ...planMigration({ id: 'm2', fleet: 'f', shardId: 'web-1', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT), abort: { reason: 'restored: boom', from: 'restored' as const, cleanup: 'pending' as const } };
    await effects.resumeSource(record);
    expect(calls).toContain('driver.thaw web-1 (counter 41)');
    expect(readdirSync(join(root, 'apps'))).toEqual(['web-1']);
    expect(readdirSync(state)).toEqual(['counter']);
  });

  it('resumes nothing while the state directory cannot be found (no plan yet): recovery retries rather than run the shard beside a copy', async () => {
    const { calls, effects } = setUp(join(dir.path, 'no-plan'), { stateDirectory: new Error('no plan loaded yet') });
    const record = { ...planMigration({ id: 'm2', fleet: 'f', shardId: 'web-1', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT), abort: { reason: 'restored: boom', from: 'restored' as const, cleanup: 'pending' as const } };
    await expect(effects.resumeSource(record)).rejects.toThrow('no plan loaded yet');
    expect(calls).toEqual([]);
  });

  it('fails the dump, before CRIU starts, when the application left the plan (its state directory is unknown), and when the state cannot be packed', async () => {
    const gone = setUp(join(dir.path, 'gone'), { stateDirectory: null });
    const record = { ...planMigration({ id: 'm4', fleet: 'f', shardId: 'web-4', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT), state: 'frozen' as const };
    await expect(gone.effects.dump(record)).rejects.toThrow('migration m4: application web is no longer in the plan; its state directory is unknown');
    expect(gone.calls.filter((c) => c.startsWith('criu.'))).toEqual([]);
    const unpackable = setUp(join(dir.path, 'unpackable'), { pack: async () => { throw new Error('cannot pack the state directory /x: tar: ./db: Cannot open: Permission denied'); } });
    await expect(unpackable.effects.dump(record)).rejects.toThrow('Permission denied');
  });

  it('does not resume a source that a CRIU dump left by the previous agent still holds: it would stop it again when done', async () => {
    let working: { pid: number; ageSeconds?: number; startTime?: number }[] = [{ pid: 31337, ageSeconds: 3 }];
    const { calls, effects } = setUp(join(dir.path, 'criu-at-work'), { criuAtWork: () => working });
    const record = { ...planMigration({ id: 'm8', fleet: 'f', shardId: 'web-8', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT), abort: { reason: 'recovered in state frozen before commit', from: 'frozen' as const, cleanup: 'pending' as const } };
    await expect(effects.resumeSource(record)).rejects.toMatchObject({
      code: 'TIMEOUT',
      message: 'shard web-8 is still being checkpointed by CRIU (pid 31337, left running by an earlier run of this agent); it resumes once CRIU is done or at its time limit (120 s; retried), or kill that pid to resume it now',
    });
    // Past CRIU's timeout it is killed, as the agent that started it would have: a real process
    // stands in for the orphaned CRIU; a pid whose start time differs (reused) is left alone.
    const orphan = spawn('sleep', ['100'], { stdio: 'ignore' });
    const exited = new Promise<string | null>((resolve) => orphan.once('exit', (_code, signal) => resolve(signal)));
    try {
      const started = (await readProcStat(orphan.pid!))!.startTime;
      working = [{ pid: orphan.pid!, ageSeconds: 121, startTime: started + 1 }];
      await expect(effects.resumeSource(record)).rejects.toMatchObject({ message: expect.stringContaining('killed (or gone)') });
      expect(orphan.exitCode === null && orphan.signalCode === null).toBe(true); // not the same process: spared
      working = [{ pid: orphan.pid!, ageSeconds: 121, startTime: started }];
      await expect(effects.resumeSource(record)).rejects.toMatchObject({
        message: `shard web-8 was still being checkpointed by CRIU (pid ${orphan.pid}, left running by an earlier run of this agent) past its time limit (120 s): killed (or gone); it resumes at the next try`,
      });
      expect(await exited).toBe('SIGKILL');
    } finally {
      orphan.kill('SIGKILL');
    }
    expect(calls.filter((c) => c.startsWith('driver.') || c.startsWith('handover.'))).toEqual([]); // nothing touched
    working = [];
    await effects.resumeSource(record);
    expect(calls.slice(-2)).toEqual(['driver.thaw web-8', 'handover.adopt web-8']);
  });

  it('lets a CRIU dump left running by the previous agent run as long as that agent would have: its limit grew with the memory (64 GiB: 1054 s)', async () => {
    let working: { pid: number; ageSeconds?: number; startTime?: number; timeLimitMs?: number; environmentUnreadable?: true }[] = [];
    const { effects } = setUp(join(dir.path, 'criu-at-work-big'), { criuAtWork: () => working });
    const orphan = spawn('sleep', ['100'], { stdio: 'ignore' });
    const exited = new Promise<string | null>((resolve) => orphan.once('exit', (_code, signal) => resolve(signal)));
    // Planned just now: 300 s (the default) before the migration's deadline.
    const record = { ...planMigration({ id: 'm9', fleet: 'f', shardId: 'web-9', applicationId: 'web', source: 'host-1', destination: 'host-2' }, new Date().toISOString()), abort: { reason: 'recovered in state dumped before commit', from: 'dumped' as const, cleanup: 'pending' as const } };
    try {
      const startTime = (await readProcStat(orphan.pid!))!.startTime;
      // 200 s into a dump its agent gave 1054 s: not overdue (at a fixed 120 s it was killed here).
      working = [{ pid: orphan.pid!, ageSeconds: 200, startTime, timeLimitMs: 1_054_000 }];
      await expect(effects.resumeSource(record)).rejects.toMatchObject({ message: expect.stringContaining('it resumes once CRIU is done or at its time limit (1054 s; retried)') });
      // Its environment unreadable: the limit is unknown, but never past the migration's deadline; 300 s remain.
      working = [{ pid: orphan.pid!, ageSeconds: 200, startTime, environmentUnreadable: true }];
      await expect(effects.resumeSource(record)).rejects.toMatchObject({ message: expect.stringContaining('it resumes once CRIU is done') });
      expect(orphan.exitCode === null && orphan.signalCode === null).toBe(true);
      // Past the limit its agent gave it: killed.
      working = [{ pid: orphan.pid!, ageSeconds: 1055, startTime, timeLimitMs: 1_054_000 }];
      await expect(effects.resumeSource(record)).rejects.toMatchObject({ message: expect.stringContaining('past its time limit (1054 s): killed (or gone)') });
      expect(await exited).toBe('SIGKILL');
    } finally {
      orphan.kill('SIGKILL');
    }
  });

  it('gives a source whose run is gone back to reconcile instead of failing every retry: the host rebooted (no cgroup), or the workload ended while held', async () => {
    const record = { ...planMigration({ id: 'm7', fleet: 'f', shardId: 'web-7', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT), abort: { reason: 'recovered in state restored before commit', from: 'restored' as const, cleanup: 'pending' as const } };
    const rebooted = setUp(join(dir.path, 'rebooted'), { cgroup: false });
    await rebooted.effects.resumeSource(record);
    expect(rebooted.calls).toEqual(['handover.discard web-7']);
    const ended = setUp(join(dir.path, 'ended'), { root: false });
    await ended.effects.resumeSource(record);
    expect(ended.calls).toEqual(['criuAtWork - /sys/fs/cgroup/freezer/shardform/host-1/web-0', 'driver.thaw web-7', 'handover.discard web-7']);
  });

  it('refuses to restore when this agent sent no image (a restarted agent aborts instead)', async () => {
    const { effects } = setUp(join(dir.path, 'c'));
    const record = planMigration({ id: 'm3', fleet: 'f', shardId: 'web-2', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT);
    await expect(effects.restore(record)).rejects.toThrow('migration m3: no image was sent by this agent');
  });
});

describe('pastTimeLimit: when a CRIU left by an earlier agent may be killed', () => {
  it('never before the agent that started it would have, and never never', () => {
    // Named in its environment: exactly that (1000 s into a limit of 1054 s, the deadline is at least 54 s away).
    expect(pastTimeLimit({ timeLimitMs: 1_054_000 }, 1_000_000, 54_000)).toBe(false);
    expect(pastTimeLimit({ timeLimitMs: 1_054_000 }, 1_054_001, 10_000)).toBe(true);
    // None named: an agent from before the rule, 120 s.
    expect(pastTimeLimit({}, 120_000, 10_000)).toBe(false);
    expect(pastTimeLimit({}, 120_001, 10_000)).toBe(true);
    // Unknown: past the floor and the migration's deadline.
    expect(pastTimeLimit({ environmentUnreadable: true }, 500_000, 1)).toBe(false);
    expect(pastTimeLimit({ environmentUnreadable: true }, 100_000, -1)).toBe(false);
    expect(pastTimeLimit({ environmentUnreadable: true }, 120_001, -1)).toBe(true);
  });

  it("believes a named limit only up to the migration's deadline: no agent gives one that reaches past it (beyond the floor)", () => {
    // 10^15 ms (what the parser accepts, ~31,700 years) would keep the shard frozen for good.
    expect(pastTimeLimit({ timeLimitMs: 10 ** 15 }, 120_001, -1)).toBe(true);
    expect(pastTimeLimit({ timeLimitMs: 10 ** 15 }, 120_000, -1)).toBe(false); // the floor still stands
    expect(pastTimeLimit({ timeLimitMs: 10 ** 15 }, 500_000, 1)).toBe(false); // the deadline not yet passed
    // A limit its agent could have given (1054 s, 1000 s into it) is never cut: the deadline is then 54 s away.
    expect(pastTimeLimit({ timeLimitMs: 1_054_000 }, 1_000_000, 54_000)).toBe(false);
  });
});
