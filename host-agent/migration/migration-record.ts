/**
 * One migration as the journal keeps it (`/fleet/<fleet>/migrations/<id>` in the store while in
 * flight, then in its history: migration-journal.ts), and the pure functions that move it from
 * state to state. Time is passed in (`at`): nothing here reads a clock, so tests and recovery
 * are exact.
 */
import { canTransition, isCommitted, isMigrationState, MIGRATION_STATES, type MigrationState } from './migration-state';
import { MigrationError } from './migration-error';

export type PreCopyMethod = 'criu' | 'shadow';

export interface PreCopyRound {
  readonly round: number;
  /** Bytes of the pages this round wrote (what was dirty since the previous round). */
  readonly bytes: number;
}

export interface MigrationRecord {
  readonly id: string;
  readonly fleet: string;
  readonly shardId: string;
  readonly applicationId: string;
  readonly source: string;
  readonly destination: string;
  readonly strategy: 'checkpoint' | 'restart';
  /** Pre-copy was asked for (the plan's application.migration.preCopy). */
  readonly preCopy: boolean;
  /** Give up (abort) when the migration has not committed this long after it was planned. */
  readonly timeoutSeconds: number;
  readonly state: MigrationState;
  /** Every state entered, in order, with when (ISO 8601). */
  readonly history: readonly { readonly state: MigrationState; readonly at: string }[];
  readonly rounds: readonly PreCopyRound[];
  /** Why pre-copy did not run although asked for (e.g. no way to read the shard's memory). */
  readonly preCopySkipped?: string;
  /**
   * How pre-copy finds the pages that changed between rounds: `criu` pre-dumps with the
   * kernel's dirty-page tracking (soft-dirty); `shadow` compares page contents with the last
   * round (memory-shadow.ts) where the kernel cannot track them.
   */
  readonly preCopyMethod?: PreCopyMethod;
  /** Bytes of the final image (sent after the freeze). */
  readonly finalBytes?: number;
  /**
   * Bytes of the final image already on their way to the destination when CRIU's dump ended
   * (its pages sent while CRIU wrote them: dump-streamer.ts); set with `transferred`.
   */
  readonly streamedBytes?: number;
  /** Total bytes sent: pre-copy rounds plus the final image. */
  readonly bytesSent?: number;
  /**
   * How long the shard already ran on the destination, its memory filled lazily behind it,
   * before the destination answered the restore (set with `committed`): part of the restore
   * step, not of the downtime.
   */
  readonly lazyPagesMs?: number;
  readonly abort?: {
    readonly reason: string;
    /** The state the migration was in when it aborted. */
    readonly from: MigrationState;
    /** `pending` until the destination copy is destroyed and the source resumed. */
    readonly cleanup: 'pending' | 'complete';
    /**
     * Set once the source runs again (journaled before the destination is cleaned up, when that
     * comes second): a retried cleanup must not resume a source that a later migration of the
     * shard (to another host) may have frozen since.
     */
    readonly sourceResumed?: true;
  };
  /** `pending` until the source is killed and its cgroup removed (set with `released`). */
  readonly release?: 'pending' | 'complete';
}

export interface NewMigration {
  id: string;
  fleet: string;
  shardId: string;
  applicationId: string;
  source: string;
  destination: string;
  strategy?: 'checkpoint' | 'restart';
  preCopy?: boolean;
  timeoutSeconds?: number;
}

export function planMigration(input: NewMigration, at: string): MigrationRecord {
  if (input.source === input.destination) {
    throw new MigrationError('INVALID_MIGRATION', `shard ${input.shardId}: source and destination are the same host (${input.source})`);
  }
  return {
    id: input.id,
    fleet: input.fleet,
    shardId: input.shardId,
    applicationId: input.applicationId,
    source: input.source,
    destination: input.destination,
    strategy: input.strategy ?? 'checkpoint',
    preCopy: input.preCopy ?? false,
    timeoutSeconds: input.timeoutSeconds ?? 300,
    state: 'planned',
    history: [{ state: 'planned', at }],
    rounds: [],
  };
}

/** The record in state `to`, or INVALID_TRANSITION when the table does not allow it. */
export function advance(record: MigrationRecord, to: MigrationState, at: string, changes: Partial<MigrationRecord> = {}): MigrationRecord {
  if (!canTransition(record.state, to)) {
    throw new MigrationError('INVALID_TRANSITION', `migration ${record.id}: ${record.state} → ${to} is not allowed`);
  }
  return { ...record, ...changes, state: to, history: [...record.history, { state: to, at }] };
}

