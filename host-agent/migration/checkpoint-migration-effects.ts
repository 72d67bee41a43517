/**
 * The source agent's side effects of a `checkpoint` migration: the keeper hand-over and the
 * cgroup freezer for the shard, CRIU for the images, the migration client for the
 * destination. Everything an undo needs is found again from the journal record and the
 * cgroup (never only from memory), so an agent that restarted can abort or roll forward.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CgroupDriver } from '../cgroups/driver';
import { shardLogPaths } from '../runner/shard-logs';
import type { CriuCheckpointer } from '../checkpoint/criu-checkpointer';
import { criuCheckpointing, type CheckpointTarget, type CriuAtWork } from '../checkpoint/criu-at-work';
import { CRIU_TIMEOUT_MS } from '../checkpoint/criu-checkpointer';
import { criuSwitchOn } from '../checkpoint/criu';
import { imageBytes, listImageFiles, type ImageFile } from '../checkpoint/image-manifest';
import type { DesiredShard } from '../reconcile/desired-shard';
import type { ShardHandover } from '../reconcile/shard-handover';
import { findNamespaceInit, isSameProcessAlive } from '../runner/proc-info';
import type { RoundManifest } from '../api/migration-schemas';
import type { MigrationClient } from './migration-client';
import type { MigrationEffects, RestoreReport } from './migration-effects';
import { MigrationError } from './migration-error';
import { deadlineOf, type MigrationRecord, type PreCopyMethod } from './migration-record';
import { systemShadowPreCopy, type FrozenComparison, type Shadow, type ShadowPreCopy } from './memory-shadow';
import { imageSpaceShortfall, systemImageSpace, type ImageSpace } from './image-space';
import { prepareRequest } from './prepare-request';
import { DumpStreamer } from './dump-streamer';
import { markStateDir, packState, reclaimStateDir, shardStateDir, STATE_ARCHIVE, unmarkStateDir } from './state-archive';

/** The image files the shadow comparison rewrites: each process's pagemap and pages. */
const MEMORY_IMAGE = /^(pagemap|pages)-\d+\.img$/;

export interface CheckpointEffectsDeps {
  readonly driver: Pick<CgroupDriver, 'freeze' | 'thaw' | 'pids' | 'paths' | 'exists'>;
  readonly handover: Pick<ShardHandover, 'release' | 'adopt' | 'discard'>;
  readonly checkpointer: Pick<CriuCheckpointer, 'supportsPreCopy' | 'preDump' | 'dump'>;
  /** The definition of a shard this host runs (what the destination recreates). */
  describe(shardId: string): Promise<DesiredShard>;
  /**
   * The state directory of the migration's application in the plan (undefined when the
   * application left it), whatever the placement: a drained host describes no shard.
   */
  stateDirectoryOf(record: MigrationRecord): Promise<string | undefined>;
  /** Packs a directory into a tar file; default packState (GNU tar). */
  readonly pack?: (dir: string, archive: string) => Promise<void>;
  /** A client for the destination host's agent. */
  client(hostId: string): MigrationClient;
  /** Where this agent writes images: `<imagesRoot>/<migration id>/<round>`. */
  readonly imagesRoot: string;
  /** The keeper's log directory (`<state dir>/logs`): the shard's stdout and stderr there are named to the destination. */
  readonly logRoot?: string;
  /** Told when a migration ends (done or aborted): log, events, metrics. */
  readonly onFinished?: (record: MigrationRecord) => void;
  /** The PID-namespace init among a shard's pids; default reads /proc (findNamespaceInit). */
  readonly findRoot?: (pids: readonly number[]) => Promise<{ pid: number } | undefined>;
  /** Pre-copy by page contents where the kernel cannot track dirty pages; default reads /proc (memory-shadow.ts). */
  readonly shadow?: ShadowPreCopy;
  /** Disk room for images and the size of a shard's image; default statfs and /proc (image-space.ts). */
  readonly space?: ImageSpace;
  /** CRIU processes still checkpointing a shard; default scans /proc (criu-at-work.ts). */
  readonly criuAtWork?: (target: CheckpointTarget) => Promise<CriuAtWork[]>;
  /**
   * Send the final dump's pages while CRIU writes them, to a destination that takes chunked
   * uploads (dump-streamer.ts); default the switch SHARDFORM_CRIU_STREAM_DUMP (on unless `off`).
   */
  readonly streamDump?: boolean;
}

