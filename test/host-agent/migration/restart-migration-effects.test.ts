import { existsSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ImageFile } from '../../../host-agent/checkpoint/image-manifest';
import { MigrationDriver } from '../../../host-agent/migration/migration-driver';
import { MigrationError } from '../../../host-agent/migration/migration-error';
import { MigrationJournal } from '../../../host-agent/migration/migration-journal';
import { planMigration, type NewMigration } from '../../../host-agent/migration/migration-record';
import { RestartMigrationEffects } from '../../../host-agent/migration/restart-migration-effects';
import { replacedStateDir, STATE_ARCHIVE } from '../../../host-agent/migration/state-archive';
import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';
import { FakeClock, MemoryJournalStore } from '../../helpers/migration-fakes';

const INPUT: NewMigration = { id: 'm1', fleet: 'f', shardId: 'db-0', applicationId: 'db', source: 'host-1', destination: 'host-2', strategy: 'restart', timeoutSeconds: 60 };

/** Records every hand-over and destination call in order; `failOn` makes one of them throw. */
/** `storeAwayAfter`: from that step on, the journal store and describe (which reads it) fail, as with etcd unreachable. */
function setUp(opts: { sharedStateDirectory?: boolean; failOn?: string; sourcePids?: number[]; sourceCgroup?: boolean; describeFails?: Error; stateDirectoryFails?: Error; storeAwayAfter?: string; describeFailsAfter?: string } = {}) {
  const work = mkdtempSync(join(tmpdir(), 'sf-restart-'));
  const desired: DesiredShard = { shardId: 'db-0', applicationId: 'db', limits: { cpuCores: 1 }, command: ['/bin/db'], env: {}, stateDirectory: join(work, 'state') };
  mkdirSync(join(work, 'state', 'db-0'), { recursive: true });
  writeFileSync(join(work, 'state', 'db-0', 'counter'), '41');
  const calls: string[] = [];
  let storeAway = false;
  let describeAway = false;
  const step = async (name: string) => {
    calls.push(name);
    if (opts.describeFailsAfter === name) describeAway = true;
    if (opts.storeAwayAfter === name) {
      storeAway = true;
      store.writesFail = new Error('etcd unreachable');
    }
    if (opts.failOn === name) throw new Error(`${name} failed`);
  };
  let uploaded: { dir: string; files: readonly { name: string; bytes: number }[] } | undefined;
  let markAtPrepare: string[] = [];
  const effects = new RestartMigrationEffects({
    driver: {
      pids: async () => {
        if (opts.sourceCgroup === false) throw new Error('shard db-0: no cgroup');
        return opts.sourcePids ?? [];
      },
      exists: async () => opts.sourceCgroup ?? true,
    },
    handover: {
      release: async () => (await step('release'), {}),
      stopHeld: async () => step('stopHeld'),
      startHeld: async (id) => (await step('source.startHeld'), { shardId: id, applicationId: 'db', state: 'running', restarts: 0, adopted: false, frozen: false, limits: {} }),
      adopt: async (id) => (await step('source.adopt'), { shardId: id, applicationId: 'db', state: 'running', restarts: 0, adopted: true, frozen: false, limits: {} }),
      discard: async () => step('source.discard'),
    },
    describe: async () => {
      if (opts.describeFails) throw opts.describeFails;
      if (storeAway || describeAway) throw new Error('etcd unreachable');
      return desired;
    },
    stateDirectoryOf: async () => {
      if (opts.stateDirectoryFails) throw opts.stateDirectoryFails;
      return desired.stateDirectory;
    },
    client: () => ({
      prepare: async () => {
        markAtPrepare = readdirSync(join(work, 'state', 'db-0')).filter((name) => name.startsWith('.shardform-'));
        await step('dest.prepare');
        return { sharedStateDirectory: opts.sharedStateDirectory ?? false, chunkedUploads: false };
      },
      uploadRound: async (_id: string, _round: number, dir: string, files: readonly { name: string; bytes: number }[]) => {
        await step('dest.upload');
        uploaded = { dir, files };
        const sent: ImageFile[] = files.map((f) => ({ name: f.name, bytes: f.bytes, sha256: 'a'.repeat(64) }));
        return { files: sent, totalBytes: files.reduce((s, f) => s + f.bytes, 0) };
      },
      start: async (_id: string, rounds: readonly unknown[]) => (await step(`dest.start${rounds.length === 0 ? ' (no archive)' : ''}`), 1234),
      commit: async () => step('dest.commit'),
      abort: async () => step('dest.abort'),
    }),
    imagesRoot: join(work, 'images'),
  });
  const store = new MemoryJournalStore();
  const journal = new MigrationJournal(store);
  const driver = new MigrationDriver({ journal, effects, now: new FakeClock().now });
  return { work, calls, driver, effects, uploaded: () => uploaded, markAtPrepare: () => markAtPrepare };
}

