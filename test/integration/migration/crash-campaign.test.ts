/**
 * Crash campaign: real agents SIGKILLed at random instants of real migrations.
 *
 * Two `shardform agent` processes on two netns hosts move one counting shard back and forth, by
 * checkpoint (CRIU) in one campaign and by restart (stop, state directory, start) in another.
 * In each round a migration starts (checkpoint: with or without pre-copy) and, after a random delay that
 * spans the whole migration, the source agent, the destination agent or both are killed, then
 * started again. A watcher samples both hosts' cgroups all along. What must hold:
 * - the shard never runs on both hosts at once (a copy runs when its cgroup is not frozen and
 *   holds a process that can run its own code: not stopped, dead, exiting, being killed, nor
 *   held by CRIU — see processState);
 * - once both agents are back, every migration finishes (done, or aborted with its cleanup
 *   complete), the shard runs on exactly one host, supervised there, and counts on;
 * - its state is never lost: the counter never falls back to a fresh start.
 *
 * Two more faults take turns with the kills: the workload itself is SIGKILLed wherever it has
 * processes (the supervisor starts it again; a checkpointed workload's memory starts afresh, so
 * its counter may start over in those rounds), and the images file system of one host (each
 * agent's is a tmpfs of its own here) fills up, leaving a few KiB, until the migration answers.
 * A third takes the store away for 2-9 s: the shared embedded store's write lock (its busy
 * timeout is 5 s), or, in a third campaign whose agents share an etcd, etcd itself hangs
 * (SIGSTOP: connections stay open and nothing answers, as in a partition) or is killed and
 * started again on its data.
 *
 * SHARDFORM_CRASH_PARTITIONS=1 adds rounds that cut the destination's link for 2-15 s instead
 * of killing anything (slow: requests wait out their timeouts).
 * SHARDFORM_CRASH_ROUNDS (default 6) and SHARDFORM_CRASH_SEED (default 1) make a longer or
 * another campaign; a failure names the seed, the round and what was killed when, and keeps the
 * agents' logs. SHARDFORM_CRASH_TRACE=FILE writes every reading of the watcher there, and the
 * story of the rounds (lines starting with #).
 * (The seed fixes the kill instants relative to a measured migration; the machine's timing
 * still varies, so two runs of one seed are alike, not identical.)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { detectCgroupDriver } from '../../../host-agent/cgroups/detect';
import { cutLink, restoreLink } from '../../../src/dev/netns-hosts';
import type { CgroupDriver } from '../../../host-agent/cgroups/driver';
import { MigrationJournal } from '../../../host-agent/migration/migration-journal';
import { placeShards } from '../../../policies/initial-placement';
import type { Plan } from '../../../src/contracts/plan-schema';
import { seededRandom } from '../../../src/predictor/seeded-random';
import { openStore } from '../../../src/store/open-store';
import type { Store } from '../../../src/store/store';
import { startEtcd, type EtcdServer } from '../etcd-server';
import { requireCriu, requirePython } from '../../helpers/criu-prerequisite';
import { pidsOf } from '../../helpers/migration-hosts';
import { PERSISTENT_COUNTER } from '../../helpers/persistent-counter';
import { netnsAgents, realPython, type NetnsAgent, type NetnsAgents } from '../../helpers/netns-agents';
import { useNetnsHosts } from '../../helpers/netns-hosts';
import { describePrivileged, requireCgroups, requireCommand, requireNetns } from '../../helpers/privileged';
import { namespaceInitPid, WORKLOAD } from '../../helpers/scratch-cgroup';

const ROUNDS = boundedInteger('SHARDFORM_CRASH_ROUNDS', 6, 1, 500);
const SEED = boundedInteger('SHARDFORM_CRASH_SEED', 1, 0, 2 ** 31 - 1);
const TRACE = process.env.SHARDFORM_CRASH_TRACE;
jest.setTimeout(120_000 + ROUNDS * 90_000); // per test: one campaign per strategy

const MiB = 2 ** 20;
const SHARD = 'counter-0';
const WORKLOAD_MIB = 16;

/** With SHARDFORM_CRASH_PARTITIONS=1 some rounds cut the destination's link instead (2-15 s; slow: timeouts). */
const PARTITIONS = process.env.SHARDFORM_CRASH_PARTITIONS === '1';

