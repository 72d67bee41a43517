/** .ci/jest-summary.js: the closing line of .ci/run must never say "0 failed" for a failed run. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { tempDir } from '../helpers/cli';

const SCRIPT = join(__dirname, '../../.ci/jest-summary.js');

type Status = 'passed' | 'failed' | 'pending' | 'todo';

/** One test file of jest's --json results: its status and those of its tests. */
function suite(status: 'passed' | 'failed', ...tests: Status[]) {
  return { name: '/repo/test/x.test.ts', status, message: '', assertionResults: tests.map((t) => ({ status: t, title: t })) };
}

/** jest's --json results for these files, with its counters computed as jest does. */
function results(...suites: ReturnType<typeof suite>[]) {
  const tests = suites.flatMap((s) => s.assertionResults.map((a) => a.status));
  const count = (status: Status) => tests.filter((t) => t === status).length;
  return {
    numPassedTests: count('passed'),
    numFailedTests: count('failed'),
    numPendingTests: count('pending'),
    numTodoTests: count('todo'),
    numTotalTests: tests.length,
    success: suites.every((s) => s.status === 'passed'),
    testResults: suites,
  };
}

describe('.ci/jest-summary.js', () => {
  const dir = tempDir('shardform-jest-summary');
  afterAll(() => dir.remove());
  const summary = (json: unknown, status: number) => {
    const file = dir.file('results.json', typeof json === 'string' ? json : JSON.stringify(json));
    const r = spawnSync(process.execPath, [SCRIPT, file, String(status)], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    return r.stdout.trim().split('\n').pop();
  };

  it('counts passed, failed and skipped tests', () => {
    expect(summary(results(suite('passed', 'passed', 'passed', 'pending', 'todo'), suite('failed', 'passed', 'failed')), 1)).toBe('3 passed, 1 failed, 2 skipped');
  });

  it('counts a test file that failed to load (no tests in it) as one failure', () => {
    expect(summary(results(suite('passed', 'passed'), suite('failed')), 1)).toBe('1 passed, 1 failed, 0 skipped');
  });

  it('counts a test file whose afterAll hook threw after its tests passed as one failure', () => {
    // What jest 30 reports for `afterAll(() => { throw ... })`: the file failed, every test in it passed.
    expect(summary(results(suite('failed', 'passed', 'passed')), 1)).toBe('2 passed, 1 failed, 0 skipped');
  });

  it('does not count a file twice when a test of it failed too', () => {
    expect(summary(results(suite('failed', 'failed', 'passed')), 1)).toBe('1 passed, 1 failed, 0 skipped');
  });

  it('counts one failure when the command failed with nothing failed in the results (jest found no tests)', () => {
    expect(summary(results(), 1)).toBe('0 passed, 1 failed, 0 skipped');
  });

  it('counts one failure when there are no results, or they are not JSON (tsc, npm ci or jest failed first)', () => {
    expect(spawnSync(process.execPath, [SCRIPT, join(dir.path, 'absent.json'), '2'], { encoding: 'utf8' }).stdout).toBe('0 passed, 1 failed, 0 skipped\n');
    expect(summary('{"numPassedTests": 3', 1)).toBe('0 passed, 1 failed, 0 skipped');
  });

  it('exits 2 without a results file and an exit status', () => {
    expect(spawnSync(process.execPath, [SCRIPT], { encoding: 'utf8' })).toMatchObject({ status: 2, stdout: '', stderr: expect.stringContaining('usage: ') });
    expect(spawnSync(process.execPath, [SCRIPT, join(dir.path, 'results.json')], { encoding: 'utf8' })).toMatchObject({ status: 2, stdout: '' });
  });

  it('says 0 failed for a run that passed', () => {
    expect(summary(results(suite('passed', 'passed', 'pending')), 0)).toBe('1 passed, 0 failed, 1 skipped');
  });
});