describe('restart migration (stop, move the state directory, start)', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('stops the source before anything starts on the destination, sends the state as one archive, and releases the source after commit', async () => {
    const { work, calls, driver, uploaded } = setUp();
    dirs.push(work);
    const record = await driver.migrate(INPUT);
    expect(record.history.map((h) => h.state)).toEqual(['planned', 'prepared', 'frozen', 'dumped', 'transferred', 'restored', 'committed', 'released', 'done']);
    expect(calls).toEqual(['dest.prepare', 'release', 'stopHeld', 'dest.upload', 'dest.start', 'dest.commit', 'source.discard']);
    expect(uploaded()!.files.map((f) => f.name)).toEqual([STATE_ARCHIVE]);
    expect(record.bytesSent).toBe(uploaded()!.files[0]!.bytes);
    expect(record).toMatchObject({ strategy: 'restart', rounds: [] });
    expect(existsSync(join(work, 'images', 'm1'))).toBe(false);
  });

  it('sends no archive when the destination sees this very state directory (its prepare found the mark), and leaves no mark behind', async () => {
    const { work, calls, driver, uploaded } = setUp({ sharedStateDirectory: true });
    dirs.push(work);
    const record = await driver.migrate(INPUT);
    expect(record.state).toBe('done');
    expect(calls).toEqual(['dest.prepare', 'release', 'stopHeld', 'dest.start (no archive)', 'dest.commit', 'source.discard']);
    expect(uploaded()).toBeUndefined();
    expect(record.bytesSent).toBe(0);
    expect(readdirSync(join(work, 'state', 'db-0'))).toEqual(['counter']);
  });

  it('marks the state directory before it asks the destination to prepare, and removes the mark when the migration aborts', async () => {
    const { work, driver, markAtPrepare } = setUp({ failOn: 'dest.upload' });
    dirs.push(work);
    const record = await driver.migrate(INPUT);
    expect(markAtPrepare()).toEqual(['.shardform-migrating-m1']);
    expect(record.state).toBe('aborted');
    expect(readdirSync(join(work, 'state', 'db-0'))).toEqual(['counter']);
  });

  it('starts the stopped source again at once when the journal cannot be written after the stop, the store being away', async () => {
    const { work, calls, driver } = setUp({ storeAwayAfter: 'stopHeld' });
    dirs.push(work);
    await expect(driver.migrate(INPUT)).rejects.toThrow('etcd unreachable');
    expect(calls).toEqual(['dest.prepare', 'release', 'stopHeld', 'source.startHeld']);
  });

  it('packs the state directory found from the plan, not the store: the workload is stopped meanwhile', async () => {
    const { work, calls, driver } = setUp({ describeFailsAfter: 'stopHeld' });
    dirs.push(work);
    const record = await driver.migrate(INPUT);
    expect(record.state).toBe('done');
    expect(calls).toContain('dest.upload');
  });

  it('asks for no pre-copy even when the record wants it', async () => {
    const { work, calls, driver } = setUp();
    dirs.push(work);
    const record = await driver.migrate({ ...INPUT, preCopy: true });
    expect(record.preCopySkipped).toBe('the restart strategy moves the state directory, not memory');
    expect(calls).not.toContain('preCopyRound');
  });

  it('aborting after the destination started destroys that copy first, then starts the stopped source again', async () => {
    const { work, calls, driver } = setUp({ failOn: 'dest.start' });
    dirs.push(work);
    const record = await driver.migrate(INPUT);
    expect(record).toMatchObject({ state: 'aborted', abort: { from: 'restored', cleanup: 'complete', reason: 'restored: dest.start failed' } });
    expect(calls.slice(-2)).toEqual(['dest.abort', 'source.startHeld']);
  });

  it('aborting before the stop supervises the still-running source again instead of starting a second run', async () => {
    const { work, calls, driver } = setUp({ failOn: 'dest.prepare', sourcePids: [4242] });
    dirs.push(work);
    const record = await driver.migrate(INPUT);
    expect(record).toMatchObject({ state: 'aborted', abort: { from: 'prepared' } });
    expect(calls).toContain('source.adopt');
    expect(calls).not.toContain('source.startHeld');
    expect(calls).not.toContain('stopHeld');
  });
});