type Victim = 'source' | 'destination' | 'both' | 'workload' | 'disk' | 'store' | 'partition';

/** Room for every image of a 16 MiB shard, with pre-copy's three and the 64 MiB margin the room checks keep (images/). */
const IMAGES_TMPFS_MIB = 512;

describePrivileged('crash campaign: agents killed at random instants of migrations, the shard runs exactly once', [requireCgroups, requireNetns, requireCriu, requirePython, requireCommand('etcd', 'apt-get install etcd-server')], () => {
  const hosts = useNetnsHosts(2, 'cc');
  let fleet: NetnsAgents | undefined;
  let store: Store | undefined;
  let etcd: EtcdServer | undefined;

  afterEach(async () => {
    await store?.close();
    try {
      if (etcd) process.kill(etcd.pid, 'SIGCONT'); // a failure may have left it stopped
    } catch {
      // killed by the round, not started again
    }
    await etcd?.stop();
    etcd = undefined;
    // Lazily: an agent still running may hold files there; the fleet's cleanup kills it.
    for (const agent of fleet?.agents ?? []) spawnSync('umount', ['-l', imagesRoot(agent)], { stdio: 'ignore' });
    await fleet?.cleanup();
    store = undefined;
    fleet = undefined;
  });

  it(`checkpoint (CRIU, with and without pre-copy; the second host on a disk of its own): the shard runs exactly once through ${ROUNDS} killed migrations (seed ${SEED})`, async () => {
    fleet = netnsAgents('cc', hosts().hosts);
    const stateFile = join(fleet.dir, 'counter.state');
    // Every migration crosses disks: its state directory is packed, unpacked, and undone at an abort.
    await campaign(fleet, 'checkpoint', [realPython(), WORKLOAD, stateFile, String(WORKLOAD_MIB)], () => stateFile, `${stateFile}.sha256`, undefined, fleet.agents[1]);
  });

  it(`checkpoint, the agents sharing an etcd that hangs among the faults: the shard runs exactly once through ${ROUNDS} killed migrations (seed ${SEED})`, async () => {
    etcd = await startEtcd(hosts().gateway); // on the bridge: the agents reach it from their namespaces
    fleet = netnsAgents('ce', hosts().hosts);
    const stateFile = join(fleet.dir, 'counter.state');
    await campaign(fleet, 'checkpoint', [realPython(), WORKLOAD, stateFile, String(WORKLOAD_MIB)], () => stateFile, `${stateFile}.sha256`, etcd);
  });

  it(`restart (stop, state directory, start; one file system for both hosts): the shard runs exactly once through ${ROUNDS} killed migrations (seed ${SEED})`, async () => {
    fleet = netnsAgents('cr', hosts().hosts);
    await campaign(fleet, 'restart', [realPython(), '-c', PERSISTENT_COUNTER], (stateDirectory) => join(stateDirectory, SHARD, 'counter'));
  });

  /**
   * Runs the rounds against a counting shard of `strategy` whose counter `stateFileIn(stateDirectory)`
   * holds. With `digestFile` (workload.py: the sha256 of its memory, written again on SIGUSR1),
   * the memory must also come through every round unchanged. With `sharedEtcd` the agents' store
   * is that etcd rather than one embedded file.
   */
  async function campaign(
    f: NetnsAgents,
    strategy: 'checkpoint' | 'restart',
    command: string[],
    stateFileIn: (stateDirectory: string) => string,
    digestFile?: string,
    sharedEtcd?: EtcdServer,
    ownDisk?: NetnsAgent,
  ): Promise<void> {
    const random = seededRandom(SEED); // the same seed kills at the same instants
    const stateDirectory = join(f.dir, 'counter-state');
    const stateFile = stateFileIn(stateDirectory);
    const plan: Plan = f.plan(1, (p) => {
      p.applications = [
        {
          id: 'counter',
          pool: 'local',
          command,
          env: {},
          stateDirectory,
          granularity: { cpuCores: 0.5, memoryBytes: 256 * MiB, readIops: 0, writeIops: 0 },
          shardUnits: 1,
          shards: { min: 1, initial: 1, max: 1 },
          migration: { strategy, timeoutSeconds: 60, preCopy: false },
          labels: {},
        },
      ];
      if (sharedEtcd) p.store = { kind: 'etcd', endpoints: [sharedEtcd.endpoint], prefix: '/crash-campaign' };
    });
    f.writePlan(plan);
    store = openStore(plan.store);
    const journal = new MigrationJournal(store);
    const cgroups = new Map(f.agents.map((a) => [a, detectCgroupDriver({ hostId: a.host.id, ownerPrefix: f.ownerPrefix })]));
    const first = placeShards(plan).assignments.find((a) => a.shardId === SHARD)!;
    let home = f.agents.find((a) => a.host.id === first.hostId)!;

    // Each agent's images on a file system of its own, so a round can fill one host's.
    for (const agent of f.agents) {
      mkdirSync(imagesRoot(agent), { recursive: true });
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${IMAGES_TMPFS_MIB}m`, 'shardform-crash-images', imagesRoot(agent)]);
    }
    for (const agent of f.agents) agent.start(agent === ownDisk ? { ownDisk: stateDirectory } : {});
    await bothListening(f);
    if (ownDisk) expect(statSync(ownDisk.seen(stateDirectory)).dev).not.toBe(statSync(stateDirectory).dev);
    await f.waitFor('the shard to run', async () => ((await shardsOf(home)).some((s) => s.shardId === SHARD && s.state === 'running') ? true : undefined));
    await f.waitFor('the counter to pass 30', async () => (counter(stateFile) > 30 ? true : undefined));

    const watch = watchCopies(f.agents, cgroups);
    const digest = digestFile ? readFileSync(digestFile, 'utf8') : undefined;
    const story: string[] = [];
    try {
      // Round 0 kills nothing: it measures how long a migration takes, so later kills land anywhere in one.
      const started = Date.now();
      const away = other(f, home);
      const response = await home.api('/v1/migrations', { method: 'POST', body: JSON.stringify({ shardId: SHARD, to: away.host.id }) });
      expect(response).toMatchObject({ status: 200, body: { state: 'done', strategy } });
      const span = Math.max(Date.now() - started, 300);
      home = away;
      story.push(`round 0: ${strategy}, moved to ${home.host.id} in ${span} ms`);

      for (let round = 1; round <= ROUNDS; round += 1) {
        const destination = other(f, home);
        const victims: readonly Victim[] = ['source', 'destination', 'both', 'workload', 'disk', 'store', ...(PARTITIONS ? (['partition'] as const) : [])];
        const victim: Victim = victims[Math.floor(random() * victims.length)]!;
        const preCopy = strategy === 'checkpoint' && random() < 0.5;
        const delayMs = Math.floor(random() * span * (preCopy ? 2.5 : 1.3));
        const pauseMs = Math.floor(random() * 1500);
        const kills = victim === 'source' || victim === 'destination' || victim === 'both';
        story.push(`round ${round}: ${home.host.id} → ${destination.host.id}${preCopy ? ' with pre-copy' : ''}, ${kills ? `kill ${victim}` : victim} after ${delayMs} ms${kills ? `, restart after ${pauseMs} ms more` : ''}`);
        // Both workloads only count up, from memory (checkpoint) or their state directory (restart):
        // after the round the counter is at least where it was before, whatever the round undid.
        // A checkpointed workload killed in the round starts afresh: its counter with it.
        const before = victim === 'workload' && strategy === 'checkpoint' ? 0 : counter(stateFile);

        const migration = home.api('/v1/migrations', { method: 'POST', body: JSON.stringify({ shardId: SHARD, to: destination.host.id, preCopy }) }).catch((error: Error) => ({ status: 0, body: error.message }));
        await sleep(delayMs);
        if (victim === 'partition') {
          const cutMs = 2000 + Math.floor(random() * 13_000);
          story.push(`  link of ${destination.host.id} cut for ${cutMs} ms`);
          await cutLink(destination.host);
          try {
            await sleep(cutMs);
          } finally {
            await restoreLink(destination.host);
          }
          const answer = await migration;
          story.push(`  the migration request answered ${answer.status} ${JSON.stringify(answer.body).slice(0, 160)}`);
        } else if (victim === 'workload') {
          const killed = killWorkload(f.agents, cgroups);
          story.push(`  killed the workload: ${killed.join(', ') || 'nothing (no process)'}`);
          const answer = await migration;
          story.push(`  the migration request answered ${answer.status} ${JSON.stringify(answer.body).slice(0, 160)}`);
        } else if (victim === 'disk') {
          const full = random() < 0.5 ? destination : home;
          const filler = join(imagesRoot(full), 'filler');
          const left = fillUp(imagesRoot(full), filler);
          story.push(`  filled the images file system of ${full.host.id} (${full === home ? 'source' : 'destination'}), ${left} bytes left`);
          try {
            const answer = await migration;
            story.push(`  the migration request answered ${answer.status} ${JSON.stringify(answer.body).slice(0, 160)}`);
          } finally {
            rmSync(filler, { force: true });
          }
        } else if (victim === 'store' && sharedEtcd) {
          const holdMs = 2000 + Math.floor(random() * 7000);
          if (random() < 0.5) {
            process.kill(sharedEtcd.pid, 'SIGSTOP'); // connections stay open, nothing answers
            story.push(`  etcd hung for ${holdMs} ms`);
            try {
              await sleep(holdMs);
            } finally {
              process.kill(sharedEtcd.pid, 'SIGCONT');
            }
          } else {
            process.kill(sharedEtcd.pid, 'SIGKILL'); // connections refused until it is back, with what it had committed
            story.push(`  etcd killed, started again after ${holdMs} ms`);
            await sleep(holdMs);
            await sharedEtcd.restartAfterKill();
          }
          const answer = await migration;
          story.push(`  the migration request answered ${answer.status} ${JSON.stringify(answer.body).slice(0, 160)}`);
        } else if (victim === 'store') {
          const holdMs = 2000 + Math.floor(random() * 7000);
          const lock = new Database((plan.store as { path: string }).path);
          try {
            lock.pragma('busy_timeout = 10000');
            lock.exec('BEGIN IMMEDIATE'); // the write lock: readers go on, writers wait, then fail
            story.push(`  took the store's write lock for ${holdMs} ms`);
            await sleep(holdMs);
            lock.exec('COMMIT');
          } finally {
            lock.close();
          }
          const answer = await migration;
          story.push(`  the migration request answered ${answer.status} ${JSON.stringify(answer.body).slice(0, 160)}`);
        } else {
          const killed = victim === 'both' ? [home, destination] : [victim === 'source' ? home : destination];
          await Promise.all(killed.map((a) => a.stop('SIGKILL')));
          const answer = await migration;
          story.push(`  the migration request answered ${answer.status} ${JSON.stringify(answer.body).slice(0, 160)}`);
          await sleep(pauseMs);
          for (const agent of killed) agent.start();
        }
        await bothListening(f);

        home = await settled(f, journal, cgroups, stateFile, story);
        story.push(`  settled: runs on ${home.host.id}, counter ${counter(stateFile)}`);
        expect(watch.overlaps()).toEqual([]);
        expect(counter(stateFile)).toBeGreaterThanOrEqual(before);
        if (digestFile) expect(await memoryDigest(f, cgroups.get(home)!, digestFile)).toBe(digest);
        // Nothing left beside the shard's state directory, or in it, by an unpack (both strategies
        // move it) that stopped part-way or was undone, nor a source's mark: on either host's disk.
        for (const agent of f.agents) {
          const seen = agent.seen(stateDirectory);
          if (existsSync(seen)) expect(readdirSync(seen).filter((name) => /\.(previous|incoming|discarded)-/.test(name))).toEqual([]);
          if (existsSync(join(seen, SHARD))) expect(readdirSync(join(seen, SHARD)).filter((name) => name.startsWith('.shardform-'))).toEqual([]);
        }
      }
    } catch (error) {
      // The agents' logs outlive the fleet's directory, for whoever reads the failure.
      const kept = mkdtempSync(join(tmpdir(), `shardform-crash-campaign-${strategy}-${SEED}-`));
      for (const agent of f.agents) if (existsSync(agent.logFile)) copyFileSync(agent.logFile, join(kept, `${agent.host.id}.log`));
      throw new Error(`crash campaign (${strategy}) failed (seed ${SEED}, rerun with SHARDFORM_CRASH_SEED=${SEED}; agent logs kept in ${kept}):\n${story.join('\n')}\n${(error as Error).message}`);
    } finally {
      await watch.stop();
      if (TRACE) appendFileSync(TRACE, `${story.map((line) => `# ${line}`).join('\n')}\n`);
    }
    expect(watch.samples()).toBeGreaterThan(ROUNDS * 10); // the watcher really watched
    expect(watch.overlaps()).toEqual([]);
  }
});

