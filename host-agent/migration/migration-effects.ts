/**
 * The side effects of a migration, one per step of the state table. The driver calls them
 * after the step is journaled; they live in adapters (CRIU, cgroups, the destination agent
 * over HTTP) and are faked in unit tests. Every undo (destroyDestination, resumeSource) and
 * release must be idempotent: recovery may call them again after a crash half-way through.
 */
import type { MigrationRecord, PreCopyMethod } from './migration-record';

/** What a restore says beyond "it runs": how long the shard ran while its memory was filled lazily (ms; 0 for an eager restore). */
export interface RestoreReport {
  readonly lazyPagesMs: number;
}

export interface MigrationEffects {
  /** Destination: validate, reserve capacity, create the shard cgroup with the same limits. Throws REFUSED with the reason. */
  prepare(record: MigrationRecord): Promise<void>;
  /** Whether and how the source can pre-copy (kernel dirty-page tracking, else page contents); the reason when it cannot. */
  preCopySupport(record: MigrationRecord): Promise<{ ok: true; method: PreCopyMethod } | { ok: false; reason: string }>;
  /** One pre-dump round while the shard runs, streamed to the destination; resolves to the bytes sent. */
  preCopyRound(record: MigrationRecord, round: number): Promise<{ bytes: number }>;
  /** Freezes the source shard. */
  freeze(record: MigrationRecord): Promise<void>;
  /**
   * Final dump of the frozen source, left stopped; resolves to the image bytes, and how many of
   * them were already on their way to the destination when the dump ended (sent while CRIU wrote them).
   */
  dump(record: MigrationRecord): Promise<{ bytes: number; streamedBytes?: number }>;
  /** Streams the final image to the destination, which verifies every file's sha256. */
  transfer(record: MigrationRecord): Promise<{ bytes: number }>;
  /**
   * Destination restores the image into the shard cgroup; resolves once it runs with all its
   * memory in, saying how long it already ran while that memory was filled lazily.
   */
  restore(record: MigrationRecord): Promise<RestoreReport | void>;
  /** Kills the stopped source, removes its cgroup and frees its capacity. Idempotent. */
  releaseSource(record: MigrationRecord): Promise<void>;
  /** Destination: kills any restored copy, removes the cgroup and images, frees the reservation. Idempotent. */
  destroyDestination(record: MigrationRecord): Promise<void>;
  /** Source: thaws the shard and continues its stopped tasks; its workload runs as before. Idempotent. */
  resumeSource(record: MigrationRecord): Promise<void>;
  /** The migration ended (done or aborted): log the event, count metrics. Must not throw. */
  finished(record: MigrationRecord): void;
}
