/** .ci/run's own steps, on a copy of the script whose dependencies are stand-ins. */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/cli';

describe('.ci/run', () => {
  const dir = tempDir('shardform-ci-run');
  afterAll(() => dir.remove());

  it('ends with the summary line when installing system dependencies fails', () => {
    mkdirSync(join(dir.path, '.ci'));
    copyFileSync(join(__dirname, '../../.ci/run'), join(dir.path, '.ci/run'));
    writeFileSync(join(dir.path, '.ci/install-system-deps'), 'echo "E: Unable to locate package etcd-server" >&2\nexit 100\n');
    chmodSync(join(dir.path, '.ci/install-system-deps'), 0o755);
    const r = spawnSync('bash', [join(dir.path, '.ci/run')], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stdout.trimEnd().split('\n').pop()).toBe('0 passed, 1 failed');
    expect(r.stderr).toContain('installing system dependencies failed');
  });
});
