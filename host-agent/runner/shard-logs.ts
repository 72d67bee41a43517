/**
 * The workload's stdout and stderr: plain files under the agent's state directory, opened in
 * append mode and handed to the workload as its fds 1 and 2, so no pipe runs through the agent
 * and a dead agent never blocks or kills a workload (SIGPIPE). Size is capped by copy-truncate
 * (logrotate's `copytruncate`, logrotate(8)): when a file exceeds the cap, its last `maxBytes`
 * are copied to `<file>.1` and the file is truncated to 0. Because the workload writes with
 * O_APPEND, its next write lands at the new end of file (open(2): "the file offset is
 * positioned at the end of the file before each write"), not at its old offset. The cap holds
 * at each check; between checks a file may grow by what the workload writes meanwhile, so one
 * stream takes at most 2 x maxBytes plus one check interval of output on disk. Checks come
 * every keeper tick while a log grows and back off while it is idle (nextLogCheckTicks).
 */
import { statSync } from 'node:fs';
import { mkdir, open, readdir, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';

export interface ShardLogPaths {
  readonly stdout: string;
  readonly stderr: string;
}

export function shardLogPaths(logRoot: string, shardId: string): ShardLogPaths {
  return { stdout: join(logRoot, shardId, 'stdout.log'), stderr: join(logRoot, shardId, 'stderr.log') };
}

/**
 * Log directories of shards no longer on this host kept, the most recently written first: what a
 * removed or migrated shard said last stays readable, and the directory stays bounded however
 * many shard ids ever ran here (each directory holds up to ~4 x logMaxBytes).
 */
export const REMOVED_SHARD_LOGS_KEPT = 16;

/**
 * Deletes the log directories under `logRoot` of shards not in `present`, all but the `kept`
 * most recently written (newest mtime of the files in each; an empty one counts as oldest); resolves to the shard ids deleted.
 */
export async function pruneRemovedShardLogs(logRoot: string, present: ReadonlySet<string>, kept = REMOVED_SHARD_LOGS_KEPT): Promise<string[]> {
  const entries = await readdir(logRoot, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  const gone: { shardId: string; written: number }[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() || present.has(entry.name)) continue;
    const dir = join(logRoot, entry.name);
    const files = await readdir(dir).catch(() => [] as string[]);
    // The files' times, not the directory's: that one changes only when a file is made or rotated.
    let written = 0;
    for (const file of files) written = Math.max(written, (await stat(join(dir, file)).catch(() => undefined))?.mtimeMs ?? 0);
    gone.push({ shardId: entry.name, written });
  }
  gone.sort((a, b) => b.written - a.written);
  const deleted = gone.slice(kept).map((g) => g.shardId);
  for (const shardId of deleted) await rm(join(logRoot, shardId), { recursive: true, force: true });
  return deleted;
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
 * shard on every log check and nearly always finds nothing to do, so it must not cost a
 * thread-pool round trip each time.
 */
export async function capLogFile(path: string, maxBytes: number): Promise<boolean> {
  return rotateIfOver(path, fileSize(path), maxBytes);
}

function fileSize(path: string): number | undefined {
  return statSync(path, { throwIfNoEntry: false })?.size;
}

async function rotateIfOver(path: string, size: number | undefined, maxBytes: number): Promise<boolean> {
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

/** What one check of a shard's two logs saw: their sizes (missing = 0) and whether either was rotated. */
export interface ShardLogCheck {
  readonly bytes: number;
  readonly rotated: boolean;
}

export async function capShardLogs(paths: ShardLogPaths, maxBytes: number): Promise<ShardLogCheck> {
  const out = fileSize(paths.stdout);
  const err = fileSize(paths.stderr);
  const rotatedOut = await rotateIfOver(paths.stdout, out, maxBytes);
  const rotatedErr = await rotateIfOver(paths.stderr, err, maxBytes);
  return { bytes: (out ?? 0) + (err ?? 0), rotated: rotatedOut || rotatedErr };
}

/**
 * How many keeper ticks until a shard's logs are checked again (pure). The workload writes its
 * logs itself, through the descriptors it was started with, so the agent never sees the bytes go
 * by and has to look at the files. A log that changed since the last check is checked again on
 * the next tick (a chatty workload is capped as closely as before); one that did not waits twice
 * as many ticks as last time, up to `maxTicks`, so an idle shard costs a stat pair every
 * `maxTicks` ticks instead of every tick. The cost: a workload that starts writing after a quiet
 * spell may overshoot its cap by up to `maxTicks` ticks of output before a check catches it.
 */
export function nextLogCheckTicks(changed: boolean, previousTicks: number, maxTicks: number): number {
  if (changed) return 1;
  return Math.max(1, Math.min(maxTicks, previousTicks * 2));
}
