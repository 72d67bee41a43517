/**
 * The benchmark's baseline process: every second, read the same cgroup files the agent's
 * sampler reads for the given shards (host-agent/cgroups/bare-reader.ts), and nothing else.
 * Usage: tsx bench/bare-reader-loop.ts <owner-prefix> <host-id> <interval-ms> <shard-id>...
 */
import { bareReaderFor, detectCgroupDriver } from '../host-agent/cgroups';

async function main(): Promise<void> {
  const [ownerPrefix, hostId, intervalMs, ...shardIds] = process.argv.slice(2);
  const driver = detectCgroupDriver({ hostId, ownerPrefix });
  const reader = await bareReaderFor(driver, shardIds);
  let bytes = 0;
  setInterval(() => {
    bytes += reader.readAll();
  }, Number(intervalMs));
  process.on('SIGTERM', () => {
    process.stdout.write(`${JSON.stringify({ files: reader.paths.length, bytes })}\n`);
    process.exit(0);
  });
  process.stdout.write('ready\n');
}

void main();