export class CheckpointMigrationEffects implements MigrationEffects {
  /** Manifests of the rounds sent so far, per migration (a restarted agent aborts instead of needing them). */
  private readonly rounds = new Map<string, RoundManifest[]>();
  /** The last shadow of each process, per migration (shadow pre-copy). */
  private readonly shadows = new Map<string, Map<number, Shadow>>();
  /** Migrations whose destination sees this host's state directory of the shard (its prepare said so): nothing to pack. */
  private readonly sharedState = new Set<string>();
  /** Migrations whose destination takes files of no announced length (its prepare said so): pages go out while CRIU dumps. */
  private readonly chunkedUploads = new Set<string>();
  /** Per migration, the pages files sent while CRIU dumped them (dump-streamer.ts), for transfer() not to send again. */
  private readonly streamed = new Map<string, { streamer: DumpStreamer; sent: Promise<ImageFile[]> }>();
  /** The shard's memory as estimated at the prepare, per migration (undefined: a process could not be read). */
  private readonly memoryEstimate = new Map<string, number | undefined>();
  /** The state directory's size on disk as measured at the prepare, per migration (undefined: could not be read). */
  private readonly measuredState = new Map<string, number | undefined>();
  /** Per migration, what the frozen memory still shares with the last shadows (shadow pre-copy, compared during the dump). */
  private readonly frozen = new Map<string, Map<number, FrozenComparison>>();
  private readonly shadow: ShadowPreCopy;
  private readonly space: ImageSpace;
  private readonly streamDump: boolean;

  constructor(private readonly deps: CheckpointEffectsDeps) {
    this.shadow = deps.shadow ?? systemShadowPreCopy;
    this.space = deps.space ?? systemImageSpace;
    this.streamDump = deps.streamDump ?? criuSwitchOn('SHARDFORM_CRIU_STREAM_DUMP');
  }

  private method(record: MigrationRecord): PreCopyMethod {
    return record.preCopyMethod ?? 'criu';
  }

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

  /** The shard's memory image as estimated now (undefined when a process could not be read). */
  private async memoryBytes(record: MigrationRecord): Promise<number | undefined> {
    return this.space.imageBytes(await this.deps.driver.pids(record.shardId));
  }

  /**
   * What a CRIU run on the shard needs for its time limit (memory-move-time.ts): its memory as
   * estimated at the prepare (now, when this agent made no prepare of it), and the time left
   * before the migration's own limit.
   */
  private async timeOf(record: MigrationRecord): Promise<{ memoryBytes?: number; untilDeadlineMs: number }> {
    // The prepare's estimate where there is one: read again in the dump it would cost a walk of
    // every process's page tables while the shard is frozen (tens of ms for tens of GiB).
    const memoryBytes = this.memoryEstimate.has(record.id) ? this.memoryEstimate.get(record.id) : await this.memoryBytes(record).catch(() => undefined);
    return { ...(memoryBytes !== undefined ? { memoryBytes } : {}), untilDeadlineMs: untilDeadlineMs(record, Date.now()) };
  }

  /**
   * Why this host's disk cannot hold `copies` of a memory image of `memoryBytes` and one archive
   * of the state directory of `stateBytes` (packed once, beside the final dump), or undefined.
   */
  private imageSpace(opts: { memoryBytes: number | undefined; stateBytes: number | undefined; copies: number; what: string }): string | undefined {
    const { memoryBytes, stateBytes, copies, what } = opts;
    return imageSpaceShortfall({ dir: this.deps.imagesRoot, free: this.space.free(this.deps.imagesRoot), imageBytes: memoryBytes, stateBytes: stateBytes ?? 0, copies, what });
  }

