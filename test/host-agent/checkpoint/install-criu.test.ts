/**
 * install-criu.sh against stand-in apt-get, apt-cache and dpkg-deb (no network): what a run
 * stopped half-way leaves behind must not pass for an installed CRIU, neither to the script's
 * next run nor to locateCriu.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { locateCriu } from '../../../host-agent/checkpoint/criu';
import { tempDir } from '../../helpers/cli';

const SCRIPT = join(__dirname, '../../../host-agent/checkpoint/install-criu.sh');
const LIB = 'usr/lib/x86_64-linux-gnu/libstub.so.1';

const STUBS: Record<string, string> = {
  'apt-get': `#!/bin/sh
for a in "$@"; do [ "$a" = download ] && : > criu_4.1.1_amd64.deb; done
exit 0`,
  'apt-cache': '#!/bin/sh\nexit 0',
  // dpkg-deb -x DEB DIR: a merged-/usr trixie-like tree whose "loader" runs the criu script.
  'dpkg-deb': `#!/bin/sh
d="$3"
mkdir -p "$d/usr/sbin" "$d/usr/lib64" "$d/usr/lib/x86_64-linux-gnu" "$d/etc/criu"
printf '#!/bin/sh\\necho "Version: %s"\\n' "\${STUB_CRIU_VERSION:-4.1.1}" > "$d/usr/sbin/criu"
printf '#!/bin/sh\\nshift 2\\nexec "$@"\\n' > "$d/usr/lib64/ld-linux-x86-64.so.2"
chmod +x "$d/usr/sbin/criu" "$d/usr/lib64/ld-linux-x86-64.so.2"
echo lib > "$d/${LIB}"
echo conf > "$d/etc/criu/default.conf"`,
  // mv that takes its time, so two runs swap their trees in at the same moment.
  mv: `#!/bin/sh
[ -n "$SLOW_MV" ] && sleep "$SLOW_MV"
exec /bin/mv "$@"`,
  // rm that, asked to remove $STOP_RM_AT, is stopped after deleting one library of it (as a kill would).
  rm: `#!/bin/sh
for a in "$@"; do
  if [ -n "$STOP_RM_AT" ] && [ "$a" = "$STOP_RM_AT" ]; then /bin/rm -f "$a/${LIB.replace(/^usr\//, '')}"; exit 137; fi
done
exec /bin/rm "$@"`,
};

const describeX64 = process.arch === 'x64' ? describe : describe.skip;

describeX64('install-criu.sh stopped half-way', () => {
  const dir = tempDir('shardform-install-criu');
  afterAll(() => dir.remove());
  const bin = join(dir.path, 'bin');
  mkdirSync(bin);
  for (const [name, text] of Object.entries(STUBS)) {
    writeFileSync(join(bin, name), `${text}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  const prefix = join(dir.path, 'criu');
  const install = (env: Record<string, string> = {}) =>
    spawnSync('bash', [SCRIPT], { encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin`, SHARDFORM_CRIU_PREFIX: prefix, ...env } });

  it('a reinstall stopped while removing the old tree is not taken as installed, by the script or by locateCriu', async () => {
    const first = install();
    expect(first.stderr).toContain(`installed into ${prefix}`);
    expect(first.status).toBe(0);
    expect(existsSync(join(prefix, '.installed'))).toBe(true);

    const stopped = install({ SHARDFORM_CRIU_FORCE: '1', STOP_RM_AT: join(prefix, 'usr') });
    expect(stopped.status).not.toBe(0);
    expect(existsSync(join(prefix, LIB))).toBe(false);
    expect(await locateCriu({ prefix, searchPath: [] })).toEqual({
      found: false,
      reasons: ['no criu on PATH', `private CRIU at ${prefix} is not completely installed (no ${join(prefix, '.installed')}: an install was stopped half-way); run host-agent/checkpoint/install-criu.sh again`],
    });

    const again = install();
    expect(again.stderr).not.toContain('already installed');
    expect(again.status).toBe(0);
    expect(existsSync(join(prefix, LIB))).toBe(true);
    expect(await locateCriu({ prefix, searchPath: [] })).toMatchObject({ found: true, criu: { kind: 'private', version: '4.1.1' } });
  });

  it('replaces a private CRIU older than 4 left by an earlier run instead of calling it installed', async () => {
    const older = join(dir.path, 'older');
    const first = install({ SHARDFORM_CRIU_PREFIX: older, STUB_CRIU_VERSION: '3.17.1' });
    expect(first.status).not.toBe(0);
    expect(first.stderr).toContain('is 3.17.1, not CRIU >= 4');
    expect(existsSync(join(older, '.installed'))).toBe(false);

    // A prefix installed by a run that did not check (or from a suite that still had 3.x).
    mkdirSync(join(older, 'usr/sbin'), { recursive: true });
    writeFileSync(join(older, 'usr/sbin/criu'), '#!/bin/sh\necho "Version: 3.17.1"\n', { mode: 0o755 });
    writeFileSync(join(older, '.installed'), 'Version: 3.17.1\n');
    const again = install({ SHARDFORM_CRIU_PREFIX: older });
    expect(again.stderr).not.toContain('already installed');
    expect(again.status).toBe(0);
    expect(await locateCriu({ prefix: older, searchPath: [] })).toMatchObject({ found: true, criu: { kind: 'private', version: '4.1.1' } });
  });

  it('two runs at once (two CI jobs on one machine) both end with one complete installation', async () => {
    const shared = join(dir.path, 'shared');
    const run = () => {
      const child = spawn('bash', [SCRIPT], { env: { PATH: `${bin}:/usr/bin:/bin`, SHARDFORM_CRIU_PREFIX: shared, SLOW_MV: '0.2' }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      return once(child, 'exit').then(([code]) => ({ code, stderr }));
    };
    const results = await Promise.all([run(), run()]);
    expect(results.map((r) => r.code)).toEqual([0, 0]);
    expect(existsSync(join(shared, LIB))).toBe(true);
    expect(existsSync(`${shared}.staging`)).toBe(false);
    expect(await locateCriu({ prefix: shared, searchPath: [] })).toMatchObject({ found: true, criu: { kind: 'private', version: '4.1.1' } });
  });
});
