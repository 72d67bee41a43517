/**
 * Migration through the real daemons: two `shardform agent` processes on two netns test hosts
 * sharing one embedded store, a counting workload the source agent started from the plan, and
 * `shardform migrate` as the operator runs it.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { detectCgroupDriver } from '../../../host-agent/cgroups/detect';
import { placeShards } from '../../../policies/initial-placement';
import type { Plan, UnsignedPlan } from '../../../src/contracts/plan-schema';
import { BIN } from '../../helpers/cli';
import { requireCriu, requirePython } from '../../helpers/criu-prerequisite';
import { pidsOf } from '../../helpers/migration-hosts';
import { PERSISTENT_COUNTER, TCP_CONNECTION } from '../../helpers/persistent-counter';
import { netnsAgents, realPython, type NetnsAgent, type NetnsAgents } from '../../helpers/netns-agents';
import { useNetnsHosts } from '../../helpers/netns-hosts';
import { describePrivileged, requireCgroups, requireNetns } from '../../helpers/privileged';
import { namespaceInitPid } from '../../helpers/scratch-cgroup';

const execFileAsync = promisify(execFile);
jest.setTimeout(180_000);

const MiB = 2 ** 20;
const SHARD = 'counter-0';

interface Shard {
  shardId: string;
  state: string;
  pid?: number;
  limits: { cpuCores?: number | null; memoryBytes?: number | null };
}

describePrivileged('migration between two real agents (netns hosts, shared store, real CRIU)', [requireCgroups, requireNetns, requireCriu, requirePython], () => {
  const hosts = useNetnsHosts(2, 'ma');
  let fleet: NetnsAgents | undefined;

  afterEach(async () => {
    await fleet?.cleanup();
    fleet = undefined;
  });

  function counterPlan(f: NetnsAgents, generation: number, stateFile: string, edit: (plan: UnsignedPlan) => void = () => {}): Plan {
    return f.plan(generation, (p) => {
      edit(p);
      p.applications = [
        {
          id: 'counter',
          pool: 'local',
          command: [realPython(), join(__dirname, '..', '..', 'helpers', 'workload.py'), stateFile, '1'],
          env: {},
          stateDirectory: join(f.dir, 'counter-state'),
          granularity: { cpuCores: 0.5, memoryBytes: 256 * MiB, readIops: 0, writeIops: 0 },
          shardUnits: 1,
          shards: { min: 1, initial: 1, max: 1 },
          migration: { strategy: 'checkpoint', timeoutSeconds: 120, preCopy: false },
          labels: {},
        },
      ];
    });
  }

  const shardsOf = async (agent: NetnsAgent) => (await agent.api<{ shards: Shard[] }>('/v1/shards')).body.shards;
  const metric = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
  const metricsOf = async (agent: NetnsAgent) => (await agent.api<string>('/metrics')).body;

  /**
   * Runs `application` (the counter's, edited) on two agents whose disks differ: the destination's
   * agent sees a fresh tmpfs over the application's state directory. Resolves once both listen.
   */
  async function onSeparateDisks(f: NetnsAgents, edit: (counter: Plan['applications'][number]) => Plan['applications'][number]) {
    const counter = counterPlan(f, 1, '/unused').applications[0]!;
    const plan = f.plan(1, (p) => {
      p.applications = [edit(counter)];
    });
    const stateDirectory = plan.applications[0]!.stateDirectory;
    const placed = placeShards(plan).assignments.find((a) => a.shardId === SHARD)!;
    const source = f.agents.find((a) => a.host.id === placed.hostId)!;
    const destination = f.agents.find((a) => a.host.id !== placed.hostId)!;
    f.writePlan(plan);
    source.start();
    destination.start({ ownDisk: stateDirectory });
    for (const agent of f.agents) await f.waitFor(`${agent.host.id} to listen`, async () => ((await agent.api('/healthz')).status === 200 ? true : undefined));
    return { stateDirectory, source, destination, sourceCounter: join(stateDirectory, SHARD, 'counter') };
  }

  /** `shardform migrate SHARD --to <destination> --json`, as an operator runs it; resolves to its summary. */
  async function migrateWithCli(f: NetnsAgents, source: NetnsAgent, destination: NetnsAgent): Promise<{ state: string }> {
    const { stdout } = await execFileAsync(process.execPath, [BIN, 'migrate', SHARD, '--to', destination.host.id, '--agent', source.url, '--token-file', f.tokenFile, '--json'], { timeout: 150_000 });
    return JSON.parse(stdout) as { state: string };
  }

  it('moves a counting shard with `shardform migrate`: it runs only on the destination, same limits, counts on, and the source does not bring it back', async () => {
    const f = (fleet = netnsAgents('ma', hosts().hosts));
    const stateFile = join(f.dir, 'counter.state');
    // A 1-s prediction grid, so the source has a forecast of the shard to hand over within seconds.
    const oneSecondGrid = (p: UnsignedPlan) => (p.predictor = { ...p.predictor, intervalSeconds: 1, horizonSeconds: 5 });
    const plan = counterPlan(f, 1, stateFile, oneSecondGrid);
    const placed = placeShards(plan).assignments.find((a) => a.shardId === SHARD)!;
    const source = f.agents.find((a) => a.host.id === placed.hostId)!;
    const destination = f.agents.find((a) => a.host.id !== placed.hostId)!;
    f.writePlan(plan);
    for (const agent of f.agents) agent.start();
    for (const agent of f.agents) await f.waitFor(`${agent.host.id} to listen`, async () => ((await agent.api('/healthz')).status === 200 ? true : undefined));
    await f.waitFor('the source to run the shard', async () => ((await shardsOf(source)).find((s) => s.shardId === SHARD && s.state === 'running') ? true : undefined));
    await f.waitFor('the counter to pass 30', async () => (existsSync(stateFile) && Number(readFileSync(stateFile, 'utf8')) > 30 ? true : undefined));
    type Predictions = { fedThroughSeconds: number | null; shards: { shard_id: string; timestamp: string }[] };
    const firstForecast = await f.waitFor('the source to forecast the shard', async () => (await source.api<Predictions>('/v1/predictions')).body.shards.find((v) => v.shard_id === SHARD));
    await f.waitFor('five more seconds of forecast', async () => {
      const now = (await source.api<Predictions>('/v1/predictions')).body.shards.find((v) => v.shard_id === SHARD);
      return now && Date.parse(now.timestamp) - Date.parse(firstForecast.timestamp) >= 5000 ? true : undefined;
    });

    // The hosts share this disk: the destination sees the source's state directory, and nothing is swapped.
    const shardState = join(plan.applications[0]!.stateDirectory, SHARD);
    const stateInode = statSync(shardState).ino;
    // Watch the state file through the migration: the counter must never go back.
    const seen: number[] = [];
    const watcher = setInterval(() => {
      try {
        const value = Number(readFileSync(stateFile, 'utf8'));
        if (Number.isFinite(value) && value > 0) seen.push(value);
      } catch {
        // between the rename's unlink and link: next tick
      }
    }, 20);
    let stdout: string;
    try {
      ({ stdout } = await execFileAsync(process.execPath, [BIN, 'migrate', SHARD, '--to', destination.host.id, '--agent', source.url, '--token-file', f.tokenFile, '--json'], { timeout: 150_000 }));
      const before = seen[seen.length - 1]!;
      await f.waitFor('the migrated counter to advance', async () => (seen[seen.length - 1]! > before + 30 ? true : undefined));
    } finally {
      clearInterval(watcher);
    }
    const summary = JSON.parse(stdout) as {
      state: string; downtimeMs: number; bytesSent: number; source: string; destination: string; id: string;
      downtimeSteps: { freezeMs: number; dumpMs: number; transferMs: number; restoreMs: number };
    };
    expect(summary).toMatchObject({ state: 'done', source: source.host.id, destination: destination.host.id });
    // The downtime, step by step, adds up to the downtime.
    const { freezeMs, dumpMs, transferMs, restoreMs } = summary.downtimeSteps;
    expect(freezeMs + dumpMs + transferMs + restoreMs).toBe(summary.downtimeMs);
    expect(Math.min(freezeMs, dumpMs, transferMs, restoreMs)).toBeGreaterThanOrEqual(0);
    expect(summary.bytesSent).toBeGreaterThan(0);

    // Never reset; and no jump: the counter only moves while the shard runs (one step per 10 ms
    // loop), so across the migration it advances by no more than the steps seen between any two
    // readings before it, or the steps the downtime allows plus one write period (100 ms).
    for (let i = 1; i < seen.length; i += 1) expect(seen[i]).toBeGreaterThanOrEqual(seen[i - 1]!);
    const steps = seen.slice(1).map((v, i) => v - seen[i]!);
    expect(Math.max(...steps)).toBeLessThanOrEqual(Math.max(Math.ceil(summary.downtimeMs / 10) + 10, 2 * Math.max(...steps.slice(0, 20))));

    // Only on the destination, supervised there, with the same limits, in a cgroup with the same limits.
    expect((await shardsOf(source)).map((s) => s.shardId)).not.toContain(SHARD);
    const moved = (await shardsOf(destination)).find((s) => s.shardId === SHARD);
    expect(moved).toMatchObject({ state: 'running', limits: { cpuCores: 0.5, memoryBytes: 256 * MiB } });
    const sourceCgroups = detectCgroupDriver({ hostId: source.host.id, ownerPrefix: f.ownerPrefix });
    const destCgroups = detectCgroupDriver({ hostId: destination.host.id, ownerPrefix: f.ownerPrefix });
    expect(await sourceCgroups.exists(SHARD)).toBe(false);
    expect(await destCgroups.readLimits(SHARD)).toMatchObject({ cpuCores: 0.5, memoryBytes: 256 * MiB });
    const destPids = pidsOf(destCgroups.procsFiles(SHARD));
    expect(namespaceInitPid({ pids: () => destPids })).toBe(moved!.pid);
    // It writes its output to the destination's own log files: the source's are on another
    // host's disk (here the same machine, which hid it), and the source prunes them later.
    expect(readlinkSync(`/proc/${moved!.pid}/fd/1`)).toBe(join(destination.stateDir, 'logs', SHARD, 'stdout.log'));
    expect(readlinkSync(`/proc/${moved!.pid}/fd/2`)).toBe(join(destination.stateDir, 'logs', SHARD, 'stderr.log'));
    expect(statSync(shardState).ino).toBe(stateInode);
    expect(readdirSync(shardState).filter((name) => name.startsWith('.shardform-'))).toEqual([]);
    expect(readdirSync(plan.applications[0]!.stateDirectory)).toEqual([SHARD]);

    // A new plan makes both agents reconcile: the source must not re-create the shard.
    const passes = metric(await metricsOf(source), 'shardform_reconcile_duration_seconds_count{outcome="converged"}') ?? 0;
    // The same plan under a new generation (the grid included: another grid would start every
    // predictor afresh, and the destination's forecast of the shard checked below with it).
    f.writePlan(counterPlan(f, 2, stateFile, oneSecondGrid));
    await f.waitFor('a source reconcile on generation 2', async () => {
      const text = await metricsOf(source);
      return metric(text, 'shardform_plan_generation') === 2 && (metric(text, 'shardform_reconcile_duration_seconds_count{outcome="converged"}') ?? 0) > passes ? true : undefined;
    });
    expect((await shardsOf(source)).map((s) => s.shardId)).not.toContain(SHARD);
    expect(await sourceCgroups.exists(SHARD)).toBe(false);
    expect((await shardsOf(destination)).find((s) => s.shardId === SHARD)).toMatchObject({ state: 'running', pid: moved!.pid });

    // The API, the metrics and the log say what happened.
    const listed = (await source.api<{ migrations: { id: string; state: string; destination: string }[] }>('/v1/migrations')).body.migrations;
    expect(listed[0]).toMatchObject({ id: summary.id, state: 'done', destination: destination.host.id });
    // ... and so does `shardform migrations`, reading the real route, from either agent (the journal is the fleet's).
    for (const agent of [source, destination]) {
      const { stdout: table } = await execFileAsync(process.execPath, [BIN, 'migrations', '--agent', agent.url, '--token-file', f.tokenFile, '--shard', SHARD], { timeout: 30_000 });
      expect(table.split('\n')[1]!.split(/ +/).slice(0, 6)).toEqual([summary.id, SHARD, source.host.id, destination.host.id, 'checkpoint', 'done']);
    }
    const text = await metricsOf(source);
    expect(metric(text, 'shardform_migrations_total{outcome="done"}')).toBe(1);
    expect(metric(text, 'shardform_migration_downtime_seconds_count')).toBe(1);
    for (const step of ['freeze', 'dump', 'transfer', 'restore']) expect(metric(text, `shardform_migration_downtime_step_seconds_count{step="${step}"}`)).toBe(1);
    expect(metric(text, 'shardform_migration_bytes_total')).toBe(summary.bytesSent);
    expect(source.logLines().find((l) => l.migration_id === summary.id)).toMatchObject({
      outcome: 'done', strategy: 'checkpoint', source: source.host.id, destination: destination.host.id, bytes: summary.bytesSent, rounds: 0,
      downtime_steps_ms: { freeze: freezeMs, dump: dumpMs, transfer: transferMs, restore: restoreMs },
    });

    // The shard's forecast moved with it: handed over by the source, taken by the destination.
    await f.waitFor('the source to hand the predictor over', async () => (source.logLines().some((l) => l.msg === `predictor of ${SHARD} handed over to ${destination.host.id}`) ? true : undefined));
    expect(destination.logLines().some((l) => l.msg === `predictor of ${SHARD} taken over from its previous host` || l.msg === `predictor of ${SHARD} kept for when it runs here`)).toBe(true);
    await f.waitFor('the destination to forecast the shard', async () => ((await destination.api<Predictions>('/v1/predictions')).body.shards.some((v) => v.shard_id === SHARD) ? true : undefined));
  });

  it('moves a checkpointed shard to a host whose disk is not the source\'s: its state directory (working directory, a file it holds open) goes with it', async () => {
    const f = (fleet = netnsAgents('md', hosts().hosts));
    // Counts in memory; every 10th step rewrites `counter` and appends to `journal`, a file it
    // holds open: both in its working directory, the shard's state directory.
    const journaling = [
      'import os, time',
      "journal = open('journal', 'a', buffering=1)",
      'counter = 0',
      'while True:',
      '    counter += 1',
      '    if counter % 10 == 0:',
      "        open('counter.tmp', 'w').write(str(counter)); os.replace('counter.tmp', 'counter')",
      "        journal.write('%d\\n' % counter)",
      '    time.sleep(0.01)',
    ].join('\n');
    const { stateDirectory, source, destination, sourceCounter } = await onSeparateDisks(f, (counter) => ({ ...counter, command: [realPython(), '-c', journaling] }));
    await f.waitFor('the counter to pass 300', async () => (existsSync(sourceCounter) && Number(readFileSync(sourceCounter, 'utf8')) > 300 ? true : undefined));
    expect(await migrateWithCli(f, source, destination)).toMatchObject({ state: 'done' });
    const leftAt = Number(readFileSync(sourceCounter, 'utf8'));
    const moved = (await shardsOf(destination)).find((s) => s.shardId === SHARD)!;
    expect(moved).toMatchObject({ state: 'running' });

    // Its working directory and its open journal are on the destination's disk, not the source's.
    const sourceDisk = statSync(stateDirectory).dev;
    const cwd = `/proc/${moved.pid}/cwd`;
    expect(statSync(cwd).dev).not.toBe(sourceDisk);
    const fds = readdirSync(`/proc/${moved.pid}/fd`).map((fd) => `/proc/${moved.pid}/fd/${fd}`);
    const journalFd = fds.find((fd) => readlinkSync(fd) === join(stateDirectory, SHARD, 'journal'));
    expect(journalFd).toBeDefined();
    expect(statSync(journalFd!).dev).toBe(statSync(cwd).dev);
    // It counts on there, from where it was: the journal holds every step since its start, none twice.
    await f.waitFor('the moved counter to advance', async () => (Number(readFileSync(join(cwd, 'counter'), 'utf8')) > leftAt + 100 ? true : undefined));
    const steps = readFileSync(join(cwd, 'journal'), 'utf8').trim().split('\n').map(Number);
    expect(steps.length).toBeGreaterThan(leftAt / 10 + 10);
    steps.forEach((step, i) => expect(step).toBe(10 * (i + 1)));
    // The source's copy of the directory is left as it was at the freeze.
    expect(Number(readFileSync(sourceCounter, 'utf8'))).toBe(leftAt);
  });

  /** Runs a restart migration of `command` (declared `strategy`) through the agents and checks where it runs after. */
  async function restartMigration(label: string, command: string[], strategy: 'checkpoint' | 'restart'): Promise<void> {
    const f = (fleet = netnsAgents(label, hosts().hosts));
    const plan = (generation: number): Plan => {
      const counter = counterPlan(f, generation, '/unused').applications[0]!;
      return f.plan(generation, (p) => {
        p.applications = [{ ...counter, command, migration: { strategy, timeoutSeconds: 120, preCopy: false } }];
      });
    };
    const first = plan(1);
    const stateFile = join(first.applications[0]!.stateDirectory, SHARD, 'counter');
    const placed = placeShards(first).assignments.find((a) => a.shardId === SHARD)!;
    const source = f.agents.find((a) => a.host.id === placed.hostId)!;
    const destination = f.agents.find((a) => a.host.id !== placed.hostId)!;
    f.writePlan(first);
    for (const agent of f.agents) agent.start();
    for (const agent of f.agents) await f.waitFor(`${agent.host.id} to listen`, async () => ((await agent.api('/healthz')).status === 200 ? true : undefined));
    const before = await f.waitFor('the source to run the shard', async () => (await shardsOf(source)).find((s) => s.shardId === SHARD && s.state === 'running'));
    await f.waitFor('the counter to pass 30', async () => (existsSync(stateFile) && Number(readFileSync(stateFile, 'utf8')) > 30 ? true : undefined));
    // The hosts share this disk: the destination starts the shard in the very directory, nothing swapped.
    const stateInode = statSync(dirname(stateFile)).ino;

    const seen: number[] = [];
    const watcher = setInterval(() => {
      try {
        const value = Number(readFileSync(stateFile, 'utf8'));
        if (Number.isFinite(value) && value > 0) seen.push(value);
      } catch {
        // mid-rename: next tick
      }
    }, 20);
    let stdout: string;
    try {
      ({ stdout } = await execFileAsync(process.execPath, [BIN, 'migrate', SHARD, '--to', destination.host.id, '--agent', source.url, '--token-file', f.tokenFile, '--json'], { timeout: 150_000 }));
      const last = seen[seen.length - 1]!;
      await f.waitFor('the restarted counter to advance', async () => (seen[seen.length - 1]! > last + 30 ? true : undefined));
    } finally {
      clearInterval(watcher);
    }
    const summary = JSON.parse(stdout) as { state: string; id: string; bytesSent: number };
    expect(summary.state).toBe('done');
    expect(summary.bytesSent).toBe(0); // the hosts share the state directory: no archive goes
    // Stopped with SIGTERM (it saved its counter), started from the state: never back to 0.
    for (let i = 1; i < seen.length; i += 1) expect(seen[i]).toBeGreaterThanOrEqual(seen[i - 1]!);

    expect((await shardsOf(source)).map((s) => s.shardId)).not.toContain(SHARD);
    const moved = (await shardsOf(destination)).find((s) => s.shardId === SHARD);
    expect(moved).toMatchObject({ state: 'running', limits: { cpuCores: 0.5, memoryBytes: 256 * MiB } });
    expect(moved!.pid).not.toBe(before.pid);
    expect(statSync(dirname(stateFile)).ino).toBe(stateInode);
    expect(readdirSync(dirname(stateFile)).filter((name) => name.startsWith('.shardform-'))).toEqual([]);
    const sourceCgroups = detectCgroupDriver({ hostId: source.host.id, ownerPrefix: f.ownerPrefix });
    const destCgroups = detectCgroupDriver({ hostId: destination.host.id, ownerPrefix: f.ownerPrefix });
    expect(await sourceCgroups.exists(SHARD)).toBe(false);
    expect(await destCgroups.readLimits(SHARD)).toMatchObject({ cpuCores: 0.5, memoryBytes: 256 * MiB });

    const passes = metric(await metricsOf(source), 'shardform_reconcile_duration_seconds_count{outcome="converged"}') ?? 0;
    f.writePlan(plan(2));
    await f.waitFor('a source reconcile on generation 2', async () => {
      const text = await metricsOf(source);
      return metric(text, 'shardform_plan_generation') === 2 && (metric(text, 'shardform_reconcile_duration_seconds_count{outcome="converged"}') ?? 0) > passes ? true : undefined;
    });
    expect(await sourceCgroups.exists(SHARD)).toBe(false);
    expect((await shardsOf(destination)).find((s) => s.shardId === SHARD)).toMatchObject({ state: 'running', pid: moved!.pid });
    expect(source.logLines().find((l) => l.migration_id === summary.id)).toMatchObject({ outcome: 'done', strategy: 'restart', rounds: 0 });
  }

  it('moves a shard declared `restart`: stopped on the source, started on the destination in the state directory both hosts share (nothing streamed), counting on from its state', async () => {
    await restartMigration('mr', [realPython(), '-c', PERSISTENT_COUNTER], 'restart');
  });

  it('moves a shard declared `restart` to a host whose disk is not the source\'s: started there from its state directory, counting on', async () => {
    const f = (fleet = netnsAgents('mo', hosts().hosts));
    const { stateDirectory, source, destination, sourceCounter } = await onSeparateDisks(f, (counter) => ({
      ...counter,
      command: [realPython(), '-c', PERSISTENT_COUNTER],
      migration: { strategy: 'restart', timeoutSeconds: 120, preCopy: false },
    }));
    await f.waitFor('the counter to pass 30', async () => (existsSync(sourceCounter) && Number(readFileSync(sourceCounter, 'utf8')) > 30 ? true : undefined));
    expect(await migrateWithCli(f, source, destination)).toMatchObject({ state: 'done' });
    // Saved at SIGTERM on the source; on the destination's own disk it starts from that value.
    const savedAtStop = Number(readFileSync(sourceCounter, 'utf8'));
    const moved = (await shardsOf(destination)).find((s) => s.shardId === SHARD)!;
    const cwd = `/proc/${moved.pid}/cwd`;
    expect(statSync(cwd).dev).not.toBe(statSync(stateDirectory).dev);
    const first = await f.waitFor('the restarted counter to be saved', async () => (existsSync(join(cwd, 'counter')) ? Number(readFileSync(join(cwd, 'counter'), 'utf8')) : undefined));
    expect(first).toBeGreaterThanOrEqual(savedAtStop);
    await f.waitFor('the restarted counter to advance', async () => (Number(readFileSync(join(cwd, 'counter'), 'utf8')) > savedAtStop + 30 ? true : undefined));
  });

  it('moves a `checkpoint` shard that holds an established TCP connection by restart instead', async () => {
    await restartMigration('mt', [realPython(), '-c', `${TCP_CONNECTION}\n${PERSISTENT_COUNTER}`], 'checkpoint');
  });

  it('recovers at start: a source agent killed while it stops the shard comes back, aborts the migration and supervises the shard again — it runs once, on the source', async () => {
    const f = (fleet = netnsAgents('mk', hosts().hosts));
    // Ignores SIGTERM, so the stop step lasts the keeper's whole grace period: the window to kill the agent in.
    const stubborn = PERSISTENT_COUNTER.replace('signal.signal(signal.SIGTERM, stop)', 'signal.signal(signal.SIGTERM, lambda *_: None)');
    const counter = counterPlan(f, 1, '/unused').applications[0]!;
    const plan = f.plan(1, (p) => {
      p.applications = [{ ...counter, command: [realPython(), '-c', stubborn], migration: { strategy: 'restart', timeoutSeconds: 120, preCopy: false } }];
    });
    const stateFile = join(plan.applications[0]!.stateDirectory, SHARD, 'counter');
    const placed = placeShards(plan).assignments.find((a) => a.shardId === SHARD)!;
    const source = f.agents.find((a) => a.host.id === placed.hostId)!;
    const destination = f.agents.find((a) => a.host.id !== placed.hostId)!;
    f.writePlan(plan);
    for (const agent of f.agents) agent.start();
    for (const agent of f.agents) await f.waitFor(`${agent.host.id} to listen`, async () => ((await agent.api('/healthz')).status === 200 ? true : undefined));
    const running = await f.waitFor('the source to run the shard', async () => (await shardsOf(source)).find((s) => s.shardId === SHARD && s.state === 'running'));
    await f.waitFor('the counter to pass 30', async () => (existsSync(stateFile) && Number(readFileSync(stateFile, 'utf8')) > 30 ? true : undefined));

    const cli = execFileAsync(process.execPath, [BIN, 'migrate', SHARD, '--to', destination.host.id, '--agent', source.url, '--token-file', f.tokenFile, '--json'], { timeout: 150_000 }).then(
      () => 0,
      (error: { code?: number }) => error.code ?? -1,
    );
    const id = await f.waitFor('the migration to reach the stop step', async () => {
      const listed = (await source.api<{ migrations: { id: string; state: string }[] }>('/v1/migrations')).body.migrations ?? [];
      return listed.find((m) => m.state === 'frozen')?.id;
    }, 300, 20);
    await source.stop('SIGKILL');
    expect(await cli).toBe(1);

    source.start();
    await f.waitFor('the source agent back', async () => ((await source.api('/healthz')).status === 200 ? true : undefined));
    const listed = (await source.api<{ migrations: { id: string; state: string; abortReason: string | null }[] }>('/v1/migrations')).body.migrations;
    expect(listed.find((m) => m.id === id)).toMatchObject({ state: 'aborted', abortReason: 'recovered in state frozen before commit' });
    const back = await f.waitFor('the source to supervise the shard again', async () => (await shardsOf(source)).find((s) => s.shardId === SHARD && s.state === 'running'));
    expect(back.pid).toBe(running.pid); // the same run: it never stopped (SIGTERM ignored, agent killed before SIGKILL)
    expect((await shardsOf(destination)).map((s) => s.shardId)).not.toContain(SHARD);
    expect(await detectCgroupDriver({ hostId: destination.host.id, ownerPrefix: f.ownerPrefix }).exists(SHARD)).toBe(false);
    const now = Number(readFileSync(stateFile, 'utf8'));
    await f.waitFor('the counter to advance on the source', async () => (Number(readFileSync(stateFile, 'utf8')) > now + 20 ? true : undefined));
    expect(source.logLines().some((l) => l.msg === `recovered migration ${id}: aborted`)).toBe(true);
  });
});
