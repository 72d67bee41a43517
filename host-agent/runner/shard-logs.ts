/**
 * The workload's stdout and stderr: plain files under the agent's state directory, opened in
 * append mode and handed to the workload as its fds 1 and 2, so no pipe runs through the agent
 * and a dead agent never blocks or kills a workload (SIGPIPE). Size is capped by copy-truncate
 * (logrotate's `copytruncate`, logrotate(8)): when a file exceeds the cap, its last `maxBytes`
 * are copied to `<file>.1` and the file is truncated to 0. Because the workload writes with
 * O_APPEND, its next write lands at the new end of file (open(2): "the file offset is
 * positioned at the end of the file before each write"), not at its old offset. The cap holds
 * at each check; between checks a file may grow by what the workload writes meanwhile, so one
 * stream takes at most 2 x maxBytes plus one check interval of output on disk.
 */
import { statSync } from 'node:fs';
import { mkdir, open, truncate } from 'node:fs/promises';
import { join } from 'node:path';

export interface ShardLogPaths {
  readonly stdout: string;
  readonly stderr: string;
}

export function shardLogPaths(logRoot: string, shardId: string): ShardLogPaths {
  return { stdout: join(logRoot, shardId, 'stdout.log'), stderr: join(logRoot, shardId, 'stderr.log') };
}

/** Opens both files for appending (created 0640); the caller passes the fds to spawn and closes its copies. */
export async function openShardLogs(paths: ShardLogPaths): Promise<{ stdout: number; stderr: number; close(): Promise<void> }> {
  await mkdir(join(paths.stdout, '..'), { recursive: true });
  const out = await open(paths.stdout, 'a', 0o640);
  const err = await open(paths.stderr, 'a', 0o640).catch(async (e: unknown) => {
    await out.close();
    throw e;
  });
  return {
    stdout: out.fd,
    stderr: err.fd,
    close: async () => {
      await Promise.allSettled([out.close(), err.close()]);
    },
  };
}

/**
 * Rotates one file when it is over `maxBytes`; returns whether it did. A missing file is fine.
 * The size check is a synchronous stat (metadata the kernel has cached): it runs for every
 * shard every keeper tick and nearly always finds nothing to do, so it must not cost a
 * thread-pool round trip each time.
 */
export async function capLogFile(path: string, maxBytes: number): Promise<boolean> {
  const size = statSync(path, { throwIfNoEntry: false })?.size;
  if (size === undefined) return false;
  if (size <= maxBytes) return false;
  const keep = Math.min(size, maxBytes);
  const source = await open(path, 'r');
  try {
    const tail = Buffer.alloc(keep);
    const { bytesRead } = await source.read(tail, 0, keep, size - keep);
    const target = await open(`${path}.1`, 'w', 0o640);
    try {
      await target.writeFile(tail.subarray(0, bytesRead));
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
  // Output written between the read and this truncate is lost: copytruncate's known window.
  await truncate(path, 0);
  return true;
}

export async function capShardLogs(paths: ShardLogPaths, maxBytes: number): Promise<void> {
  await capLogFile(paths.stdout, maxBytes);
  await capLogFile(paths.stderr, maxBytes);
}
