import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serializePlan } from '../../src/contracts/plan';
import { EXIT_BROKEN_PIPE } from '../../src/cli/exit-codes';
import { examplePlan } from '../helpers/plan-fixture';
import { runBin, runBinWithClosedStdout, tempDir } from '../helpers/cli';

describe('the shardform executable', () => {
  const dir = tempDir('shardform-bin');
  afterAll(() => dir.remove());
  const plan = dir.file('plan.json', serializePlan(examplePlan()));

  it.each([[['--help']], [['plan', 'show', plan]], [['plan', 'show', plan, '--json']]])(
    'ends %j quietly with status 141 (SIGPIPE) when the reader has closed stdout',
    async (args) => {
      const result = await runBinWithClosedStdout(args);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(EXIT_BROKEN_PIPE);
    },
    60_000,
  );

  it.each([['--version'], ['-V']])('prints the package version for %s and exits 0', (flag) => {
    const { version } = JSON.parse(readFileSync(join(__dirname, '../../package.json'), 'utf8')) as { version: string };
    expect(runBin([flag])).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
  });
});
