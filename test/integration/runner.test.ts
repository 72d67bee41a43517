/**
 * The workload runner and ShardKeeper on the real kernel: real cgroups (this machine's layout,
 * probed), real PID namespaces, real OOM kills. Each test gets its own host id under a private
 * ownerPrefix; afterAll kills and removes everything under it even when a test failed. Waits
 * are bounded polls; nothing asserts on wall-clock time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CgroupDriver } from '../../host-agent/cgroups';
import type { DesiredShard } from '../../host-agent/reconcile/desired-shard';
import { ShardKeeper, type ShardKeeperOptions } from '../../host-agent/reconcile/shard-keeper';
import { MemoryEventSink } from '../../host-agent/shard-event';
import { describePrivileged, requireCgroups, requireCommand } from '../helpers/privileged';
import { waitFor } from '../host-agent/fakes';
import { cgroupsOf, driverFor, isAlive, nsPids, removeOwnerTree, uniqueOwnerPrefix } from './runner-fixtures';

const MiB = 2 ** 20;

describePrivileged('workload runner and ShardKeeper on the real kernel', [requireCgroups, requireCommand('unshare', 'apt-get install util-linux'), requireCommand('perl', 'apt-get install perl')], () => {
  const ownerPrefix = uniqueOwnerPrefix();
  const dir = mkdtempSync(join(tmpdir(), 'runner-it-'));
  const keepers: ShardKeeper[] = [];
  const holders: ChildProcess[] = [];
  let lastDriver: CgroupDriver | undefined;
  let hostCounter = 0;

  const desired = (shardId: string, command: string[], over: Partial<DesiredShard> = {}): DesiredShard => ({
    shardId,
    applicationId: shardId.replace(/-\d+$/, ''),
    limits: { cpuCores: 0.5, memoryBytes: 64 * MiB },
    command,
    env: {},
    stateDirectory: join(dir, 'apps'),
    ...over,
  });

  /** A keeper over a fresh host id (so reconcile never sees another test's shards). */
  function setup(options: Partial<ShardKeeperOptions> = {}, hostId = `h${(hostCounter += 1)}`) {
    const driver = driverFor(ownerPrefix, hostId);
    lastDriver = driver;
    const sink = new MemoryEventSink();
    const stateDirectory = join(dir, hostId);
    const keeper = new ShardKeeper({ driver, sink, stateDirectory, pollIntervalMs: 50, graceSeconds: 0.2, ...options });
    keepers.push(keeper);
    return { driver, sink, keeper, stateDirectory, hostId };
  }

  afterAll(async () => {
    await Promise.all(keepers.map((k) => k.close()));
    for (const h of holders) h.kill('SIGKILL');
    try {
      if (lastDriver) await removeOwnerTree(lastDriver, ownerPrefix);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs the argv in its cgroup from its first instruction, as PID 1 of its own PID namespace, with env, working and state directory', async () => {
    const { driver, keeper, stateDirectory } = setup();
    // The script's first commands read the shell's own (/proc/$$) cgroup and NSpid, before it
    // forks anything; "$1" is an argument full of shell syntax that must arrive verbatim.
    // Inside the namespace $$ is 1 and, with no mount namespace, /proc is the host's: /proc/$$
    // would be the host's init. /proc/self, opened by the shell itself (exec N<), is the shell.
    const script = [
      'exec 3< /proc/self/cgroup 4< /proc/self/status',
      'cat <&3 > cgroup.txt',
      'grep NSpid <&4 > nspid.txt',
      'printf %s "$1" > arg.txt',
      'printf %s "$GREETING" > env.txt',
      'pwd > pwd.txt',
      'exec sleep 1000 3<&- 4<&-',
    ].join('\n');
    const tricky = '$(touch /tmp/shardform-pwned); `id` "q" \'s\' ; x';
    await keeper.start();
    const report = await keeper.apply([desired('first-0', ['/bin/sh', '-c', script, 'sh', tricky], { env: { GREETING: 'hello world' } })]);
    expect(report.converged).toBe(true);
    const shardDir = join(dir, 'apps', 'first-0');
    await waitFor(() => existsSync(join(shardDir, 'pwd.txt')) && readFileSync(join(shardDir, 'pwd.txt'), 'utf8').length > 0, 'the script to run');

    const lines = readFileSync(join(shardDir, 'cgroup.txt'), 'utf8').trim().split('\n');
    // every hierarchy the driver manages (memory, cpu, ..., and the unified one as '') holds the shell
    const managed = Object.keys(driver.paths('first-0')).map((k) => (k === 'unified' ? '' : k));
    const placed = lines.map((l) => l.split(':')).filter(([, controllers]) => managed.includes(controllers!) || controllers!.split(',').some((c) => managed.includes(c)));
    expect(placed.length).toBeGreaterThanOrEqual(2);
    for (const [, , path] of placed) expect(path).toBe(`/${driver.hostRoot}/first-0`);
    const nspid = readFileSync(join(shardDir, 'nspid.txt'), 'utf8').trim().split(/\s+/).slice(1).map(Number);
    expect(nspid).toHaveLength(2);
    expect(nspid[1]).toBe(1);
    expect(readFileSync(join(shardDir, 'arg.txt'), 'utf8')).toBe(tricky);
    expect(existsSync('/tmp/shardform-pwned')).toBe(false);
    expect(readFileSync(join(shardDir, 'env.txt'), 'utf8')).toBe('hello world');
    expect(readFileSync(join(shardDir, 'pwd.txt'), 'utf8').trim()).toBe(shardDir);

    const [status] = keeper.status();
    expect(status).toMatchObject({ shardId: 'first-0', state: 'running', adopted: false });
    const pid = status!.pid!;
    expect(nsPids(pid)).toEqual([pid, 1]);
    expect(await driver.pids('first-0')).toContain(pid);
    expect(cgroupsOf(pid)).toContain(`0::/${driver.hostRoot}/first-0`);
    // detached: its own session, so a signal to the agent's process group never reaches it
    // stat fields after the comm: state ppid pgrp session ... (proc(5)); the session leader is the
    // workload itself: setsid(1) inside the namespace makes it its own session leader, because
    // CRIU refuses to dump a tree whose session leader is outside its PID namespace.
    const fields = (p: number) => readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
    const [, , , session] = fields(pid);
    expect(session).toBe(String(pid));
    expect(session).not.toBe(fields(process.pid)[3]);
    expect(existsSync(join(stateDirectory, 'logs', 'first-0', 'stdout.log'))).toBe(true);
  });

  it('reports an OOM kill of a shard limited to 64 MiB that allocates 128 MiB, and restarts it with back-off', async () => {
    const { keeper, sink } = setup({ backoff: { baseSeconds: 0.2, ceilingSeconds: 5, resetAfterSeconds: 600 } });
    await keeper.start();
    // perl's "x" builds a 128 MiB string in one allocation: well past the 64 MiB limit.
    await keeper.apply([desired('hog-0', ['/usr/bin/perl', '-e', '$x = "a" x (128 * 1024 * 1024); sleep 1000'])]);
    await waitFor(() => sink.ofType('started', 'hog-0').length >= 2, 'the OOM-killed shard to be restarted', 20000);
    expect(sink.ofType('oom-killed', 'hog-0')[0]?.detail).toMatchObject({ newKills: 1, memoryBytes: 64 * MiB });
    expect(sink.ofType('exited', 'hog-0')[0]?.detail).toMatchObject({ exitCode: null, signal: 'SIGKILL', oomKilled: true });
    expect(sink.ofType('restarting', 'hog-0')[0]?.detail).toEqual({ attempt: 1, delaySeconds: 0.2 });
    expect(keeper.status()[0]?.lastExit).toMatchObject({ signal: 'SIGKILL', oomKilled: true });
    await keeper.apply([]); // stop the loop of OOM kills
  }, 40000);

  it('a command that keeps crashing enters crash-loop, with its exit code known', async () => {
    const { keeper, sink } = setup({ backoff: { baseSeconds: 0.05, ceilingSeconds: 0.2, resetAfterSeconds: 600 } });
    await keeper.start();
    await keeper.apply([desired('crash-0', ['/bin/sh', '-c', 'echo failing >&2; exit 3'])]);
    await waitFor(() => sink.ofType('crash-loop', 'crash-0').length > 0, 'crash-loop');
    expect(sink.ofType('exited', 'crash-0')[0]?.detail).toMatchObject({ exitCode: 3, signal: null, statusKnown: true, oomKilled: false });
    expect(sink.ofType('restarting', 'crash-0').map((e) => e.detail)).toEqual([
      { attempt: 1, delaySeconds: 0.05 },
      { attempt: 2, delaySeconds: 0.1 },
    ]);
    expect(sink.ofType('crash-loop', 'crash-0')[0]?.detail).toEqual({ attempt: 3, delaySeconds: 0.2 });
    expect(keeper.status()[0]!.restarts).toBeGreaterThanOrEqual(2);
    await keeper.apply([]);
  });

  it('resizes in place and freezes/thaws without changing the pid', async () => {
    const { driver, keeper } = setup();
    await keeper.start();
    await keeper.apply([desired('grow-0', ['/bin/sleep', '1000'])]);
    const pid = keeper.status()[0]!.pid!;
    await keeper.resize('grow-0', { cpuCores: 1, memoryBytes: 128 * MiB });
    expect(await driver.readLimits('grow-0')).toMatchObject({ cpuCores: 1, memoryBytes: 128 * MiB });
    expect((await keeper.apply([desired('grow-0', ['/bin/sleep', '1000'], { limits: { cpuCores: 1.5, memoryBytes: 128 * MiB } })])).actions).toEqual([
      { kind: 'set-limits', shardId: 'grow-0', ok: true },
    ]);
    expect(await driver.readLimits('grow-0')).toMatchObject({ cpuCores: 1.5 });
    await keeper.freeze('grow-0');
    expect(await driver.isFrozen('grow-0')).toBe(true);
    expect(keeper.status()[0]).toMatchObject({ frozen: true, pid });
    await keeper.thaw('grow-0');
    expect(keeper.status()[0]).toMatchObject({ frozen: false, state: 'running', pid, restarts: 0 });
    expect(isAlive(pid)).toBe(true);
  });

  it('after its agent is killed with SIGKILL, a new keeper adopts the same shard with the same pid', async () => {
    const hostId = `h${(hostCounter += 1)}`;
    const stateDirectory = join(dir, hostId);
    // `node --import tsx`: one process holds the keeper (the tsx CLI would run it in a child it does not kill).
    const holder = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'runner-keeper-holder.ts'), ownerPrefix, hostId, stateDirectory, join(dir, 'apps')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    holders.push(holder);
    let out = '';
    let err = '';
    holder.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    holder.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await waitFor(() => out.includes('\n') || holder.exitCode !== null, 'the holder to start its shard', 25000);
    if (!out.includes('\n')) throw new Error(`holder failed: ${err}`);
    const first = JSON.parse(out.split('\n')[0]!) as { status: { pid: number; state: string }[] };
    const pid = first.status[0]!.pid;
    expect(first.status[0]!.state).toBe('running');

    holder.kill('SIGKILL');
    await waitFor(() => holder.exitCode !== null || holder.signalCode !== null, 'the holder to die');
    expect(isAlive(pid)).toBe(true);

    const { keeper, sink } = setup({ backoff: { baseSeconds: 0.05, ceilingSeconds: 1, resetAfterSeconds: 600 } }, hostId);
    expect(await keeper.start()).toEqual({ actions: [{ kind: 'adopt', shardId: 'kept-0', ok: true }], converged: true });
    expect(keeper.status()[0]).toMatchObject({ shardId: 'kept-0', state: 'running', pid, adopted: true, restarts: 0 });
    expect(sink.ofType('adopted', 'kept-0')[0]?.detail).toMatchObject({ pid, sameRun: true });
    const kept = desired('kept-0', ['/bin/sleep', '1000'], { applicationId: 'kept', limits: { cpuCores: 0.2, memoryBytes: 32 * MiB } });
    expect(await keeper.apply([kept])).toEqual({ actions: [], converged: true });

    // An adopted run is not our child: its end is found by polling and its status is unknown.
    process.kill(pid, 'SIGKILL');
    await waitFor(() => sink.ofType('started', 'kept-0').length > 0, 'the adopted shard to be restarted');
    expect(sink.ofType('exited', 'kept-0')[0]?.detail).toMatchObject({ exitCode: null, signal: null, statusKnown: false });
    expect(keeper.status()[0]).toMatchObject({ state: 'running', restarts: 1, adopted: false });
    expect(keeper.status()[0]!.pid).not.toBe(pid);
  }, 40000);

  it('caps the logs: beyond the cap the tail moves to .1 and the file starts again', async () => {
    const { keeper, stateDirectory } = setup({ logMaxBytes: 64 * 1024 });
    await keeper.start();
    await keeper.apply([desired('chatty-0', ['/bin/sh', '-c', 'head -c 262144 /dev/zero | tr "\\000" x; echo; exec sleep 1000'])]);
    const log = join(stateDirectory, 'logs', 'chatty-0', 'stdout.log');
    await waitFor(() => existsSync(`${log}.1`), 'a rotation');
    // The cap is enforced on each supervisor tick, so a burst may overshoot it until the next
    // tick; once the burst is over the file must be back under the cap (bounded wait).
    await waitFor(() => statSync(log).size <= 64 * 1024, 'the log back under its cap after the burst');
    expect(statSync(`${log}.1`).size).toBeLessThanOrEqual(64 * 1024);
    expect(readFileSync(`${log}.1`, 'utf8')).toMatch(/^x+\n?$/);
    expect(keeper.status()[0]?.state).toBe('running');
  });

  it('hands a shard to migration and back: release stops supervision, prepareIncoming + adopt takes a restored tree by its NSpid-1 process', async () => {
    const { driver, keeper, sink } = setup({ backoff: { baseSeconds: 0.05, ceilingSeconds: 1, resetAfterSeconds: 600 } });
    await keeper.start();
    await keeper.apply([desired('moving-0', ['/bin/sleep', '1000'])]);
    const pid = keeper.status()[0]!.pid!;
    expect(await keeper.release('moving-0')).toEqual({ pid });
    process.kill(pid, 'SIGKILL'); // what migration's release step does after commit
    await waitFor(async () => (await driver.pids('moving-0')).length === 0, 'the source to die');
    expect(await keeper.apply([desired('moving-0', ['/bin/sleep', '1000'])])).toEqual({ actions: [], converged: true });
    expect(sink.ofType('restarting', 'moving-0')).toEqual([]);
    await keeper.discard('moving-0');
    expect(await driver.exists('moving-0')).toBe(false);

    // Destination side: an empty held cgroup, a tree put into it from outside (as criu restore
    // would), then adopt.
    const incoming = await keeper.prepareIncoming(desired('moving-0', ['/bin/sleep', '1000']));
    expect(await driver.readLimits('moving-0')).toMatchObject({ memoryBytes: 64 * MiB });
    const outsider = spawn('/bin/sh', ['-c', 'for f in "$@"; do echo $$ > "$f"; done; exec unshare --pid --fork sleep 1000', 'sh', ...incoming.procsFiles], {
      detached: true,
      stdio: 'ignore',
    });
    outsider.unref();
    await waitFor(async () => (await driver.pids('moving-0')).length >= 2, 'the restored tree in the cgroup');
    const adopted = await keeper.adopt('moving-0');
    expect(adopted).toMatchObject({ state: 'running', adopted: true });
    expect(nsPids(adopted.pid!)).toEqual([adopted.pid, 1]);
    await keeper.resize('moving-0', { cpuCores: 1 });
    expect(keeper.status()[0]?.pid).toBe(adopted.pid);
  });

  it('drain stops every shard (SIGTERM, grace, SIGKILL) and removes every cgroup', async () => {
    const { driver, keeper, sink } = setup();
    await keeper.start();
    await keeper.apply([
      desired('drain-0', ['/bin/sleep', '1000']),
      // handles SIGTERM: leaves within the grace period
      desired('drain-1', ['/bin/sh', '-c', 'trap "exit 0" TERM; while :; do sleep 0.05; done']),
    ]);
    const pids = keeper.status().map((s) => s.pid!);
    await keeper.freeze('drain-0'); // a frozen shard must still drain
    const report = await keeper.drain({ graceSeconds: 0.3 });
    expect(report).toEqual({ actions: [{ kind: 'drain', shardId: 'drain-0', ok: true }, { kind: 'drain', shardId: 'drain-1', ok: true }], converged: true });
    expect(await driver.list()).toEqual([]);
    for (const p of Object.values(driver.paths('drain-0'))) expect(existsSync(p)).toBe(false);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(keeper.status()).toEqual([]);
    expect(sink.ofType('removed').map((e) => e.shardId).sort()).toEqual(['drain-0', 'drain-1']);
    expect(sink.ofType('restarting')).toEqual([]);
  });
});