/** Where an agent keeps migration images (its state directory's `migrations`). */
function imagesRoot(agent: NetnsAgent): string {
  return join(agent.stateDir, 'migrations');
}

/** Takes all but 64 KiB of the free space of `dir`'s file system with one file (or about that); returns what is left. */
function fillUp(dir: string, filler: string): number {
  const free = () => {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  };
  // An agent writing there meanwhile (a dump, an upload) can take what was free: try again.
  for (let attempt = 1; attempt <= 20; attempt += 1) {
    if (free() <= 64 * 1024) return free();
    const r = spawnSync('fallocate', ['-l', String(Math.max(0, free() - 64 * 1024)), filler], { encoding: 'utf8' });
    if (r.status === 0) return free();
    rmSync(filler, { force: true });
  }
  throw new Error(`could not fill ${dir}: fallocate kept failing`);
}

/** SIGKILLs every process of the shard on either host, except CRIU (its restore runs in the destination's cgroup); returns what it killed. */
function killWorkload(agents: readonly NetnsAgent[], cgroups: Map<NetnsAgent, CgroupDriver>): string[] {
  const killed: string[] = [];
  for (const agent of agents) {
    for (const pid of pidsOf(cgroups.get(agent)!.procsFiles(SHARD))) {
      try {
        if (isCriu(pid)) continue;
        process.kill(pid, 'SIGKILL');
        killed.push(`${agent.host.id}:${pid}`);
      } catch {
        // gone meanwhile
      }
    }
  }
  return killed;
}