  /**
   * What the state directory's archive will take: nothing where the destination sees this very
   * directory (nothing is packed), else measured once per migration (a walk of the whole
   * directory, which can hold many files) and kept for the pre-copy check after the prepare.
   */
  private async stateBytes(record: MigrationRecord): Promise<number | undefined> {
    if (this.sharedState.has(record.id)) return 0;
    if (!this.measuredState.has(record.id)) {
      const stateDirectory = await this.deps.stateDirectoryOf(record);
      this.measuredState.set(record.id, stateDirectory === undefined ? 0 : await this.space.stateBytes(join(stateDirectory, record.shardId)));
    }
    return this.measuredState.get(record.id);
  }

  /**
   * Refuses before anything is frozen when this host's disk cannot hold the dump; tells the
   * destination how large the image and the state directory are, for its own disk check.
   * Whether the state directory is packed here at all only the destination's answer tells (not
   * when it sees this very directory: a shared file system), so this disk is checked for the
   * memory before the prepare and for the archive beside it after (refused then, the migration
   * aborts, which aborts the destination's prepared copy too).
   */
  async prepare(record: MigrationRecord): Promise<void> {
    const desired = await this.deps.describe(record.shardId);
    const what = `the dump of shard ${record.shardId}`;
    const memoryBytes = await this.memoryBytes(record);
    this.memoryEstimate.set(record.id, memoryBytes);
    const short = this.imageSpace({ memoryBytes, stateBytes: 0, copies: 1, what });
    if (short) throw new MigrationError('REFUSED', short);
    const stateBytes = await this.stateBytes(record);
    // Marked so that a destination that sees this very directory says so, and nothing is packed.
    await markStateDir(await shardStateDir(record, this.deps.stateDirectoryOf), record.id);
    const { sharedStateDirectory, chunkedUploads } = await this.deps.client(record.destination).prepare(record.id, {
      ...prepareRequest(record.source, desired, record.timeoutSeconds),
      ...(memoryBytes !== undefined ? { imageBytes: memoryBytes } : {}),
      // Only when there is some: a destination older than the field refuses the body (400), where
      // it would check memory alone; for a shard without state that check is the right one.
      ...(stateBytes ? { stateBytes } : {}),
      ...(this.deps.logRoot ? { logFiles: shardLogPaths(this.deps.logRoot, record.shardId) } : {}),
    });
    if (sharedStateDirectory) this.sharedState.add(record.id);
    if (chunkedUploads) this.chunkedUploads.add(record.id);
    this.rounds.set(record.id, []);
    if (!sharedStateDirectory && stateBytes) {
      const packed = this.imageSpace({ memoryBytes, stateBytes, copies: 1, what });
      if (packed) throw new MigrationError('REFUSED', packed);
    }
  }

  /**
   * CRIU's own pre-dumps where the kernel tracks dirty pages, else the shadow (page contents
   * compared) — when this host's disk can hold the shadow beside the final dump.
   */
  async preCopySupport(record: MigrationRecord): Promise<{ ok: true; method: PreCopyMethod } | { ok: false; reason: string }> {
    const criu = await this.deps.checkpointer.supportsPreCopy();
    if (criu.ok) return { ok: true, method: 'criu' };
    const shadow = this.shadow.available();
    if (!shadow.ok) return { ok: false, reason: `${criu.reason ?? 'no dirty-page tracking'}; ${shadow.reason}` };
    // The shadow, CRIU's full dump, and the rewrite of it (up to all of it when memory changes fast).
    // The state directory counts once (unless the destination sees it): it is packed beside the final dump, never shadowed.
    const short = this.imageSpace({ memoryBytes: await this.memoryBytes(record), stateBytes: await this.stateBytes(record), copies: 3, what: 'a shadow beside the final dump and its rewrite' });
    return short ? { ok: false, reason: `${criu.reason ?? 'no dirty-page tracking'}, and ${short}` } : { ok: true, method: 'shadow' };
  }

