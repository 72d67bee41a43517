/**
 * Drives one migration through the state table: journal the next state (CAS), then take its
 * step. A failed step before `committed` aborts (destroy the destination copy, resume the
 * source); from `committed` on, a failed step leaves the record where it is for recovery to
 * roll forward. `recover` is "load the journal and continue" for an agent that restarted.
 * Decisions are the pure functions of migration-record.ts and pre-copy-policy.ts.
 */
import type { TxnOp } from '../../src/store/store';
import { MigrationError } from './migration-error';
import type { MigrationEffects } from './migration-effects';
import { MigrationJournal, type JournalEntry } from './migration-journal';
import { abortRecord, advance, cleanupOnlyElsewhere, deadlineOf, planMigration, recoveryAction, type MigrationRecord, type NewMigration } from './migration-record';
import { isCommitted, type MigrationState } from './migration-state';
import { DEFAULT_PRECOPY_LIMITS, nextPreCopyStep, type PreCopyLimits } from './pre-copy-policy';

export interface MigrationDriverOptions {
  journal: MigrationJournal;
  effects: MigrationEffects;
  /** Injected clock (ISO 8601 strings in the journal). */
  now?: () => Date;
  preCopyLimits?: PreCopyLimits;
  /**
   * Store writes that belong to the commit, made in the same transaction as the `committed`
   * journal record (the agent moves the shard's assignment to the destination, so from that
   * revision on the destination's reconcile keeps the shard and the source's does not re-create it).
   */
  commitWrites?: (record: MigrationRecord) => Promise<readonly TxnOp[]>;
}

/** States whose step stops the source (or follows one that did) and precede any restore. */
const STOPPED_BEFORE_RESTORE: ReadonlySet<MigrationState> = new Set(['frozen', 'dumped', 'transferred']);

/** Upper bound on journal writes of one run: every state once, plus pre-copy rounds, plus abort. */
const MAX_STEPS = 32;

export class MigrationDriver {
  private readonly journal: MigrationJournal;
  private readonly effects: MigrationEffects;
  private readonly now: () => Date;
  private readonly limits: PreCopyLimits;
  private readonly commitWrites: (record: MigrationRecord) => Promise<readonly TxnOp[]>;
  /** `<fleet>/<shard>` of the migrations this driver is starting or running (claimed before the first await). */
  private readonly migrating = new Set<string>();

  constructor(opts: MigrationDriverOptions) {
    this.journal = opts.journal;
    this.effects = opts.effects;
    this.now = opts.now ?? (() => new Date());
    this.limits = opts.preCopyLimits ?? DEFAULT_PRECOPY_LIMITS;
    this.commitWrites = opts.commitWrites ?? (async () => []);
  }

  private at(): string {
    return this.now().toISOString();
  }

  /**
   * Plans, journals and runs a migration to `done` or `aborted`; resolves to the final record.
   * REFUSED while another migration of the same shard is unfinished (running here, or in the
   * journal with its commit, release or abort cleanup pending): two migrations of one shard
   * would thaw or kill each other's copies (the second one's abort resumes the source the first
   * froze, and its `abort` at the destination discards the first one's shard there). The one
   * exception: an aborted migration whose source runs again and which only waits to clean up
   * another destination than this one's (`cleanupOnlyElsewhere`).
   */
  async migrate(input: NewMigration): Promise<MigrationRecord> {
    const shard = `${input.fleet}/${input.shardId}`;
    if (this.migrating.has(shard)) throw new MigrationError('REFUSED', `shard ${input.shardId} is already migrating`);
    this.migrating.add(shard);
    try {
      const { unfinished, unreadable } = await this.journal.scan(input.fleet);
      const busy = unfinished.find((e) => e.record.shardId === input.shardId && !cleanupOnlyElsewhere(e.record, input.destination));
      if (busy) {
        throw new MigrationError('REFUSED', `shard ${input.shardId} is still in migration ${busy.record.id} (${busy.record.state}${busy.record.abort ? `, cleanup ${busy.record.abort.cleanup}` : ''}); try again once it finished`);
      }
      // A record that does not read may be a migration of this shard in flight: whether its source
      // is frozen or its copy runs elsewhere is unknown, so a human decides, not a second migration.
      // One whose shard does not read either (cut short, not JSON) may be of any shard: every new
      // migration waits for it, while recovery and the other listings go on without it.
      const unknown = unreadable.find((u) => u.shardId === input.shardId) ?? unreadable.find((u) => u.shardId === undefined);
      if (unknown) {
        const names = unknown.shardId === undefined ? 'may be a migration of' : 'is named by';
        throw new MigrationError('REFUSED', `shard ${input.shardId} ${names} the unreadable journal record ${unknown.key} (${unknown.reason}); fix or delete that key, then try again`);
      }
      const entry = await this.journal.create(planMigration(input, this.at()));
      return await this.runForward(entry);
    } finally {
      this.migrating.delete(shard);
    }
  }

