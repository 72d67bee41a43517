import { existsSync } from 'node:fs';
import { relative } from 'node:path';
import { OWNER_DIR } from '../../src/dev/netns-hosts';
import { runCli, tempDir } from '../helpers/cli';

describe('shardform dev hosts (CLI flags)', () => {
  const dir = tempDir('cli-dev');
  afterAll(() => dir.remove());

  it('down refuses a tag that is not a set name, naming the flag, and removes nothing', async () => {
    // A tag that climbs out of the owner-record directory to a file of ours.
    const victim = dir.file('victim.owner', '1\n');
    const tag = relative(OWNER_DIR, victim).replace(/\.owner$/, '');
    const r = await runCli('dev', 'hosts', 'down', '--tag', tag);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--tag: ${JSON.stringify(tag)} must be 1-6 characters of a-z and 0-9`);
    expect(r.stdout).toBe('');
    expect(existsSync(victim)).toBe(true);
  });

  it.each([[['down', '--tag', '']], [['down', '--tag', 'Dev']], [['up', '--tag', '../x']]])('hosts %j fails with exit 2 naming --tag', async (args) => {
    const r = await runCli('dev', 'hosts', ...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: --tag: ".*" must be 1-6 characters of a-z and 0-9$/m);
  });
});