  /**
   * Uploads the image files of a round (all of them, or the names given), then has the
   * destination verify them; each later round names the one before as its parent. With
   * `meanwhile`, the files it does not rewrite go out while it runs, the others after it.
   */
  private async sendRound(
    record: MigrationRecord,
    round: number,
    opts: { only?: readonly string[]; meanwhile?: { rewrites: (name: string) => boolean; run: () => Promise<unknown> }; streamed?: readonly ImageFile[] } = {},
  ): Promise<number> {
    const dir = this.dir(record, round);
    const client = this.deps.client(record.destination);
    const previous = this.rounds.get(record.id) ?? [];
    const parent = previous.length > 0 ? (previous[previous.length - 1] as RoundManifest).round : null;
    const { only, meanwhile } = opts;
    const listed = async () => (await listImageFiles(dir)).filter((f) => !only || only.includes(f.name));
    // Hashed while streamed; the destination checks every file against the manifest before restoring.
    let sent: ImageFile[];
    if (meanwhile) {
      // Listed before `run` starts: what it writes meanwhile (its partial files) is never picked up.
      const untouched = (await listed()).filter((f) => !meanwhile.rewrites(f.name));
      // The rewritten files go out as soon as they are written, beside what is still in flight;
      // the first failure on either side cancels the other side's uploads.
      const stop = new AbortController();
      let failure: { error: unknown } | undefined;
      const side = <T>(work: Promise<T>) =>
        work.catch((error: unknown) => {
          failure ??= { error };
          stop.abort(error);
          throw error;
        });
      const [early, late] = await Promise.allSettled([
        side(client.uploadFiles(record.id, round, dir, untouched, stop.signal)),
        side(meanwhile.run().then(async () => client.uploadFiles(record.id, round, dir, (await listed()).filter((f) => meanwhile.rewrites(f.name)), stop.signal))),
      ]);
      // `side` recorded the first failure, the cause; the other side then failed as cancelled.
      if (early.status === 'rejected' || late.status === 'rejected') throw failure!.error;
      sent = [...early.value, ...late.value];
    } else {
      const streamed = opts.streamed ?? [];
      const rest = (await listed()).filter((f) => !streamed.some((s) => s.name === f.name));
      sent = [...streamed, ...(await client.uploadFiles(record.id, round, dir, rest))];
    }
    const manifest = await client.verifyRound(record.id, round, sent);
    this.rounds.set(record.id, [...previous, { round, parent, files: manifest.files.map((f) => ({ ...f })) }]);
    return manifest.totalBytes;
  }

  async preCopyRound(record: MigrationRecord, round: number): Promise<{ bytes: number }> {
    if (this.method(record) === 'shadow') return { bytes: await this.shadowRound(record, round) };
    const previous = round > 1 ? this.dir(record, round - 1) : undefined;
    const target = { rootPid: await this.rootPid(record.shardId), freezeCgroup: this.freezerDir(record.shardId), ...(await this.timeOf(record)) };
    await this.deps.checkpointer.preDump(target, this.dir(record, round), previous);
    return { bytes: await this.sendRound(record, round) };
  }

  /** One shadow round: every process of the shard's tree read while it runs, only what changed sent. */
  private async shadowRound(record: MigrationRecord, round: number): Promise<number> {
    const dir = this.dir(record, round);
    await mkdir(dir, { recursive: true });
    const processes = await this.shadow.processes(await this.rootPid(record.shardId), await this.deps.driver.pids(record.shardId));
    const previous = this.shadows.get(record.id) ?? new Map<number, Shadow>();
    const next = new Map<number, Shadow>();
    const upload: string[] = [];
    for (const { pid, vpid } of processes) {
      const captured = await this.shadow.capture({ pid, vpid, round, dir, previous: previous.get(vpid) });
      if (!captured) continue; // ended since it was listed: no shadow, nothing sent (a later process of that pid is sent whole)
      next.set(vpid, captured.shadow);
      upload.push(...captured.upload);
    }
    // Processes that ended since the last round: their shadows are no base for anything.
    for (const [vpid, shadow] of previous) if (!next.has(vpid)) await rm(shadow.path, { force: true });
    this.shadows.set(record.id, next);
    return this.sendRound(record, round, { only: upload });
  }

  async freeze(record: MigrationRecord): Promise<void> {
    // The keeper must not restart the shard while it is frozen, dumped and stopped.
    await this.deps.handover.release(record.shardId);
    await this.deps.driver.freeze(record.shardId);
  }

  private finalRound(record: MigrationRecord): number {
    return record.rounds.length + 1;
  }

