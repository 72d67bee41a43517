/**
 * `npm run bench:agent` (issue 3): one agent with 50 and with 200 idle shards (/bin/sleep),
 * sampling every 1 s for 60 s. Prints the agent's CPU (% of one core, from utime+stime in
 * /proc/<pid>/stat) and peak RSS (VmHWM) beside two baselines measured over the same window,
 * processes that only read the same cgroup files every second (bench/bare-reader-loop.ts):
 * the bare reader (open, read, close each file) and a kept-open reader (each file
 * opened once, re-read with a pread at offset 0, as the agent's driver now does), so the ratio
 * can be read against either. Ends with one JSON line {"bench":"agent","runs":[...]}.
 *
 * Flags: --shards 50,200  --seconds 60  --node-options "--max-semi-space-size=2" (how docs/agent.md
 * recommends running the agent; pass --node-options "" for node's defaults). Needs root and cgroups.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentRun, type AgentRun } from '../test/helpers/agent-process';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux (sysconf(_SC_CLK_TCK)); proc(5) reports stat times in it.
const MiB = 2 ** 20;

function cpuSeconds(pid: number): number {
  // Fields after the ")" of the command name: utime is field 14, stime 15 (proc(5)).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** VmHWM (peak) or VmRSS (now) of a process, MiB. */
function rssMiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startBaseline(run: AgentRun, mode: 'open-read-close' | 'kept-open', shardIds: string[]): Promise<ChildProcess> {
  // In-process require hook (not the tsx CLI, which runs the script in a second node process
  // and would leave us measuring the wrapper).
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', join(__dirname, 'bare-reader-loop.ts'), mode, run.ownerPrefix, 'host-a', '1000', ...shardIds], {
    cwd: join(__dirname, '..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`baseline exited with ${code}`)));
  });
  return child;
}

async function benchOne(shards: number, seconds: number, nodeOptions: string) {
  const run = await agentRun(`b${shards}`, { prefix: 'sfbench' });
  try {
    run.writePlan(
      run.plan(1, (p) => {
        p.pools[0].hosts[0].capacity = { cpuCores: 64, memoryBytes: 256 * 2 ** 30, readIops: 0, writeIops: 0 };
        const app = p.applications[0];
        app.granularity = { cpuCores: 0.01, memoryBytes: 16 * MiB, readIops: 0, writeIops: 0 };
        app.shards = { min: 0, initial: shards, max: shards };
        p.policies = [];
      }),
    );
    const child = run.start(['--log-level', 'warn'], { NODE_OPTIONS: nodeOptions });
    process.stderr.write(`[${shards} shards] starting the agent (pid ${child.pid}) ...\n`);
    const ids = await run.waitFor(
      `${shards} running shards`,
      async () => {
        const { status, body } = await run.api<{ shards: { shardId: string; state: string }[] }>('/v1/shards');
        const up = status === 200 ? body.shards.filter((s) => s.state === 'running') : [];
        return up.length === shards ? up.map((s) => s.shardId) : undefined;
      },
      1200,
      250,
    );
    const baseline = await startBaseline(run, 'open-read-close', ids);
    const keptOpen = await startBaseline(run, 'kept-open', ids);
    await sleep(3000); // all settle (first samples, JIT) before the window opens
    const agent0 = cpuSeconds(child.pid!);
    const base0 = cpuSeconds(baseline.pid!);
    const kept0 = cpuSeconds(keptOpen.pid!);
    process.stderr.write(`[${shards} shards] measuring ${seconds} s ...\n`);
    await sleep(seconds * 1000);
    const agentCpu = cpuSeconds(child.pid!) - agent0;
    const baseCpu = cpuSeconds(baseline.pid!) - base0;
    const keptCpu = cpuSeconds(keptOpen.pid!) - kept0;
    const rss = rssMiB(child.pid!, 'VmHWM');
    const rssNow = rssMiB(child.pid!, 'VmRSS');
    baseline.kill('SIGTERM');
    keptOpen.kill('SIGTERM');
    const metrics = await run.metrics();
    const samples = /shardform_sample_duration_seconds_count (\d+)/.exec(metrics)?.[1];
    const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;
    return {
      shards,
      agent_cpu_pct: round((agentCpu / seconds) * 100),
      agent_rss_mib: round(rss, 1),
      agent_rss_now_mib: round(rssNow, 1),
      baseline_cpu_pct: round((baseCpu / seconds) * 100),
      kept_open_baseline_cpu_pct: round((keptCpu / seconds) * 100),
      sample_passes: Number(samples ?? NaN),
    };
  } finally {
    await run.cleanup();
  }
}

async function main(): Promise<void> {
  const counts = flag('shards', '50,200').split(',').map(Number);
  const seconds = Number(flag('seconds', '60'));
  const nodeOptions = flag('node-options', '--max-semi-space-size=2');
  if (counts.some((n) => !Number.isInteger(n) || n < 1) || !(seconds > 0)) {
    process.stderr.write('usage: bench/agent.ts [--shards 50,200] [--seconds 60]\n');
    process.exit(2);
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench:agent needs root (it creates cgroups and runs shards)\n');
    process.exit(2);
  }
  const runs = [];
  for (const n of counts) runs.push(await benchOne(n, seconds, nodeOptions));
  process.stdout.write(
    `\nagent NODE_OPTIONS=${JSON.stringify(nodeOptions)}; sampling every 1 s; ${seconds} s window; baselines read the same cgroup files: ` +
      `BARE = open/read/close each (the issue's baseline), KEPT = opened once, pread at offset 0 (what the agent does)\n`,
  );
  process.stdout.write(`SHARDS  AGENT CPU %  BARE CPU %  RATIO  KEPT CPU %  RATIO  AGENT PEAK RSS MiB  RSS AT END MiB   (goal at 200: < 2 %, < 120 MiB, <= 3x bare)\n`);
  const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(1) : 'n/a');
  for (const r of runs) {
    process.stdout.write(
      `${String(r.shards).padEnd(8)}${String(r.agent_cpu_pct).padEnd(13)}${String(r.baseline_cpu_pct).padEnd(12)}${ratio(r.agent_cpu_pct, r.baseline_cpu_pct).padEnd(7)}` +
        `${String(r.kept_open_baseline_cpu_pct).padEnd(12)}${ratio(r.agent_cpu_pct, r.kept_open_baseline_cpu_pct).padEnd(7)}${String(r.agent_rss_mib).padEnd(19)}${r.agent_rss_now_mib}\n`,
    );
  }
  process.stdout.write(`${JSON.stringify({ bench: 'agent', runs: runs.map(({ sample_passes: _s, agent_rss_now_mib: _n, ...r }) => r) })}\n`);
}

void main().catch((error) => {
  process.stderr.write(`${(error as Error).stack ?? error}\n`);
  process.exit(1);
});