/** The record aborted with cleanup pending; refused once committed (it can only roll forward). */
export function abortRecord(record: MigrationRecord, reason: string, at: string): MigrationRecord {
  if (isCommitted(record.state)) {
    throw new MigrationError('INVALID_TRANSITION', `migration ${record.id} is ${record.state}: it can only roll forward, not abort (${reason})`);
  }
  if (record.state === 'aborted') return record;
  return advance(record, 'aborted', at, { abort: { reason, from: record.state, cleanup: 'pending' } });
}

/** What recovery does with a record loaded from the journal (pure). */
export type RecoveryAction =
  | { kind: 'nothing' } // finished: done, or aborted and cleaned up
  | { kind: 'abort'; reason: string } // before committed: undo
  | { kind: 'finish-abort' } // aborted, cleanup pending: redo cleanup (idempotent)
  | { kind: 'roll-forward' }; // committed or released: release the source, then done

export function recoveryAction(record: MigrationRecord): RecoveryAction {
  switch (record.state) {
    case 'done':
      return { kind: 'nothing' };
    case 'aborted':
      return record.abort?.cleanup === 'complete' ? { kind: 'nothing' } : { kind: 'finish-abort' };
    case 'committed':
    case 'released':
      return { kind: 'roll-forward' };
    default:
      return { kind: 'abort', reason: `recovered in state ${record.state} before commit` };
  }
}

/**
 * An aborted migration whose source already runs again and whose only unfinished business is
 * destroying its copy on a host other than `destination`: it does not stand in the way of a new
 * migration of the shard to `destination` (its retries touch only that other host). Without
 * this, a destination host that died for good would pin the shard where it is.
 */
export function cleanupOnlyElsewhere(record: MigrationRecord, destination: string): boolean {
  return record.state === 'aborted' && record.abort?.sourceResumed === true && record.destination !== destination;
}

/** When the migration first entered `state`, in ms since the epoch. */
export function enteredAt(record: MigrationRecord, state: MigrationState): number | undefined {
  const at = record.history.find((h) => h.state === state)?.at;
  return at === undefined ? undefined : Date.parse(at);
}

/**
 * When `record` runs out of its own time limit (`timeoutSeconds` after it was planned), ms since
 * the epoch by the source's clock; a record without its planned time is already past it.
 */
export function deadlineOf(record: MigrationRecord): number {
  return (enteredAt(record, 'planned') ?? 0) + record.timeoutSeconds * 1000;
}

/**
 * Downtime: frozen on the source → running on the destination. The restore finishes just
 * before `committed` is written, so that write's time closes the window, less the time the shard
 * already ran there while its memory was filled lazily (the destination's own measure, at most
 * the restore step: an answer that says more is not believed past it).
 */
export function downtimeMs(record: MigrationRecord): number | undefined {
  const frozen = enteredAt(record, 'frozen');
  const committed = enteredAt(record, 'committed');
  if (frozen === undefined || committed === undefined) return undefined;
  return committed - frozen - lazyFill(record, committed);
}

/** The lazy fill that counts: within the restore step (restored → committed), 0 without one. */
function lazyFill(record: MigrationRecord, committed: number): number {
  const restored = enteredAt(record, 'restored');
  const lazy = record.lazyPagesMs ?? 0;
  return restored === undefined ? 0 : Math.max(0, Math.min(lazy, committed - restored));
}

/**
 * Where the downtime went, step by step (each from its journal entry to the next): freezing
 * (stopping, for `restart`), dumping (archiving the state directory), transferring, restoring
 * (starting). With shadow pre-copy the comparison with the shadow runs inside the dump step.
 * Undefined until the migration committed.
 */
export interface DowntimeSteps {
  readonly freezeMs: number;
  readonly dumpMs: number;
  readonly transferMs: number;
  readonly restoreMs: number;
}

/** The same, keyed by step name (log lines, metric labels, the benchmark's JSON). */
export function downtimeStepsByName(steps: DowntimeSteps): { freeze: number; dump: number; transfer: number; restore: number } {
  return { freeze: steps.freezeMs, dump: steps.dumpMs, transfer: steps.transferMs, restore: steps.restoreMs };
}

