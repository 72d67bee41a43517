/**
 * The source agent's side effects of a `restart` migration, for shards that cannot be
 * checkpointed (declared in the plan, or holding established TCP connections). Same state
 * table and journal as `checkpoint`, with these meanings:
 *
 *   prepared     destination reserves capacity, creates the held cgroup (as for checkpoint)
 *   frozen       the source workload is stopped: SIGTERM, grace, SIGKILL (cgroup kept, shard held)
 *   dumped       the state directory is packed into one tar file (not when the destination
 *                said at prepare that it sees this host's directory: a shared file system)
 *   transferred  the tar is streamed and checked (size, sha256) like an image file
 *   restored     the destination unpacks it and starts the workload in its cgroup
 *   committed / released / done, aborted: as for checkpoint
 *
 * Never two runs: the source is stopped before the destination can start (`frozen` precedes
 * `restored`), and an abort from `restored` destroys the destination copy before the source
 * starts again. Downtime is the same window (frozen → committed): stop, pack, send, start.
 */
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CgroupDriver } from '../cgroups/driver';
import type { RoundManifest } from '../api/migration-schemas';
import type { DesiredShard } from '../reconcile/desired-shard';
import type { RestartHandover, ShardHandover } from '../reconcile/shard-handover';
import type { MigrationClient } from './migration-client';
import type { MigrationEffects } from './migration-effects';
import { MigrationError } from './migration-error';
import type { MigrationRecord } from './migration-record';
import { prepareRequest } from './prepare-request';
import { markStateDir, packState, reclaimStateDir, shardStateDir, STATE_ARCHIVE, unmarkStateDir } from './state-archive';

export interface RestartEffectsDeps {
  readonly driver: Pick<CgroupDriver, 'pids' | 'exists'>;
  readonly handover: Pick<ShardHandover, 'release' | 'adopt' | 'discard'> & RestartHandover;
  describe(shardId: string): Promise<DesiredShard>;
  /**
   * The state directory of the migration's application in the plan (undefined when the
   * application left it), whatever the placement: a drained host describes no shard.
   */
  stateDirectoryOf(record: MigrationRecord): Promise<string | undefined>;
  client(hostId: string): Pick<MigrationClient, 'prepare' | 'uploadRound' | 'start' | 'commit' | 'abort'>;
  /** `<imagesRoot>/<migration id>/1/state.tar`. */
  readonly imagesRoot: string;
  readonly onFinished?: (record: MigrationRecord) => void;
  /** Packs a directory into a tar file; default packState (GNU tar). */
  readonly pack?: (dir: string, archive: string) => Promise<void>;
}

/** The restart strategy moves one round: the state archive. */
const ROUND = 1;

export class RestartMigrationEffects implements MigrationEffects {
  /**
   * Manifest of the archive sent, per migration (a restarted agent aborts instead of needing
   * it); null where the destination sees this host's state directory and nothing is sent.
   */
  private readonly sent = new Map<string, RoundManifest | null>();
  /** Migrations whose destination sees this host's state directory of the shard (its prepare said so). */
  private readonly sharedState = new Set<string>();

  constructor(private readonly deps: RestartEffectsDeps) {}

  private dir(record: MigrationRecord): string {
    return join(this.deps.imagesRoot, record.id, String(ROUND));
  }

  async prepare(record: MigrationRecord): Promise<void> {
    const desired = await this.deps.describe(record.shardId);
    // Marked so that a destination that sees this very directory says so, and nothing is packed.
    await markStateDir(await shardStateDir(record, this.deps.stateDirectoryOf), record.id);
    const { sharedStateDirectory } = await this.deps.client(record.destination).prepare(record.id, prepareRequest(record.source, desired, record.timeoutSeconds));
    if (sharedStateDirectory) this.sharedState.add(record.id);
  }

  async preCopySupport(): Promise<{ ok: false; reason: string }> {
    return { ok: false, reason: 'the restart strategy moves the state directory, not memory' };
  }