describe('restart migration, the destination died while swapping in the state directory (shared file system)', () => {
  it('the source puts its state directory back before starting again', async () => {
    const { work, calls, effects } = setUp();
    try {
      const dir = join(work, 'state', 'db-0');
      renameSync(dir, replacedStateDir(dir, 'm1'));
      const record = { ...planMigration({ ...INPUT }, '2026-11-25T05:00:00.000Z'), abort: { reason: 'recovered in state restored before commit', from: 'restored' as const, cleanup: 'pending' as const } };
      await effects.resumeSource(record);
      expect(calls).toEqual(['source.startHeld']);
      expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('41');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('restart migration, the destination died mid-swap and the source host is drained', () => {
  it('the source puts its state directory back although it describes no shard (drained), so it is there when the drain is lifted', async () => {
    const { work, calls, effects } = setUp({ describeFails: new MigrationError('INVALID_MIGRATION', 'shard db-0 is not one this host should run') });
    try {
      const dir = join(work, 'state', 'db-0');
      renameSync(dir, replacedStateDir(dir, 'm1'));
      const record = { ...planMigration({ ...INPUT }, '2026-11-25T05:00:00.000Z'), abort: { reason: 'recovered in state restored before commit', from: 'restored' as const, cleanup: 'pending' as const } };
      await effects.resumeSource(record);
      expect(calls).toEqual(['source.startHeld']); // the drain stops it again, with its state in place
      expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('41');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('restart migration, resuming the source while its state directory cannot be found', () => {
  it('starts nothing and fails (recovery retries), rather than starting the shard without a state directory left aside', async () => {
    const { work, calls, effects } = setUp({ stateDirectoryFails: new Error('no plan loaded yet') });
    try {
      const record = { ...planMigration({ ...INPUT }, '2026-11-25T05:00:00.000Z'), abort: { reason: 'recovered in state restored before commit', from: 'restored' as const, cleanup: 'pending' as const } };
      await expect(effects.resumeSource(record)).rejects.toThrow('no plan loaded yet');
      expect(calls).toEqual([]);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('restart migration, the destination died mid-swap and the source host rebooted', () => {
  it('the state directory is put back before reconcile starts the shard afresh from it', async () => {
    const { work, calls, effects } = setUp({ sourceCgroup: false });
    try {
      const dir = join(work, 'state', 'db-0');
      renameSync(dir, replacedStateDir(dir, 'm1'));
      const record = { ...planMigration({ ...INPUT }, '2026-11-25T05:00:00.000Z'), abort: { reason: 'recovered in state restored before commit', from: 'restored' as const, cleanup: 'pending' as const } };
      await effects.resumeSource(record);
      expect(calls).toEqual(['source.discard']);
      expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('41');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('restart migration, the source host rebooted before the commit', () => {
  it('gives the shard back to reconcile (no cgroup to start it in) rather than failing every retry', async () => {
    const { work, calls, effects } = setUp({ sourceCgroup: false });
    rmSync(work, { recursive: true, force: true });
    const record = { ...planMigration({ ...INPUT }, '2026-11-25T05:00:00.000Z'), abort: { reason: 'recovered in state dumped before commit', from: 'dumped' as const, cleanup: 'pending' as const } };
    await effects.resumeSource(record);
    expect(calls).toEqual(['source.discard']);
  });
});