/** Waits until every migration is finished and the shard runs, supervised, on exactly one host, counting on; returns that host. */
async function settled(f: NetnsAgents, journal: MigrationJournal, cgroups: Map<NetnsAgent, CgroupDriver>, stateFile: string, story: string[]): Promise<NetnsAgent> {
  // Recovery retries with every periodic reconcile (10 s): a few of those, not forever.
  await f.waitFor('every migration to finish (done, or aborted with its cleanup complete)', async () => ((await journal.unfinished('test-fleet')).length === 0 ? true : undefined), 600, 100);
  const finished = (await journal.list('test-fleet')).map((e) => e.record).sort((a, b) => (a.history[0]?.at ?? '').localeCompare(b.history[0]?.at ?? ''));
  const last = finished[finished.length - 1]!;
  story.push(`  journal: ${last.id} ${last.state}${last.abort ? ` from ${last.abort.from} (${last.abort.reason.slice(0, 120)})` : ''}`);
  const home = await f.waitFor('the shard to run, supervised, on exactly one host', async () => {
    const listed = await Promise.all(f.agents.map(async (a) => ({ agent: a, shard: (await shardsOf(a)).find((s) => s.shardId === SHARD) })));
    const running = listed.filter((l) => l.shard?.state === 'running');
    const elsewhere = listed.filter((l) => l.shard !== undefined && l.shard.state !== 'running');
    if (running.length !== 1 || elsewhere.length !== 0) return undefined;
    // The agent polls an adopted run's liveness (every 2 s): a run killed since still reads
    // as running there for a moment, so its processes decide too.
    const [there, away] = [running[0]!.agent, f.agents.find((a) => a !== running[0]!.agent)!];
    const pids = (agent: NetnsAgent) => pidsOf(cgroups.get(agent)!.procsFiles(SHARD)).length;
    return pids(there) > 0 && pids(away) === 0 ? there : undefined;
  }, 600, 100);
  // Counting on: first a new value (a workload started afresh after a kill writes 1, 2, ...
  // over the last value of the run before), then 20 more from there.
  const seen = counter(stateFile);
  const next = await f.waitFor(`the counter to change from ${seen}`, async () => (counter(stateFile) !== seen ? counter(stateFile) : undefined));
  await f.waitFor(`the counter to count on past ${next}`, async () => (counter(stateFile) > next + 20 ? true : undefined));
  return home;
}

