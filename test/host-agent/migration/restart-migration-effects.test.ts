import { existsSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ImageFile } from '../../../host-agent/checkpoint/image-manifest';
import { MigrationDriver } from '../../../host-agent/migration/migration-driver';
import { MigrationError } from '../../../host-agent/migration/migration-error';
import { MigrationJournal } from '../../../host-agent/migration/migration-journal';
import { planMigration, type NewMigration } from '../../../host-agent/migration/migration-record';
import { RestartMigrationEffects } from '../../../host-agent/migration/restart-migration-effects';
import { packState, reclaimStateDir, replacedStateDir, STATE_ARCHIVE, tidyStateDir, unpackState } from '../../../host-agent/migration/state-archive';
import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';
import { FakeClock, MemoryJournalStore } from '../../helpers/migration-fakes';

const INPUT: NewMigration = { id: 'm1', fleet: 'f', shardId: 'db-0', applicationId: 'db', source: 'host-1', destination: 'host-2', strategy: 'restart', timeoutSeconds: 60 };

/** Records every hand-over and destination call in order; `failOn` makes one of them throw. */
/** `storeAwayAfter`: from that step on, the journal store and describe (which reads it) fail, as with etcd unreachable. */
function setUp(opts: { failOn?: string; sourcePids?: number[]; sourceCgroup?: boolean; describeFails?: Error; stateDirectoryFails?: Error; storeAwayAfter?: string; describeFailsAfter?: string } = {}) {
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
      prepare: async () => (await step('dest.prepare'), { sharedStateDirectory: false }),
      uploadRound: async (_id: string, _round: number, dir: string, files: readonly { name: string; bytes: number }[]) => {
        await step('dest.upload');
        uploaded = { dir, files };
        const sent: ImageFile[] = files.map((f) => ({ name: f.name, bytes: f.bytes, sha256: 'a'.repeat(64) }));
        return { files: sent, totalBytes: files.reduce((s, f) => s + f.bytes, 0) };
      },
      start: async () => (await step('dest.start'), 1234),
      commit: async () => step('dest.commit'),
      abort: async () => step('dest.abort'),
    }),
    imagesRoot: join(work, 'images'),
  });
  const store = new MemoryJournalStore();
  const journal = new MigrationJournal(store);
  const driver = new MigrationDriver({ journal, effects, now: new FakeClock().now });
  return { work, calls, driver, effects, uploaded: () => uploaded };
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

const fsPromises = require('node:fs/promises') as typeof import('node:fs/promises');

