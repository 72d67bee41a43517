/**
 * The destination's side of migrations in flight: which shard each incoming migration brings,
 * where its image rounds land, which files arrived intact (size and sha256 checked while they
 * were written), and the capacity it reserved. Decisions only; files are written by the routes.
 * A migration that finished here (commit or abort done, cleanup included) leaves only its outcome,
 * so a long-lived agent does not keep every migration it ever received.
 */
import { join } from 'node:path';
import type { ShardLimits } from '../cgroups/driver';
import type { DesiredShard } from '../reconcile/desired-shard';
import { fits, roomFor, unknownCapacity, type CapacityView } from '../host-capacity';
import { imageSpaceShortfall, systemImageSpace, type ImageSpace } from './image-space';
import { MigrationError } from './migration-error';
import type { StateArrival } from './state-arrival';

export type IncomingState = 'prepared' | 'restored' | 'committed' | 'aborted';

export interface FileReceipt {
  readonly bytes: number;
  readonly sha256: string;
}

export interface IncomingMigration {
  readonly id: string;
  readonly source: string;
  readonly desired: DesiredShard;
  /** `<imagesRoot>/<migration id>`: one sub-directory per image round. */
  readonly dir: string;
  state: IncomingState;
  /** cgroup.procs of the shard's cgroup in every hierarchy (from the keeper's prepareIncoming). */
  procsFiles: readonly string[];
  /** `<round>/<file name>` → what arrived. */
  readonly received: Map<string, FileReceipt>;
  pid?: number;
  /**
   * What prepare checked this host's disk for, reserved until the migration ends: the source's
   * image estimate, and its state directory's archive unless this host sees the source's own.
   */
  diskBytes?: number;
  /** What is in progress (prepare, restore or start): an abort waits for all of it before destroying the copy. */
  settling?: Promise<unknown>;
  /** The first prepare's work: a repeated prepare waits for it rather than making the held cgroup again. */
  preparing?: Promise<unknown>;
  /** The restore or start in flight: a repeated one answers with it rather than restoring twice. */
  restoring?: Promise<unknown>;
  /** When a request for it last came or an upload last moved a byte (`performance.now()`, immune to clock steps). */
  lastHeard: number;
  /** Image files arriving now. */
  uploads: number;
  /**
   * The state archive's unpack on arrival (the latest upload of it): the restore or start waits
   * for it before it unpacks, an abort gives it up before it tidies.
   */
  stateArrival?: StateArrival;
  /** The shard's log files on the source (prepare's `logFiles`): its restored processes hold them open. */
  sourceLogFiles?: { readonly stdout: string; readonly stderr: string };
  /** The source's time limit for the whole migration (prepare's `timeoutSeconds`), when it sent one. */
  timeoutSeconds?: number;
  /** When its prepare came (`performance.now()`): its time limit counts from here on this host (the source's, from before, ends first). */
  readonly preparedAt: number;
  /** Whether prepare found the source's mark in the shard's state directory: this host sees the source's own (state-archive.ts sharedStateMark). */
  sharedStateDirectory?: boolean;
  /** Aborted here because its source went quiet (`abandoned`), not by the source: the sweep retries a failed cleanup. */
  abandoned?: boolean;
}

/** What commit and abort answer from: the shard, the state, the pid (the commit's answer). */
export interface IncomingStatus {
  readonly shardId: string;
  readonly state: IncomingState;
  readonly pid?: number;
}

/** What a migration that finished here answers a retry with, once its entry is dropped: a few dozen bytes, not the entry's few KB. */
export interface IncomingOutcome extends IncomingStatus {
  readonly state: 'committed' | 'aborted';
  /** An abort of a migration this host did not know, not done yet (or failed): a retry does it again. */
  readonly cleanupPending?: boolean;
}

/**
 * Outcomes kept, oldest dropped first. The source retries a commit or abort only until it gets
 * an answer (recovery, every 10 s): a retry that arrives after a thousand other migrations
 * finished here is far beyond any host's pace.
 */
export const KEPT_OUTCOMES = 1024;

function need(limits: ShardLimits): { cpuCores: number; memoryBytes: number } {
  return { cpuCores: limits.cpuCores ?? 0, memoryBytes: limits.memoryBytes ?? 0 };
}

