/**
 * npm run bench:migrate — live migration between two test hosts (network namespaces on one
 * machine, real CRIU): for 16, 64 and 256 MiB of touched memory, with and without pre-copy,
 * downtime (frozen on the source → running on the destination), total time, bytes sent and
 * pre-copy rounds, beside the physical floor (a plain TCP stream of the same bytes over the
 * same veth link, measured in the same run). Each size is migrated BENCH_REPEAT times (default
 * 3) each way, interleaved; the summary gives medians and each repetition's cut. BENCH_MIB
 * picks the sizes (default 16,64,256). Ends with one JSON line (every run, and the medians).
 * Like an agent, it keeps CRIU's kernel probe at /run/criu.kdat where /run is not a tmpfs (a
 * bind mount that lasts until reboot; SHARDFORM_CRIU_KDAT_CACHE=off measures without it). The final
 * dump's pages go out while CRIU writes them (SHARDFORM_CRIU_STREAM_DUMP=off measures without).
 * Needs root, cgroups, `ip netns`, CRIU >= 4 (host-agent/checkpoint/install-criu.sh), python3.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CRIU_SWITCHES, criuSwitchOn, requireCriu as requireCriuInstallation } from '../host-agent/checkpoint/criu';
import { kdatCacheWanted, keepCriuKdatCache } from '../host-agent/checkpoint/criu-kdat-cache';
import { MigrationDriver } from '../host-agent/migration/migration-driver';
import { MigrationJournal } from '../host-agent/migration/migration-journal';
import { downtimeSteps, downtimeStepsByName } from '../host-agent/migration/migration-record';
import { summarize } from '../host-agent/migration/migration-summary';
import { createNetnsHosts, removeNetnsHosts } from '../src/dev/netns-hosts';
import { EmbeddedStore } from '../src/store/embedded-store';
import { requireCriu, requirePython } from '../test/helpers/criu-prerequisite';
import { missingPrerequisite, requireCgroups, requireNetns } from '../test/helpers/privileged';
import { removeOwnerPrefix, sourceSide, startDestinationServer } from '../test/helpers/migration-hosts';
import { startWorkload } from '../test/helpers/scratch-cgroup';
import { streamFloorMs } from './stream-floor';

interface Run {
  mib: number;
  precopy: boolean;
  /** Which repetition of this size (1-based): each repetition migrates without, then with pre-copy. */
  repeat: number;
  downtime_ms: number;
  total_ms: number;
  bytes: number;
  rounds: number;
  floor_ms: number;
  precopy_skipped?: string;
  /** How pre-copy found changed pages: `criu` (soft-dirty pre-dumps) or `shadow` (page contents). */
  precopy_method?: string;
  /** Where the downtime went: each step from its journal entry to the next. */
  steps_ms: ReturnType<typeof downtimeStepsByName>;
  /** How long the shard already ran on the destination while its memory was filled lazily (not downtime; 0 for an eager restore). */
  lazy_pages_ms: number;
  /** Bytes of the final image already sent when CRIU's dump ended (its pages streamed while written; 0 when not). */
  streamed_bytes: number;
}

function stepsMs(record: Parameters<typeof downtimeSteps>[0]): Run['steps_ms'] {
  const steps = downtimeSteps(record);
  if (!steps) throw new Error(`migration ${record.id} did not commit: no downtime steps`);
  return downtimeStepsByName(steps);
}

/** A positive integer list from the environment, or exit 2 naming the variable and the value. */
function envIntegers(name: string, fallback: string, max: number, list: boolean): number[] {
  const text = process.env[name] ?? fallback;
  const values = text.split(',').map((v) => Number(v.trim()));
  if ((!list && values.length !== 1) || values.some((v) => !Number.isInteger(v) || v < 1 || v > max)) {
    console.error(`bench:migrate: ${name}=${JSON.stringify(text)} must be ${list ? 'a comma-separated list of integers' : 'an integer'} from 1 to ${max}`);
    process.exit(2);
  }
  return values;
}

