import { execFileSync, spawn } from 'node:child_process';
import { closeSync, createReadStream, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointError } from '../../../host-agent/checkpoint/checkpoint-error';
import { requireCriu as locate } from '../../../host-agent/checkpoint/criu';
import { criuCheckpointing } from '../../../host-agent/checkpoint/criu-at-work';
import { CriuCheckpointer, type CheckpointerOptions } from '../../../host-agent/checkpoint/criu-checkpointer';
import { GUARD_KILLED } from '../../../host-agent/checkpoint/lazy-fill-guard';
import { buildManifest, verifyManifest } from '../../../host-agent/checkpoint/image-manifest';
import { requireCriu, requireLazyPages, requirePython } from '../../helpers/criu-prerequisite';
import { describePrivileged, requireCgroups } from '../../helpers/privileged';
import {
  createScratchCgroup,
  namespaceInitPid,
  readCounter,
  removeLeftoverScratchCgroups,
  startWorkload,
  waitFor,
  type ScratchCgroup,
} from '../../helpers/scratch-cgroup';

jest.setTimeout(120_000);

/**
 * What each suite here sets up: a checkpointer and a work directory (handed to `ready` before the
 * tests), and scratch cgroups, each destroyed after its test. Resolves to the cgroup maker.
 */
function criuSuite(workPrefix: string, options: CheckpointerOptions, ready: (work: string, criu: CriuCheckpointer) => void): (name: string) => ScratchCgroup {
  const cgroups: ScratchCgroup[] = [];
  let work: string | undefined;
  beforeAll(async () => {
    await removeLeftoverScratchCgroups();
    work = mkdtempSync(join(tmpdir(), workPrefix));
    ready(work, new CriuCheckpointer(await locate(), options));
  });
  afterEach(async () => {
    for (const made of cgroups.splice(0)) await made.destroy();
  });
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });
  return (name: string) => {
    const made = createScratchCgroup(`criu-${name}`);
    cgroups.push(made);
    return made;
  };
}

