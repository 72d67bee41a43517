/**
 * The state archive: what it keeps of a state directory (what the shard finds on the destination
 * after a migration, checkpoint or restart, must be what it left, as CRIU restores it: its
 * processes with the same numeric uids, its files with the same owners, attributes and size on
 * disk), and how an unpack swaps it in, finished at a commit and undone at an abort.
 */
import { execFile } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packState, reclaimStateDir, replacedStateDir, tidyStateDir, unpackState } from '../../../host-agent/migration/state-archive';
import { describePrivileged, requireRoot } from '../../helpers/privileged';

const fsPromises = require('node:fs/promises') as typeof import('node:fs/promises');

const execFileAsync = promisify(execFile);

/** A fresh directory per test, for every block of this file. */
let work: string;
beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'sf-archive-'));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

describe('state archive', () => {
  it('keeps extended attributes (file capabilities, ACLs and user attributes live there)', async () => {
    const from = join(work, 'from');
    mkdirSync(from);
    writeFileSync(join(from, 'db'), 'rows');
    await execFileAsync('python3', ['-c', `import os; os.setxattr(${JSON.stringify(join(from, 'db'))}, 'user.shardform-test', b'kept')`]);
    await packState(from, join(work, 'state.tar'));
    await unpackState(join(work, 'state.tar'), join(work, 'to'), 'm1');
    const { stdout } = await execFileAsync('python3', ['-c', `import os; print(os.getxattr(${JSON.stringify(join(work, 'to', 'db'))}, 'user.shardform-test').decode())`]);
    expect(stdout.trim()).toBe('kept');
  });

  it('moves a sparse file as the data it holds, not its length: the archive and the copy stay small', async () => {
    const from = join(work, 'from');
    mkdirSync(from);
    // 1 GiB long, 4 KiB of data at its end (a preallocated database file, a VM disk).
    const fd = openSync(join(from, 'sparse.db'), 'w');
    writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 2 ** 30 - 4096);
    closeSync(fd);
    await packState(from, join(work, 'state.tar'));
    expect(statSync(join(work, 'state.tar')).size).toBeLessThan(2 ** 20);
    await unpackState(join(work, 'state.tar'), join(work, 'to'), 'm1');
    const copy = statSync(join(work, 'to', 'sparse.db'));
    expect(copy.size).toBe(2 ** 30);
    expect(copy.blocks * 512).toBeLessThan(2 ** 20);
  });

  it('a repeated unpack of one migration keeps the directory the first set aside (on a shared file system the source\'s own), so an abort still puts it back', async () => {
    const from = join(work, 'from');
    mkdirSync(from);
    writeFileSync(join(from, 'counter'), '42');
    await packState(from, join(work, 'state.tar'));
    const dir = join(work, 'to');
    mkdirSync(dir);
    writeFileSync(join(dir, 'counter'), '41');
    const inode = statSync(dir).ino;
    await unpackState(join(work, 'state.tar'), dir, 'm1');
    await unpackState(join(work, 'state.tar'), dir, 'm1');
    expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('42');
    expect(statSync(replacedStateDir(dir, 'm1')).ino).toBe(inode);
    expect(await reclaimStateDir(dir, 'm1')).toBe(true);
    expect(statSync(dir).ino).toBe(inode);
    expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('41');
    expect(readdirSync(work).sort()).toEqual(['from', 'state.tar', 'to']);
  });

  it('fails as a transfer failure naming the directory, leaving it and nothing else, when the directory cannot be set aside (a mount point: EBUSY)', async () => {
    const from = join(work, 'from');
    mkdirSync(from);
    await packState(from, join(work, 'state.tar'));
    const dir = join(work, 'to');
    mkdirSync(dir);
    writeFileSync(join(dir, 'counter'), '41');
    const rename = jest.spyOn(fsPromises, 'rename').mockImplementationOnce(async (a, b) => {
      throw Object.assign(new Error(`EBUSY: resource busy or locked, rename '${String(a)}' -> '${String(b)}'`), { code: 'EBUSY' });
    });
    try {
      await expect(unpackState(join(work, 'state.tar'), dir, 'm1')).rejects.toMatchObject({ code: 'TRANSFER_FAILED', message: expect.stringContaining(`cannot set the state directory ${dir} aside for the unpacked one: EBUSY`) });
    } finally {
      rename.mockRestore();
    }
    expect(readdirSync(work).sort()).toEqual(['from', 'state.tar', 'to']);
    expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('41');
  });

  it('carries a state directory (files, sub-directories) into a directory whose old content it replaces', async () => {
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
  });

  it('moves the old directory aside rather than removing it first, and a source puts it back if the swap stopped half-way', async () => {
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
  });

  it('undoes a whole unpack at an abort: the old directory back in place (a checkpointed source runs on from it), the copy gone; a crash between the steps is finished by a retry', async () => {
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
  });

  it('puts the old directory back when the new one cannot be renamed in', async () => {
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
  });

  it('tidies what an unpack stopped part-way left: its copy, and the old directory once a new one is in place', async () => {
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
  });

  it('leaves the directory as it was when the archive is broken', async () => {
    mkdirSync(join(work, 'to'));
    writeFileSync(join(work, 'to', 'kept'), 'yes');
    writeFileSync(join(work, 'state.tar'), 'not a tar file');
    await expect(unpackState(join(work, 'state.tar'), join(work, 'to'), 'm1')).rejects.toThrow(/cannot unpack the state directory into/);
    expect(readFileSync(join(work, 'to', 'kept'), 'utf8')).toBe('yes');
  });
});

describePrivileged('state archive, as root', [requireRoot], () => {
  it('keeps numeric owners, not the names, which map to other uids on another host (CRIU restores the processes by uid)', async () => {
    // A source host where the shard's user, "daemon", is uid 4242; here "daemon" is another uid.
    const from = join(work, 'from');
    mkdirSync(from);
    writeFileSync(join(from, 'db'), 'rows');
    chownSync(join(from, 'db'), 4242, 4242);
    chownSync(from, 4242, 4242);
    await execFileAsync('tar', ['--create', '--file', join(work, 'state.tar'), '--owner=daemon:4242', '--group=daemon:4242', '--directory', from, '.']);
    await unpackState(join(work, 'state.tar'), join(work, 'to'), 'm1');
    expect(statSync(join(work, 'to', 'db')).uid).toBe(4242);
    expect(statSync(join(work, 'to')).uid).toBe(4242);
  });
});
