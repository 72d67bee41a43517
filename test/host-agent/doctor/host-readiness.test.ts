import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeCgroupFreeze, describeCgroupLayout, describeCriuKdatCache } from '../../../host-agent/doctor/host-readiness';
import { renderReadiness } from '../../../src/cli/commands/doctor';
import { runCli, tempDir } from '../../helpers/cli';
import { requireCriu } from '../../helpers/criu-prerequisite';
import { describePrivileged, requireCgroups } from '../../helpers/privileged';

describe('host readiness', () => {
  const dir = tempDir('shardform-doctor');
  afterAll(() => dir.remove());
  const hierarchy = (root: string, name: string) => {
    mkdirSync(join(root, name), { recursive: true });
    writeFileSync(join(root, name, 'cgroup.procs'), '');
  };

  it('names a v2, hybrid or v1 cgroup layout from the mounted hierarchies', () => {
    const v2 = join(dir.path, 'v2');
    mkdirSync(v2);
    writeFileSync(join(v2, 'cgroup.controllers'), 'cpu memory io');
    expect(describeCgroupLayout(v2)).toEqual({ ok: true, detail: `v2 (unified) at ${v2}` });

    const hybrid = join(dir.path, 'hybrid');
    for (const c of ['cpu', 'cpuacct', 'memory', 'blkio', 'freezer', 'unified', 'systemd']) hierarchy(hybrid, c);
    writeFileSync(join(hybrid, 'unified', 'cgroup.controllers'), '');
    expect(describeCgroupLayout(hybrid)).toEqual({ ok: true, detail: `hybrid: v1 blkio,cpu,cpuacct,freezer,memory + unified at ${join(hybrid, 'unified')} (freezes through it)` });

    const noFreezer = join(dir.path, 'v1');
    for (const c of ['cpu', 'cpuacct', 'memory', 'blkio']) hierarchy(noFreezer, c);
    expect(describeCgroupLayout(noFreezer)).toEqual({ ok: false, detail: `v1: blkio,cpu,cpuacct,memory; ${noFreezer}: v1 controller freezer not mounted; mount cgroup2 at ${noFreezer} (or the v1 cpu, cpuacct, memory, blkio and freezer controllers under it)` });
    expect(describeCgroupLayout(join(dir.path, 'absent'))).toEqual({ ok: false, detail: `no cgroup hierarchy at ${join(dir.path, 'absent')}` });
  });

  it('agrees with the agent\'s own layout probe: what the agent refuses is a no, what it runs on is a yes', () => {
    // Without v1 blkio and cpuacct the agent refuses to start (probeCgroupLayout): the doctor said ok.
    const noBlkio = join(dir.path, 'no-blkio');
    for (const c of ['cpu', 'memory', 'freezer', 'unified']) hierarchy(noBlkio, c);
    writeFileSync(join(noBlkio, 'unified', 'cgroup.controllers'), '');
    expect(describeCgroupLayout(noBlkio)).toMatchObject({ ok: false, detail: expect.stringContaining(`${noBlkio}: v1 controllers cpuacct, blkio not mounted`) });
    // A hybrid host freezes through the unified hierarchy and needs no v1 freezer: the doctor said no.
    const hybridNoFreezer = join(dir.path, 'hybrid-no-freezer');
    for (const c of ['cpu', 'cpuacct', 'memory', 'blkio', 'unified']) hierarchy(hybridNoFreezer, c);
    writeFileSync(join(hybridNoFreezer, 'unified', 'cgroup.controllers'), '');
    expect(describeCgroupLayout(hybridNoFreezer)).toEqual({ ok: true, detail: `hybrid: v1 blkio,cpu,cpuacct,memory + unified at ${join(hybridNoFreezer, 'unified')} (freezes through it)` });
  });

  it('says whether shards can be frozen: cgroup.freeze in a child of the unified mount, else the kernel release', () => {
    const v2 = join(dir.path, 'freeze-v2');
    mkdirSync(join(v2, 'system.slice'), { recursive: true });
    writeFileSync(join(v2, 'cgroup.controllers'), 'cpu memory io');
    // Linux 5.0: cgroup2 without cgroup.freeze (it came with 5.2).
    expect(describeCgroupFreeze(v2, '5.0.21-generic')).toEqual({
      ok: false,
      detail: `${join(v2, 'system.slice', 'cgroup.freeze')} does not exist: shards cannot be frozen, so no checkpoint migration, drain or freeze works here (cgroup.freeze needs Linux 5.2 or later; this kernel is 5.0.21-generic)`,
    });
    writeFileSync(join(v2, 'system.slice', 'cgroup.freeze'), '0');
    expect(describeCgroupFreeze(v2, '6.1.0')).toEqual({ ok: true, detail: `cgroup2 freezer (cgroup.freeze, seen in ${join(v2, 'system.slice')})` });

    // A hybrid host freezes through its unified hierarchy; an empty one leaves the kernel release to decide.
    const hybrid = join(dir.path, 'freeze-hybrid');
    for (const c of ['cpu', 'cpuacct', 'memory', 'blkio', 'freezer', 'unified']) hierarchy(hybrid, c);
    writeFileSync(join(hybrid, 'unified', 'cgroup.controllers'), '');
    expect(describeCgroupFreeze(hybrid, '5.1.9')).toMatchObject({ ok: false, detail: expect.stringContaining('has no cgroup to look at and shards cannot be frozen') });
    expect(describeCgroupFreeze(hybrid, '5.10.0-28-amd64')).toEqual({ ok: true, detail: 'cgroup2 freezer (cgroup.freeze; Linux 5.10.0-28-amd64)' });

    const v1 = join(dir.path, 'freeze-v1');
    for (const c of ['cpu', 'cpuacct', 'memory', 'blkio', 'freezer']) hierarchy(v1, c);
    expect(describeCgroupFreeze(v1, '4.19.0')).toEqual({ ok: true, detail: `v1 freezer (freezer.state) at ${join(v1, 'freezer')}` });
  });

  it('says why a host cannot checkpoint, naming each failed check but not optional ones', () => {
    const text = renderReadiness({
      canCheckpoint: false,
      checks: [
        { name: 'root', ok: true, detail: 'running as root' },
        { name: 'criu', ok: false, detail: 'no criu on PATH' },
        { name: 'cgroups', ok: true, detail: 'v2 (unified) at /sys/fs/cgroup' },
        { name: 'criu-cache', ok: false, detail: '/run is not a tmpfs' },
        { name: 'netns', ok: false, detail: 'no `ip` command' },
      ],
    });
    expect(text).toContain('criu        no      no criu on PATH');
    expect(text.split('\n').pop()).toBe('this host cannot checkpoint shards: criu: no criu on PATH');
  });

  it('says whether CRIU can keep its kernel probe between runs, and what a leftover temporary file does', () => {
    const TMPFS = 0x01021994;
    const EXT4 = 0xef53;
    const run = join(dir.path, 'run');
    mkdirSync(run);
    expect(describeCriuKdatCache(run, EXT4)).toEqual({ ok: false, detail: `${run} is not a tmpfs and no agent has bind-mounted a kept probe at ${join(run, 'criu.kdat')} yet: every dump and restore probes the kernel again (~40 ms each, while the shard is frozen)` });
    expect(describeCriuKdatCache(run, TMPFS)).toEqual({ ok: true, detail: `${run} is a tmpfs: CRIU keeps its kernel probe in ${join(run, 'criu.kdat')} from its next run` });
    writeFileSync(join(run, 'criu.kdat.tmp'), '');
    expect(describeCriuKdatCache(run, TMPFS)).toMatchObject({ ok: false, detail: expect.stringMatching(new RegExp(`^${join(run, 'criu.kdat.tmp')} was left by a CRIU that was stopped while saving .*: remove it;`)) });
    writeFileSync(join(run, 'criu.kdat'), 'kdat');
    expect(describeCriuKdatCache(run, TMPFS)).toEqual({ ok: true, detail: `CRIU's kernel probe is kept in ${join(run, 'criu.kdat')}` });
    expect(describeCriuKdatCache(join(dir.path, 'no-run'))).toMatchObject({ ok: false, detail: expect.stringMatching(/^cannot stat .*no-run: ENOENT/) });
  });

  it('exits 1 and gives the reason `criu check` printed, not only its last line', async () => {
    const bin = join(dir.path, 'failing-criu');
    mkdirSync(bin);
    // What CRIU 4.1.1 prints for `criu check` without root: the reason, then a hint on a line of its own.
    writeFileSync(
      join(bin, 'criu'),
      `#!/bin/sh\n[ "$1" = --version ] && { echo 'Version: 4.1.1'; exit 0; }\necho 'CRIU needs to have the CAP_SYS_ADMIN or the CAP_CHECKPOINT_RESTORE capability: '\necho 'setcap cap_checkpoint_restore+eip /usr/sbin/criu'\nexit 1\n`,
    );
    chmodSync(join(bin, 'criu'), 0o755);
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    try {
      const result = await runCli('doctor', '--json');
      expect(result.code).toBe(1);
      const check = JSON.parse(result.stdout).checks.find((c: { name: string }) => c.name === 'criu-check');
      expect(check).toEqual({
        name: 'criu-check',
        ok: false,
        detail: 'criu check failed: CRIU needs to have the CAP_SYS_ADMIN or the CAP_CHECKPOINT_RESTORE capability: setcap cap_checkpoint_restore+eip /usr/sbin/criu',
      });
    } finally {
      process.env.PATH = path;
    }
  });

  it('exits 1 and names the missing CRIU when the prefix holds none and PATH has no criu', async () => {
    const path = process.env.PATH;
    process.env.PATH = join(dir.path, 'empty-path');
    try {
      const result = await runCli('doctor', '--criu-prefix', join(dir.path, 'no-prefix'));
      expect(result.code).toBe(1);
      expect(result.stdout).toMatch(/cannot checkpoint shards: .*criu: no criu on PATH; no private CRIU at .*no-prefix/);
    } finally {
      process.env.PATH = path;
    }
  });
});

describePrivileged('shardform doctor on a host with CRIU', [requireCgroups, requireCriu], () => {
  it('exits 0, says the host can checkpoint and reports pre-copy either way', async () => {
    const result = await runCli('doctor', '--json');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.canCheckpoint).toBe(true);
    expect(report.checks.map((c: { name: string }) => c.name)).toEqual(['root', 'criu', 'criu-check', 'pre-copy', 'lazy-restore', 'criu-cache', 'cgroups', 'cgroup-freeze', 'netns']);
    // Lazy restores where the kernel has non-cooperative userfaultfd (this one does), else eager, saying which.
    expect(report.checks.find((c: { name: string }) => c.name === 'lazy-restore')).toMatchObject({ detail: expect.stringMatching(/^(userfaultfd \(criu lazy-pages\): arriving shards run while|no non-cooperative userfaultfd|off \(SHARDFORM_CRIU_LAZY_PAGES=off\))/) });
    // CRIU's pre-dumps where the kernel tracks dirty pages, else the page-content shadow: Linux always has one.
    expect(report.checks.find((c: { name: string }) => c.name === 'pre-copy')).toMatchObject({ ok: true, detail: expect.stringMatching(/^(dirty-page tracking available|by page contents \(shadow\): )/) });
  });
});
