/**
 * The agent as a real process on real cgroups: shards run; SIGKILL the agent and start it again
 * and the same shards (same pids) are adopted; a bad plan is refused while the old one keeps
 * running, with the reason in the API, the log and a metric; drain stops everything.
 * Network only on 127.0.0.1; no wall-clock assertions (waits poll for states).
 */
import { runBin } from '../helpers/cli';
import { agentRun, CGROUP_ROOT, type AgentRun } from '../helpers/agent-process';
import { describePrivileged, requireCgroups } from '../helpers/privileged';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectCgroupDriver } from '../../host-agent/cgroups';
import { lastGoodPlanPath } from '../../host-agent/plan-source/last-good-plan';
import { openFilesUnder } from '../helpers/open-files';

/** Alive = has a /proc entry and is not a zombie (a reparented zombie waits for a reaper we do not control). */
function alive(pid: number | null): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

interface Shard {
  shardId: string;
  state: string;
  pid: number | null;
  adopted: boolean;
  limits: { cpuCores?: number; memoryBytes?: number };
}

describePrivileged('shardform agent (real process, real cgroups)', [requireCgroups], () => {
  jest.setTimeout(120_000);
  let run: AgentRun;
  beforeAll(async () => {
    run = await agentRun('agent');
  });
  afterAll(async () => {
    await run?.cleanup();
  });

  const running = (count: number) => async () => {
    const { status, body } = await run.api<{ shards: Shard[] }>('/v1/shards');
    if (status !== 200) return undefined;
    const up = body.shards.filter((s) => s.state === 'running' && s.pid !== null);
    return up.length === count ? body.shards : undefined;
  };
  const pids = (shards: Shard[]) => Object.fromEntries(shards.map((s) => [s.shardId, s.pid]));
  let firstPids: Record<string, number | null>;

  it('runs the shards the plan places on this host, in their cgroups', async () => {
    run.writePlan(run.plan(1));
    run.start();
    const shards = await run.waitFor('two running shards', running(2));
    expect(shards.map((s) => s.shardId)).toEqual(['web-0', 'web-1']);
    expect(shards[0].limits).toMatchObject({ cpuCores: 0.5, memoryBytes: 2 ** 30 });
    firstPids = pids(shards);
    for (const pid of Object.values(firstPids)) expect(alive(pid)).toBe(true);
    expect((await run.api('/healthz')).body).toMatchObject({ status: 'ok', generation: 1 });
    expect(run.logLines()).toContainEqual(expect.objectContaining({ msg: expect.stringMatching(/^cgroup layout: (v1|v2|hybrid)$/) }));
    expect(run.logLines()).toContainEqual(expect.objectContaining({ shard_id: 'web-0', application_id: 'web' }));
  });

  it('answers 401 without the token and 400 to ../../etc', async () => {
    const anonymous = await fetch(`${run.url}/v1/shards`);
    expect(anonymous.status).toBe(401);
    const traversal = await run.api('/v1/shards/%2E%2E%2F%2E%2E%2Fetc');
    expect(traversal.status).toBe(400);
  });

  it('samples the shards into the history and /metrics', async () => {
    const history = await run.waitFor('two samples of web-0', async () => {
      const { body } = await run.api<{ samples: unknown[] }>('/v1/shards/web-0/history');
      return body.samples.length >= 2 ? body.samples : undefined;
    });
    expect(history[0]).toMatchObject({ shardId: 'web-0', applicationId: 'web', cpuCores: expect.any(Number), memoryBytes: expect.any(Number) });
    const metrics = await run.metrics();
    expect(metrics).toMatch(/shardform_shard_cpu_usage_seconds_total\{shard_id="web-0",application_id="web"\} [0-9.e-]+/);
    expect(metrics).toContain('shardform_shard_cpu_limit_cores{shard_id="web-0",application_id="web"} 0.5');
    expect(metrics).toContain('shardform_plan_generation 1');
    expect(metrics).toContain('shardform_reconcile_duration_seconds_count');
  });

  it('adopts the same shards with the same pids after the agent is SIGKILLed and started again', async () => {
    await run.stop('SIGKILL');
    for (const pid of Object.values(firstPids)) expect(alive(pid)).toBe(true);
    run.start();
    const shards = await run.waitFor('two running shards after restart', running(2));
    expect(pids(shards)).toEqual(firstPids);
    expect(shards.every((s) => s.adopted)).toBe(true);
  });

  it('refuses a plan with a lower generation and one that fails the schema, keeping the old plan and its shards', async () => {
    run.writePlan(run.plan(2));
    await run.waitFor('generation 2', async () => ((await run.api('/v1/plan')).body.generation === 2 ? true : undefined));

    run.writePlan(run.plan(1, (p) => (p.applications[0].shards.initial = 1)));
    const backwards = await run.waitFor('a refusal', async () => (await run.api('/v1/plan')).body.lastRejection ?? undefined);
    expect(backwards).toMatchObject({ reason: 'generation-backwards', generation: 1 });

    const invalid = JSON.parse(JSON.stringify(run.plan(3)));
    invalid.applications[0].granularity.cpuCores = -1;
    run.writePlan(JSON.stringify(invalid));
    const rejection = await run.waitFor('a schema refusal', async () => {
      const r = (await run.api('/v1/plan')).body.lastRejection;
      return r?.reason === 'invalid' ? r : undefined;
    });
    expect(rejection.errors).toContainEqual(expect.objectContaining({ field: 'applications[0].granularity.cpuCores', value: -1 }));
    expect((await run.api('/v1/plan')).body).toMatchObject({ generation: 2 });

    const metrics = await run.metrics();
    expect(metrics).toContain('shardform_plan_rejected_total{reason="generation-backwards"} 1');
    expect(metrics).toContain('shardform_plan_rejected_total{reason="invalid"} 1');
    expect(run.logLines()).toContainEqual(expect.objectContaining({ level: 'warn', reason: 'invalid', generation: 2 }));
    expect(run.logLines()).toContainEqual(expect.objectContaining({ level: 'warn', reason: 'generation-backwards', rejected_generation: 1 }));

    const shards = await run.waitFor('still two running shards', running(2));
    expect(pids(shards)).toEqual(firstPids);
  });

  it('resizes a shard in place (same pid) and keeps the size through reconcile', async () => {
    const resized = await run.api<Shard>('/v1/shards/web-0/resize', { method: 'POST', body: JSON.stringify({ cpuCores: 1 }) });
    expect(resized.status).toBe(200);
    expect(resized.body).toMatchObject({ pid: firstPids['web-0'], limits: { cpuCores: 1 } });
    const metrics = await run.waitFor('the new limit in /metrics', async () => {
      const text = await run.metrics();
      return text.includes('shardform_shard_cpu_limit_cores{shard_id="web-0",application_id="web"} 1\n') ? text : undefined;
    });
    expect(metrics).toBeDefined();
  });

  it('a local drain while the agent runs is refused, naming the agent, and stops nothing; a second agent for the host too', async () => {
    const refused = runBin(['drain', '--host', 'host-a', '--state-dir', run.stateDir, '--owner-prefix', run.ownerPrefix, '--grace-seconds', '1']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(`^error: --host: another agent runs for host "host-a" on this machine, in the same cgroups \\(${run.ownerPrefix}/host-a\\): pid ${run.child!.pid}, since [^,]+, state directory ${run.stateDir}; drain through it: shardform drain --agent URL\n$`),
    );
    for (const pid of Object.values(firstPids)) expect(alive(pid)).toBe(true);
    // Another agent for host-a, on another address, into another state directory (so another
    // embedded store: the store's claim cannot see the first), from the plan the first runs
    // (the plan file holds a refused one by now): refused by the cgroups' lock, before adopting.
    // Without it, this agent started both shards again in the same cgroups and killed the first's.
    const second = runBin(['agent', '--plan', lastGoodPlanPath(run.stateDir), '--host', 'host-a', '--listen', '127.0.0.1:0', '--state-dir', `${run.stateDir}-second`, '--owner-prefix', run.ownerPrefix], { timeoutMs: 20_000 });
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`error: --host: another agent runs for host "host-a" on this machine, in the same cgroups \\(${run.ownerPrefix}/host-a\\): pid ${run.child!.pid}, since [^,]+, state directory ${run.stateDir}; stop it first`));
    for (const pid of Object.values(firstPids)) expect(alive(pid)).toBe(true);
    expect(((await run.api<{ shards: Shard[] }>('/v1/shards')).body.shards).map((s) => s.pid).sort()).toEqual(Object.values(firstPids).sort());
  });

  it('SIGTERM stops the agent only; a local drain then stops every shard and removes the cgroups', async () => {
    await run.stop('SIGTERM');
    expect(run.child?.exitCode).toBe(0);
    for (const pid of Object.values(firstPids)) expect(alive(pid)).toBe(true);
    const drained = runBin(['drain', '--host', 'host-a', '--state-dir', run.stateDir, '--owner-prefix', run.ownerPrefix, '--grace-seconds', '1']);
    expect(drained.stderr).toBe('');
    expect(drained.code).toBe(0);
    expect(drained.stdout).toContain('host drained (2 shard(s) stopped)');
    for (const pid of Object.values(firstPids)) expect(alive(pid)).toBe(false);
    const left = readdirSync(CGROUP_ROOT)
      .flatMap((h) => ['web-0', 'web-1'].map((id) => join(CGROUP_ROOT, h, run.ownerPrefix, 'host-a', id)))
      .filter((dir) => existsSync(dir));
    expect(left).toEqual([]);
  });
});