  async dump(record: MigrationRecord): Promise<{ bytes: number; streamedBytes?: number }> {
    const round = this.finalRound(record);
    // CRIU's pre-dumps chain the final dump to the last one; after shadow rounds CRIU dumps everything and transfer() compares.
    const previous = record.rounds.length > 0 && this.method(record) === 'criu' ? this.dir(record, record.rounds.length) : undefined;
    const dir = this.dir(record, round);
    const rootPid = await this.rootPid(record.shardId);
    // What CRIU is about to dump, for its time limit (memory-move-time.ts).
    const time = await this.timeOf(record);
    const stateDir = await shardStateDir(record, this.deps.stateDirectoryOf);
    await mkdir(dir, { recursive: true });
    // The shard is frozen: its memory is compared with the shadows on this core while CRIU
    // dumps it on another, so that the comparison is mostly done when the dump is. Its state
    // directory is packed meanwhile too (unless the destination sees this very directory): CRIU
    // reopens the files the shard holds there (and its working directory) by path on the
    // destination, whose disk may not be this one.
    const stop = new AbortController();
    const comparing = this.compareFrozen(record, rootPid, stop.signal);
    // Pages go out while CRIU writes them, unless the transfer rewrites them (shadow pre-copy).
    const streamer = this.streamDump && this.chunkedUploads.has(record.id) && !this.rewritesDump(record)
      ? new DumpStreamer({ client: this.deps.client(record.destination), migrationId: record.id, round, dir })
      : undefined;
    let streamedBytes: number | undefined;
    let sent: Promise<ImageFile[]> | undefined;
    const [dumped, packed] = await Promise.allSettled([
      this.deps.checkpointer.dump({ rootPid, freezeCgroup: this.freezerDir(record.shardId), ...time }, dir, previous).then(
        () => {
          if (!streamer) return;
          // CRIU exited 0: its pages files are whole. Their uploads end now, not once the state
          // directory is packed too: a long pack would leave the last one moving no byte past the
          // destination's UPLOAD_IDLE_MS, which breaks it off (and the source's idle timer waits
          // for the writer meanwhile). The rest still on its way is the transfer's, which waits for it.
          streamedBytes = streamer.bytesStreamed;
          sent = streamer.dumpDone();
          sent.catch(() => undefined); // a failure is the transfer's to report
        },
        (error: unknown) => {
          // The migration aborts and the shard is resumed: no reason to make it wait for the comparison.
          stop.abort();
          throw error;
        },
      ),
      this.sharedState.has(record.id) ? Promise.resolve() : (this.deps.pack ?? packState)(stateDir, join(dir, STATE_ARCHIVE)),
    ]);
    await comparing;
    const failed = dumped.status === 'rejected' ? dumped.reason : packed.status === 'rejected' ? packed.reason : undefined;
    if (failed !== undefined) {
      // Broken off and waited for (also after CRIU's success, when the packing failed): nothing
      // of this dump is still arriving when the abort comes.
      await streamer?.cancel(failed instanceof Error ? failed : new Error(String(failed)));
      throw failed;
    }
    if (streamer && sent) this.streamed.set(record.id, { streamer, sent });
    // Sizes only: the files are hashed once, while the transfer streams them (hashing is a large part of downtime).
    return { bytes: await imageBytes(dir), ...(streamedBytes ? { streamedBytes } : {}) };
  }

  /**
   * Compares each frozen process with its last shadow, for transfer() to rewrite the dump by.
   * Never fails the migration: a process it cannot compare is compared the slow way, against
   * CRIU's dump, in transfer().
   */
  private async compareFrozen(record: MigrationRecord, rootPid: number, signal: AbortSignal): Promise<void> {
    const shadows = this.shadows.get(record.id);
    if (this.method(record) !== 'shadow' || !shadows || record.rounds.length === 0) return;
    const compared = new Map<number, FrozenComparison>();
    this.frozen.set(record.id, compared);
    try {
      for (const { pid, vpid } of await this.shadow.processes(rootPid, await this.deps.driver.pids(record.shardId))) {
        if (signal.aborted) break;
        const shadow = shadows.get(vpid);
        if (shadow) compared.set(vpid, await this.shadow.compareFrozen({ pid, shadow, signal }));
      }
    } catch {
      // what was compared so far stands; the rest is compared against the dump
    }
  }