describe('state archive', () => {
  it('carries a state directory (files, sub-directories) into a directory whose old content it replaces', async () => {
    const work = mkdtempSync(join(tmpdir(), 'sf-archive-'));
    try {
      mkdirSync(join(work, 'from', 'sub'), { recursive: true });
      writeFileSync(join(work, 'from', 'counter'), '42');
      writeFileSync(join(work, 'from', 'sub', 'wal'), 'x'.repeat(5000));
      mkdirSync(join(work, 'to'));
      writeFileSync(join(work, 'to', 'stale'), 'old');
      await packState(join(work, 'from'), join(work, 'state.tar'));
      await unpackState(join(work, 'state.tar'), join(work, 'to'), 'm1');
      expect(readFileSync(join(work, 'to', 'counter'), 'utf8')).toBe('42');
      expect(readFileSync(join(work, 'to', 'sub', 'wal'), 'utf8')).toHaveLength(5000);
      expect(existsSync(join(work, 'to', 'stale'))).toBe(false);
      expect(existsSync(join(work, 'to.incoming-m1'))).toBe(false);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('moves the old directory aside rather than removing it first, and a source puts it back if the swap stopped half-way', async () => {
    const work = mkdtempSync(join(tmpdir(), 'sf-archive-'));
    try {
      // What a destination that died between its two renames leaves on a shared file system.
      mkdirSync(replacedStateDir(join(work, 'to'), 'm1'), { recursive: true });
      writeFileSync(join(replacedStateDir(join(work, 'to'), 'm1'), 'counter'), '41');
      expect(await reclaimStateDir(join(work, 'to'), 'm2')).toBe(false); // another migration's: not touched
      expect(await reclaimStateDir(join(work, 'to'), 'm1')).toBe(true);
      expect(readFileSync(join(work, 'to', 'counter'), 'utf8')).toBe('41');
      expect(await reclaimStateDir(join(work, 'to'), 'm1')).toBe(false); // in place: nothing to do

      // A whole unpack keeps the old directory aside until its migration ends; the commit's tidy
      // leaves neither the incoming nor the previous directory behind; into a missing directory too.
      mkdirSync(join(work, 'from'));
      writeFileSync(join(work, 'from', 'counter'), '42');
      await packState(join(work, 'from'), join(work, 'state.tar'));
      await unpackState(join(work, 'state.tar'), join(work, 'to'), 'm1');
      await unpackState(join(work, 'state.tar'), join(work, 'fresh'), 'm1');
      expect(readFileSync(join(work, 'to', 'counter'), 'utf8')).toBe('42');
      expect(readFileSync(join(work, 'fresh', 'counter'), 'utf8')).toBe('42');
      expect(readdirSync(work).sort()).toEqual(['fresh', 'from', 'state.tar', 'to', 'to.previous-m1']);
      await tidyStateDir(join(work, 'to'), 'm1');
      await tidyStateDir(join(work, 'fresh'), 'm1');
      expect(readdirSync(work).sort()).toEqual(['fresh', 'from', 'state.tar', 'to']);
      expect(readdirSync(join(work, 'to'))).toEqual(['counter']);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('undoes a whole unpack at an abort: the old directory back in place (a checkpointed source runs on from it), the copy gone; a crash between the steps is finished by a retry', async () => {
    const work = mkdtempSync(join(tmpdir(), 'sf-archive-'));
    try {
      mkdirSync(join(work, 'from'));
      writeFileSync(join(work, 'from', 'counter'), '42');
      await packState(join(work, 'from'), join(work, 'state.tar'));
      const dir = join(work, 'to');
      mkdirSync(dir);
      writeFileSync(join(dir, 'counter'), '41');
      const inode = statSync(dir).ino; // a frozen source holds this directory open (its working directory)
      await unpackState(join(work, 'state.tar'), dir, 'm1');
      expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('42');
      expect(await reclaimStateDir(dir, 'm2')).toBe(false); // another migration's copy: not touched
      expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('42');
      expect(await reclaimStateDir(dir, 'm1')).toBe(true);
      expect(statSync(dir).ino).toBe(inode);
      expect(readdirSync(work).sort()).toEqual(['from', 'state.tar', 'to']);
      expect(await reclaimStateDir(dir, 'm1')).toBe(false); // done: nothing again

      // Killed after the copy was moved away, before the old one was put back: the retry finishes.
      await unpackState(join(work, 'state.tar'), dir, 'm3');
      renameSync(dir, `${dir}.discarded-m3`);
      expect(await reclaimStateDir(dir, 'm3')).toBe(true);
      expect(statSync(dir).ino).toBe(inode);
      expect(readdirSync(work).sort()).toEqual(['from', 'state.tar', 'to']);

      // Into a directory that did not exist: the abort leaves none (no stale copy for a later start here).
      await unpackState(join(work, 'state.tar'), join(work, 'fresh'), 'm4');
      expect(await reclaimStateDir(join(work, 'fresh'), 'm4')).toBe(false);
      expect(readdirSync(work).sort()).toEqual(['from', 'state.tar', 'to']);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('puts the old directory back when the new one cannot be renamed in', async () => {
    const work = mkdtempSync(join(tmpdir(), 'sf-archive-'));
    try {
      mkdirSync(join(work, 'from'));
      writeFileSync(join(work, 'from', 'counter'), '42');
      await packState(join(work, 'from'), join(work, 'state.tar'));
      mkdirSync(join(work, 'to'));
      writeFileSync(join(work, 'to', 'counter'), '41');
      // The second rename (the new directory in) fails, as it would with something recreated in its way.
      const rename = jest.requireActual<typeof import('node:fs/promises')>('node:fs/promises').rename;
      let renames = 0;
      const spy = jest.spyOn(fsPromises, 'rename').mockImplementation(async (from, to) => {
        renames += 1;
        if (renames === 2) throw Object.assign(new Error(`ENOTEMPTY: directory not empty, rename '${String(from)}' -> '${String(to)}'`), { code: 'ENOTEMPTY' });
        return rename(from, to);
      });
      try {
        await expect(unpackState(join(work, 'state.tar'), join(work, 'to'), 'm1')).rejects.toThrow(/cannot put the unpacked state directory in place at .*ENOTEMPTY/);
      } finally {
        spy.mockRestore();
      }
      expect(readFileSync(join(work, 'to', 'counter'), 'utf8')).toBe('41');
      expect(readdirSync(work).sort()).toEqual(['from', 'state.tar', 'to']);

      // Worse: the rename back fails too (something recreated at `to`). The old directory stays
      // aside, and a later tidy must not take what is at `to` for the new copy.
      let failing = 0;
      const both = jest.spyOn(fsPromises, 'rename').mockImplementation(async (from, to) => {
        failing += 1;
        if (failing === 2) {
          mkdirSync(join(work, 'to'));
          writeFileSync(join(work, 'to', 'stray'), 'x');
          throw Object.assign(new Error('ENOTEMPTY: directory not empty'), { code: 'ENOTEMPTY' });
        }
        if (failing === 3) throw Object.assign(new Error('ENOTEMPTY: directory not empty'), { code: 'ENOTEMPTY' });
        return rename(from, to);
      });
      try {
        await expect(unpackState(join(work, 'state.tar'), join(work, 'to'), 'm1')).rejects.toThrow(/cannot put the unpacked state directory in place/);
      } finally {
        both.mockRestore();
      }
      await tidyStateDir(join(work, 'to'), 'm1');
      expect(readFileSync(join(replacedStateDir(join(work, 'to'), 'm1'), 'counter'), 'utf8')).toBe('41'); // the real state is kept
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('tidies what an unpack stopped part-way left: its copy, and the old directory once a new one is in place', async () => {
    const work = mkdtempSync(join(tmpdir(), 'sf-archive-'));
    try {
      const dir = join(work, 'to');
      mkdirSync(`${dir}.incoming-m1`);
      mkdirSync(replacedStateDir(dir, 'm1'));
      mkdirSync(replacedStateDir(dir, 'm2')); // another migration's: not touched
      await tidyStateDir(dir, 'm1');
      expect(readdirSync(work).sort()).toEqual(['to.previous-m1', 'to.previous-m2']); // no `to`: the old one is all there is
      // Something at `to` that is not this migration's copy (in the way of a failed swap): the old one may be the real state.
      mkdirSync(dir);
      await tidyStateDir(dir, 'm1');
      expect(readdirSync(work).sort()).toEqual(['to', 'to.previous-m1', 'to.previous-m2']);
      // This migration's copy, swapped in before the unpack stopped (its mark still in it): the old one goes, and the mark.
      writeFileSync(join(dir, '.shardform-unpacked-m1'), '');
      await tidyStateDir(dir, 'm1');
      expect(readdirSync(work).sort()).toEqual(['to', 'to.previous-m2']);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('leaves the directory as it was when the archive is broken', async () => {
    const work = mkdtempSync(join(tmpdir(), 'sf-archive-'));
    try {
      mkdirSync(join(work, 'to'));
      writeFileSync(join(work, 'to', 'kept'), 'yes');
      writeFileSync(join(work, 'state.tar'), 'not a tar file');
      await expect(unpackState(join(work, 'state.tar'), join(work, 'to'), 'm1')).rejects.toThrow(/cannot unpack the state directory into/);
      expect(readFileSync(join(work, 'to', 'kept'), 'utf8')).toBe('yes');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
