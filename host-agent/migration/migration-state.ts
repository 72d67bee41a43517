/**
 * The migration protocol of DESIGN.md as an explicit table: every state a migration can be
 * in and the states it may go to next. A state is written to the journal BEFORE its step is
 * taken, so a recorded state means "this step may have started, and may be half done".
 *
 *   planned → prepared → (pre-copy)* → frozen → dumped → transferred → restored → committed → released → done
 *   any state before committed → aborted
 *
 * `committed` is the point of no return: before it, recovery aborts (destroy the destination
 * copy, resume the source); from it on, recovery rolls forward (release the source).
 */

export const MIGRATION_STATES = [
  'planned', // recorded by whoever starts the migration; nothing happened yet
  'prepared', // destination reserves capacity and creates the shard's cgroup with the same limits
  'pre-copy', // one iterative pre-dump round while the shard runs (repeats)
  'frozen', // source shard frozen (cgroup freezer)
  'dumped', // final dump; the source tree is left stopped, not killed
  'transferred', // the image is streamed to the destination and verified (sha256)
  'restored', // destination restores the image into its cgroup and it runs
  'committed', // the journal says: the destination owns the shard
  'released', // source killed, its cgroup removed, capacity freed
  'done', // terminal
  'aborted', // terminal after cleanup: destination copy destroyed, source resumed
] as const;

export type MigrationState = (typeof MIGRATION_STATES)[number];

export const TRANSITIONS: Readonly<Record<MigrationState, readonly MigrationState[]>> = {
  planned: ['prepared', 'aborted'],
  prepared: ['pre-copy', 'frozen', 'aborted'],
  'pre-copy': ['pre-copy', 'frozen', 'aborted'],
  frozen: ['dumped', 'aborted'],
  dumped: ['transferred', 'aborted'],
  transferred: ['restored', 'aborted'],
  restored: ['committed', 'aborted'],
  committed: ['released'],
  released: ['done'],
  done: [],
  aborted: [],
};

export function canTransition(from: MigrationState, to: MigrationState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** True from `committed` on: the destination owns the shard and recovery rolls forward. */
export function isCommitted(state: MigrationState): boolean {
  return state === 'committed' || state === 'released' || state === 'done';
}

export function isTerminal(state: MigrationState): boolean {
  return TRANSITIONS[state].length === 0;
}

export function isMigrationState(value: unknown): value is MigrationState {
  return typeof value === 'string' && (MIGRATION_STATES as readonly string[]).includes(value);
}