describePrivileged('shardform agent: the cgroup files it keeps open (real process, /proc/<pid>/fd)', [requireCgroups], () => {
  jest.setTimeout(120_000);
  let run: AgentRun;
  beforeAll(async () => {
    run = await agentRun('agentfd');
  });
  afterAll(async () => {
    await run?.cleanup();
  });

  /** The shard's directories in every hierarchy (symlinked controllers resolved by the driver). */
  const dirsOf = (shardId: string) => [...new Set(Object.values(detectCgroupDriver({ hostId: 'host-a', ownerPrefix: run.ownerPrefix }).paths(shardId)))];

  it('holds exactly the usage files of each sampled shard open, passes none to a workload, and closes them when the shard is removed', async () => {
    run.writePlan(run.plan(1));
    const agent = run.start().pid!;
    const shards = await run.waitFor('two running shards', async () => {
      const { status, body } = await run.api<{ shards: Shard[] }>('/v1/shards');
      const up = status === 200 ? body.shards.filter((s) => s.state === 'running' && s.pid !== null) : [];
      return up.length === 2 ? up : undefined;
    });
    await run.waitFor('two samples of web-1', async () => {
      const { body } = await run.api<{ samples: unknown[] }>('/v1/shards/web-1/history');
      return body.samples.length >= 2 ? true : undefined;
    });
    const usageFiles = async (shardId: string) => (await detectCgroupDriver({ hostId: 'host-a', ownerPrefix: run.ownerPrefix }).usageFiles(shardId)).sort();
    const web0 = dirsOf('web-0');
    const web1 = dirsOf('web-1');
    expect(openFilesUnder(web0, agent)).toEqual(await usageFiles('web-0'));
    expect(openFilesUnder(web1, agent)).toEqual(await usageFiles('web-1'));
    // Opened O_CLOEXEC (libuv), so no workload inherits them.
    for (const shard of shards) expect(openFilesUnder(CGROUP_ROOT, shard.pid!)).toEqual([]);

    // One shard fewer: web-1 is stopped and removed, and the agent holds nothing of it.
    run.writePlan(run.plan(2, (p) => (p.applications[0].shards.initial = 1)));
    await run.waitFor('web-1 removed', async () => (web1.some((dir) => existsSync(dir)) ? undefined : true));
    await run.waitFor('web-1 closed', async () => (openFilesUnder(web1, agent).length === 0 ? true : undefined));
    expect(openFilesUnder(web0, agent)).toEqual(await usageFiles('web-0'));
  });
});
