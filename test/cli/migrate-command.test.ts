import type { FastifyInstance } from 'fastify';
import { buildMigrationApp } from '../../host-agent/api/migration-app';
import { migrationControlRoutes } from '../../host-agent/api/migration-control-routes';
import { MigrationError } from '../../host-agent/migration/migration-error';
import { advance, abortRecord, planMigration, type MigrationRecord, type NewMigration } from '../../host-agent/migration/migration-record';
import { runCli, tempDir } from '../helpers/cli';

/** A source agent whose migrations are scripted: done for web-0, aborted for web-1, failed part-way for web-4. */
async function fakeSourceAgent(): Promise<{ app: FastifyInstance; url: string; started: NewMigration[]; journal: MigrationRecord[] }> {
  const started: NewMigration[] = [];
  /** What GET /v1/migrations lists: every record a migration returned, and any a test adds. */
  const journal: MigrationRecord[] = [];
  const app = await buildMigrationApp({
    token: () => 'cli-token',
    plugins: [
      migrationControlRoutes({
        hostId: 'host-1',
        fleet: 'demo',
        peers: () => ['host-1', 'host-2'],
        applicationOf: (shardId) => (shardId.startsWith('web-') ? 'web' : undefined),
        newId: (shardId) => `mig-${shardId}`,
        list: async () => [...journal],
        migrate: async (input) => {
          const record = await scripted(input);
          journal.push(record);
          return record;
        },
      }),
    ],
  });
  async function scripted(input: NewMigration): Promise<MigrationRecord> {
    started.push(input);
    let record: MigrationRecord = planMigration({ ...input, ...(input.shardId === 'web-2' ? { strategy: 'restart' as const } : {}) }, '2026-11-25T05:00:00.000Z');
    record = advance(record, 'prepared', '2026-11-25T05:00:00.100Z');
    if (input.shardId === 'web-3') {
      // Pre-copied by comparing page contents (a kernel without dirty-page tracking).
      record = advance(record, 'pre-copy', '2026-11-25T05:00:00.100Z', { preCopyMethod: 'shadow' });
      record = advance(record, 'pre-copy', '2026-11-25T05:00:00.150Z', { rounds: [{ round: 1, bytes: 2 * 2 ** 20 }] });
      record = { ...record, rounds: [...record.rounds, { round: 2, bytes: 2 ** 20 }] };
    }
    if (input.shardId === 'web-4') throw new MigrationError('TRANSFER_FAILED', 'abort at http://10.0.0.2:7101 failed: connect ECONNREFUSED 10.0.0.2:7101');
    if (input.shardId === 'web-1') return abortRecord(record, 'prepared: out of capacity: 0 cpu cores free, shard web-1 needs 1', '2026-11-25T05:00:00.200Z');
    record = advance(record, 'frozen', '2026-11-25T05:00:00.200Z');
    record = advance(record, 'dumped', '2026-11-25T05:00:00.203Z');
    // web-5's pages went out while CRIU dumped them: 2 MiB were on their way when the dump ended.
    record = advance(record, 'transferred', '2026-11-25T05:00:00.380Z', input.shardId === 'web-5' ? { streamedBytes: 2 * 2 ** 20 } : {});
    record = advance(record, 'restored', '2026-11-25T05:00:00.430Z');
    // web-3's destination restored lazily: the shard ran 170 ms of the restore step while its memory was filled.
    record = advance(record, 'committed', '2026-11-25T05:00:00.650Z', { bytesSent: 3 * 2 ** 20, ...(input.shardId === 'web-3' ? { lazyPagesMs: 170 } : {}) });
    record = advance(advance(record, 'released', '2026-11-25T05:00:00.700Z'), 'done', '2026-11-25T05:00:00.800Z');
    return record;
  }
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url, started, journal };
}