/**
 * Samples, every ~20 ms, whether each host runs a copy of the shard. Readings alternate between
 * the hosts; an overlap is a running reading of one host between two running readings of the
 * other, so a copy that stops just as the other starts is not one.
 */
function watchCopies(agents: readonly NetnsAgent[], cgroups: Map<NetnsAgent, CgroupDriver>) {
  const found: string[] = [];
  const readings: { host: string; running: string[]; at: number }[] = [];
  let count = 0;
  let stopped = false;
  /** What runs of the shard on `agent`'s host: pids (with their state) able to run user code; none while frozen. */
  const running = async (agent: NetnsAgent): Promise<string[]> => {
    const driver = cgroups.get(agent)!;
    if (!(await driver.exists(SHARD).catch(() => false))) return [];
    const live = pidsOf(driver.procsFiles(SHARD)).flatMap((pid) => {
      const state = processState(pid);
      return state?.runs ? [state.what] : [];
    });
    return live.length > 0 && !(await driver.isFrozen(SHARD).catch(() => true)) ? live : [];
  };
  const loop = (async () => {
    while (!stopped) {
      for (const agent of agents) {
        readings.push({ host: agent.host.id, running: await running(agent).catch(() => []), at: Date.now() });
        if (TRACE) appendFileSync(TRACE, `${new Date().toISOString()} ${agent.host.id} ${readings[readings.length - 1]!.running.join(' ')}\n`);
        count += 1;
        const [a, b, c] = readings.slice(-3);
        if (a && b && c && a.running.length && b.running.length && c.running.length && a.host === c.host && a.host !== b.host) {
          const when = (r: typeof a) => `${new Date(r.at).toISOString()} (${r.running.join(' ')})`;
          found.push(`${b.host} ran at ${when(b)} while ${a.host} ran from ${when(a)} to ${when(c)}`);
        }
        if (readings.length > 3) readings.shift();
      }
      await sleep(20);
    }
  })();
  return {
    overlaps: () => [...found],
    samples: () => count,
    stop: () => {
      stopped = true;
      return loop;
    },
  };
}

