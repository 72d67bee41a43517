/** .ci/run's own steps, on a copy of the script whose dependencies are stand-ins. */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/cli';

describe('.ci/run', () => {
  const dir = tempDir('shardform-ci-run');
  afterAll(() => dir.remove());
  let n = 0;

  /**
   * A checkout with .ci/run and .ci/jest-summary.js as they are, and stand-ins for the system
   * packages step and for `npm` (first on PATH). Returns a runner of it.
   */
  function checkout(installSystemDeps: string, npm = 'exit 0\n') {
    const root = join(dir.path, `checkout-${(n += 1)}`);
    mkdirSync(join(root, '.ci'), { recursive: true });
    mkdirSync(join(root, 'bin'));
    for (const script of ['run', 'jest-summary.js']) copyFileSync(join(__dirname, '../../.ci', script), join(root, '.ci', script));
    writeFileSync(join(root, '.ci/install-system-deps'), installSystemDeps);
    chmodSync(join(root, '.ci/install-system-deps'), 0o755);
    writeFileSync(join(root, 'bin/npm'), `#!/usr/bin/env bash\n${npm}`);
    chmodSync(join(root, 'bin/npm'), 0o755);
    return (env: Record<string, string> = {}) =>
      spawnSync('bash', [join(root, '.ci/run')], {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${join(root, 'bin')}:${process.env.PATH ?? ''}`, ...env },
        // A guard for this test only: a run that hangs fails here instead of at jest's timeout.
        timeout: 60_000,
      });
  }

  it('ends with the summary line when installing system dependencies fails', () => {
    const r = checkout('echo "E: Unable to locate package etcd-server" >&2\nexit 100\n')();
    expect(r.status).toBe(1);
    expect(r.stdout.trimEnd().split('\n').pop()).toBe('0 passed, 1 failed');
    expect(r.stderr).toContain('installing system dependencies failed');
  });

  it('stops a test run that hangs at the overall limit, says so, and still ends with the summary line', () => {
    // `npm ci` passes; `npm test` hangs (a test waiting for ever), in a child of the npm stand-in.
    const r = checkout('exit 0\n', 'if [ "$1" = test ]; then sleep 1000; fi\n')({ SHARDFORM_CI_TIMEOUT_SECONDS: '2' });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(124);
    expect(r.stderr).toMatch(/^CI timed out: npm test was still running when the overall limit of 2 s ran out \(after \d+ s\); it was stopped$/m);
    expect(r.stdout.trimEnd().split('\n').pop()).toBe('0 passed, 1 failed, 0 skipped');
  });

  it('at the limit also stops what the test run started in a session of its own (workloads, agents)', () => {
    // A test that launched a shard's workload (UnshareLauncher spawns it detached: setsid) and
    // then hung: that process is in another process group than `timeout`'s, which signals its own.
    const pidFile = join(dir.path, `detached-${n + 1}.pid`);
    const r = checkout('exit 0\n', `if [ "$1" = test ]; then setsid sleep 1000 & echo $! > ${pidFile}; sleep 1000; fi\n`)({ SHARDFORM_CI_TIMEOUT_SECONDS: '2' });
    expect(r.status).toBe(124);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    // Gone, or a zombie (reparented to an init that does not reap, as in some containers).
    let state = 'gone';
    try {
      state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[0] ?? '';
    } catch {
      // gone
    }
    if (state !== 'gone' && state !== 'Z') process.kill(pid, 'SIGKILL');
    expect(['gone', 'Z']).toContain(state);
  });

  it('stops an install that hangs at the overall limit, and ends with the summary line', () => {
    const r = checkout('sleep 1000\n')({ SHARDFORM_CI_TIMEOUT_SECONDS: '1' });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('CI timed out: installing system dependencies was still running when the overall limit of 1 s ran out');
    expect(r.stdout.trimEnd().split('\n').pop()).toBe('0 passed, 1 failed');
  });

  it('refuses a limit that is not a whole number of seconds, naming the variable and the value', () => {
    const r = checkout('exit 0\n')({ SHARDFORM_CI_TIMEOUT_SECONDS: '90m' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("SHARDFORM_CI_TIMEOUT_SECONDS is '90m': it must be a whole number of seconds from 1 to 999999");
    expect(r.stdout.trimEnd().split('\n').pop()).toBe('0 passed, 1 failed');
  });

  it('passes the test command\'s status and summary through when it ends in time', () => {
    const results = JSON.stringify({ numPassedTests: 2, numFailedTests: 0, numPendingTests: 0, numTodoTests: 0, testResults: [] });
    const r = checkout('exit 0\n', `if [ "$1" = test ]; then echo '${results}' > .jest-results.json; fi\n`)();
    expect(r.status).toBe(0);
    expect(r.stdout.trimEnd().split('\n').pop()).toBe('2 passed, 0 failed, 0 skipped');
  });
});