describe('shardform migrate', () => {
  const dir = tempDir('shardform-migrate-cli');
  const tokenFile = dir.file('token', 'cli-token\n');
  let agent: Awaited<ReturnType<typeof fakeSourceAgent>>;
  beforeAll(async () => {
    agent = await fakeSourceAgent();
  });
  afterAll(async () => {
    await agent.app.close();
    dir.remove();
  });

  it('exits 0 and prints downtime, total time and bytes when the shard moved', async () => {
    const result = await runCli('migrate', 'web-0', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe('shard web-0 moved host-1 -> host-2: downtime 450 ms (freeze 3, dump 177, transfer 50, restore 220 ms), total 800 ms, 3MiB sent (migration mig-web-0)');
    expect(agent.started.at(-1)).toMatchObject({ shardId: 'web-0', applicationId: 'web', source: 'host-1', destination: 'host-2', fleet: 'demo' });
  });

  it('says when the shard moved by restart rather than by checkpoint', async () => {
    const result = await runCli('migrate', 'web-2', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe('shard web-2 moved host-1 -> host-2 by restart (stopped, state directory sent, started): downtime 450 ms (stop 3, archive 177, transfer 50, start 220 ms), total 800 ms, 3MiB sent (migration mig-web-2)');
  });

  it('says how many pre-copy rounds ran, that page contents were compared where the kernel tracks no dirty pages, and how long the shard ran while its memory was filled', async () => {
    const result = await runCli('migrate', 'web-3', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile, '--pre-copy');
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(
      'shard web-3 moved host-1 -> host-2: downtime 280 ms (freeze 3, dump 177, transfer 50, restore 50 ms; then it ran while its memory was filled in, 170 ms), total 800 ms, 3MiB sent, 2 pre-copy round(s) (page contents compared: no dirty-page tracking here) (migration mig-web-3)',
    );
  });

  it('says how much of the image went out while CRIU still dumped it', async () => {
    const result = await runCli('migrate', 'web-5', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe('shard web-5 moved host-1 -> host-2: downtime 450 ms (freeze 3, dump 177 with 2MiB sent meanwhile, transfer 50, restore 220 ms), total 800 ms, 3MiB sent (migration mig-web-5)');
  });

  // A plan's migration.timeoutSeconds and a destination's prepare go up to a day; the control route stopped at an hour.
  it('passes --timeout to the agent, up to the longest timeout a plan may give', async () => {
    const result = await runCli('migrate', 'web-0', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile, '--timeout', '2h');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(agent.started.at(-1)).toMatchObject({ shardId: 'web-0', timeoutSeconds: 7200 });
    const day = await runCli('migrate', 'web-0', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile, '--timeout', '86400');
    expect(day.code).toBe(0);
    expect(agent.started.at(-1)).toMatchObject({ shardId: 'web-0', timeoutSeconds: 86400 });
  });

  it.each([['1d1s'], ['0s'], ['90.5s'], ['soon']])('refuses --timeout %s with exit 2 before any request', async (timeout) => {
    const before = agent.started.length;
    const result = await runCli('migrate', 'web-0', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile, '--timeout', timeout);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--timeout: ${JSON.stringify(timeout)} is not a migration timeout; use whole seconds from 1s to 1d (86400 s), as a plan's migration.timeoutSeconds`);
    expect(agent.started.length).toBe(before);
  });

  it('exits 1 with the reason when the migration aborted; the shard stays where it was', async () => {
    const result = await runCli('migrate', 'web-1', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile);
    expect(result.code).toBe(1);
    expect(result.stdout.trim()).toBe('shard web-1 stays on host-1: migration mig-web-1 aborted: prepared: out of capacity: 0 cpu cores free, shard web-1 needs 1');
  });

  it('exits 1 when the migration failed part-way, and says the agent finishes it on its own', async () => {
    const result = await runCli('migrate', 'web-4', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('agent answered 500: abort at http://10.0.0.2:7101 failed: connect ECONNREFUSED 10.0.0.2:7101');
    expect(result.stderr).toContain('if the migration was journaled, the agent finishes or undoes it on its own (retried every reconcile, 10 s); shardform migrations --agent URL shows where it stands');
  });

  it('exits 1 with the agent\'s refusal for an unknown destination or shard', async () => {
    const unknownHost = await runCli('migrate', 'web-0', '--to', 'host-9', '--agent', agent.url, '--token-file', tokenFile);
    expect(unknownHost.code).toBe(1);
    expect(unknownHost.stderr).toContain('agent answered 409: unknown destination host host-9; known: host-1, host-2');
    const unknownShard = await runCli('migrate', 'db-0', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile);
    expect(unknownShard.stderr).toContain('shard db-0 does not run on host-1');
  });

  it('exits 1 when the token is wrong, and 2 for a bad shard id before any request', async () => {
    const wrong = await runCli('migrate', 'web-0', '--to', 'host-2', '--agent', agent.url, '--token-file', dir.file('bad', 'nope'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('agent answered 401');
    const count = agent.started.length;
    const bad = await runCli('migrate', 'Web_0', '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"Web_0" is not a valid id');
    expect(agent.started.length).toBe(count);
  });

  describe('shardform migrations', () => {
    it('lists the journal newest first: done, aborted, and one still under way with the step it reached', async () => {
      agent.journal.length = 0;
      for (const shard of ['web-0', 'web-1']) await runCli('migrate', shard, '--to', 'host-2', '--agent', agent.url, '--token-file', tokenFile);
      const underWay = advance(advance(planMigration({ id: 'mig-web-9', fleet: 'demo', shardId: 'web-9', applicationId: 'web', source: 'host-1', destination: 'host-2' }, '2026-11-26T01:00:00.000Z'), 'prepared', '2026-11-26T01:00:00.100Z'), 'frozen', '2026-11-26T01:00:00.200Z');
      agent.journal.push(underWay);

      const listed = await runCli('migrations', '--agent', agent.url, '--token-file', tokenFile);
      expect(listed).toMatchObject({ code: 0, stderr: '' });
      const lines = listed.stdout.trim().split('\n');
      expect(lines[0]).toMatch(/^MIGRATION +SHARD +FROM +TO +STRATEGY +STATE +STARTED +DOWNTIME +TOTAL +SENT +ROUNDS +REASON$/);
      // Newest first: the one under way started a day after the others.
      expect(lines[1]!.split(/ +/).slice(0, 7)).toEqual(['mig-web-9', 'web-9', 'host-1', 'host-2', 'checkpoint', 'frozen', '2026-11-26T01:00:00.000Z']);
      expect(listed.stdout).toMatch(/mig-web-0 +web-0 +host-1 +host-2 +checkpoint +done +2026-11-25T05:00:00.000Z +450 ms +800 ms +3MiB +0 +-/);
      expect(listed.stdout).toMatch(/mig-web-1 +web-1 .* aborted .* prepared: out of capacity: 0 cpu cores free, shard web-1 needs 1/);

      const json = await runCli('migrations', '--agent', agent.url, '--token-file', tokenFile, '--shard', 'web-1', '--json');
      expect(json.code).toBe(0);
      expect((JSON.parse(json.stdout) as { migrations: { id: string; startedAt: string }[] }).migrations).toEqual([expect.objectContaining({ id: 'mig-web-1', state: 'aborted', startedAt: '2026-11-25T05:00:00.000Z' })]);
      const one = await runCli('migrations', '--agent', agent.url, '--token-file', tokenFile, '--limit', '1');
      expect(one.stdout.trim().split('\n')).toHaveLength(2);
    });

    it.each([
      [['--limit', '0'], '--limit: "0" is not a whole number of migrations of 1 or more'],
      [['--limit', '2.5'], '--limit: "2.5" is not a whole number'],
      [['--shard', 'Web_0'], '--shard: "Web_0" is not a valid id'],
    ])('refuses %j with exit 2 before any request', async (flags, message) => {
      const r = await runCli('migrations', '--agent', agent.url, '--token-file', tokenFile, ...flags);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
    });
  });
});
