/**
 * npm run bench:synth — how long synthesizing a large fleet takes, beside cdktf's own cost.
 *
 * Fleet: 1,000 static hosts (10 pools x 100) and 10,000 shards (200 applications x 50, with
 * shards.min = 50 so the capacity check packs every one of them), plus policies. Baseline: cdktf
 * synthesizing a stack of 10,000 bare TerraformOutputs, the same number of leaf elements with
 * none of our work. Each side runs in its own child process (so peak RSS is its own), measured
 * from spawn to exit; the time inside the child (imports, building the tree, synth) is printed too.
 * Ends with one JSON line for machines.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HOSTS = 1000;
const POOLS = 10;
const APPLICATIONS = 200;
const SHARDS_PER_APPLICATION = 50;
const SHARDS = APPLICATIONS * SHARDS_PER_APPLICATION;

interface ChildResult {
  synthSeconds: number;
  rssMiB: number;
  planBytes: number;
}

/** Runs in the child: builds and synthesizes one side, prints its figures as JSON. */
async function child(side: 'shardform' | 'baseline', outdir: string): Promise<void> {
  const started = process.hrtime.bigint();
  const { App, TerraformOutput, TerraformStack } = await import('cdktf');
  let planBytes = 0;
  if (side === 'baseline') {
    const app = new App({ outdir });
    const stack = new TerraformStack(app, 'baseline');
    for (let i = 0; i < SHARDS; i += 1) new TerraformOutput(stack, `output-${i}`, { value: i });
    app.synth();
  } else {
    const { ShardFleet, StaticHostPool, ShardedApplication, ProactiveMigration, CostAwarePlacement, Affinity, AntiAffinity, MigrationStrategy } = await import('../constructs');
    const app = new App({ outdir });
    const fleet = new ShardFleet(app, 'bench-fleet', { fleet: 'bench', generation: 1 });
    const pools = Array.from({ length: POOLS }, (_, p) => {
      const pool = new StaticHostPool(fleet, `pool-${p}`, { costPerHour: 0.1 + p / 100, labels: { region: `r${p % 3}` } });
      for (let h = 0; h < HOSTS / POOLS; h += 1) {
        const n = p * (HOSTS / POOLS) + h;
        pool.addHost({ id: `host-${n}`, address: `10.${p}.${h >> 8}.${h & 255}:7100`, capacity: { cpu: 16, memory: '64GiB', readIops: 10000, writeIops: 5000 }, labels: { zone: `z${h % 4}` } });
      }
      return pool;
    });
    const applications = Array.from({ length: APPLICATIONS }, (_, a) =>
      new ShardedApplication(fleet, `app-${a}`, {
        pool: pools[a % POOLS]!,
        command: ['/bin/sleep', 'infinity'],
        granularity: { cpu: a % 2 ? '250m' : '500m', memory: a % 2 ? '512MiB' : '1GiB', readIops: 10, writeIops: 5 },
        shards: { min: SHARDS_PER_APPLICATION, initial: SHARDS_PER_APPLICATION, max: SHARDS_PER_APPLICATION * 2 },
        migration: a % 3 ? MigrationStrategy.checkpoint({ preCopy: true }) : MigrationStrategy.restart(),
        env: { APP: String(a) },
      }),
    );
    new ProactiveMigration(fleet, 'hot', { threshold: 0.8, horizon: '15m' });
    new CostAwarePlacement(fleet, 'cheap', { applications: applications.slice(0, 50) });
    for (let a = 0; a < APPLICATIONS; a += 20) {
      new Affinity(fleet, `near-${a}`, { applications: applications.slice(a, a + 2), scope: 'host' });
      new AntiAffinity(fleet, `apart-${a}`, { applications: [applications[a + 2]!], scope: 'label:zone', mode: 'soft' });
    }
    app.synth();
    planBytes = statSync(join(outdir, 'stacks', 'bench-fleet', 'shard-plan.json')).size;
  }
  const synthSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const result: ChildResult = { synthSeconds, rssMiB: process.resourceUsage().maxRSS / 1024, planBytes };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function run(side: 'shardform' | 'baseline'): ChildResult & { seconds: number } {
  const outdir = mkdtempSync(join(tmpdir(), `bench-synth-${side}-`));
  const started = process.hrtime.bigint();
  const result = spawnSync(process.execPath, [require.resolve('tsx/cli'), __filename, '--child', side, outdir], {
    encoding: 'utf8',
    env: { ...process.env, CHECKPOINT_DISABLE: '1' },
    maxBuffer: 16 * 1024 * 1024,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  rmSync(outdir, { recursive: true, force: true });
  if (result.status !== 0) {
    process.stderr.write(result.stderr);
    throw new Error(`${side} child failed with exit code ${result.status}`);
  }
  const lastLine = result.stdout.trim().split('\n').pop()!;
  return { ...(JSON.parse(lastLine) as ChildResult), seconds };
}

function main(): void {
  const baseline = run('baseline');
  const ours = run('shardform');
  const round = (n: number, digits = 2) => Number(n.toFixed(digits));
  const rows = [
    ['', 'shardform', `baseline (${SHARDS} outputs)`, 'ratio'],
    ['wall time, spawn to exit (s)', round(ours.seconds), round(baseline.seconds), `${round(ours.seconds / baseline.seconds)}x`],
    ['in process: import + build + synth (s)', round(ours.synthSeconds), round(baseline.synthSeconds), `${round(ours.synthSeconds / baseline.synthSeconds)}x`],
    ['peak RSS (MiB)', round(ours.rssMiB, 1), round(baseline.rssMiB, 1), `${round(ours.rssMiB / baseline.rssMiB)}x`],
    ['plan size (bytes)', ours.planBytes, '-', '-'],
  ];
  console.log(`synth: ${HOSTS} static hosts in ${POOLS} pools, ${SHARDS} shards across ${APPLICATIONS} applications`);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  for (const row of rows) console.log(row.map((cell, c) => String(cell).padEnd(widths[c]!)).join('  '));
  const goal = ours.seconds < 10 && ours.seconds < 3 * baseline.seconds;
  console.log(`goal (< 10 s and < 3x baseline wall time): ${goal ? 'met' : 'NOT met'}`);
  console.log(
    JSON.stringify({ bench: 'synth', hosts: HOSTS, shards: SHARDS, seconds: round(ours.seconds, 3), baseline_seconds: round(baseline.seconds, 3), rss_mib: round(ours.rssMiB, 1), plan_bytes: ours.planBytes }),
  );
}

const [, , flag, side, outdir] = process.argv;
if (flag === '--child') {
  child(side as 'shardform' | 'baseline', outdir!).catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
} else {
  main();
}