describePrivileged('CRIU checkpointer (real CRIU, cgroups, PID namespaces)', [requireCgroups, requireCriu, requirePython], () => {
  let work: string;
  let criu: CriuCheckpointer;
  const cgroup = criuSuite('shardform-criu-', {}, (w, c) => ((work = w), (criu = c)));

  it('`criu check` passes', async () => {
    expect((await criu.check()).ok).toBe(true);
  });

  it('a counter keeps counting from where it was after dump and restore into another cgroup', async () => {
    const source = cgroup('counter-a');
    const destination = cgroup('counter-b');
    const state = join(work, 'counter');
    const rootPid = await startWorkload(source, state, 1);
    await waitFor('the counter to pass 20', () => readCounter(state), (n) => n > 20);

    await source.freeze();
    const images = join(work, 'counter-images');
    await criu.dump({ rootPid, freezeCgroup: source.freezer }, images);
    const atDump = readCounter(state);
    // left stopped, not killed: the source tree is still there
    expect(source.pids()).toContain(rootPid);
    // The CPU it ran on is in the image, for the restore to check this one has its instruction set.
    expect(existsSync(join(images, 'cpuinfo.img'))).toBe(true);

    const { pid: restoredPid } = await criu.restore(images, { procsFiles: destination.procsFiles });
    await source.destroy();
    expect(destination.pids()).toContain(restoredPid);
    expect(namespaceInitPid(destination)).toBe(restoredPid);
    const first = readCounter(state);
    expect(first).toBeGreaterThanOrEqual(atDump);
    await waitFor('the restored counter to advance', () => readCounter(state), (n) => n > atDump + 20);
  });

  it('restores with files to hand over that the dumped tree does not hold open: nothing to replace, and the restore goes on', async () => {
    const source = cgroup('inherit-a');
    const destination = cgroup('inherit-b');
    const state = join(work, 'counter-inherit');
    const rootPid = await startWorkload(source, state, 1); // its stdout and stderr are /dev/null
    await waitFor('the counter to pass 10', () => readCounter(state), (n) => n > 10);
    await source.freeze();
    const images = join(work, 'inherit-images');
    await criu.dump({ rootPid, freezeCgroup: source.freezer }, images);
    const handed = join(work, 'inherit-stdout.log');
    const fd = openSync(handed, 'a');
    try {
      const { pid: restoredPid } = await criu.restore(images, { procsFiles: destination.procsFiles, files: [{ dumpedPath: '/var/lib/shardform/elsewhere/logs/x/stdout.log', fd }] });
      await source.destroy();
      expect(namespaceInitPid(destination)).toBe(restoredPid);
      const atRestore = readCounter(state);
      await waitFor('the restored counter to advance', () => readCounter(state), (n) => n > atRestore + 10);
      expect(existsSync(handed)).toBe(true);
      expect(fstatSync(fd).isFile()).toBe(true); // still the caller's to close
    } finally {
      closeSync(fd);
    }
  });

  it('256 MiB of touched memory has the same sha256 after restore, and the image verifies against its manifest', async () => {
    const source = cgroup('memory-a');
    const destination = cgroup('memory-b');
    const state = join(work, 'memory');
    const rootPid = await startWorkload(source, state, 256);
    const before = readFileSync(`${state}.sha256`, 'utf8');

    const images = join(work, 'memory-images');
    await criu.dump({ rootPid, freezeCgroup: source.freezer }, images);
    const manifest = await buildManifest(images);
    expect(manifest.totalBytes).toBeGreaterThan(256 << 20);
    expect(manifest.files.map((f) => f.name)).toEqual(expect.arrayContaining(['inventory.img', 'pstree.img']));
    expect(manifest.files.some((f) => f.name.endsWith('.log'))).toBe(false);
    await verifyManifest(images, manifest);
    await source.destroy();

    rmSync(`${state}.sha256`);
    const { pid: restoredPid } = await criu.restore(images, { procsFiles: destination.procsFiles });
    process.kill(restoredPid, 'SIGUSR1');
    const after = await waitFor('the restored digest', () => (existsSync(`${state}.sha256`) ? readFileSync(`${state}.sha256`, 'utf8') : ''), (d) => d.length === 64);
    expect(after).toBe(before);
  });

  it('a dumped source left stopped resumes counting when thawed and continued (the abort path)', async () => {
    const source = cgroup('abort-a');
    const state = join(work, 'abort');
    const rootPid = await startWorkload(source, state, 1);
    await source.freeze();
    await criu.dump({ rootPid, freezeCgroup: source.freezer }, join(work, 'abort-images'));
    await source.thaw();
    const stopped = readCounter(state);
    for (const pid of source.pids()) process.kill(pid, 'SIGCONT');
    await waitFor('the source to count again', () => readCounter(state), (n) => n > stopped + 10);
  });

  it('a dump in progress is found by the shard it checkpoints (what recovery waits for), and no longer once it is done', async () => {
    const source = cgroup('at-work');
    const rootPid = await startWorkload(source, join(work, 'at-work'), 16);
    await source.freeze();
    // CRIU opens its log before it touches the shard: a FIFO there holds it at that open until
    // this test reads it, so it is found however slow a look of /proc is (a race before: 256 MiB
    // was dumped between two looks on a loaded machine).
    const images = join(work, 'at-work-images');
    mkdirSync(images, { recursive: true });
    execFileSync('mkfifo', [join(images, 'criu-dump.log')]);
    let done = false;
    const dumping = criu.dump({ rootPid, freezeCgroup: source.freezer }, images).finally(() => (done = true));
    let held: { pid: number; ageSeconds?: number; timeLimitMs?: number; environmentUnreadable?: true }[] = [];
    for (let i = 0; i < 2000 && !done && held.length === 0; i += 1) {
      held = await criuCheckpointing({ rootPid, freezeCgroup: source.freezer });
      if (held.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const byCgroupOnly = await criuCheckpointing({ freezeCgroup: source.freezer });
    createReadStream(join(images, 'criu-dump.log')).resume(); // let it go on
    await dumping;
    expect(held.length).toBeGreaterThanOrEqual(1);
    expect(byCgroupOnly.map((c) => c.pid)).toEqual(expect.arrayContaining(held.map((c) => c.pid)));
    expect(held[0]!.ageSeconds).toBeGreaterThanOrEqual(0); // /proc gives its age
    expect(held[0]!.ageSeconds).toBeLessThan(120);
    // The limit its agent gave it, read back from the real CRIU's environment (through the private loader or not).
    expect(held[0]).toMatchObject({ timeLimitMs: 120_000 });
    expect(held[0]!.environmentUnreadable).toBeUndefined();
    expect(await criuCheckpointing({ rootPid: rootPid + 1, freezeCgroup: `${source.freezer}-other` })).toEqual([]);
    expect(await criuCheckpointing({ rootPid, freezeCgroup: source.freezer })).toEqual([]);
  });

  it('names the fix when the workload was started without a session of its own inside the namespace', async () => {
    const source = cgroup('session-a');
    const state = join(work, 'session');
    const rootPid = await startWorkload(source, state, 1, { sessionInsideNamespace: false });
    const attempt = criu.dump({ rootPid, freezeCgroup: source.freezer }, join(work, 'session-images'));
    await expect(attempt).rejects.toMatchObject({ code: 'SESSION_OUTSIDE_NAMESPACE', message: expect.stringContaining('unshare --pid --fork -- setsid -- argv') });
    // the refused dump left the workload running
    const now = readCounter(state);
    await waitFor('the workload to keep counting', () => readCounter(state), (n) => n > now + 5);
  });

  it('restore reports the CRIU error and its log when the image directory is not an image', async () => {
    const destination = cgroup('broken-b');
    const empty = join(work, 'empty-images');
    const attempt = criu.restore(empty, { procsFiles: destination.procsFiles });
    await expect(attempt).rejects.toBeInstanceOf(CheckpointError);
    await expect(attempt).rejects.toMatchObject({ code: 'CRIU_FAILED', logFile: join(empty, 'criu-restore.log') });
    expect(destination.pids()).toEqual([]);
  });

  it('pre-copy rounds send less than a full dump when the kernel tracks dirty pages, else are refused with the reason', async () => {
    const source = cgroup('precopy-a');
    const destination = cgroup('precopy-b');
    const state = join(work, 'precopy');
    const rootPid = await startWorkload(source, state, 32);
    const support = await criu.supportsPreCopy();
    if (!support.ok) {
      await expect(criu.preDump({ rootPid, freezeCgroup: source.freezer }, join(work, 'pre-1'))).rejects.toMatchObject({
        code: 'PRECOPY_UNSUPPORTED',
        message: expect.stringContaining('CONFIG_MEM_SOFT_DIRTY'),
      });
      // the refused pre-copy left the workload running
      const now = readCounter(state);
      await waitFor('the workload to keep counting', () => readCounter(state), (n) => n > now + 5);
      return;
    }
    const round1 = join(work, 'pre-1');
    const final = join(work, 'pre-final');
    await criu.preDump({ rootPid, freezeCgroup: source.freezer }, round1);
    await source.freeze();
    await criu.dump({ rootPid, freezeCgroup: source.freezer }, final, round1);
    const full = await buildManifest(round1);
    const delta = await buildManifest(final);
    expect(delta.totalBytes).toBeLessThan(full.totalBytes / 2);
    const atDump = readCounter(state);
    await source.destroy();
    await criu.restore(final, { procsFiles: destination.procsFiles });
    await waitFor('the restored counter to advance', () => readCounter(state), (n) => n > atDump + 10);
  });
});

describePrivileged('CRIU checkpointer: lazy restore (real CRIU lazy-pages, userfaultfd)', [requireCgroups, requireLazyPages, requirePython], () => {
  let work: string;
  let criu: CriuCheckpointer;
  const cgroup = criuSuite('shardform-criu-lazy-', { lazyPages: 'auto' }, (w, c) => ((work = w), (criu = c)));

  /** A 256 MiB workload dumped from one scratch cgroup; its digest before, and a destination cgroup. */
  async function dumped(name: string) {
    const source = cgroup(`${name}-a`);
    const destination = cgroup(`${name}-b`);
    const state = join(work, name);
    const rootPid = await startWorkload(source, state, 256);
    const before = readFileSync(`${state}.sha256`, 'utf8');
    const images = join(work, `${name}-images`);
    await criu.dump({ rootPid, freezeCgroup: source.freezer }, images);
    await source.destroy();
    rmSync(`${state}.sha256`);
    return { state, before, images, destination };
  }

  it('256 MiB restored lazily has the same sha256, counts on, and the restore resolves once the daemon has filled it all', async () => {
    expect(await criu.usesLazyPages()).toBe(true);
    const { state, before, images, destination } = await dumped('lazy');
    const restored = await criu.restore(images, { procsFiles: destination.procsFiles });
    expect(restored.lazyPagesMs).toBeGreaterThanOrEqual(0);
    expect(restored.lazyPagesSkipped).toBeUndefined();
    // The daemon is gone and said it was done: every page was put in before the answer.
    expect(lazyDaemons(images)).toEqual([]);
    expect(readFileSync(join(images, 'criu-lazy-pages.log'), 'utf8')).not.toMatch(/Error/);
    process.kill(restored.pid, 'SIGUSR1');
    const after = await waitFor('the restored digest', () => (existsSync(`${state}.sha256`) ? readFileSync(`${state}.sha256`, 'utf8') : ''), (d) => d.length === 64);
    expect(after).toBe(before);
    const counted = readCounter(state);
    await waitFor('the counter to go on', () => readCounter(state), (n) => n > counted);
  });

  it('a daemon killed while it fills fails the restore and kills the restored tree (its missing pages would read as zeros)', async () => {
    const { images, destination } = await dumped('lazy-killed');
    const pidFile = join(images, 'restored.pid');
    const restore = criu.restore(images, { procsFiles: destination.procsFiles });
    // The tree runs as soon as CRIU wrote its pid; the daemon is then still filling 256 MiB.
    let daemons: number[] = [];
    for (let i = 0; i < 2000 && !(existsSync(pidFile) && (daemons = lazyDaemons(images)).length > 0); i++) await new Promise((r) => setTimeout(r, 2));
    expect(daemons.length).toBe(1);
    process.kill(daemons[0]!, 'SIGKILL');
    // CRIU writes the pid file just before it resumes the tasks: the daemon may die while `criu
    // restore` is still finishing (which then fails), or after (the daemon's death is the failure).
    await expect(restore).rejects.toMatchObject({ code: 'CRIU_FAILED', message: expect.stringMatching(/^(criu lazy-pages stopped before the restored tree's memory was all in \(.*\); the restored tree \d+ was killed|criu restore failed )/) });
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await waitFor('the restored tree to be killed', () => processGone(pid), (gone) => gone);
  });
  it('an agent killed with its daemon mid-fill (a service stop kills its whole cgroup): the guard in the shard cgroup kills the restored tree', async () => {
    const { images, destination } = await dumped('lazy-agent-killed');
    const pidFile = join(images, 'restored.pid');
    const agent = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '..', '..', 'helpers', 'lazy-restore-child.ts'), images, ...destination.procsFiles], { stdio: 'ignore' });
    const agentGone = new Promise((resolve) => agent.on('exit', resolve));
    let daemons: number[] = [];
    for (let i = 0; i < 5000 && !(existsSync(pidFile) && (daemons = lazyDaemons(images)).length > 0); i++) await new Promise((r) => setTimeout(r, 2));
    expect(daemons.length).toBe(1);
    const tree = Number(readFileSync(pidFile, 'utf8'));
    // The guard watches from the shard's own cgroup; the daemon is not there (its buffer would count against the shard).
    const inShard = readFileSync(destination.procsFiles[0]!, 'utf8').split('\n').filter(Boolean).map(Number);
    expect(inShard).not.toContain(daemons[0]);
    expect(inShard.some((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('shardform-lazy-guard'))).toBe(true);
    // Restored: CRIU writes the pid file while it still holds the tree, and a daemon killed before
    // \`criu restore\` has exited fails it, which then ends the tree itself (seen under load, also
    // after the tree had left its tracing stop): wait for that process to be gone.
    await waitFor('criu restore to have finished', () => criuRuns('restore', images).length, (running) => running === 0);
    // Stopped, so that it cannot crash by itself on the zero pages it would read: only the guard ends it.
    process.kill(tree, 'SIGSTOP');
    agent.kill('SIGKILL');
    try {
      process.kill(daemons[0]!, 'SIGKILL');
    } catch {
      // done filling already: with the agent gone, nobody confirms it either, and the guard acts the same
    }
    await agentGone;
    await waitFor('the guard to kill the restored tree', () => processGone(tree), (gone) => gone, 10_000);
    // The guard's doing (a tree reading zeros may also crash by itself, which proves nothing).
    await waitFor('the guard to say so', () => existsSync(join(images, GUARD_KILLED)), (said) => said, 10_000);
    expect(readFileSync(join(images, GUARD_KILLED), 'utf8')).toContain(`killed the restored tree ${tree}`);
  });
});

/** Pids of `criu lazy-pages` processes serving `images`. */
function lazyDaemons(images: string): number[] {
  return criuRuns('lazy-pages', images);
}

/** Pids of CRIU processes running `action` (`lazy-pages`, `restore`) on `images`. */
function criuRuns(action: string, images: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv.includes(action) && argv.includes(images)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function processGone(pid: number): boolean {
  try {
    return / [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\)/, ')'));
  } catch {
    return true;
  }
}
