import { runCli } from '../helpers/cli';

describe('shardform doctor (CLI flags)', () => {
  it.each([
    ['--criu-prefix', ''],
    ['--cgroup-root', ''],
    // Probed from the current directory, a verdict about a CRIU the agent would never use (it refuses a relative prefix).
    ['--criu-prefix', 'opt/shardform/criu'],
    ['--cgroup-root', 'sys/fs/cgroup'],
  ])('refuses %s %j with exit 2 instead of probing from the current directory', async (flag, value) => {
    const r = await runCli('doctor', flag, value);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${flag}: ${JSON.stringify(value)} is not an absolute directory`);
    expect(r.stdout).toBe('');
  });

  it('refuses a relative SHARDFORM_CRIU_PREFIX as the agent does, exit 2', async () => {
    const before = process.env.SHARDFORM_CRIU_PREFIX;
    process.env.SHARDFORM_CRIU_PREFIX = 'criu';
    try {
      const r = await runCli('doctor');
      expect(r).toMatchObject({ code: 2, stdout: '' });
      expect(r.stderr).toContain('SHARDFORM_CRIU_PREFIX: "criu" is not an absolute directory');
    } finally {
      if (before === undefined) delete process.env.SHARDFORM_CRIU_PREFIX;
      else process.env.SHARDFORM_CRIU_PREFIX = before;
    }
  });
});
