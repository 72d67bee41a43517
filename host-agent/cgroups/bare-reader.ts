/**
 * The benchmark baseline for the sampler (issue 3, `npm run bench:agent`): a loop body that
 * reads the same cgroup files the driver's usage() reads and does nothing else (no parsing, no
 * objects per sample, no promises). The agent's CPU is reported next to this reader's, so
 * the figure says what the agent costs beyond the kernel's own work of rendering the files.
 */
import { closeSync, openSync, readSync } from 'node:fs';

/** Big enough for any single usage file (io.stat of a few hundred devices). */
const BUFFER_BYTES = 64 * 1024;

export class BareCgroupReader {
  private readonly buffer = Buffer.allocUnsafe(BUFFER_BYTES);

  /** `paths`: the files to read each round, e.g. from ShardCgroupDriver.usageFiles() for every shard. */
  constructor(readonly paths: readonly string[]) {}

  /**
   * Reads every file once, synchronously (open, read until EOF, close: cgroupfs renders the
   * file on each open). Returns the bytes read, so the work cannot be optimised away. A file
   * that vanished (shard removed meanwhile) is skipped.
   */
  readAll(): number {
    let bytes = 0;
    for (const path of this.paths) {
      let fd: number;
      try {
        fd = openSync(path, 'r');
      } catch {
        continue;
      }
      try {
        for (let n = readSync(fd, this.buffer, 0, BUFFER_BYTES, null); n > 0; n = readSync(fd, this.buffer, 0, BUFFER_BYTES, null)) bytes += n;
      } finally {
        closeSync(fd);
      }
    }
    return bytes;
  }
}

/** A bare reader over every file usage() reads for the given shards. */
export async function bareReaderFor(
  driver: { usageFiles(shardId: string): Promise<string[]> },
  shardIds: readonly string[],
): Promise<BareCgroupReader> {
  const paths: string[] = [];
  for (const id of shardIds) paths.push(...(await driver.usageFiles(id)));
  return new BareCgroupReader(paths);
}