  /** Whether transfer() rewrites the final dump's memory images before sending them (shadow pre-copy). */
  private rewritesDump(record: MigrationRecord): boolean {
    return this.method(record) === 'shadow' && this.shadows.has(record.id) && record.rounds.length > 0;
  }

  async transfer(record: MigrationRecord): Promise<{ bytes: number }> {
    const shadows = this.shadows.get(record.id);
    const round = this.finalRound(record);
    const streamed = this.streamed.get(record.id);
    if (streamed) return { bytes: await this.sendRound(record, round, { streamed: await streamed.sent }) };
    if (shadows && this.rewritesDump(record)) {
      // Only the pages that differ from the last round's shadow are left in the final image; the
      // rest of the image (process state, files, namespaces) goes out while they are compared.
      const meanwhile = { rewrites: (name: string) => MEMORY_IMAGE.test(name), run: () => this.shadow.diff(this.dir(record, round), shadows, record.rounds.length, this.frozen.get(record.id)) };
      return { bytes: await this.sendRound(record, round, { meanwhile }) };
    }
    return { bytes: await this.sendRound(record, round) };
  }

  async restore(record: MigrationRecord): Promise<RestoreReport> {
    const rounds = this.rounds.get(record.id);
    if (!rounds || rounds.length === 0) throw new MigrationError('INVALID_MIGRATION', `migration ${record.id}: no image was sent by this agent`);
    const { lazyPagesMs } = await this.deps.client(record.destination).restore(record.id, rounds, untilDeadlineMs(record, Date.now()));
    return { lazyPagesMs };
  }

  async releaseSource(record: MigrationRecord): Promise<void> {
    // Committed: the destination supervises the shard from now on (idempotent), then the source copy goes.
    await this.deps.client(record.destination).commit(record.id, record.shardId);
    await this.deps.handover.discard(record.shardId);
    await this.forget(record, await this.deps.stateDirectoryOf(record).catch(() => undefined));
  }

  /** What this agent kept of `record`: its images, its mark in the state directory (when that is known), its memory. */
  private async forget(record: MigrationRecord, stateDirectory: string | undefined): Promise<void> {
    await unmarkStateDir(stateDirectory && join(stateDirectory, record.shardId), record.id);
    await rm(join(this.deps.imagesRoot, record.id), { recursive: true, force: true });
    this.rounds.delete(record.id);
    this.shadows.delete(record.id);
    this.frozen.delete(record.id);
    this.sharedState.delete(record.id);
    this.chunkedUploads.delete(record.id);
    // An abort before the transfer took them: the pages still on their way are broken off.
    await this.streamed.get(record.id)?.streamer.cancel(new Error(`migration ${record.id} ended`));
    this.streamed.delete(record.id);
    this.measuredState.delete(record.id);
    this.memoryEstimate.delete(record.id);
  }

  async destroyDestination(record: MigrationRecord): Promise<void> {
    await this.deps.client(record.destination).abort(record.id, record.shardId, record.abort?.reason ?? 'aborted');
  }

