/**
 * What counts as a failed CRIU run, and how it is reported (no root: stand-ins for criu). One
 * that exits 1 without output or log, as CRIU does when it cannot write its log on a full disk;
 * one that "restores" a process that has already exited.
 */
import { CriuCheckpointer } from '../../../host-agent/checkpoint/criu-checkpointer';
import type { CriuInstallation } from '../../../host-agent/checkpoint/criu';
import { tempDir } from '../../helpers/cli';

/** `sh -c 'exit 1' criu <criu's args>`: fails at once, writes nothing. */
const SILENT_FAILURE: CriuInstallation = { kind: 'system', version: '4.1', file: '/bin/sh', prefixArgs: ['-c', 'exit 1', 'criu'] };

describe('CriuCheckpointer: a failure CRIU says nothing about', () => {
  const dir = tempDir('criu-errors');
  afterAll(() => dir.remove());

  it('names the disk when the file system under the images is nearly full', async () => {
    const criu = new CriuCheckpointer(SILENT_FAILURE, { freeBytes: () => 4096 });
    await expect(criu.restore(dir.path, { procsFiles: [] })).rejects.toMatchObject({
      code: 'CRIU_FAILED',
      message: expect.stringContaining(`no output (the file system under ${dir.path} has 4096 bytes free: CRIU may not have been able to write its log there)`),
    });
  });

  it('says only "no output" when there is room', async () => {
    const criu = new CriuCheckpointer(SILENT_FAILURE, { freeBytes: () => 10 * 2 ** 30 });
    const attempt = criu.dump({ rootPid: 1 }, dir.path);
    await expect(attempt).rejects.toMatchObject({ code: 'CRIU_FAILED' });
    await expect(attempt).rejects.toThrow(/failed \(exit 1\): no output; log: /);
  });
});

/** `sh -c '<script>' criu restore -D <dir> --restore-detached --pidfile <file> ...`: the pid file is $6. */
const restoring = (script: string): CriuInstallation => ({ kind: 'system', version: '4.1', file: '/bin/sh', prefixArgs: ['-c', script, 'criu'] });

describe('CriuCheckpointer: a restore whose process is already gone', () => {
  const dir = tempDir('criu-restored-exited');
  afterAll(() => dir.remove());

  it('fails the restore (the migration then aborts and the source runs on) when the restored process exited at once', async () => {
    // A process that has certainly exited: a child of this shell, waited for.
    const criu = new CriuCheckpointer(restoring('sh -c "exit 0" & child=$!; wait $child; echo $child > "$6"'));
    await expect(criu.restore(dir.path, { procsFiles: [] })).rejects.toMatchObject({
      code: 'CRIU_FAILED',
      message: expect.stringMatching(/^criu restore succeeded, but the restored process \d+ had already exited; log: /),
    });
  });

  it('does not fail a restore when /proc cannot be read for another reason (too many open files)', async () => {
    const criu = new CriuCheckpointer(restoring('sh -c "exit 0" & child=$!; wait $child; echo $child > "$6"'));
    const fsPromises = require('node:fs/promises') as typeof import('node:fs/promises');
    const readFile = fsPromises.readFile;
    const spy = jest.spyOn(fsPromises, 'readFile').mockImplementation(((path: string, ...rest: unknown[]) =>
      /^\/proc\/\d+\/stat$/.test(String(path)) ? Promise.reject(Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' })) : (readFile as (...a: unknown[]) => Promise<unknown>)(path, ...rest)) as typeof readFile);
    try {
      await expect(criu.restore(dir.path, { procsFiles: [] })).resolves.toEqual(expect.any(Number));
    } finally {
      spy.mockRestore();
    }
  });

  it('returns the pid of a restored process that runs', async () => {
    // This test's own process stands in for the restored one: it certainly runs.
    const criu = new CriuCheckpointer(restoring(`echo ${process.pid} > "$6"`));
    await expect(criu.restore(dir.path, { procsFiles: [] })).resolves.toBe(process.pid);
  });
});
