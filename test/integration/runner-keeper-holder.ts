/**
 * A stand-in agent process for the "kill the agent with SIGKILL" test: it runs a ShardKeeper
 * over one shard, prints the keeper's status as one JSON line once the workload runs, and then
 * stays up until it is killed. Arguments: ownerPrefix hostId stateDirectory appStateDirectory.
 */
import { ShardKeeper } from '../../host-agent/reconcile/shard-keeper';
import { MemoryEventSink } from '../../host-agent/shard-event';
import { driverFor } from './runner-fixtures';

async function main(): Promise<void> {
  const [ownerPrefix, hostId, stateDirectory, appState] = process.argv.slice(2);
  if (!ownerPrefix || !hostId || !stateDirectory || !appState) throw new Error('usage: runner-keeper-holder OWNER HOST STATE_DIR APP_STATE_DIR');
  // The keeper's timers do not keep a process alive (the daemon's server does); this does.
  setInterval(() => undefined, 60_000);
  const keeper = new ShardKeeper({ driver: driverFor(ownerPrefix, hostId), sink: new MemoryEventSink(), stateDirectory, pollIntervalMs: 50 });
  await keeper.start();
  const report = await keeper.apply([
    { shardId: 'kept-0', applicationId: 'kept', limits: { cpuCores: 0.2, memoryBytes: 32 * 2 ** 20 }, command: ['/bin/sleep', '1000'], env: {}, stateDirectory: appState },
  ]);
  process.stdout.write(`${JSON.stringify({ report, status: keeper.status() })}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