/**
 * Whether a process can run the workload's code now, and what it is. It cannot when it is stopped,
 * dead, exiting (PF_EXITING: killed, it never returns to user space) or has SIGKILL or SIGSTOP pending,
 * or when CRIU holds it (traced by CRIU's dump or restore, or CRIU itself: the restore runs
 * inside the destination cgroup, its shim joins it first). Undefined once it is gone.
 */
function processState(pid: number): { runs: boolean; what: string } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(status)?.[1] ?? '';
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const flags = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[6]);
    const PF_EXITING = 0x4;
    const pending = BigInt(`0x${field('SigPnd') || '0'}`) | BigInt(`0x${field('ShdPnd') || '0'}`);
    // SIGKILL: never returns to user space; SIGSTOP (CRIU's --leave-stopped, seen just after a
    // thaw): stops before it does.
    const SIGKILL = 1n << 8n;
    const SIGSTOP = 1n << 18n;
    const killed = (pending & (SIGKILL | SIGSTOP)) !== 0n;
    const tracer = Number(field('TracerPid'));
    const held = isCriu(pid) || (tracer > 0 && isCriu(tracer));
    // The workload's code runs only inside the shard's own PID namespace; a process of the
    // shard's cgroup outside it (one NSpid level) is the launcher (`unshare --pid --fork`,
    // waiting for its child), which a release leaves for a moment after killing the workload.
    const launcher = field('NSpid') !== '' && /^NSpid:\s*\d+\s*$/m.test(status);
    const state = field('State');
    const runs = !/^[TtZX]/.test(state) && (flags & PF_EXITING) === 0 && !killed && !held && !launcher;
    return { runs, what: `${pid}:${state}:${field('Name')}${launcher ? ':launcher' : ''}${tracer > 0 ? `:traced-by-${tracer}` : ''}${pending !== 0n ? `:pending-${pending.toString(16)}` : ''}:flags-${flags.toString(16)}` };
  } catch {
    return undefined;
  }
}

