/**
 * How a failed CRIU run is reported when CRIU says nothing (no root: a stand-in that exits 1
 * without output or log, as CRIU does when it cannot write its log on a full disk).
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
      message: expect.stringContaining(`no output (the file system under ${dir.path} has 4096 bytes free: CRIU could not write its log there)`),
    });
  });

  it('says only "no output" when there is room', async () => {
    const criu = new CriuCheckpointer(SILENT_FAILURE, { freeBytes: () => 10 * 2 ** 30 });
    const attempt = criu.dump({ rootPid: 1 }, dir.path);
    await expect(attempt).rejects.toMatchObject({ code: 'CRIU_FAILED' });
    await expect(attempt).rejects.toThrow(/failed \(exit 1\): no output; log: /);
  });
});
