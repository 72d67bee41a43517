/**
 * npm run bench:migrate — live migration between two test hosts (network namespaces on one
 * machine, real CRIU): for 16, 64 and 256 MiB of touched memory, with and without pre-copy,
 * downtime (frozen on the source → running on the destination), total time, bytes sent and
 * pre-copy rounds, beside the physical floor (a plain TCP stream of the same bytes over the
 * same veth link, measured in the same run). Ends with one JSON line.
 * Needs root, cgroups, `ip netns`, CRIU >= 4 (host-agent/checkpoint/install-criu.sh), python3.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MigrationDriver } from '../host-agent/migration/migration-driver';
import { MigrationJournal } from '../host-agent/migration/migration-journal';
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
  downtime_ms: number;
  total_ms: number;
  bytes: number;
  rounds: number;
  floor_ms: number;
  precopy_skipped?: string;
  /** How pre-copy found changed pages: `criu` (soft-dirty pre-dumps) or `shadow` (page contents). */
  precopy_method?: string;
  /** Where the downtime went: each step from its journal entry to the next. */
  steps_ms: { freeze: number; dump: number; transfer: number; restore: number };
}

function stepsMs(history: readonly { state: string; at: string }[]): Run['steps_ms'] {
  const at = (state: string) => Date.parse(history.find((h) => h.state === state)?.at ?? '');
  return {
    freeze: at('dumped') - at('frozen'),
    dump: at('transferred') - at('dumped'),
    transfer: at('restored') - at('transferred'),
    restore: at('committed') - at('restored'),
  };
}

const SIZES = (process.env.BENCH_MIB ?? '16,64,256').split(',').map(Number);

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
    const server = await startDestinationServer(destination, { tokenFile: join(work, 'token'), images: join(work, 'dest-images'), ownerPrefix, memoryBytes: 64 * 2 ** 30, cpuCores: 64 }); // each run's shard stays counted as arrived
    try {
      for (const mib of SIZES) {
        for (const precopy of [false, true]) {
          const shardId = `bench-${mib}-${precopy ? 'pre' : 'plain'}`;
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
            mib, precopy,
            downtime_ms: summary.downtimeMs ?? -1,
            total_ms: summary.durationMs ?? -1,
            bytes: summary.bytesSent,
            rounds: summary.rounds,
            floor_ms: floor,
            steps_ms: stepsMs(record.history),
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
  console.log(`${'MiB'.padStart(5)} ${'pre-copy'.padStart(8)} ${'downtime ms'.padStart(12)} ${'total ms'.padStart(9)} ${'bytes'.padStart(11)} ${'rounds'.padStart(6)} ${'floor ms'.padStart(9)} ${'downtime/floor'.padStart(14)}`);
  for (const r of runs) {
    console.log(`${pad(r.mib, 5)} ${pad(r.precopy ? 'yes' : 'no', 8)} ${pad(r.downtime_ms, 12)} ${pad(r.total_ms, 9)} ${pad(r.bytes, 11)} ${pad(r.rounds, 6)} ${pad(r.floor_ms, 9)} ${pad((r.downtime_ms / Math.max(r.floor_ms, 0.1)).toFixed(1), 14)}`);
  }
  for (const r of runs) {
    const s = r.steps_ms;
    const transfer = r.precopy_method === 'shadow' ? 'transfer (compare with the shadow + hash + stream + verify)' : 'transfer (hash + stream + verify)';
    console.log(`${r.mib} MiB${r.precopy ? ` pre-copy (${r.precopy_method ?? 'skipped'})` : ''}: freeze ${s.freeze} ms, dump ${s.dump} ms, ${transfer} ${s.transfer} ms, restore ${s.restore} ms`);
  }
  for (const mib of SIZES) {
    const plain = runs.find((r) => r.mib === mib && !r.precopy);
    const pre = runs.find((r) => r.mib === mib && r.precopy);
    if (plain && pre && pre.rounds > 0) console.log(`${mib} MiB: pre-copy cuts downtime ${(plain.downtime_ms / Math.max(pre.downtime_ms, 1)).toFixed(2)}x (${plain.downtime_ms} -> ${pre.downtime_ms} ms)`);
  }
  const skipped = runs.find((r) => r.precopy_skipped)?.precopy_skipped;
  if (skipped) console.log(`pre-copy was asked for but skipped: ${skipped}`);
  console.log(JSON.stringify({ bench: 'migrate', runs }));
}

main().catch((error: Error) => {
  console.error(`bench:migrate failed: ${error.stack ?? error.message}`);
  process.exitCode = 1;
});