  async preCopyRound(record: MigrationRecord): Promise<{ bytes: number }> {
    throw new MigrationError('INVALID_TRANSITION', `migration ${record.id}: the restart strategy has no pre-copy rounds`);
  }

  async freeze(record: MigrationRecord): Promise<void> {
    await this.deps.handover.release(record.shardId);
    await this.deps.handover.stopHeld(record.shardId);
  }

  async dump(record: MigrationRecord): Promise<{ bytes: number }> {
    if (this.sharedState.has(record.id)) return { bytes: 0 };
    const archive = join(this.dir(record), STATE_ARCHIVE);
    await rm(this.dir(record), { recursive: true, force: true });
    await mkdir(this.dir(record), { recursive: true });
    await (this.deps.pack ?? packState)(await shardStateDir(record, this.deps.stateDirectoryOf), archive);
    return { bytes: (await stat(archive)).size };
  }

  async transfer(record: MigrationRecord): Promise<{ bytes: number }> {
    if (this.sharedState.has(record.id)) {
      this.sent.set(record.id, null);
      return { bytes: 0 };
    }
    const archive = join(this.dir(record), STATE_ARCHIVE);
    const { size } = await stat(archive);
    const manifest = await this.deps.client(record.destination).uploadRound(record.id, ROUND, this.dir(record), [{ name: STATE_ARCHIVE, bytes: size }]);
    this.sent.set(record.id, { round: ROUND, parent: null, files: manifest.files.map((f) => ({ ...f })) });
    return { bytes: manifest.totalBytes };
  }

  async restore(record: MigrationRecord): Promise<void> {
    const manifest = this.sent.get(record.id);
    if (manifest === undefined) throw new MigrationError('INVALID_MIGRATION', `migration ${record.id}: no state archive was sent by this agent`);
    await this.deps.client(record.destination).start(record.id, manifest ? [manifest] : []);
  }

  async releaseSource(record: MigrationRecord): Promise<void> {
    await this.deps.client(record.destination).commit(record.id, record.shardId);
    await this.deps.handover.discard(record.shardId);
    await this.forget(record, await this.deps.stateDirectoryOf(record).catch(() => undefined));
  }

  async destroyDestination(record: MigrationRecord): Promise<void> {
    await this.deps.client(record.destination).abort(record.id, record.shardId, record.abort?.reason ?? 'aborted');
  }

  /**
   * Idempotent: supervise the workload if it still runs (never stopped, or stopping), else start
   * it again; without its cgroup (this host rebooted since) the shard goes back to reconcile,
   * which creates and starts it here (nothing was committed, it is still assigned here).
   */
  async resumeSource(record: MigrationRecord): Promise<void> {
    // On a file system both hosts share, a destination that died while swapping in the state
    // directory left the source's own aside: put it back before anything starts from it (here,
    // reconcile after a reboot, or after a drain is lifted). Found from the application, not
    // the placement (a drained host describes no shard: before 2026-11-28 it then started the
    // shard without its state); a failure to find it is retried rather than starting without.
    const stateDirectory = await this.deps.stateDirectoryOf(record);
    if (stateDirectory) await reclaimStateDir(join(stateDirectory, record.shardId), record.id);
    if (!(await this.deps.driver.exists(record.shardId))) await this.deps.handover.discard(record.shardId);
    else if ((await this.deps.driver.pids(record.shardId)).length > 0) await this.deps.handover.adopt(record.shardId);
    else await this.deps.handover.startHeld(record.shardId);
    await this.forget(record, stateDirectory);
  }

  finished(record: MigrationRecord): void {
    this.deps.onFinished?.(record);
  }

  /** What this agent kept of `record`: its mark in the state directory (when that is known), its archive, its memory. */
  private async forget(record: MigrationRecord, stateDirectory: string | undefined): Promise<void> {
    await unmarkStateDir(stateDirectory && join(stateDirectory, record.shardId), record.id);
    await rm(join(this.deps.imagesRoot, record.id), { recursive: true, force: true });
    this.sent.delete(record.id);
    this.sharedState.delete(record.id);
  }
}