  /** Continues a migration found in the journal (agent restart): abort before commit, roll forward after. */
  async recover(entry: JournalEntry): Promise<MigrationRecord> {
    const action = recoveryAction(entry.record);
    switch (action.kind) {
      case 'nothing':
        return entry.record;
      case 'abort':
        return this.abort(entry, action.reason);
      case 'finish-abort':
        return this.cleanUpAbort(entry);
      case 'roll-forward':
        return this.rollForward(entry);
    }
  }

  /** Recovers every unfinished migration of a fleet, one after the other; returns the final records. */
  async recoverAll(fleet: string): Promise<MigrationRecord[]> {
    const results: MigrationRecord[] = [];
    for (const entry of await this.journal.unfinished(fleet)) results.push(await this.recover(entry));
    return results;
  }

  private async runForward(start: JournalEntry): Promise<MigrationRecord> {
    let entry = start;
    for (let step = 0; step < MAX_STEPS; step += 1) {
      const record = entry.record;
      if (isCommitted(record.state)) return this.rollForward(entry);
      if (this.now().getTime() > deadlineOf(record)) {
        return this.abort(entry, `timed out after ${record.timeoutSeconds} s in state ${record.state}`);
      }
      let next: { to: MigrationState; changes?: Partial<MigrationRecord> };
      try {
        next = await this.takeStep(record);
      } catch (error) {
        if (error instanceof MigrationError && error.code === 'JOURNAL_CONFLICT') throw error;
        return this.abort(entry, `${record.state}: ${(error as Error).message}`);
      }
      // Journal the next state BEFORE its step is taken (the next iteration takes it).
      const nextRecord = advance(record, next.to, this.at(), next.changes);
      let alongside: readonly TxnOp[] = [];
      if (next.to === 'committed') {
        try {
          alongside = await this.commitWrites(nextRecord);
        } catch (error) {
          return this.abort(entry, `committing: ${(error as Error).message}`);
        }
      }
      entry = await this.saveOrResume(entry, nextRecord, alongside);
    }
    return this.abort(entry, `did not finish within ${MAX_STEPS} steps`);
  }

  /** Takes the step of the recorded state and decides the next one (before commit). */
  private async takeStep(record: MigrationRecord): Promise<{ to: MigrationState; changes?: Partial<MigrationRecord> }> {
    switch (record.state) {
      case 'planned':
        return { to: 'prepared' };
      case 'prepared': {
        await this.effects.prepare(record);
        if (!record.preCopy) return { to: 'frozen' };
        const support = await this.effects.preCopySupport(record);
        return support.ok ? { to: 'pre-copy', changes: { preCopyMethod: support.method } } : { to: 'frozen', changes: { preCopySkipped: support.reason } };
      }
      case 'pre-copy': {
        const round = record.rounds.length + 1;
        const { bytes } = await this.effects.preCopyRound(record, round);
        const rounds = [...record.rounds, { round, bytes }];
        return { to: nextPreCopyStep(rounds, this.limits).next, changes: { rounds } };
      }
      case 'frozen':
        await this.effects.freeze(record);
        return { to: 'dumped' };
      case 'dumped': {
        const { bytes, streamedBytes } = await this.effects.dump(record);
        return { to: 'transferred', changes: { finalBytes: bytes, ...(streamedBytes ? { streamedBytes } : {}) } };
      }
      case 'transferred': {
        const { bytes } = await this.effects.transfer(record);
        const preCopied = record.rounds.reduce((sum, r) => sum + r.bytes, 0);
        return { to: 'restored', changes: { bytesSent: preCopied + bytes } };
      }
      case 'restored': {
        const report = await this.effects.restore(record);
        // The destination runs the shard: this write is the commit.
        return { to: 'committed', changes: report && report.lazyPagesMs > 0 ? { lazyPagesMs: report.lazyPagesMs } : {} };
      }
      default:
        throw new MigrationError('INVALID_TRANSITION', `migration ${record.id}: no forward step from ${record.state}`);
    }
  }