export class IncomingMigrations {
  private readonly migrations = new Map<string, IncomingMigration>();
  private readonly outcomes = new Map<string, IncomingOutcome>();
  /** What the committed migrations whose entries were dropped hold (committedAllocation). */
  private readonly committedDropped = { cpuCores: 0, memoryBytes: 0 };

  constructor(
    private readonly imagesRoot: string,
    private readonly capacity: CapacityView,
    private readonly space: Pick<ImageSpace, 'free'> = systemImageSpace,
  ) {}

  /**
   * For a host whose shards all arrived by migration (the standalone destination server): it
   * offers `capacity`, and holds what the migrations committed here hold.
   */
  static withFixedCapacity(imagesRoot: string, capacity: { cpuCores: number; memoryBytes: number }): IncomingMigrations {
    const incoming: IncomingMigrations = new IncomingMigrations(imagesRoot, { capacity: () => capacity, allocated: () => incoming.committedAllocation() });
    return incoming;
  }

  get(id: string): IncomingMigration | undefined {
    return this.migrations.get(id);
  }

  require(id: string): IncomingMigration {
    const found = this.migrations.get(id);
    if (!found) throw new MigrationError('NOT_FOUND', `no incoming migration ${id} on this host (prepare it first)`);
    return found;
  }

  /**
   * What the migrations arriving here have reserved beyond what allocated() already counts of
   * them (their held cgroups exist only once the keeper made them): a resize must count it too.
   */
  reservedBeyondAllocated(exceptId?: string): { cpuCores: number; memoryBytes: number } {
    let cpuCores = 0;
    let memoryBytes = 0;
    for (const m of this.migrations.values()) {
      if (m.id === exceptId || m.state === 'aborted' || m.state === 'committed') continue;
      // A reservation counts once: allocated() may already count its held cgroup (the keeper
      // creates it after the entry, and refuses a shard it runs, so under this id it is this
      // migration's); only what the entry needs beyond that is added, never less than the entry.
      const counted = this.capacity.allocatedTo?.(m.desired.shardId);
      cpuCores += Math.max(0, need(m.desired.limits).cpuCores - (counted?.cpuCores ?? 0));
      memoryBytes += Math.max(0, need(m.desired.limits).memoryBytes - (counted?.memoryBytes ?? 0));
    }
    return { cpuCores, memoryBytes };
  }

  /** Why this host cannot take `desired` now, or undefined when it can (pure over the capacity view). */
  refusal(desired: DesiredShard, exceptId?: string): string | undefined {
    const room = roomFor(this.capacity, this.reservedBeyondAllocated(exceptId));
    if (!room) return `out of capacity: ${unknownCapacity()}`;
    const wanted = need(desired.limits);
    if (!fits(wanted.cpuCores, room.free.cpuCores, 'cpuCores')) return `out of capacity: ${round(room.free.cpuCores)} cpu cores free, shard ${desired.shardId} needs ${wanted.cpuCores}`;
    if (!fits(wanted.memoryBytes, room.free.memoryBytes, 'memoryBytes')) return `out of capacity: ${room.free.memoryBytes} memory bytes free, shard ${desired.shardId} needs ${wanted.memoryBytes}`;
    return undefined;
  }

  /**
   * Why this host's disk cannot take an image of `imageBytes` and a state archive of
   * `stateBytes` now: the free space under the images directory less what the other migrations
   * arriving here have reserved (conservative: what they already wrote counts twice), or undefined.
   */
  diskRefusal(desired: DesiredShard, imageBytes: number | undefined, stateBytes = 0, exceptId?: string): string | undefined {
    const free = this.space.free(this.imagesRoot);
    let reserved = 0;
    for (const m of this.migrations.values()) {
      if (m.id !== exceptId && m.state !== 'aborted' && m.state !== 'committed') reserved += m.diskBytes ?? 0;
    }
    return imageSpaceShortfall({ dir: this.imagesRoot, free: free === undefined ? undefined : Math.max(0, free - reserved), imageBytes, stateBytes, what: `the image of shard ${desired.shardId}` });
  }

