/**
 * The source agent's side effects of a `checkpoint` migration: the keeper hand-over and the
 * cgroup freezer for the shard, CRIU for the images, the migration client for the
 * destination. Everything an undo needs is found again from the journal record and the
 * cgroup (never only from memory), so an agent that restarted can abort or roll forward.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CgroupDriver } from '../cgroups/driver';
import type { CriuCheckpointer } from '../checkpoint/criu-checkpointer';
import { imageBytes, listImageFiles } from '../checkpoint/image-manifest';
import type { DesiredShard } from '../reconcile/desired-shard';
import type { ShardHandover } from '../reconcile/shard-handover';
import { findNamespaceInit } from '../runner/proc-info';
import type { RoundManifest } from '../api/migration-schemas';
import type { MigrationClient } from './migration-client';
import type { MigrationEffects } from './migration-effects';
import { MigrationError } from './migration-error';
import type { MigrationRecord } from './migration-record';
import { prepareRequest } from './prepare-request';

export interface CheckpointEffectsDeps {
  readonly driver: Pick<CgroupDriver, 'freeze' | 'thaw' | 'pids' | 'paths'>;
  readonly handover: Pick<ShardHandover, 'release' | 'adopt' | 'discard'>;
  readonly checkpointer: Pick<CriuCheckpointer, 'supportsPreCopy' | 'preDump' | 'dump'>;
  /** The definition of a shard this host runs (what the destination recreates). */
  describe(shardId: string): Promise<DesiredShard>;
  /** A client for the destination host's agent. */
  client(hostId: string): MigrationClient;
  /** Where this agent writes images: `<imagesRoot>/<migration id>/<round>`. */
  readonly imagesRoot: string;
  /** Told when a migration ends (done or aborted): log, events, metrics. */
  readonly onFinished?: (record: MigrationRecord) => void;
  /** The PID-namespace init among a shard's pids; default reads /proc (findNamespaceInit). */
  readonly findRoot?: (pids: readonly number[]) => Promise<{ pid: number } | undefined>;
}

export class CheckpointMigrationEffects implements MigrationEffects {
  /** Manifests of the rounds sent so far, per migration (a restarted agent aborts instead of needing them). */
  private readonly rounds = new Map<string, RoundManifest[]>();

  constructor(private readonly deps: CheckpointEffectsDeps) {}

  private dir(record: MigrationRecord, round: number): string {
    return join(this.deps.imagesRoot, record.id, String(round));
  }

  private freezerDir(shardId: string): string | undefined {
    const paths = this.deps.driver.paths(shardId);
    return paths.freezer ?? paths.unified;
  }

  private async rootPid(shardId: string): Promise<number> {
    const main = await (this.deps.findRoot ?? findNamespaceInit)(await this.deps.driver.pids(shardId));
    if (!main) throw new MigrationError('INVALID_MIGRATION', `shard ${shardId} has no running workload (no PID-namespace init in its cgroup)`);
    return main.pid;
  }

  async prepare(record: MigrationRecord): Promise<void> {
    const desired = await this.deps.describe(record.shardId);
    await this.deps.client(record.destination).prepare(record.id, prepareRequest(record.source, desired));
    this.rounds.set(record.id, []);
  }

  async preCopySupport(): Promise<{ ok: true } | { ok: false; reason: string }> {
    const support = await this.deps.checkpointer.supportsPreCopy();
    return support.ok ? { ok: true } : { ok: false, reason: support.reason ?? 'pre-copy unsupported' };
  }

  private async sendRound(record: MigrationRecord, round: number): Promise<number> {
    const dir = this.dir(record, round);
    const sent = this.rounds.get(record.id) ?? [];
    const parent = sent.length > 0 ? (sent[sent.length - 1] as RoundManifest).round : null;
    // Hashed while streamed; the destination checks every file against this manifest before restoring.
    const manifest = await this.deps.client(record.destination).uploadRound(record.id, round, dir, await listImageFiles(dir));
    this.rounds.set(record.id, [...sent, { round, parent, files: manifest.files.map((f) => ({ ...f })) }]);
    return manifest.totalBytes;
  }

  async preCopyRound(record: MigrationRecord, round: number): Promise<{ bytes: number }> {
    const previous = round > 1 ? this.dir(record, round - 1) : undefined;
    await this.deps.checkpointer.preDump({ rootPid: await this.rootPid(record.shardId), freezeCgroup: this.freezerDir(record.shardId) }, this.dir(record, round), previous);
    return { bytes: await this.sendRound(record, round) };
  }

  async freeze(record: MigrationRecord): Promise<void> {
    // The keeper must not restart the shard while it is frozen, dumped and stopped.
    await this.deps.handover.release(record.shardId);
    await this.deps.driver.freeze(record.shardId);
  }

  private finalRound(record: MigrationRecord): number {
    return record.rounds.length + 1;
  }

  async dump(record: MigrationRecord): Promise<{ bytes: number }> {
    const round = this.finalRound(record);
    const previous = record.rounds.length > 0 ? this.dir(record, record.rounds.length) : undefined;
    const dir = this.dir(record, round);
    await this.deps.checkpointer.dump({ rootPid: await this.rootPid(record.shardId), freezeCgroup: this.freezerDir(record.shardId) }, dir, previous);
    // Sizes only: the files are hashed once, while the transfer streams them (hashing is a large part of downtime).
    return { bytes: await imageBytes(dir) };
  }

  async transfer(record: MigrationRecord): Promise<{ bytes: number }> {
    return { bytes: await this.sendRound(record, this.finalRound(record)) };
  }

  async restore(record: MigrationRecord): Promise<void> {
    const rounds = this.rounds.get(record.id);
    if (!rounds || rounds.length === 0) throw new MigrationError('INVALID_MIGRATION', `migration ${record.id}: no image was sent by this agent`);
    await this.deps.client(record.destination).restore(record.id, rounds);
  }

  async releaseSource(record: MigrationRecord): Promise<void> {
    // Committed: the destination supervises the shard from now on (idempotent), then the source copy goes.
    await this.deps.client(record.destination).commit(record.id, record.shardId);
    await this.deps.handover.discard(record.shardId);
    await rm(join(this.deps.imagesRoot, record.id), { recursive: true, force: true });
    this.rounds.delete(record.id);
  }

  async destroyDestination(record: MigrationRecord): Promise<void> {
    await this.deps.client(record.destination).abort(record.id, record.shardId, record.abort?.reason ?? 'aborted');
  }

  async resumeSource(record: MigrationRecord): Promise<void> {
    await this.deps.driver.thaw(record.shardId);
    // `criu dump --leave-stopped` leaves the tasks ptrace-stopped: thawing is not enough.
    for (const pid of await this.deps.driver.pids(record.shardId)) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // exited meanwhile
      }
    }
    await this.deps.handover.adopt(record.shardId);
    await rm(join(this.deps.imagesRoot, record.id), { recursive: true, force: true });
    this.rounds.delete(record.id);
  }

  finished(record: MigrationRecord): void {
    this.deps.onFinished?.(record);
  }
}