  private async rollForward(start: JournalEntry): Promise<MigrationRecord> {
    let entry = start;
    if (entry.record.state === 'committed') {
      entry = await this.journal.save(entry, advance(entry.record, 'released', this.at(), { release: 'pending' }));
    }
    if (entry.record.state === 'released') {
      await this.effects.releaseSource(entry.record);
      entry = await this.journal.save(entry, advance(entry.record, 'done', this.at(), { release: 'complete' }));
      this.effects.finished(entry.record);
    }
    return entry.record;
  }

  private async abort(entry: JournalEntry, reason: string): Promise<MigrationRecord> {
    const aborted = await this.saveOrResume(entry, abortRecord(entry.record, reason, this.at()));
    return this.cleanUpAbort(aborted);
  }

  /**
   * Saves the next record. When the journal cannot be written (the store away: a lock held past
   * its busy timeout, etcd unreachable) while the source is stopped and no restore was asked
   * for, the source resumes at once instead of staying frozen for as long as the store is away
   * (the crash campaign measured 8.7 s frozen behind an 8.3 s store lock). The record stays as
   * it was, so recovery, retried on the agent's timer, aborts it later and resumes again
   * (idempotent). From `restored` on, never: the destination may run the shard.
   */
  private async saveOrResume(entry: JournalEntry, next: MigrationRecord, alongside?: readonly TxnOp[]): Promise<JournalEntry> {
    try {
      return await this.journal.save(entry, next, alongside);
    } catch (error) {
      const conflict = error instanceof MigrationError && error.code === 'JOURNAL_CONFLICT';
      if (!conflict && STOPPED_BEFORE_RESTORE.has(entry.record.state)) {
        await this.effects.resumeSource(entry.record).catch((resumeError: unknown) => {
          // Said with the error this run ends with: the shard stays stopped until recovery.
          if (error instanceof Error) error.message += `; resuming the source meanwhile failed too, recovery retries: ${(resumeError as Error).message}`;
        });
      }
      throw error;
    }
  }

  /**
   * Never two running copies: once a restore may have been asked for (`restored`), the
   * destination copy must be destroyed before the source resumes. Before that the destination
   * never ran the shard, so the source resumes first (shorter downtime) and the destination's
   * leftovers are removed after; if that fails, cleanup stays pending for recovery to retry.
   */
  private async cleanUpAbort(entry: JournalEntry): Promise<MigrationRecord> {
    const record = entry.record;
    if (record.state !== 'aborted' || !record.abort) throw new MigrationError('INVALID_TRANSITION', `migration ${record.id} is not aborted`);
    const from = record.abort.from;
    if (from === 'restored') {
      await this.effects.destroyDestination(record);
      await this.effects.resumeSource(record);
    } else {
      if (!record.abort.sourceResumed) {
        await this.effects.resumeSource(record);
        if (from !== 'planned') entry = await this.journal.save(entry, { ...record, abort: { ...record.abort, sourceResumed: true } });
      }
      if (from !== 'planned') await this.effects.destroyDestination(entry.record);
    }
    const done = await this.journal.save(entry, { ...entry.record, abort: { ...entry.record.abort!, cleanup: 'complete' } });
    this.effects.finished(done.record);
    return done.record;
  }
}
