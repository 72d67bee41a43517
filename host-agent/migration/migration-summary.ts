/** One line's worth of a finished migration: what the CLI prints, the event log and metrics record. */
import { downtimeMs, downtimeSteps, durationMs, type DowntimeSteps, type MigrationRecord } from './migration-record';

export interface MigrationSummary {
  readonly id: string;
  readonly shardId: string;
  readonly source: string;
  readonly destination: string;
  readonly strategy: MigrationRecord['strategy'];
  readonly state: MigrationRecord['state'];
  readonly downtimeMs: number | null;
  /** The downtime step by step (freeze, dump, transfer, restore), once committed. */
  readonly downtimeSteps: DowntimeSteps | null;
  /** How long the shard ran on the destination while its memory was filled lazily (after the downtime), once committed. */
  readonly lazyPagesMs: number | null;
  /** Bytes of the final image sent while CRIU was still dumping it (the rest went after the dump), when any were. */
  readonly streamedBytes: number | null;
  readonly durationMs: number | null;
  readonly bytesSent: number;
  readonly rounds: number;
  readonly preCopySkipped: string | null;
  /** How pre-copy found changed pages (`criu` soft-dirty pre-dumps, `shadow` page comparison), when it ran. */
  readonly preCopyMethod: MigrationRecord['preCopyMethod'] | null;
  readonly abortReason: string | null;
  /** When the migration was planned, and when its last step was journaled (ISO 8601). */
  readonly startedAt: string | null;
  readonly updatedAt: string | null;
}

export function summarize(record: MigrationRecord): MigrationSummary {
  return {
    id: record.id,
    shardId: record.shardId,
    source: record.source,
    destination: record.destination,
    strategy: record.strategy,
    state: record.state,
    downtimeMs: downtimeMs(record) ?? null,
    downtimeSteps: downtimeSteps(record) ?? null,
    lazyPagesMs: record.lazyPagesMs ?? null,
    streamedBytes: record.streamedBytes ?? null,
    durationMs: durationMs(record) ?? null,
    bytesSent: record.bytesSent ?? 0,
    rounds: record.rounds.length,
    preCopySkipped: record.preCopySkipped ?? null,
    preCopyMethod: record.rounds.length > 0 ? (record.preCopyMethod ?? null) : null,
    abortReason: record.abort?.reason ?? null,
    startedAt: record.history[0]?.at ?? null,
    updatedAt: record.history.at(-1)?.at ?? null,
  };
}