  /**
   * Reserves capacity (and disk, given the image's size) for a new incoming migration; REFUSED
   * with the reason when it does not fit. Idempotent per id while it is prepared; a migration
   * that ended here (or whose abort came first) is never prepared again: a source never re-uses
   * an id, and a prepare that arrives after its abort would hold a cgroup nobody removes.
   * `sharedStateDirectory`: this host sees the source's own state directory (its mark is
   * there), so no archive of it arrives and `stateBytes` takes no disk here.
   */
  prepare(
    id: string,
    source: string,
    desired: DesiredShard,
    sent: Pick<IncomingMigration, 'timeoutSeconds' | 'sourceLogFiles' | 'sharedStateDirectory'> & { imageBytes?: number; stateBytes?: number } = {},
  ): IncomingMigration {
    const { imageBytes, timeoutSeconds, sourceLogFiles, sharedStateDirectory } = sent;
    const existing = this.migrations.get(id);
    const ended = (existing ?? this.outcomes.get(id))?.state;
    // Committed: its shard runs here now, and a prepare again would fail on it and drop what refuses its abort.
    if (ended === 'committed' || ended === 'aborted') throw new MigrationError('INVALID_TRANSITION', `migration ${id} is ${ended} here; it cannot be prepared again`);
    if (existing) {
      if (existing.desired.shardId !== desired.shardId) throw new MigrationError('INVALID_MIGRATION', `migration ${id} already brings shard ${existing.desired.shardId}`);
      return existing;
    }
    for (const m of this.migrations.values()) {
      if (m.desired.shardId === desired.shardId && m.state !== 'aborted' && m.state !== 'committed') {
        throw new MigrationError('REFUSED', `shard ${desired.shardId} is already arriving with migration ${m.id}`);
      }
    }
    // A source that sends no stateBytes (older) counted the state in imageBytes: checked as it was.
    const stateBytes = sharedStateDirectory ? 0 : (sent.stateBytes ?? 0);
    const reason = this.refusal(desired, id) ?? this.diskRefusal(desired, imageBytes, stateBytes, id);
    if (reason) throw new MigrationError('REFUSED', reason);
    const incoming: IncomingMigration = {
      id, source, desired, dir: this.dirOf(id), state: 'prepared', procsFiles: [], received: new Map(), lastHeard: performance.now(), preparedAt: performance.now(), uploads: 0,
      // The figure checked is the one reserved; nothing when nothing was checked (no image size).
      ...(imageBytes !== undefined ? { diskBytes: imageBytes + stateBytes } : {}),
      ...(sharedStateDirectory !== undefined ? { sharedStateDirectory } : {}),
      ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
      ...(sourceLogFiles ? { sourceLogFiles } : {}),
    };
    this.migrations.set(id, incoming);
    return incoming;
  }

  /** A request for `migration` came, or its upload moved: it is not abandoned. */
  heard(migration: IncomingMigration): void {
    migration.lastHeard = performance.now();
  }

  /**
   * Migrations whose source has gone quiet: still `prepared` (nothing restored or started here,
   * so the source cannot have committed), nothing in flight for them (prepare, restore, start,
   * an upload), and no request for `quietMs`; and those the sweep aborted whose cleanup failed.
   */
  abandoned(quietMs: number, now = performance.now()): IncomingMigration[] {
    return [...this.migrations.values()].filter(
      (m) => (m.state === 'aborted' && m.abandoned) || (m.state === 'prepared' && !m.restoring && m.uploads === 0 && now - m.lastHeard > quietLimitMs(m, quietMs)),
    );
  }

  /** Where the image rounds of migration `id` land (also for one this agent forgot when it restarted). */
  dirOf(id: string): string {
    return join(this.imagesRoot, id);
  }

  roundDir(incoming: IncomingMigration, round: number): string {
    return join(incoming.dir, String(round));
  }

  /** Throws IMAGE_MISMATCH-like TRANSFER_FAILED naming the first file of `files` that did not arrive intact. */
  checkComplete(incoming: IncomingMigration, round: number, files: readonly { name: string; bytes: number; sha256: string }[]): void {
    for (const file of files) {
      const got = incoming.received.get(`${round}/${file.name}`);
      if (!got) throw new MigrationError('TRANSFER_FAILED', `round ${round}: image file ${file.name} never arrived`);
      if (got.bytes !== file.bytes || got.sha256 !== file.sha256) {
        throw new MigrationError('TRANSFER_FAILED', `round ${round}: image file ${file.name} arrived as ${got.bytes} bytes sha256 ${got.sha256}, expected ${file.bytes} bytes sha256 ${file.sha256}`);
      }
    }
  }

