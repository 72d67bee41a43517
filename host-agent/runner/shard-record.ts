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
      const parsed = JSON.parse(await readFile(this.file(shardId), 'utf8')) as ShardRecord;
      return parsed.version === SHARD_RECORD_VERSION && parsed.shardId === shardId ? parsed : undefined;
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
