import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { criuCommandLine, locateCriu, parseCriuVersion, privateInstallation, requireCriu } from '../../../host-agent/checkpoint/criu';
import { tempDir } from '../../helpers/cli';

/** A fake private prefix whose "loader" is a script printing `criu --version` output. */
function fakePrefix(root: string, versionOutput: string): string {
  const prefix = join(root, 'criu');
  mkdirSync(join(prefix, 'usr/sbin'), { recursive: true });
  mkdirSync(join(prefix, 'usr/lib64'), { recursive: true });
  writeFileSync(join(prefix, 'usr/sbin/criu'), '');
  writeFileSync(join(prefix, '.installed'), `${versionOutput}\n`);
  const loader = join(prefix, 'usr/lib64/ld-linux-x86-64.so.2');
  writeFileSync(loader, `#!/bin/sh\nprintf '%s\\n' '${versionOutput}'\n`);
  chmodSync(loader, 0o755);
  return prefix;
}

describe('CRIU locator', () => {
  const dir = tempDir('shardform-criu-locate');
  afterAll(() => dir.remove());

  it('parses the version out of `criu --version`', () => {
    expect(parseCriuVersion('Version: 4.1.1\nGitID: v4.1.1\n')).toBe('4.1.1');
    expect(parseCriuVersion('Version: 3.17\n')).toBe('3.17');
    expect(parseCriuVersion('criu: command not found')).toBeUndefined();
  });

  it('runs a private prefix through its own loader with its library path', () => {
    if (process.arch !== 'x64') return;
    const prefix = fakePrefix(join(dir.path, 'cmdline'), 'Version: 4.1.1');
    const found = privateInstallation(prefix, 'x64');
    expect(typeof found).toBe('object');
    const line = criuCommandLine({ ...(found as Exclude<typeof found, string>), version: '4.1.1' }, ['check']);
    expect(line.file).toBe(join(prefix, 'usr/lib64/ld-linux-x86-64.so.2'));
    expect(line.args).toEqual(['--library-path', expect.stringContaining(join(prefix, 'usr/lib/x86_64-linux-gnu')), join(prefix, 'usr/sbin/criu'), 'check']);
  });

  it('says why a prefix without criu cannot be used', () => {
    expect(privateInstallation(join(dir.path, 'nothing-here'), 'x64')).toMatch(/no private CRIU at .*nothing-here\/usr\/sbin\/criu/);
    expect(privateInstallation(dir.path, 'mips')).toBe('no private CRIU layout for architecture mips');
  });

  it('finds a private criu >= 4 when there is no system criu', async () => {
    if (process.arch !== 'x64') return;
    const prefix = fakePrefix(join(dir.path, 'four'), 'Version: 4.1.1');
    const location = await locateCriu({ prefix, searchPath: [join(dir.path, 'empty-path')] });
    expect(location).toEqual({ found: true, criu: expect.objectContaining({ kind: 'private', version: '4.1.1' }) });
  });

  it('refuses a criu older than 4 and lists every reason', async () => {
    if (process.arch !== 'x64') return;
    const prefix = fakePrefix(join(dir.path, 'three'), 'Version: 3.17');
    const location = await locateCriu({ prefix, searchPath: [join(dir.path, 'empty-path')] });
    expect(location).toEqual({ found: false, reasons: ['no criu on PATH', `private criu 3.17 in ${prefix} is older than 4.0`] });
    await expect(requireCriu({ prefix, searchPath: [] })).rejects.toMatchObject({
      code: 'CRIU_NOT_FOUND',
      message: `no usable CRIU >= 4: no criu on PATH; private criu 3.17 in ${prefix} is older than 4.0`,
    });
  });

  it('prefers a system criu >= 4 found on the search path', async () => {
    const bin = join(dir.path, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'criu'), "#!/bin/sh\necho 'Version: 4.2'\n");
    chmodSync(join(bin, 'criu'), 0o755);
    const location = await locateCriu({ prefix: join(dir.path, 'nothing-here'), searchPath: [bin] });
    expect(location).toEqual({ found: true, criu: { kind: 'system', version: '4.2', file: join(bin, 'criu'), prefixArgs: [] } });
  });
});
