/**
 * The benchmark's baseline process: every interval, read the same cgroup files the agent's
 * sampler reads for the given shards (host-agent/cgroups/bare-reader.ts), and nothing else.
 * `open-read-close` is the baseline as issue 3 defines it (open, read, close each file);
 * `kept-open` opens each file once and re-reads it with a pread at offset 0, as the driver does.
 * Usage: tsx bench/bare-reader-loop.ts <open-read-close|kept-open> <owner-prefix> <host-id> <interval-ms> <shard-id>...
 */
import { BareCgroupReader, detectCgroupDriver, KeptOpenCgroupReader, usageFilesOf } from '../host-agent/cgroups';

async function main(): Promise<void> {
  const [mode, ownerPrefix, hostId, intervalMs, ...shardIds] = process.argv.slice(2);
  if (mode !== 'open-read-close' && mode !== 'kept-open') throw new Error(`mode must be open-read-close or kept-open, not ${mode}`);
  const driver = detectCgroupDriver({ hostId, ownerPrefix });
  const paths = await usageFilesOf(driver, shardIds);
  const reader = mode === 'kept-open' ? new KeptOpenCgroupReader(paths) : new BareCgroupReader(paths);
  let bytes = 0;
  setInterval(() => {
    bytes += reader.readAll();
  }, Number(intervalMs));
  process.on('SIGTERM', () => {
    process.stdout.write(`${JSON.stringify({ mode, files: reader.paths.length, bytes })}\n`);
    process.exit(0);
  });
  process.stdout.write('ready\n');
}

void main();