  /** What shards that arrived here (committed) hold: for a host whose capacity view knows nothing else. */
  committedAllocation(): { cpuCores: number; memoryBytes: number } {
    let { cpuCores, memoryBytes } = this.committedDropped;
    for (const m of this.migrations.values()) {
      if (m.state !== 'committed') continue;
      cpuCores += need(m.desired.limits).cpuCores;
      memoryBytes += need(m.desired.limits).memoryBytes;
    }
    return { cpuCores, memoryBytes };
  }

  /** A prepare that failed: as if it never came. */
  forget(id: string): void {
    this.migrations.delete(id);
  }

  /**
   * The commit or abort of `migration` is done here, cleanup included (an abort waited for what
   * was settling): its entry goes, its outcome stays for retries (KEPT_OUTCOMES). One whose
   * cleanup failed is not finished: its entry stays, and the retry cleans up again.
   */
  finish(migration: IncomingMigration): void {
    const { id, state } = migration;
    if (state !== 'committed' && state !== 'aborted') throw new MigrationError('INVALID_TRANSITION', `migration ${id} is ${state}; only a committed or aborted one can finish`);
    if (this.migrations.get(id) !== migration) return;
    this.migrations.delete(id);
    if (state === 'committed') {
      this.committedDropped.cpuCores += need(migration.desired.limits).cpuCores;
      this.committedDropped.memoryBytes += need(migration.desired.limits).memoryBytes;
    }
    this.remember(id, { shardId: migration.desired.shardId, state, ...(migration.pid !== undefined ? { pid: migration.pid } : {}) });
  }

  /**
   * An abort of a migration this host does not know (never prepared here, or forgotten in a
   * restart) begins: remembered like a finished one from now on, so a prepare that arrives after
   * it (the source's timed out, then the source aborted) is refused instead of holding a cgroup
   * for good. Its cleanup is pending until `unknownAbortDone`.
   */
  abortingUnknown(id: string, shardId: string): void {
    if (this.migrations.has(id)) return;
    this.remember(id, { shardId, state: 'aborted', cleanupPending: true });
  }

  unknownAbortDone(id: string): void {
    const outcome = this.outcomes.get(id);
    if (outcome?.state === 'aborted' && outcome.cleanupPending) this.outcomes.set(id, { shardId: outcome.shardId, state: 'aborted' });
  }

  private remember(id: string, outcome: IncomingOutcome): void {
    this.outcomes.delete(id); // re-inserted last: the newest end
    this.outcomes.set(id, outcome);
    for (const oldest of this.outcomes.keys()) {
      if (this.outcomes.size <= KEPT_OUTCOMES) break;
      this.outcomes.delete(oldest);
    }
  }

  /** Migration `id` as this host knows it: in flight (its entry), or finished (its outcome, while kept). */
  status(id: string): IncomingStatus | undefined {
    const m = this.migrations.get(id);
    return m ? { shardId: m.desired.shardId, state: m.state, ...(m.pid !== undefined ? { pid: m.pid } : {}) } : this.outcomes.get(id);
  }
}

/**
 * How long `migration` may go unheard before it counts as abandoned: `quietMs`, and never less
 * than the source's own time limit (a source quiet that long is past it, since it counts from
 * before the prepare, and aborts at its next step rather than ask for a restore).
 */
export function quietLimitMs(migration: Pick<IncomingMigration, 'timeoutSeconds'>, quietMs: number): number {
  return Math.max(quietMs, (migration.timeoutSeconds ?? 0) * 1000);
}

/**
 * Time left here before `migration`'s own time limit (undefined: its source sent none). It counts
 * from the prepare's arrival, after the source's own start: a restore cut here never ends before
 * the source gives up on it.
 */
export function untilDeadlineMs(migration: Pick<IncomingMigration, 'timeoutSeconds' | 'preparedAt'>, now = performance.now()): number | undefined {
  return migration.timeoutSeconds === undefined ? undefined : migration.preparedAt + migration.timeoutSeconds * 1000 - now;
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}
