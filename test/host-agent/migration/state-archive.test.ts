/**
 * What the state archive keeps of a state directory: what the shard finds on the destination
 * after a migration (checkpoint or restart) must be what it left, as CRIU restores it: its
 * processes with the same numeric uids, its files with the same owners, attributes and size on disk.
 */
import { execFile } from 'node:child_process';
import { chownSync, closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packState, reclaimStateDir, replacedStateDir, unpackState } from '../../../host-agent/migration/state-archive';

const fsPromises = require('node:fs/promises') as typeof import('node:fs/promises');

const execFileAsync = promisify(execFile);
const asRoot = process.getuid?.() === 0 ? it : it.skip;

describe('state archive', () => {
  let work: string;
  beforeEach(() => {
    work = mkdtempSync(join(tmpdir(), 'sf-archive-'));
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  asRoot('keeps numeric owners, not the names, which map to other uids on another host (CRIU restores the processes by uid)', async () => {
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
});
