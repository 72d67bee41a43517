/**
 * What counts as a failed CRIU run, and how it is reported (no root: stand-ins for criu). One
 * that exits 1 without output or log, as CRIU does when it cannot write its log on a full disk;
 * one that "restores" a process that has already exited.
 */
import { CriuCheckpointer } from '../../../host-agent/checkpoint/criu-checkpointer';
import type { CriuInstallation } from '../../../host-agent/checkpoint/criu';
import { tempDir } from '../../helpers/cli';

/** `sh -c 'exit 1' criu <criu's args>`: fails at once, writes nothing. */
const SILENT_FAILURE: CriuInstallation = { kind: 'system', version: '4.1', file: '/bin/sh', prefixArgs: ['-c', 'exit 1', 'criu'] };

describe('CriuCheckpointer: a failure CRIU says nothing about', () => {
  const dir = tempDir('criu-errors');
  afterAll(() => dir.remove());

  it('names the disk when the file system under the images is nearly full', async () => {
    const criu = new CriuCheckpointer(SILENT_FAILURE, { freeBytes: () => 4096 });
    await expect(criu.restore(dir.path, { procsFiles: [] })).rejects.toMatchObject({
      code: 'CRIU_FAILED',
      message: expect.stringContaining(`no output (the file system under ${dir.path} has 4096 bytes free: CRIU may not have been able to write its log there)`),
    });
  });

  it('says only "no output" when there is room', async () => {
    const criu = new CriuCheckpointer(SILENT_FAILURE, { freeBytes: () => 10 * 2 ** 30 });
    const attempt = criu.dump({ rootPid: 1 }, dir.path);
    await expect(attempt).rejects.toMatchObject({ code: 'CRIU_FAILED' });
    await expect(attempt).rejects.toThrow(/failed \(exit 1\): no output; log: /);
  });
});

/** `sh -c '<script>' criu restore -D <dir> --restore-detached --pidfile <file> ...`: the pid file is $6. */
const restoring = (script: string): CriuInstallation => ({ kind: 'system', version: '4.1', file: '/bin/sh', prefixArgs: ['-c', script, 'criu'] });

