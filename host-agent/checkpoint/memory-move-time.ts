/**
 * How long moving a shard's memory may take: the one rule behind every time limit of a step
 * that copies the memory — a CRIU dump or pre-dump, a restore (eager, or lazy with its fill
 * daemon and guard), and the source's wait for the destination's restore answer.
 *
 * Why a rule and not one number: those limits were fixed (120 s for every CRIU run, 60 s for the
 * restore request) and sized for the 256 MiB test shards. A 64 GiB shard's dump or eager restore
 * at 0.5-1 GB/s, or its lazy fill, takes longer than that while all is well, and was killed (the
 * migration aborted after doing all the work). The fixed values stay as the floor, so a small
 * shard's limits are exactly what they were.
 */
import { PAGES_FILE } from './image-manifest';

/**
 * The slowest rate at which a healthy step is expected to move memory. Measured here (docs/migration.md,
 * Benchmark): CRIU dumps and restores 276 MB in 120-200 ms (~1.5-2 GB/s), the agents hash and
 * stream ~0.5 GB/s, and a new file on this ext4 is written at ~470 MB/s. 64 MiB/s is about a
 * seventh of the slowest of those: room for a busy host, a slower disk or a page cache under
 * pressure, while a step that moves nothing at all (a hung CRIU) is still given up on.
 */
export const MEMORY_MOVE_BYTES_PER_SECOND = 64 * 2 ** 20;

/**
 * What a step costs whatever the size: CRIU's kernel probe, seizing the tree and its parasite,
 * the process state and small image files, the requests around it. Well below the floors (120 s
 * for CRIU, 60 s for a control request), so the rule changes nothing up to ~1.9 GiB (60 s floor)
 * and ~5.6 GiB (120 s floor).
 */
export const MEMORY_MOVE_BASE_MS = 30_000;


export interface MemoryMoveLimit {
  /** The bytes of memory the step moves (an estimate); undefined or 0: the floor alone. */
  readonly memoryBytes?: number | undefined;
  /** The limit the step had before this rule (CRIU 120 s, a control request 60 s): never less. */
  readonly floorMs: number;
  /**
   * Time left before the migration's own time limit (its `timeoutSeconds`, the user's choice).
   * The rule never reaches past it: a step that would is cut there, and the migration aborts
   * as timed out. The floor still applies, as before this rule.
   */
  readonly untilDeadlineMs?: number | undefined;
}

/**
 * How long a step moving `memoryBytes` may take before it is given up on:
 * `max(floor, min(30 s + memoryBytes / 64 MiB/s, time left before the migration's deadline))`.
 * 256 MiB: the floor (120 s for CRIU, 60 s for a request); 64 GiB: 30 s + 1024 s = 1054 s.
 */
export function memoryMoveLimitMs(limit: MemoryMoveLimit): number {
  const { memoryBytes, floorMs, untilDeadlineMs } = limit;
  if (memoryBytes === undefined || !Number.isFinite(memoryBytes) || memoryBytes <= 0) return floorMs;
  const bytes = memoryBytes;
  const byRate = MEMORY_MOVE_BASE_MS + Math.ceil((bytes / MEMORY_MOVE_BYTES_PER_SECOND) * 1000);
  // Whole ms: the limit goes into the CRIU's environment, where recovery believes only a whole
  // number (criu-at-work.ts); the time left is fractional where it comes from performance.now().
  const cut = untilDeadlineMs !== undefined && Number.isFinite(untilDeadlineMs) ? Math.min(byRate, Math.ceil(untilDeadlineMs)) : byRate;
  return Math.max(floorMs, cut);
}

/** The bytes of memory images (`pages-<n>.img`) among `files`: what a restore of them moves into memory. */
export function memoryImageBytes(files: Iterable<{ readonly name: string; readonly bytes: number }>): number {
  let bytes = 0;
  for (const file of files) if (PAGES_FILE.test(file.name)) bytes += file.bytes;
  return bytes;
}
