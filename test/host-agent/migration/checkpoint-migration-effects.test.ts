import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointMigrationEffects } from '../../../host-agent/migration/checkpoint-migration-effects';
import type { MigrationClient } from '../../../host-agent/migration/migration-client';
import { advance, planMigration, type MigrationRecord } from '../../../host-agent/migration/migration-record';
import { tempDir } from '../../helpers/cli';

const AT = '2026-11-25T05:00:00.000Z';

function setUp(root: string) {
  const calls: string[] = [];
  const client = {
    prepare: async (id: string, body: { shard: { shardId: string; limits: object } }) => void calls.push(`client.prepare ${id} ${body.shard.shardId} ${JSON.stringify(body.shard.limits)}`),
    uploadRound: async (id: string, round: number, _dir: string, files: { name: string; bytes: number }[]) => {
      calls.push(`client.uploadRound ${id} ${round} ${files.map((f) => f.name).join(',')}`);
      const sent = files.map((f) => ({ ...f, sha256: 'a'.repeat(64) }));
      return { files: sent, totalBytes: sent.reduce((s, f) => s + f.bytes, 0) };
    },
    restore: async (id: string, rounds: { round: number; parent: number | null }[]) => {
      calls.push(`client.restore ${id} ${JSON.stringify(rounds.map((r) => [r.round, r.parent]))}`);
      return 99;
    },
    commit: async (id: string) => void calls.push(`client.commit ${id}`),
    abort: async (id: string, shardId: string, reason: string) => void calls.push(`client.abort ${id} ${shardId} ${reason}`),
  } as unknown as MigrationClient;
  const effects = new CheckpointMigrationEffects({
    driver: {
      freeze: async (id) => void calls.push(`driver.freeze ${id}`),
      thaw: async (id) => void calls.push(`driver.thaw ${id}`),
      pids: async () => [],
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
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, 'pages-1.img'), Buffer.alloc(10));
        writeFileSync(join(dir, 'core-1.img'), Buffer.alloc(5));
        writeFileSync(join(dir, 'criu-dump.log'), 'log');
      },
    },
    describe: async (shardId) => ({ shardId, applicationId: 'web', limits: { cpuCores: 1, memoryBytes: 1024 }, command: ['x'], env: {}, stateDirectory: '/s' }),
    client: () => client,
    imagesRoot: root,
    findRoot: async () => ({ pid: 4242 }),
  });
  return { calls, effects };
}

describe('checkpoint migration effects (source side)', () => {
  const dir = tempDir('shardform-effects');
  afterAll(() => dir.remove());

  it('prepares, freezes after releasing the keeper, dumps relative to the last pre-copy round, sends and restores every round', async () => {
    const root = join(dir.path, 'a');
    const { calls, effects } = setUp(root);
    let record: MigrationRecord = planMigration({ id: 'm1', fleet: 'f', shardId: 'web-0', applicationId: 'web', source: 'host-1', destination: 'host-2', preCopy: true }, AT);
    await effects.prepare(record);
    const round = await effects.preCopyRound(record, 1);
    record = { ...advance(advance(record, 'prepared', AT), 'pre-copy', AT), rounds: [{ round: 1, bytes: round.bytes }] };
    await effects.freeze(record);
    const dumped = await effects.dump(record);
    const sent = await effects.transfer(record);
    await effects.restore(record);
    await effects.releaseSource(record);
    expect(round.bytes).toBe(100);
    expect(dumped.bytes).toBe(15); // the log is not part of the image
    expect(sent.bytes).toBe(15);
    expect(calls).toEqual([
      'client.prepare m1 web-0 {"cpuCores":1,"memoryBytes":1024}',
      'criu.preDump /m1/1',
      'client.uploadRound m1 1 pages-1.img',
      'handover.release web-0',
      'driver.freeze web-0',
      'criu.dump 4242 /sys/fs/cgroup/freezer/shardform/host-1/web-0 /m1/2 /m1/1',
      'client.uploadRound m1 2 core-1.img,pages-1.img',
      'client.restore m1 [[1,null],[2,1]]',
      'client.commit m1',
      'handover.discard web-0',
    ]);
  });

  it('undoes with what the journal and the cgroup say: abort the destination copy; thaw, continue and re-adopt the source', async () => {
    const { calls, effects } = setUp(join(dir.path, 'b'));
    const record = { ...planMigration({ id: 'm2', fleet: 'f', shardId: 'web-1', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT), abort: { reason: 'dumped: boom', from: 'dumped' as const, cleanup: 'pending' as const } };
    await effects.destroyDestination(record);
    await effects.resumeSource(record);
    expect(calls).toEqual(['client.abort m2 web-1 dumped: boom', 'driver.thaw web-1', 'handover.adopt web-1']);
  });

  it('refuses to restore when this agent sent no image (a restarted agent aborts instead)', async () => {
    const { effects } = setUp(join(dir.path, 'c'));
    const record = planMigration({ id: 'm3', fleet: 'f', shardId: 'web-2', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT);
    await expect(effects.restore(record)).rejects.toThrow('migration m3: no image was sent by this agent');
  });
});