/** Sizes of touched memory, MiB. */
const SIZES = envIntegers('BENCH_MIB', '16,64,256', 4096, true);
/** Each size migrated this many times each way, interleaved, so a busy moment of the machine hits both modes alike. */
const [REPEATS] = envIntegers('BENCH_REPEAT', '3', 20, false) as [number];
// The CRIU switches the agent reads (kdat cache, lazy pages, streamed dump), checked before any
// host is built: a typo is a usage error, as at the agent's start, not a stack trace half-way.
for (const name of CRIU_SWITCHES) {
  try {
    criuSwitchOn(name);
  } catch (error) {
    console.error(`bench:migrate: ${(error as Error).message}`);
    process.exit(2);
  }
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

async function main(): Promise<void> {
  const missing = missingPrerequisite([requireCgroups, requireNetns, requireCriu, requirePython]);
  if (missing) {
    console.error(`bench:migrate cannot run here: ${missing}`);
    process.exitCode = 1;
    return;
  }
  const tag = 'bench';
  const ownerPrefix = `shardform-bench-${process.pid}`;
  const work = mkdtempSync(join(tmpdir(), 'shardform-bench-'));
  const token = 'bench-token';
  writeFileSync(join(work, 'token'), token);
  const set = await createNetnsHosts({ count: 2, tag, ownerPid: process.pid });
  const store = new EmbeddedStore({ path: join(work, 'store.db') });
  const journal = new MigrationJournal(store);
  const runs: Run[] = [];
  try {
    const destination = set.hosts[1]!;
    // Both agents as on a real host: the destination keeps CRIU's kernel probe at start, and so does the source here.
    // (memoryBytes: each run's shard stays counted as arrived.)
    const server = await startDestinationServer(destination, { tokenFile: join(work, 'token'), images: join(work, 'dest-images'), ownerPrefix, memoryBytes: 64 * 2 ** 30, cpuCores: 64, kdatCache: kdatCacheWanted() });
    if (kdatCacheWanted()) console.log(`criu kernel probe: ${(await keepCriuKdatCache(await requireCriuInstallation())).detail}`);
    try {
      for (const mib of SIZES) for (let repeat = 1; repeat <= REPEATS; repeat += 1) {
        for (const precopy of [false, true]) {
          const shardId = `bench-${mib}-${repeat}-${precopy ? 'pre' : 'plain'}`;
          const desired = { shardId, applicationId: 'bench', limits: { cpuCores: 1, memoryBytes: (mib + 256) * 2 ** 20 }, command: ['python3'], env: {}, stateDirectory: work };
          const source = await sourceSide({ hostId: 'host-1', ownerPrefix, imagesRoot: join(work, 'source-images'), token, destinations: { 'host-2': server.url }, desired });
          await source.driver.create(shardId);
          await source.driver.setLimits(shardId, desired.limits);
          await startWorkload({ procsFiles: source.procsFiles, pids: source.pids }, join(work, `${shardId}.state`), mib);
          const record = await new MigrationDriver({ journal, effects: source.effects }).migrate({
            id: `mig-${shardId}`, fleet: 'bench', shardId, applicationId: 'bench', source: 'host-1', destination: 'host-2', preCopy: precopy,
          });
          const summary = summarize(record);
          if (summary.state !== 'done') throw new Error(`migration of ${shardId} ${summary.state}: ${summary.abortReason}`);
          const floor = await streamFloorMs(destination, 7200, summary.bytesSent);
          runs.push({
            mib, precopy, repeat,
            downtime_ms: summary.downtimeMs ?? -1,
            total_ms: summary.durationMs ?? -1,
            bytes: summary.bytesSent,
            rounds: summary.rounds,
            floor_ms: floor,
            steps_ms: stepsMs(record),
            lazy_pages_ms: summary.lazyPagesMs ?? 0,
            streamed_bytes: summary.streamedBytes ?? 0,
            ...(summary.preCopySkipped ? { precopy_skipped: summary.preCopySkipped } : {}),
            ...(summary.preCopyMethod ? { precopy_method: summary.preCopyMethod } : {}),
          });
          await removeOwnerPrefix(ownerPrefix, ['host-1', 'host-2']);
        }
      }
    } finally {
      await server.stop();
    }
  } finally {
    await removeOwnerPrefix(ownerPrefix, ['host-1', 'host-2']);
    await removeNetnsHosts(tag);
    await store.close();
    rmSync(work, { recursive: true, force: true });
  }

  const pad = (v: unknown, n: number) => String(v).padStart(n);
  const perFloor = (downtime: number, floor: number) => (downtime / Math.max(floor, 0.1)).toFixed(1);
  console.log(`${'MiB'.padStart(5)} ${'run'.padStart(3)} ${'pre-copy'.padStart(8)} ${'downtime ms'.padStart(12)} ${'total ms'.padStart(9)} ${'bytes'.padStart(11)} ${'rounds'.padStart(6)} ${'floor ms'.padStart(9)} ${'downtime/floor'.padStart(14)}`);
  for (const r of runs) {
    console.log(`${pad(r.mib, 5)} ${pad(r.repeat, 3)} ${pad(r.precopy ? 'yes' : 'no', 8)} ${pad(r.downtime_ms, 12)} ${pad(r.total_ms, 9)} ${pad(r.bytes, 11)} ${pad(r.rounds, 6)} ${pad(r.floor_ms, 9)} ${pad(perFloor(r.downtime_ms, r.floor_ms), 14)}`);
  }
  for (const r of runs) {
    const s = r.steps_ms;
    const shadow = r.precopy_method === 'shadow';
    const dump = shadow ? 'dump (memory compared with the shadow beside it)' : r.streamed_bytes > 0 ? `dump (${(r.streamed_bytes / 2 ** 20).toFixed(0)} MiB of pages sent meanwhile)` : 'dump';
    const transfer = shadow ? 'transfer (pick the changed pages + hash + stream + verify)' : 'transfer (hash + stream + verify)';
    console.log(`${r.mib} MiB #${r.repeat}${r.precopy ? ` pre-copy (${r.precopy_method ?? 'skipped'})` : ''}: freeze ${s.freeze} ms, ${dump} ${s.dump} ms, ${transfer} ${s.transfer} ms, restore ${s.restore} ms${r.lazy_pages_ms > 0 ? ` (then ${r.lazy_pages_ms} ms running while its memory was filled)` : ''}`);
  }
  // Medians over the repetitions: the machine's load moves single runs (mostly those that move the whole image while frozen).
  const medians: { mib: number; precopy: boolean; downtime_ms: number; total_ms: number; floor_ms: number }[] = [];
  for (const mib of SIZES) {
    for (const precopy of [false, true]) {
      const these = runs.filter((r) => r.mib === mib && r.precopy === precopy);
      if (these.length === 0) continue;
      medians.push({
        mib, precopy,
        downtime_ms: median(these.map((r) => r.downtime_ms)),
        total_ms: median(these.map((r) => r.total_ms)),
        floor_ms: median(these.map((r) => r.floor_ms)),
      });
    }
    const plain = medians.find((m) => m.mib === mib && !m.precopy);
    const pre = medians.find((m) => m.mib === mib && m.precopy);
    const cuts = runs
      .filter((r) => r.mib === mib && r.precopy && r.rounds > 0)
      .map((r) => (runs.find((p) => p.mib === mib && !p.precopy && p.repeat === r.repeat)?.downtime_ms ?? NaN) / Math.max(r.downtime_ms, 1))
      .filter((c) => Number.isFinite(c));
    if (plain && pre && cuts.length > 0) {
      console.log(
        `${mib} MiB, median of ${REPEATS}: without pre-copy ${plain.downtime_ms} ms (${perFloor(plain.downtime_ms, plain.floor_ms)}x floor), with ${pre.downtime_ms} ms (${perFloor(pre.downtime_ms, pre.floor_ms)}x floor); ` +
          `pre-copy cuts downtime ${(plain.downtime_ms / Math.max(pre.downtime_ms, 1)).toFixed(2)}x (runs: ${cuts.map((c) => c.toFixed(2)).join(', ')})`,
      );
    }
  }
  const skipped = runs.find((r) => r.precopy_skipped)?.precopy_skipped;
  if (skipped) console.log(`pre-copy was asked for but skipped: ${skipped}`);
  console.log(JSON.stringify({ bench: 'migrate', runs, medians }));
}

main().catch((error: Error) => {
  console.error(`bench:migrate failed: ${error.stack ?? error.message}`);
  process.exitCode = 1;
});
