import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnshareLauncher } from '../../../host-agent/runner/workload-launcher';
import { shardLogPaths } from '../../../host-agent/runner/shard-logs';

const REPO = join(__dirname, '../../..');

describe('UnshareLauncher (no root needed: the spawn fails before anything runs)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'launcher-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const launch = (workingDirectory: string) =>
    new UnshareLauncher().launch({
      shardId: 'web-0',
      command: ['/bin/true'],
      env: {},
      workingDirectory,
      procsFiles: [],
      logs: shardLogPaths(join(dir, 'logs'), 'web-0'),
      pidsInShard: async () => [],
    });

  // Before the fix the spawn error rejected a promise nobody listened to yet (while the log files
  // were being closed): Node ends the whole agent on that, and jest fails the test with it.
  it('names the working directory, not /bin/sh, when the plan names a directory that does not exist, and the agent survives it', async () => {
    const cwd = join(dir, 'missing', 'work');
    await expect(launch(cwd)).rejects.toMatchObject({
      code: 'WORKLOAD_START_FAILED',
      shardId: 'web-0',
      field: 'workingDirectory',
      value: cwd,
      message: `shard "web-0": cannot start ["/bin/true"]: its working directory ${cwd} does not exist; create it, or change workingDirectory in the plan`,
    });
  });

  // Node reports a missing cwd asynchronously (an 'error' event), unlike e.g. ENOTDIR, which spawn() throws.
  it('refuses a start whose spawn fails asynchronously in a plain Node process that lives on (no unhandled rejection)', () => {
    const missing = join(dir, 'missing');
    const script = join(dir, 'launch.ts');
    writeFileSync(
      script,
      `import { UnshareLauncher } from ${JSON.stringify(join(REPO, 'host-agent/runner/workload-launcher'))};
      new UnshareLauncher()
        .launch({ shardId: 'web-0', command: ['/bin/true'], env: {}, workingDirectory: ${JSON.stringify(missing)}, procsFiles: [], logs: { stdout: ${JSON.stringify(join(dir, 'o.log'))}, stderr: ${JSON.stringify(join(dir, 'e.log'))} }, pidsInShard: async () => [] })
        .catch((e) => console.log('refused', e.code));
      setTimeout(() => console.log('alive'), 300);`,
    );
    const run = spawnSync(join(REPO, 'node_modules/.bin/tsx'), [script], { encoding: 'utf8', timeout: 30_000 });
    expect({ status: run.status, stdout: run.stdout.trim().split('\n') }).toEqual({ status: 0, stdout: ['refused WORKLOAD_START_FAILED', 'alive'] });
  }, 40_000);
});
