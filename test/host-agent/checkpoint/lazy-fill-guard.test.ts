/**
 * The guard of a lazy restore's fill (no root: `sleep` stands in for the daemon and the restored
 * tree): it kills the tree when the daemon ends unseen, leaves it alone when the agent said the
 * fill was complete, ends a hung daemon, and says why it cannot start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FILLED_MARK, GUARD_KILLED, startLazyFillGuard } from '../../../host-agent/checkpoint/lazy-fill-guard';
import { tempDir } from '../../helpers/cli';

/** A process and how it ended. */
function started(seconds: number): { child: ChildProcess; ended: Promise<NodeJS.Signals | number | null> } {
  const child = spawn('sleep', [String(seconds)], { stdio: 'ignore' });
  return { child, ended: new Promise((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code))) };
}

describe('lazy fill guard', () => {
  const tmp = tempDir('lazy-guard');
  const children: ChildProcess[] = [];
  let n = 0;
  const dir = () => {
    const d = join(tmp.path, String(++n));
    require('node:fs').mkdirSync(d);
    return d;
  };
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    tmp.remove();
  });

  /** A "daemon" living `daemonSeconds` and a restored "tree" whose pid CRIU wrote into `d`. */
  function scene(d: string, daemonSeconds: number) {
    const daemon = started(daemonSeconds);
    const tree = started(30);
    children.push(daemon.child, tree.child);
    writeFileSync(join(d, 'restored.pid'), `${tree.child.pid}\n`);
    return { daemon, tree };
  }

  /**
   * A process that gets `pid`, which has just ended (a pid space that wrapped; root: the next pid
   * is chosen through /proc/sys/kernel/ns_last_pid); resolves to how it ended.
   */
  function bystanderOn(pid: number): Promise<unknown> {
    let bystander: ChildProcess | undefined;
    for (let i = 0; i < 100 && !bystander; i++) {
      writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
      const next = spawn('sleep', ['30'], { stdio: 'ignore' });
      children.push(next);
      if (next.pid === pid) bystander = next;
      else next.kill('SIGKILL');
    }
    expect(bystander).toBeDefined();
    return new Promise((resolve) => bystander!.on('exit', (code, signal) => resolve(signal ?? code)));
  }

  it('kills the restored tree when the daemon ends and the agent never says the fill was complete (an agent that died with it)', async () => {
    const d = dir();
    const { daemon, tree } = scene(d, 0.2);
    const guard = await startLazyFillGuard({ daemonPid: daemon.child.pid!, dir: d, procsFiles: [], graceMs: 200, maxWatchMs: 10_000 });
    await expect(guard.ended).resolves.toBe(1);
    await expect(tree.ended).resolves.toBe('SIGKILL');
    expect(require('node:fs').readFileSync(join(d, GUARD_KILLED), 'utf8')).toBe(`daemon ${daemon.child.pid} ended and the fill was not confirmed within the grace: killed the restored tree ${tree.child.pid}\n`);
  });

  it('leaves the tree alone when the mark arrives within the grace after the daemon ended', async () => {
    const d = dir();
    const { daemon, tree } = scene(d, 0.1);
    const guard = await startLazyFillGuard({ daemonPid: daemon.child.pid!, dir: d, procsFiles: [], graceMs: 5_000, maxWatchMs: 10_000 });
    await daemon.ended;
    writeFileSync(join(d, FILLED_MARK), '');
    await expect(guard.ended).resolves.toBe(0);
    expect(tree.child.exitCode === null && tree.child.signalCode === null).toBe(true);
  });

  it('filled() writes the mark and resolves once the guard ended without touching the tree; stop() ends it without one', async () => {
    const d = dir();
    const { daemon, tree } = scene(d, 0.1);
    const guard = await startLazyFillGuard({ daemonPid: daemon.child.pid!, dir: d, procsFiles: [], graceMs: 2_000, maxWatchMs: 60_000 });
    await daemon.ended;
    await guard.filled();
    await expect(guard.ended).resolves.toBe(0);
    expect(require('node:fs').existsSync(join(d, FILLED_MARK))).toBe(true);
    const other = await startLazyFillGuard({ daemonPid: tree.child.pid!, dir: dir(), procsFiles: [], graceMs: 200, maxWatchMs: 60_000 });
    other.stop();
    await expect(other.ended).resolves.toBeNull(); // killed, not exited
    expect(tree.child.exitCode === null && tree.child.signalCode === null).toBe(true);
  });

  it('filled() from an agent slower than the grace fails: the guard has killed the tree, and its decision stands', async () => {
    const d = dir();
    const { daemon, tree } = scene(d, 0.1);
    const guard = await startLazyFillGuard({ daemonPid: daemon.child.pid!, dir: d, procsFiles: [], graceMs: 100, maxWatchMs: 60_000 });
    await daemon.ended;
    await expect(tree.ended).resolves.toBe('SIGKILL');
    await expect(guard.filled()).rejects.toThrow("the lazy restore's guard ended with the restored tree killed: the fill was not confirmed within its grace");
  });

  it('ends a daemon still running after the longest a CRIU run may take, and the tree with it', async () => {
    const d = dir();
    const { daemon, tree } = scene(d, 30);
    const guard = await startLazyFillGuard({ daemonPid: daemon.child.pid!, dir: d, procsFiles: [], graceMs: 100, maxWatchMs: 200 });
    await expect(guard.ended).resolves.toBe(1);
    await expect(daemon.ended).resolves.toBe('SIGKILL');
    await expect(tree.ended).resolves.toBe('SIGKILL');
  });

  // Root only: the next pid is chosen through /proc/sys/kernel/ns_last_pid.
  (process.getuid?.() === 0 ? it : it.skip)('takes a daemon pid that ended and was handed to another process for ended: neither waits on that process nor kills it', async () => {
    const d = dir();
    const { daemon, tree } = scene(d, 0.1);
    const pid = daemon.child.pid!;
    const guard = await startLazyFillGuard({ daemonPid: pid, dir: d, procsFiles: [], graceMs: 2_000, maxWatchMs: 60_000 });
    await daemon.ended;
    // The daemon's pid goes to a bystander (a pid space that wrapped), before the guard polls again.
    const bystanderEnded = bystanderOn(pid);
    // The agent saw its daemon exit 0 and says so: the guard ends at once, the tree and the bystander alone.
    const said = Date.now();
    await expect(guard.filled()).resolves.toBeUndefined();
    expect(Date.now() - said).toBeLessThan(1_000);
    expect(await Promise.race([bystanderEnded, new Promise((r) => setTimeout(() => r('running'), 100))])).toBe('running');
    expect(tree.child.exitCode === null && tree.child.signalCode === null).toBe(true);
  }, 10_000);

  // Root only, as above.
  (process.getuid?.() === 0 ? it : it.skip)('does not kill a process that got the pid of a restored tree that died meanwhile', async () => {
    const d = dir();
    const { daemon, tree } = scene(d, 0.5);
    const pid = tree.child.pid!;
    await startLazyFillGuard({ daemonPid: daemon.child.pid!, dir: d, procsFiles: [], graceMs: 200, maxWatchMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 100)); // the guard has seen the tree (it polls every 20 ms)
    tree.child.kill('SIGKILL');
    await tree.ended;
    const bystanderEnded = bystanderOn(pid);
    // The daemon ends unconfirmed: the guard would kill the tree, but the tree is gone and its pid is the bystander's.
    await daemon.ended;
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(await Promise.race([bystanderEnded, new Promise((r) => setTimeout(() => r('running'), 50))])).toBe('running');
    // It says what it found, for the operator.
    expect(require('node:fs').readFileSync(join(d, GUARD_KILLED), 'utf8')).toBe(`daemon ${daemon.child.pid} ended and the fill was not confirmed within the grace: the restored tree ${pid} had already ended\n`);
  }, 10_000);

  it('kills a tree whose pid CRIU wrote only after the daemon ended (the daemon died during the restore)', async () => {
    const d = dir();
    const daemon = started(0.1);
    const tree = started(30);
    children.push(daemon.child, tree.child);
    const guard = await startLazyFillGuard({ daemonPid: daemon.child.pid!, dir: d, procsFiles: [], graceMs: 300, maxWatchMs: 60_000 });
    await daemon.ended;
    writeFileSync(join(d, 'restored.pid'), `${tree.child.pid}\n`);
    await expect(guard.ended).resolves.toBe(1);
    await expect(tree.ended).resolves.toBe('SIGKILL');
  });

  it('says so when no restored tree ever ran (the restore failed with the daemon, and ended the tree itself)', async () => {
    const d = dir();
    const daemon = started(0.1);
    children.push(daemon.child);
    const guard = await startLazyFillGuard({ daemonPid: daemon.child.pid!, dir: d, procsFiles: [], graceMs: 100, maxWatchMs: 60_000 });
    await expect(guard.ended).resolves.toBe(1);
    expect(require('node:fs').readFileSync(join(d, GUARD_KILLED), 'utf8')).toBe(`daemon ${daemon.child.pid} ended and the fill was not confirmed within the grace: no restored tree was running (no restored.pid)\n`);
  });

  it('says why when it cannot join the shard cgroups, and never watches', async () => {
    const d = dir();
    const { daemon } = scene(d, 30);
    await expect(startLazyFillGuard({ daemonPid: daemon.child.pid!, dir: d, procsFiles: [join(d, 'no-such-cgroup', 'cgroup.procs')], graceMs: 100, maxWatchMs: 1_000 })).rejects.toThrow(
      "the lazy restore's guard could not start (exit 125: it could not join the shard cgroups)",
    );
  });
});
