/**
 * What the agent persists per shard under its state directory, so a restarted agent (after
 * SIGKILL, a crash or an upgrade) adopts the same workloads with the same pids and keeps
 * counting restarts: `<agentStateDir>/shards/<shardId>.json`. Written atomically (atomic-file.ts),
 * so a crash mid-write leaves the previous record, never a torn one.
 */
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ID_PATTERN } from '../../src/errors';
import { writeFileAtomically } from '../atomic-file';
import type { ShardLimits } from '../cgroups/driver';
import type { DesiredShard } from '../reconcile/desired-shard';
import type { ShardExit } from './shard-status';

export const SHARD_RECORD_VERSION = 1;

export interface ShardRecord {
  readonly version: typeof SHARD_RECORD_VERSION;
  readonly shardId: string;
  /** The definition to start the workload again from nothing. */
  readonly desired: DesiredShard;
  /** Limits last written successfully (the reconcile diff compares against these). */
  readonly appliedLimits?: ShardLimits;
  /** Main pid (PID-namespace init) of the current run, and its start time (identity; see proc-info.ts). */
  readonly pid?: number;
  readonly pidStartTime?: number;
  readonly startedAt?: string;
  /** Restarts since this agent state directory first saw the shard. */
  readonly restarts: number;
  /** Consecutive failed runs (drives the back-off). */
  readonly consecutiveFailures: number;
  readonly lastExit?: ShardExit;
  /** OOM kills of the cgroup already reported (so a restarted agent reports only new ones). */
  readonly oomKillsSeen: number;
  /** Migration holds the shard: the keeper neither restarts, stops nor removes it. */
  readonly held: boolean;
  /**
   * A stop on purpose is under way: set before the first signal, cleared once the stop is done (or
   * a new run starts). A new agent that finds it finishes the stop rather than taking the end of
   * the run for a crash to restart (ShardKeeper.start).
   */
  readonly stopping?: boolean;
}

export class ShardRecordStore {
  constructor(readonly directory: string) {}

  private file(shardId: string): string {
    // Ids come from validated plans and driver listings; this guard keeps a bad one off the path anyway.
    if (!ID_PATTERN.test(shardId)) throw new Error(`refusing shard id ${JSON.stringify(shardId)} as a file name`);
    return join(this.directory, `${shardId}.json`);
  }

  async save(record: ShardRecord): Promise<void> {
    await mkdir(this.directory, { recursive: true });
    await writeFileAtomically(this.file(record.shardId), `${JSON.stringify(record, null, 2)}\n`);
  }

  async load(shardId: string): Promise<ShardRecord | undefined> {
    try {
      const parsed: unknown = JSON.parse(await readFile(this.file(shardId), 'utf8'));
      return isShardRecord(parsed, shardId) ? parsed : undefined;
    } catch {
      return undefined;
    }
  }

  async loadAll(): Promise<ShardRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.directory);
    } catch {
      return [];
    }
    const ids = names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -'.json'.length)).filter((id) => ID_PATTERN.test(id));
    const records = await Promise.all(ids.sort().map((id) => this.load(id)));
    return records.filter((r): r is ShardRecord => r !== undefined);
  }

  async delete(shardId: string): Promise<void> {
    await rm(this.file(shardId), { force: true });
  }
}

/**
 * A record of `shardId` in the shape this agent writes, checked where it is read (the file is
 * outside data: another build, a hand edit). One that is JSON but lacks its definition or counts
 * is no record, as an unreadable one is: trusted, it threw a TypeError out of the keeper's start
 * (the agent could not start) or out of every reconcile pass, for the sake of one file.
 */
function isShardRecord(value: unknown, shardId: string): value is ShardRecord {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Record<string, unknown>;
  const d = r.desired as Record<string, unknown> | null | undefined;
  const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
  const optionalInteger = (n: unknown) => n === undefined || Number.isSafeInteger(n);
  return (
    r.version === SHARD_RECORD_VERSION &&
    r.shardId === shardId &&
    typeof d === 'object' && d !== null &&
    d.shardId === shardId &&
    typeof d.applicationId === 'string' &&
    typeof d.stateDirectory === 'string' &&
    (d.workingDirectory === undefined || typeof d.workingDirectory === 'string') &&
    Array.isArray(d.command) && d.command.length > 0 && d.command.every((a) => typeof a === 'string') &&
    typeof d.env === 'object' && d.env !== null && Object.values(d.env).every((v) => typeof v === 'string') &&
    typeof d.limits === 'object' && d.limits !== null &&
    count(r.restarts) && count(r.consecutiveFailures) && count(r.oomKillsSeen) &&
    typeof r.held === 'boolean' &&
    (r.stopping === undefined || typeof r.stopping === 'boolean') &&
    (r.startedAt === undefined || typeof r.startedAt === 'string') &&
    optionalInteger(r.pid) && optionalInteger(r.pidStartTime)
  );
}