export function downtimeSteps(record: MigrationRecord): DowntimeSteps | undefined {
  const at = (['frozen', 'dumped', 'transferred', 'restored', 'committed'] as const).map((state) => enteredAt(record, state));
  if (at.some((t) => t === undefined)) return undefined;
  const [frozen, dumped, transferred, restored, committed] = at as [number, number, number, number, number];
  return { freezeMs: dumped - frozen, dumpMs: transferred - dumped, transferMs: restored - transferred, restoreMs: committed - restored - lazyFill(record, committed) };
}

/** Planned → done (or → aborted). */
export function durationMs(record: MigrationRecord): number | undefined {
  const start = enteredAt(record, 'planned');
  const end = enteredAt(record, 'done') ?? enteredAt(record, 'aborted');
  return start === undefined || end === undefined ? undefined : end - start;
}

/**
 * Why `value` (a journal record as parsed from JSON) is not a MigrationRecord this version can
 * act on, naming the field and its value; undefined when it is one. The journal is outside
 * input (an operator's hand edit, a write cut short, a newer agent's format): checked once
 * where it is read, so the driver and recovery trust what they get. Only the fields they use
 * are checked; unknown fields are left alone.
 */
export function migrationRecordProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return `the record is ${show(value)}, not an object`;
  const r = value as Record<string, unknown>;
  for (const field of ['id', 'fleet', 'shardId', 'applicationId', 'source', 'destination'] as const) {
    if (typeof r[field] !== 'string' || r[field] === '') return `${field} is ${show(r[field])}, not a non-empty string`;
  }
  if (!isMigrationState(r.state)) return `state is ${show(r.state)}, not one of ${MIGRATION_STATES.join(', ')}`;
  if (r.strategy !== 'checkpoint' && r.strategy !== 'restart') return `strategy is ${show(r.strategy)}, not checkpoint or restart`;
  if (typeof r.preCopy !== 'boolean') return `preCopy is ${show(r.preCopy)}, not true or false`;
  if (typeof r.timeoutSeconds !== 'number' || !Number.isFinite(r.timeoutSeconds) || r.timeoutSeconds < 0) return `timeoutSeconds is ${show(r.timeoutSeconds)}, not a number of seconds >= 0`;
  if (!Array.isArray(r.history) || r.history.length === 0) return `history is ${show(r.history)}, not a non-empty list of states entered`;
  for (const [i, h] of (r.history as unknown[]).entries()) {
    const step = h as { state?: unknown; at?: unknown } | null;
    if (typeof step !== 'object' || step === null || !isMigrationState(step.state)) return `history[${i}].state is ${show(step?.state)}, not a migration state`;
    if (typeof step.at !== 'string' || Number.isNaN(Date.parse(step.at))) return `history[${i}].at is ${show(step.at)}, not an ISO 8601 time`;
  }
  if (!Array.isArray(r.rounds)) return `rounds is ${show(r.rounds)}, not a list`;
  if (r.lazyPagesMs !== undefined && (typeof r.lazyPagesMs !== 'number' || !Number.isFinite(r.lazyPagesMs) || r.lazyPagesMs < 0)) return `lazyPagesMs is ${show(r.lazyPagesMs)}, not a number of milliseconds >= 0`;
  if (r.streamedBytes !== undefined && !(Number.isSafeInteger(r.streamedBytes) && (r.streamedBytes as number) >= 0)) return `streamedBytes is ${show(r.streamedBytes)}, not a number of bytes >= 0`;
  if (r.abort !== undefined) {
    const a = r.abort as { reason?: unknown; from?: unknown; cleanup?: unknown } | null;
    if (typeof a !== 'object' || a === null) return `abort is ${show(r.abort)}, not an object`;
    if (a.cleanup !== 'pending' && a.cleanup !== 'complete') return `abort.cleanup is ${show(a.cleanup)}, not pending or complete`;
    if (!isMigrationState(a.from)) return `abort.from is ${show(a.from)}, not a migration state`;
  }
  if (r.state === 'aborted' && r.abort === undefined) return 'state is "aborted" but abort is missing (cleanup unknown)';
  return undefined;
}

/** A value as a message shows it: JSON, cut to 80 characters (a record can hold kilobytes). */
function show(value: unknown): string {
  const text = value === undefined ? 'missing' : JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