/** Whether `pid` is CRIU or the shim a restore starts it through (which joins the shard's cgroup first). */
function isCriu(pid: number): boolean {
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  return argv[0] === 'shardform-join' || argv.some((arg) => /(^|\/)criu(\/|$)/.test(arg));
}

/** Has the running workload (the namespace init on its host) write the sha256 of its memory again, and reads it. */
async function memoryDigest(f: NetnsAgents, driver: CgroupDriver, digestFile: string): Promise<string> {
  const root = namespaceInitPid({ pids: () => pidsOf(driver.procsFiles(SHARD)) });
  if (root === undefined) throw new Error('no workload to ask for its memory digest');
  const before = statSync(digestFile).ino; // written by rename: a new inode each time
  process.kill(root, 'SIGUSR1');
  await f.waitFor('the workload to write its memory digest', async () => (statSync(digestFile).ino !== before ? true : undefined));
  return readFileSync(digestFile, 'utf8');
}

async function bothListening(f: NetnsAgents): Promise<void> {
  for (const agent of f.agents) await f.waitFor(`${agent.host.id} to listen`, async () => ((await agent.api('/healthz')).status === 200 ? true : undefined));
}

async function shardsOf(agent: NetnsAgent): Promise<{ shardId: string; state: string }[]> {
  return (await agent.api<{ shards: { shardId: string; state: string }[] }>('/v1/shards')).body.shards;
}

function other(f: NetnsAgents, agent: NetnsAgent): NetnsAgent {
  return f.agents.find((a) => a !== agent)!;
}

function counter(stateFile: string): number {
  if (!existsSync(stateFile)) return 0;
  const value = Number(readFileSync(stateFile, 'utf8'));
  return Number.isFinite(value) ? value : 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function boundedInteger(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  return value;
}