describe('CriuCheckpointer: a restore whose process is already gone', () => {
  const dir = tempDir('criu-restored-exited');
  afterAll(() => dir.remove());

  it('fails the restore (the migration then aborts and the source runs on) when the restored process exited at once', async () => {
    // A process that has certainly exited: a child of this shell, waited for.
    const criu = new CriuCheckpointer(restoring('sh -c "exit 0" & child=$!; wait $child; echo $child > "$6"'));
    await expect(criu.restore(dir.path, { procsFiles: [] })).rejects.toMatchObject({
      code: 'CRIU_FAILED',
      message: expect.stringMatching(/^criu restore succeeded, but the restored process \d+ had already exited; log: /),
    });
  });

  it('does not fail a restore when /proc cannot be read for another reason (too many open files)', async () => {
    const criu = new CriuCheckpointer(restoring('sh -c "exit 0" & child=$!; wait $child; echo $child > "$6"'));
    const fsPromises = require('node:fs/promises') as typeof import('node:fs/promises');
    const readFile = fsPromises.readFile;
    const spy = jest.spyOn(fsPromises, 'readFile').mockImplementation(((path: string, ...rest: unknown[]) =>
      /^\/proc\/\d+\/stat$/.test(String(path)) ? Promise.reject(Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' })) : (readFile as (...a: unknown[]) => Promise<unknown>)(path, ...rest)) as typeof readFile);
    try {
      await expect(criu.restore(dir.path, { procsFiles: [] })).resolves.toEqual({ pid: expect.any(Number), lazyPagesMs: 0 });
    } finally {
      spy.mockRestore();
    }
  });

  it('returns the pid of a restored process that runs', async () => {
    // This test's own process stands in for the restored one: it certainly runs.
    const criu = new CriuCheckpointer(restoring(`echo ${process.pid} > "$6"`));
    await expect(criu.restore(dir.path, { procsFiles: [] })).resolves.toEqual({ pid: process.pid, lazyPagesMs: 0 });
  });
});

/**
 * Stand-in for criu with lazy restores: `check` answers CHECK, `lazy-pages` runs DAEMON, `restore`
 * starts a sleeping process as the restored tree and writes its pid ($6). The daemon waits (a
 * bounded loop) for that pid file before it "fills" and exits.
 */
function lazyCriu(check: number, daemon: string, afterRestore = ':'): CriuInstallation {
  const script = [
    'case "$1" in',
    `  check) exit ${check} ;;`,
    `  lazy-pages) dir=$3; ${daemon} ;;`,
    `  restore) sleep 30 </dev/null >/dev/null 2>&1 & echo $! > "$6"; echo "$@" > "$3/restore-args"; ${afterRestore} ;;`,
    'esac',
  ].join('\n');
  return { kind: 'system', version: '4.1', file: '/bin/sh', prefixArgs: ['-c', script, 'criu'] };
}
const READY = "printf '\\0' >&3; exec 3>&-";
const AFTER_RESTORE = 'i=0; while [ ! -s "$dir/restored.pid" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done';

/** Whether a pid is gone or a zombie (killed; reaped by whoever adopted it). */
function gone(pid: number): boolean {
  try {
    return /^\d+ \(.*\) [ZX]/.test(require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

describe('CriuCheckpointer: lazy restores (criu lazy-pages)', () => {
  const dir = tempDir('criu-lazy');
  const started: number[] = [];
  afterAll(() => {
    for (const pid of started) if (!gone(pid)) process.kill(pid, 'SIGKILL');
    dir.remove();
  });

  it('restores with --lazy-pages beside a ready daemon, and resolves only once the daemon has filled the memory', async () => {
    const criu = new CriuCheckpointer(lazyCriu(0, `${READY}; ${AFTER_RESTORE}; sleep 0.1; echo filled > "$dir/filled"; exit 0`), { lazyPages: 'auto' });
    await expect(criu.usesLazyPages()).resolves.toBe(true);
    // What an earlier attempt's guard said is not left to mislead whoever reads this directory next.
    require('node:fs').writeFileSync(`${dir.path}/lazy-pages.guard-killed`, 'from an earlier attempt');
    const restored = await criu.restore(dir.path, { procsFiles: [] });
    started.push(restored.pid);
    expect(restored).toEqual({ pid: expect.any(Number), lazyPagesMs: expect.any(Number) });
    expect(require('node:fs').readFileSync(`${dir.path}/restore-args`, 'utf8')).toMatch(/ --lazy-pages /);
    // The daemon's last act came before the answer.
    expect(require('node:fs').readFileSync(`${dir.path}/filled`, 'utf8')).toBe('filled\n');
    expect(require('node:fs').existsSync(`${dir.path}/lazy-pages.guard-killed`)).toBe(false);
    expect(gone(restored.pid)).toBe(false);
  });

  it('kills the restored tree and fails when the daemon stops before the memory is all in (its unfilled pages would read as zeros)', async () => {
    const criu = new CriuCheckpointer(lazyCriu(0, `${READY}; ${AFTER_RESTORE}; echo 'Error (criu/uffd.c:1): uffd: broken' > "$dir/criu-lazy-pages.log"; exit 1`), { lazyPages: 'auto' });
    require('node:fs').rmSync(`${dir.path}/restored.pid`, { force: true });
    const attempt = criu.restore(dir.path, { procsFiles: [] });
    await expect(attempt).rejects.toMatchObject({ code: 'CRIU_FAILED', message: expect.stringMatching(/^criu lazy-pages stopped before the restored tree's memory was all in \(Error \(criu\/uffd\.c:1\): uffd: broken\); the restored tree \d+ was killed; log: /) });
    const pid = Number(require('node:fs').readFileSync(`${dir.path}/restored.pid`, 'utf8'));
    started.push(pid);
    for (let i = 0; i < 200 && !gone(pid); i++) await new Promise((r) => setTimeout(r, 10));
    expect(gone(pid)).toBe(true);
  });

  it('restores eagerly, saying why, when the daemon exits before it is ready', async () => {
    const criu = new CriuCheckpointer(lazyCriu(0, 'echo "Error (criu/uffd.c:2): no socket" > "$dir/criu-lazy-pages.log"; exit 1'), { lazyPages: 'auto' });
    const restored = await criu.restore(dir.path, { procsFiles: [] });
    started.push(restored.pid);
    expect(restored).toEqual({ pid: expect.any(Number), lazyPagesMs: 0, lazyPagesSkipped: 'criu lazy-pages did not start (Error (criu/uffd.c:2): no socket)' });
    expect(require('node:fs').readFileSync(`${dir.path}/restore-args`, 'utf8')).not.toMatch(/--lazy-pages/);
  });

  it("gives the eager restore after a daemon that never got ready only what is left before the migration's deadline (never less than the floor)", async () => {
    const fs = require('node:fs') as typeof import('node:fs');
    const image = `${dir.path}/hung-daemon`;
    fs.mkdirSync(image, { recursive: true });
    // 64 GiB (sparse): by its size alone, 1054 s; the deadline 1.5 s away cuts it to 1.5 s.
    fs.writeFileSync(`${image}/pages-1.img`, '');
    fs.truncateSync(`${image}/pages-1.img`, 64 * 2 ** 30);
    const tellingRestore = 'echo "$SHARDFORM_CRIU_TIME_LIMIT_MS" > "$3/restore-limit"';
    const criu = new CriuCheckpointer(lazyCriu(0, 'exec sleep 30', tellingRestore), { lazyPages: 'auto', timeoutMs: 200 });
    const restored = await criu.restore(image, { procsFiles: [], untilDeadlineMs: 1_500 });
    started.push(restored.pid);
    expect(restored.lazyPagesSkipped).toMatch(/^criu lazy-pages did not start/);
    // The daemon took those 1.5 s (killed at its limit): the restore that follows gets the floor, not 1.5 s more.
    expect(Number(fs.readFileSync(`${image}/restore-limit`, 'utf8'))).toBe(200);
  }, 10_000);

  it('restores a chain of pre-copy rounds lazily from the image made beside it, or eagerly, saying why, when none can be made', async () => {
    const { encodePagemap, PE_LAZY, PE_PARENT, PE_PRESENT } = require('../../../host-agent/checkpoint/pagemap-image') as typeof import('../../../host-agent/checkpoint/pagemap-image');
    const fs = require('node:fs') as typeof import('node:fs');
    const page = require('../../../host-agent/checkpoint/process-memory').pageSize() as number;
    const chained = tempDir('criu-lazy-parent');
    try {
      // Root round 1 holds two pages; the final round 2 keeps them in its parent, or only one (memory given back).
      const round = (name: string, entries: { vaddr: number; pages: number; flags: number }[], pages: number, parent?: string) => {
        fs.mkdirSync(`${chained.path}/${name}`, { recursive: true });
        fs.writeFileSync(`${chained.path}/${name}/pagemap-1.img`, encodePagemap({ pagesId: 1, entries }));
        fs.writeFileSync(`${chained.path}/${name}/pages-1.img`, Buffer.alloc(pages * page, 1));
        if (parent) fs.symlinkSync(parent, `${chained.path}/${name}/parent`);
      };
      round('1', [{ vaddr: 0x10000, pages: 2, flags: PE_PRESENT }], 2);
      round('2', [{ vaddr: 0x10000, pages: 2, flags: PE_PARENT | PE_LAZY }], 0, '../1');
      round('3', [{ vaddr: 0x10000, pages: 1, flags: PE_PARENT | PE_LAZY }], 0, '../1');
      const criu = new CriuCheckpointer(lazyCriu(0, `${READY}; exit 0`), { lazyPages: 'auto' });

      const lazy = await criu.restore(`${chained.path}/2`, { procsFiles: [] });
      started.push(lazy.pid);
      expect(lazy).toEqual({ pid: expect.any(Number), lazyPagesMs: expect.any(Number) });
      expect(fs.readFileSync(`${chained.path}/2.lazy/restore-args`, 'utf8')).toMatch(new RegExp(`-D ${chained.path}/2\\.lazy .*--pidfile ${chained.path}/2\\.lazy/restored\\.pid .*--lazy-pages`));

      const eager = await criu.restore(`${chained.path}/3`, { procsFiles: [] });
      started.push(eager.pid);
      expect(eager).toEqual({ pid: expect.any(Number), lazyPagesMs: 0, lazyPagesSkipped: 'process 1: the final round no longer has 1 page(s) of the root round (memory given back)' });
      expect(fs.readFileSync(`${chained.path}/3/restore-args`, 'utf8')).not.toMatch(/--lazy-pages/);
    } finally {
      chained.remove();
    }
  });

  it.each([
    ['lazily', 'auto', `${READY}; exec sleep 30`],
    ['eagerly', 'off', 'exit 1'],
  ] as const)('kills the tree a restore (%s) left running when criu is killed at its time limit after it wrote the pid file', async (_how, mode, daemon) => {
    // CRIU writes the pid file once every task exists, just before it resumes them: killed after
    // that (a restore hung past timeoutMs), it may leave the tree running, lazily on pages no daemon fills any more.
    const criu = new CriuCheckpointer(lazyCriu(0, daemon, 'exec sleep 30'), { lazyPages: mode, timeoutMs: 1_000 });
    require('node:fs').rmSync(`${dir.path}/restored.pid`, { force: true });
    await expect(criu.restore(dir.path, { procsFiles: [] })).rejects.toMatchObject({ code: 'CRIU_FAILED', message: expect.stringContaining('signal SIGKILL') });
    const pid = Number(require('node:fs').readFileSync(`${dir.path}/restored.pid`, 'utf8'));
    started.push(pid);
    // Past the guard's grace too: the tree is the restore's to kill, not left for an abort to find.
    for (let i = 0; i < 300 && !gone(pid); i++) await new Promise((r) => setTimeout(r, 10));
    expect(gone(pid)).toBe(true);
  }, 15_000);

  it('restores again into a directory an earlier attempt left its pid file in (CRIU will not overwrite one), and never takes that pid for its own', async () => {
    // An earlier attempt's tree, long gone; its pid now someone else's.
    const { spawn } = require('node:child_process') as typeof import('node:child_process');
    const bystander = spawn('sleep', ['30'], { stdio: 'ignore' });
    started.push(bystander.pid!);
    require('node:fs').writeFileSync(`${dir.path}/restored.pid`, String(bystander.pid));
    // As CRIU's write_pidfile: O_EXCL, and the restore fails when the file is there.
    const exclusive: CriuInstallation = restoring('set -C; sleep 30 </dev/null >/dev/null 2>&1 & tree=$!; if ! echo $tree > "$6"; then kill -9 $tree; exit 1; fi');
    const restored = await new CriuCheckpointer(exclusive, { lazyPages: 'off' }).restore(dir.path, { procsFiles: [] });
    started.push(restored.pid);
    expect(restored.pid).not.toBe(bystander.pid);
    expect(bystander.exitCode === null && bystander.signalCode === null).toBe(true);
  });

  it('restores eagerly where the kernel cannot (uffd-noncoop check fails), and never with lazyPages off', async () => {
    for (const [check, mode] of [[1, 'auto'], [0, 'off']] as const) {
      const criu = new CriuCheckpointer(lazyCriu(check, `${READY}; exit 0`), { lazyPages: mode });
      await expect(criu.usesLazyPages()).resolves.toBe(false);
      const restored = await criu.restore(dir.path, { procsFiles: [] });
      started.push(restored.pid);
      expect(restored).toEqual({ pid: expect.any(Number), lazyPagesMs: 0 });
      expect(require('node:fs').readFileSync(`${dir.path}/restore-args`, 'utf8')).not.toMatch(/--lazy-pages/);
    }
  });
});

describe('CriuCheckpointer: time limits grow with the memory moved', () => {
  const dir = tempDir('criu-limits');
  afterAll(() => dir.remove());
  /** A stand-in criu that writes the time limit it was given (its environment) to `$dir/limit-<action>`, then fails. */
  const telling: CriuInstallation = { kind: 'system', version: '4.1', file: '/bin/sh', prefixArgs: ['-c', `echo "$SHARDFORM_CRIU_TIME_LIMIT_MS" > "${dir.path}/limit-$1"; exit 1`, 'criu'] };
  const limit = (action: string) => Number(require('node:fs').readFileSync(`${dir.path}/limit-${action}`, 'utf8'));

  it('gives a 256 MiB dump the 120 s it always had, a 64 GiB one more than its copy takes at 64 MiB/s, cut at the migration deadline', async () => {
    const criu = new CriuCheckpointer(telling, { freeBytes: () => 10 * 2 ** 30 });
    await expect(criu.dump({ rootPid: 1, memoryBytes: 256 * 2 ** 20 }, dir.path)).rejects.toMatchObject({ code: 'CRIU_FAILED' });
    expect(limit('dump')).toBe(120_000);
    await expect(criu.dump({ rootPid: 1, memoryBytes: 64 * 2 ** 30 }, dir.path)).rejects.toMatchObject({ code: 'CRIU_FAILED' });
    expect(limit('dump')).toBe(1_054_000);
    expect(limit('dump')).toBeGreaterThan(1_024_000); // 64 GiB at 64 MiB/s
    await expect(criu.dump({ rootPid: 1, memoryBytes: 64 * 2 ** 30, untilDeadlineMs: 300_000 }, dir.path)).rejects.toMatchObject({ code: 'CRIU_FAILED' });
    expect(limit('dump')).toBe(300_000);
  });

  it("sizes a restore's limit by the pages files of its image and its parents, known before it starts", async () => {
    const { mkdirSync, symlinkSync, truncateSync, writeFileSync } = require('node:fs') as typeof import('node:fs');
    const round1 = `${dir.path}/img/1`;
    const round2 = `${dir.path}/img/2`;
    mkdirSync(round1, { recursive: true });
    mkdirSync(round2, { recursive: true });
    // Sparse: their sizes are what counts, not what they hold.
    writeFileSync(`${round1}/pages-1.img`, '');
    truncateSync(`${round1}/pages-1.img`, 48 * 2 ** 30);
    writeFileSync(`${round2}/pages-1.img`, '');
    truncateSync(`${round2}/pages-1.img`, 16 * 2 ** 30);
    writeFileSync(`${round2}/core-1.img`, 'x'.repeat(4096));
    symlinkSync('../1', `${round2}/parent`);
    const criu = new CriuCheckpointer(telling, { freeBytes: () => 10 * 2 ** 30, lazyPages: 'off' });
    await expect(criu.restore(round2, { procsFiles: [] })).rejects.toMatchObject({ code: 'CRIU_FAILED' });
    expect(limit('restore')).toBe(1_054_000);
    const small = `${dir.path}/img/small`;
    mkdirSync(small);
    writeFileSync(`${small}/pages-1.img`, '');
    truncateSync(`${small}/pages-1.img`, 256 * 2 ** 20);
    await expect(criu.restore(small, { procsFiles: [] })).rejects.toMatchObject({ code: 'CRIU_FAILED' });
    expect(limit('restore')).toBe(120_000);
  });

  it('says a run was killed at its time limit, not that CRIU failed by itself', async () => {
    const hanging: CriuInstallation = { kind: 'system', version: '4.1', file: '/bin/sh', prefixArgs: ['-c', 'exec sleep 30', 'criu'] };
    const criu = new CriuCheckpointer(hanging, { timeoutMs: 200 });
    await expect(criu.dump({ rootPid: 1 }, dir.path)).rejects.toMatchObject({ code: 'CRIU_FAILED', message: expect.stringContaining('killed (signal SIGKILL) at its time limit of 0.2 s') });
  });
});
