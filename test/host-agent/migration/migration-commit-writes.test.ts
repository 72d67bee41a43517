import { assignmentOnCommit } from '../../../host-agent/migration/migration-assignment';
import { MigrationDriver } from '../../../host-agent/migration/migration-driver';
import { MigrationJournal } from '../../../host-agent/migration/migration-journal';
import type { NewMigration } from '../../../host-agent/migration/migration-record';
import { assignmentKey, parseAssignments } from '../../../host-agent/plan-source/shard-assignment';
import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';
import { FakeClock, FakeEffects, MemoryJournalStore, recordIn } from '../../helpers/migration-fakes';

const INPUT: NewMigration = { id: 'm1', fleet: 'f', shardId: 'web-0', applicationId: 'web', source: 'host-1', destination: 'host-2', timeoutSeconds: 60 };
const DESIRED: DesiredShard = { shardId: 'web-0', applicationId: 'web', limits: { cpuCores: 0.5, memoryBytes: 256 << 20 }, command: ['/bin/app'], env: {}, stateDirectory: '/srv/web' };

function setUp(commitWrites: ConstructorParameters<typeof MigrationDriver>[0]['commitWrites']) {
  const store = new MemoryJournalStore();
  const journal = new MigrationJournal(store);
  const effects = new FakeEffects(journal);
  const clock = new FakeClock();
  const driver = new MigrationDriver({ journal, effects, now: clock.now, commitWrites });
  return { store, journal, effects, driver };
}

describe('the commit moves the shard with the journal', () => {
  it('writes the assignment to the destination in the same transaction as `committed`', async () => {
    const { store, journal, driver } = setUp(async (record) => [assignmentOnCommit(record, DESIRED, '2026-01-01T00:00:00.000Z')]);
    const record = await driver.migrate(INPUT);
    expect(record.state).toBe('done');
    const assignment = store.data.get(assignmentKey('f', 'web-0'))!;
    const committedAt = record.history.findIndex((h) => h.state === 'committed');
    // Same revision as the `committed` record: the journal's next writes (released, done) came after.
    expect(assignment.modRevision).toBe((await journal.load('f', 'm1'))!.modRevision - (record.history.length - 1 - committedAt));
    const parsed = parseAssignments([assignment]);
    expect(parsed.problems).toEqual([]);
    expect(parsed.assignments.get('web-0')).toEqual({ shardId: 'web-0', applicationId: 'web', hostId: 'host-2', limits: { cpuCores: 0.5, memoryBytes: 256 << 20 }, by: 'migration', at: '2026-01-01T00:00:00.000Z' });
  });

  it('writes no assignment when the migration aborts before commit', async () => {
    const { store, effects, driver } = setUp(async (record) => [assignmentOnCommit(record, DESIRED, '2026-01-01T00:00:00.000Z')]);
    effects.fail.set('restore', new Error('criu restore failed'));
    const record = await driver.migrate(INPUT);
    expect(record.state).toBe('aborted');
    expect(store.data.has(assignmentKey('f', 'web-0'))).toBe(false);
  });

  it('aborts (destination destroyed, source resumed) when the commit writes cannot be computed', async () => {
    const { store, effects, driver } = setUp(async () => {
      throw new Error('shard web-0 is not one this host should run');
    });
    const record = await driver.migrate(INPUT);
    expect(record.state).toBe('aborted');
    expect(record.abort).toMatchObject({ from: 'restored', cleanup: 'complete', reason: 'committing: shard web-0 is not one this host should run' });
    expect(effects.effects().slice(-2)).toEqual(['destroyDestination', 'resumeSource']);
    expect(store.data.has(assignmentKey('f', 'web-0'))).toBe(false);
  });

  it('leaves out limits the shard does not have', () => {
    const op = assignmentOnCommit(recordIn('committed'), { ...DESIRED, limits: {} }, '2026-01-01T00:00:00.000Z');
    expect(op.kind === 'put' && JSON.parse(op.value).limits).toBeUndefined();
  });
});
