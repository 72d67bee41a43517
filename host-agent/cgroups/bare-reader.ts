/**
 * The benchmark baselines for the sampler (issue 3, `npm run bench:agent`): loop bodies that
 * read the same cgroup files the driver's usage() reads and do nothing else (no parsing, no
 * objects per sample, no promises). The agent's CPU is reported next to theirs, so the figure
 * says what the agent costs beyond the kernel's own work of rendering the files.
 *
 * BareCgroupReader is the baseline as the issue defines it: open, read, close each file. The
 * driver now keeps its files open and re-reads them with one pread at offset 0
 * (cgroup-files.ts, KeptShardFileReader), which costs the kernel less than open/read/close, so
 * KeptOpenCgroupReader does exactly that too and is printed as a second baseline: the ratio
 * against it is the agent's own overhead over the kernel work it still asks for.
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

/** The second baseline: the same files opened once, each re-read with one positioned read at offset 0 per round. */
export class KeptOpenCgroupReader {
  private readonly buffer = Buffer.allocUnsafe(BUFFER_BYTES);
  private readonly fds: number[];

  /** Opens every file now; one that cannot be opened is left out of every round. */
  constructor(readonly paths: readonly string[]) {
    this.fds = paths.map((path) => {
      try {
        return openSync(path, 'r');
      } catch {
        return -1;
      }
    });
  }

  /** Reads every file once (pread at 0: kernfs renders the file again); returns the bytes read. A file whose cgroup is gone (ENODEV) is skipped. */
  readAll(): number {
    let bytes = 0;
    for (const fd of this.fds) {
      if (fd < 0) continue;
      try {
        // A read shorter than the buffer is the whole file (single-record seq_file; cgroup-files.ts).
        for (let at = 0; ; ) {
          const n = readSync(fd, this.buffer, 0, BUFFER_BYTES, at);
          bytes += n;
          if (n < BUFFER_BYTES) break;
          at += n;
        }
      } catch {
        continue;
      }
    }
    return bytes;
  }

  close(): void {
    for (const fd of this.fds) if (fd >= 0) closeSync(fd);
    this.fds.fill(-1);
  }
}

/** The files usage() reads for the given shards, in reading order. */
export async function usageFilesOf(driver: { usageFiles(shardId: string): Promise<string[]> }, shardIds: readonly string[]): Promise<string[]> {
  const paths: string[] = [];
  for (const id of shardIds) paths.push(...(await driver.usageFiles(id)));
  return paths;
}

/** A bare reader over every file usage() reads for the given shards. */
export async function bareReaderFor(driver: { usageFiles(shardId: string): Promise<string[]> }, shardIds: readonly string[]): Promise<BareCgroupReader> {
  return new BareCgroupReader(await usageFilesOf(driver, shardIds));
}