  async resumeSource(record: MigrationRecord): Promise<void> {
    const id = record.shardId;
    // On a file system both hosts share, a destination that died while swapping in the state
    // directory (or before undoing it) left its copy where the shard's state was, and the
    // shard's own aside: put it back before the shard runs on. Retried (not skipped) when the
    // directory cannot be found yet: resuming first would run the shard beside the wrong files.
    const stateDirectory = await this.deps.stateDirectoryOf(record);
    if (stateDirectory) await reclaimStateDir(join(stateDirectory, id), record.id);
    // The cgroup is gone when this host rebooted since (cgroups do not survive a boot).
    const exists = await this.deps.driver.exists(id);
    if (exists) {
      // A dump left running by this agent's previous run would stop the shard again when it
      // finishes (--leave-stopped): resume only once it is done (recovery retries).
      const root = await (this.deps.findRoot ?? findNamespaceInit)(await this.deps.driver.pids(id));
      const freezeCgroup = this.freezerDir(id);
      const busy = await (this.deps.criuAtWork ?? criuCheckpointing)({ ...(root ? { rootPid: root.pid } : {}), ...(freezeCgroup ? { freezeCgroup } : {}) });
      if (busy.length > 0) {
        // The agent that started it would have killed it at its time limit; so do we, once it is
        // that old (killed mid-dump, the workload runs on: docs/migration.md), rather than wait forever.
        const left = untilDeadlineMs(record, Date.now());
        const overdue = busy.filter((c) => c.ageSeconds !== undefined && pastTimeLimit(c, c.ageSeconds * 1000, left));
        for (const { pid, startTime } of overdue) {
          // Still the same process (a pid can be reused once it ended): same start time.
          if (startTime === undefined || !(await isSameProcessAlive(pid, startTime))) continue;
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // ended meanwhile
          }
        }
        const pids = busy.map((c) => c.pid).join(', ');
        throw new MigrationError(
          'TIMEOUT',
          overdue.length > 0
            ? `shard ${id} was still being checkpointed by CRIU (pid ${pids}, left running by an earlier run of this agent) past its time limit (${limitsOf(busy)}): killed (or gone); it resumes at the next try`
            : `shard ${id} is still being checkpointed by CRIU (pid ${pids}, left running by an earlier run of this agent); it resumes once CRIU is done or at its time limit (${limitsOf(busy)}; retried), or kill that pid to resume it now`,
        );
      }
      await this.deps.driver.thaw(id);
      // `criu dump --leave-stopped` leaves the tasks ptrace-stopped: thawing is not enough.
      for (const pid of await this.deps.driver.pids(id)) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          // exited meanwhile
        }
      }
    }
    if (exists && (await (this.deps.findRoot ?? findNamespaceInit)(await this.deps.driver.pids(id)))) {
      await this.deps.handover.adopt(id);
    } else {
      // No run to resume (the host rebooted, or the workload ended while held): nothing was
      // committed, so the shard is still assigned here. Hand it back to reconcile, which starts
      // it again, as after any reboot; adopt would refuse (SHARD_NOT_RUNNING) at every retry
      // and leave the shard held and running nowhere.
      await this.deps.handover.discard(id);
    }
    await this.forget(record, stateDirectory);
  }

  finished(record: MigrationRecord): void {
    this.deps.onFinished?.(record);
  }
}

/** Time left before `record`'s own time limit at `now` (by this host's clock: the driver's rule). */
function untilDeadlineMs(record: MigrationRecord, now: number): number {
  return deadlineOf(record) - now;
}

/**
 * Whether a CRIU left running by an earlier agent is past the time limit that agent gave it,
 * `ageMs` old, `untilDeadlineMs` before the migration's own limit. Never earlier than that agent
 * would have killed it, and never unbounded: every limit the rule gives is at most the floor or
 * the time left before the migration's deadline at the CRIU's start (memory-move-time.ts), so
 * one past the floor once the deadline has passed is overdue whatever it says.
 * - its environment names the limit (criu-at-work.ts CRIU_TIME_LIMIT_ENV): that, or the bound
 *   above when it is longer (a value no agent of ours gave: the parser takes up to 9e15 ms,
 *   which would leave the shard frozen for good);
 * - its environment names none: an agent from before the limit grew with the memory, 120 s;
 * - its environment could not be read: the limit is unknown, so the bound alone.
 */
export function pastTimeLimit(criu: Pick<CriuAtWork, 'timeLimitMs' | 'environmentUnreadable'>, ageMs: number, untilDeadlineMs: number): boolean {
  if (ageMs > CRIU_TIMEOUT_MS && untilDeadlineMs < 0) return true;
  if (criu.timeLimitMs !== undefined) return ageMs > criu.timeLimitMs;
  return !criu.environmentUnreadable && ageMs > CRIU_TIMEOUT_MS;
}

/** The time limits of CRIUs left running, for a message: `1054 s`, `120 s`, or `unknown`. */
function limitsOf(busy: readonly CriuAtWork[]): string {
  const shown = busy.map((c) => (c.timeLimitMs !== undefined ? `${Math.round(c.timeLimitMs / 1000)} s` : c.environmentUnreadable ? "at most the migration's deadline" : `${CRIU_TIMEOUT_MS / 1000} s`));
  return [...new Set(shown)].join(', ');
}
