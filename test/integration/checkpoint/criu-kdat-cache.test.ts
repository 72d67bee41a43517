import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireCriu as requireCriuInstallation, type CriuInstallation } from '../../../host-agent/checkpoint/criu';
import { CriuCheckpointer } from '../../../host-agent/checkpoint/criu-checkpointer';
import { CRIU_RUN_DIR, DEFAULT_KDAT_KEEP_DIR, isKdatKept, keepCriuKdatCache, orphanedKeptMount, TMPFS_MAGIC } from '../../../host-agent/checkpoint/criu-kdat-cache';
import { describeCriuKdatCache } from '../../../host-agent/doctor/host-readiness';
import { requireCriu } from '../../helpers/criu-prerequisite';
import { describePrivileged, requireCommand, requireRoot } from '../../helpers/privileged';

const isMountPoint = (path: string) => {
  try {
    execFileSync('mountpoint', ['-q', path]);
    return true;
  } catch {
    return false;
  }
};

describePrivileged('keeping CRIU\'s kernel probe on a tmpfs', [requireRoot, requireCriu, requireCommand('unshare', 'util-linux'), requireCommand('mountpoint', 'util-linux')], () => {
  let criu: CriuInstallation;
  const work = join(tmpdir(), `shardform-kdat-${process.pid}`);
  const keepDir = join('/dev/shm', `shardform-kdat-test-${process.pid}`);
  beforeAll(async () => {
    criu = await requireCriuInstallation();
    mkdirSync(work, { recursive: true });
  });
  afterAll(() => {
    const target = join(work, 'run', 'criu.kdat');
    if (isMountPoint(target)) execFileSync('umount', [target]);
    rmSync(work, { recursive: true, force: true });
    rmSync(keepDir, { recursive: true, force: true });
  });

  it('has CRIU write its probe in a private tmpfs, keeps it on a tmpfs and bind-mounts it over an emptied file; at the next start, probes again in place', async () => {
    const runDir = join(work, 'run'); // a plain directory, like this machine's /run
    mkdirSync(runDir);
    const result = await keepCriuKdatCache(criu, { runDir, keepDir });
    expect(result).toEqual({ ok: true, detail: `CRIU's kernel probe is kept on a tmpfs (${join(keepDir, 'criu.kdat')}), bind-mounted at ${join(runDir, 'criu.kdat')}: ${runDir} is not a tmpfs` });
    const kept = readFileSync(join(keepDir, 'criu.kdat'));
    expect(kept.length).toBeGreaterThan(100);
    expect(readFileSync(join(runDir, 'criu.kdat')).equals(kept)).toBe(true);
    expect(isMountPoint(join(runDir, 'criu.kdat'))).toBe(true);
    expect(isKdatKept(runDir)).toBe(true);
    expect(describeCriuKdatCache(runDir)).toEqual({ ok: true, detail: `CRIU's kernel probe is kept on a tmpfs, bind-mounted at ${join(runDir, 'criu.kdat')} by the agent (${runDir} is not a tmpfs)` });
    // Again (the next agent start): probed again and written in place, through the same mount.
    writeFileSync(join(keepDir, 'criu.kdat'), 'stale');
    expect(await keepCriuKdatCache(criu, { runDir, keepDir })).toEqual({ ok: true, detail: `CRIU's kernel probe is kept on a tmpfs, bind-mounted at ${join(runDir, 'criu.kdat')} (probed again)` });
    const probedAgain = readFileSync(join(keepDir, 'criu.kdat'));
    expect(probedAgain.length).toBe(kept.length); // a fresh probe (4 of its bytes differ from run to run here)
    expect(readFileSync(join(runDir, 'criu.kdat')).equals(probedAgain)).toBe(true);
    // What a reboot leaves: the bind mount gone, an empty file, which CRIU calls stale and replaces by probing.
    execFileSync('umount', [join(runDir, 'criu.kdat')]);
    expect(statSync(join(runDir, 'criu.kdat')).size).toBe(0);
  });

  it('takes back its own mount when the kept file was deleted under it (/dev/shm cleaned), and only its own', async () => {
    const runDir = join(work, 'run-orphan');
    mkdirSync(runDir);
    const target = join(runDir, 'criu.kdat');
    try {
      expect((await keepCriuKdatCache(criu, { runDir, keepDir })).ok).toBe(true);
      rmSync(keepDir, { recursive: true, force: true });
      expect(isMountPoint(target)).toBe(true);
      expect(orphanedKeptMount(target, '/dev/shm')).toBe(false); // another keep directory's name
      mkdirSync(keepDir, { mode: 0o700 });
      expect(orphanedKeptMount(target, keepDir)).toBe(true);
      expect(await keepCriuKdatCache(criu, { runDir, keepDir })).toEqual({ ok: true, detail: expect.stringContaining(`bind-mounted at ${target}`) });
      expect(readFileSync(target).equals(readFileSync(join(keepDir, 'criu.kdat')))).toBe(true);
      expect(readFileSync(target).length).toBeGreaterThan(100);
      expect(orphanedKeptMount(target, keepDir)).toBe(false);
    } finally {
      while (isMountPoint(target)) execFileSync('umount', [target]);
    }
  });

  it('takes back its own orphaned mount at paths with a space (escaped as \\040 in mountinfo)', async () => {
    const runDir = join(work, 'run orphan');
    const spacedKeep = join('/dev/shm', `shardform kdat-test-${process.pid}`);
    mkdirSync(runDir);
    const target = join(runDir, 'criu.kdat');
    try {
      expect((await keepCriuKdatCache(criu, { runDir, keepDir: spacedKeep })).ok).toBe(true);
      rmSync(spacedKeep, { recursive: true, force: true });
      mkdirSync(spacedKeep, { mode: 0o700 });
      expect(orphanedKeptMount(target, spacedKeep)).toBe(true);
      expect(await keepCriuKdatCache(criu, { runDir, keepDir: spacedKeep })).toEqual({ ok: true, detail: expect.stringContaining(`bind-mounted at ${target}`) });
      expect(readFileSync(target).equals(readFileSync(join(spacedKeep, 'criu.kdat')))).toBe(true);
    } finally {
      while (isMountPoint(target)) execFileSync('umount', [target]);
      rmSync(spacedKeep, { recursive: true, force: true });
    }
  });

  it('does nothing where /run is a tmpfs (CRIU keeps the probe itself), and refuses a keep directory that would outlive a reboot', async () => {
    const runDir = join(work, 'run-tmpfs');
    mkdirSync(runDir);
    expect(await keepCriuKdatCache(criu, { runDir, keepDir, fsTypeOf: () => TMPFS_MAGIC })).toEqual({ ok: true, detail: `${runDir} is a tmpfs: CRIU keeps its kernel probe there itself` });
    expect(existsSync(join(runDir, 'criu.kdat'))).toBe(false);
    const onDisk = join(work, 'keep-on-disk');
    mkdirSync(join(work, 'run-2'));
    const refused = await keepCriuKdatCache(criu, { runDir: join(work, 'run-2'), keepDir: onDisk });
    expect(existsSync(join(work, 'run-2', 'criu.kdat'))).toBe(false);
    expect(refused).toEqual({ ok: false, detail: `${onDisk} is not a tmpfs: a probe kept there would outlive a reboot` });
  });

  it('leaves alone a keep directory others could write to or a link, and a target that is a mount of another file', async () => {
    const runDir = join(work, 'run-3');
    mkdirSync(runDir);
    const open = join('/dev/shm', `shardform-kdat-open-${process.pid}`);
    const link = join('/dev/shm', `shardform-kdat-link-${process.pid}`);
    const other = join('/dev/shm', `shardform-kdat-other-${process.pid}`);
    try {
      mkdirSync(open, { mode: 0o777 });
      chmodSync(open, 0o777);
      expect(await keepCriuKdatCache(criu, { runDir, keepDir: open })).toEqual({ ok: false, detail: `${open} is not a directory only this user can write (a link, or made by somebody else): left alone` });
      symlinkSync(keepDir, link);
      expect((await keepCriuKdatCache(criu, { runDir, keepDir: link })).ok).toBe(false);
      expect(existsSync(join(runDir, 'criu.kdat'))).toBe(false);

      writeFileSync(other, 'somebody else');
      writeFileSync(join(runDir, 'criu.kdat'), '');
      execFileSync('mount', ['--bind', other, join(runDir, 'criu.kdat')]);
      try {
        expect(await keepCriuKdatCache(criu, { runDir, keepDir })).toEqual({ ok: false, detail: `${join(runDir, 'criu.kdat')} is a mount of another file than ${join(keepDir, 'criu.kdat')}: left alone` });
        expect(readFileSync(other, 'utf8')).toBe('somebody else');
      } finally {
        execFileSync('umount', [join(runDir, 'criu.kdat')]);
      }
    } finally {
      for (const path of [open, link, other]) rmSync(path, { recursive: true, force: true });
    }
  });

  it('makes CRIU load the probe instead of probing the kernel (its log says so)', async () => {
    const target = join(CRIU_RUN_DIR, 'criu.kdat');
    const before = isMountPoint(target);
    const hadTarget = existsSync(target);
    const hadKeepDir = existsSync(DEFAULT_KDAT_KEEP_DIR);
    try {
      const result = await keepCriuKdatCache(criu);
      expect(result.ok).toBe(true);
      const log = join(work, 'check.log');
      // Twice: where /run is a tmpfs, CRIU's first run saves the probe itself and the second loads it.
      await new CriuCheckpointer(criu).run(['check']);
      await new CriuCheckpointer(criu).run(['check', '-v4', '-o', log]);
      expect(readFileSync(log, 'utf8')).toContain(`Loaded kdat cache from ${join(CRIU_RUN_DIR, 'criu.kdat')}`);
    } finally {
      // Left as found: an agent or the bench may have kept it before; else this test undoes its
      // own mount, and removes the emptied file and the kept probe it made.
      if (!before && isMountPoint(target)) execFileSync('umount', [target]);
      if (!before && !hadTarget) rmSync(target, { force: true });
      if (!before && !hadKeepDir) rmSync(DEFAULT_KDAT_KEEP_DIR, { recursive: true, force: true });
    }
  });
});
