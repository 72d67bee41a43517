import { runCli } from '../helpers/cli';

describe('shardform doctor (CLI flags)', () => {
  it.each([['--criu-prefix'], ['--cgroup-root']])('refuses an empty %s with exit 2 instead of probing the current directory', async (flag) => {
    const r = await runCli('doctor', flag, '');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${flag}: "" is not a directory`);
    expect(r.stdout).toBe('');
  });
});
