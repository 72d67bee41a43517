import { MigrationError } from '../../../host-agent/migration/migration-error';
import { abortRecord, advance, downtimeMs, downtimeSteps, planMigration, recoveryAction } from '../../../host-agent/migration/migration-record';
import { MIGRATION_STATES, TRANSITIONS, canTransition, isCommitted } from '../../../host-agent/migration/migration-state';
import { nextPreCopyStep } from '../../../host-agent/migration/pre-copy-policy';

const AT = '2026-11-25T05:00:00.000Z';
import { recordIn } from '../../helpers/migration-fakes';

const base = () => planMigration({ id: 'm1', fleet: 'f', shardId: 'web-0', applicationId: 'web', source: 'host-1', destination: 'host-2' }, AT);

describe('migration state table', () => {
  it('names the protocol of DESIGN.md in order, with aborted', () => {
    expect(MIGRATION_STATES).toEqual(['planned', 'prepared', 'pre-copy', 'frozen', 'dumped', 'transferred', 'restored', 'committed', 'released', 'done', 'aborted']);
  });

  const pairs = MIGRATION_STATES.flatMap((from) => MIGRATION_STATES.map((to) => [from, to] as const));
  it.each(pairs.filter(([from, to]) => canTransition(from, to)))('allows %s → %s', (from, to) => {
    const record = { ...recordIn(from === 'aborted' ? 'planned' : from), state: from };
    expect(advance(record, to, AT).state).toBe(to);
  });

  it.each(pairs.filter(([from, to]) => !canTransition(from, to)))('refuses %s → %s', (from, to) => {
    const record = { ...base(), state: from };
    expect(() => advance(record, to, AT)).toThrow(new MigrationError('INVALID_TRANSITION', `migration m1: ${from} → ${to} is not allowed`));
  });

  it('allows abort from every state before committed and from none after', () => {
    for (const state of MIGRATION_STATES) {
      const allowed = TRANSITIONS[state].includes('aborted');
      expect([state, allowed]).toEqual([state, !isCommitted(state) && state !== 'aborted']);
    }
  });

  it('refuses to abort a committed migration: it can only roll forward', () => {
    expect(() => abortRecord(recordIn('committed'), 'late failure', AT)).toThrow('migration m1 is committed: it can only roll forward, not abort (late failure)');
  });

  it('refuses a migration to the host the shard is on', () => {
    expect(() => planMigration({ id: 'm', fleet: 'f', shardId: 's', applicationId: 'a', source: 'h', destination: 'h' }, AT)).toThrow(
      'shard s: source and destination are the same host (h)',
    );
  });

  it('measures downtime from frozen to committed, and where it went step by step', () => {
    let record = advance(advance(base(), 'prepared', AT), 'frozen', '2026-11-25T05:00:01.000Z');
    record = advance(record, 'dumped', '2026-11-25T05:00:01.004Z');
    record = advance(record, 'transferred', '2026-11-25T05:00:01.180Z');
    record = advance(record, 'restored', '2026-11-25T05:00:01.530Z');
    expect(downtimeMs(record)).toBeUndefined();
    expect(downtimeSteps(record)).toBeUndefined();
    const committed = advance(record, 'committed', '2026-11-25T05:00:01.750Z');
    expect(downtimeMs(committed)).toBe(750);
    expect(downtimeSteps(committed)).toEqual({ freezeMs: 4, dumpMs: 176, transferMs: 350, restoreMs: 220 });
  });

  it('leaves out of the downtime the time the shard already ran on the destination while its memory was filled lazily, never more than the restore step', () => {
    let record = advance(advance(base(), 'prepared', AT), 'frozen', '2026-11-25T05:00:01.000Z');
    record = advance(record, 'dumped', '2026-11-25T05:00:01.004Z');
    record = advance(record, 'transferred', '2026-11-25T05:00:01.180Z');
    record = advance(record, 'restored', '2026-11-25T05:00:01.530Z');
    const committed = advance(record, 'committed', '2026-11-25T05:00:01.750Z', { lazyPagesMs: 170 });
    expect(downtimeMs(committed)).toBe(580);
    expect(downtimeSteps(committed)).toEqual({ freezeMs: 4, dumpMs: 176, transferMs: 350, restoreMs: 50 });
    // A destination that claims more than the whole restore step took is believed up to it.
    const overclaimed = advance(record, 'committed', '2026-11-25T05:00:01.750Z', { lazyPagesMs: 5000 });
    expect(downtimeMs(overclaimed)).toBe(530);
    expect(downtimeSteps(overclaimed)?.restoreMs).toBe(0);
  });
});

describe('recovery decision', () => {
  it.each([
    ['planned', 'abort'],
    ['prepared', 'abort'],
    ['pre-copy', 'abort'],
    ['frozen', 'abort'],
    ['dumped', 'abort'],
    ['transferred', 'abort'],
    ['restored', 'abort'],
    ['committed', 'roll-forward'],
    ['released', 'roll-forward'],
    ['done', 'nothing'],
    ['aborted', 'finish-abort'],
  ] as const)('a migration recovered in %s does %s', (state, kind) => {
    expect(recoveryAction(recordIn(state)).kind).toBe(kind);
  });

  it('an aborted migration whose cleanup completed needs nothing', () => {
    const record = recordIn('aborted');
    expect(recoveryAction({ ...record, abort: { ...record.abort!, cleanup: 'complete' } })).toEqual({ kind: 'nothing' });
  });
});

describe('pre-copy stop condition', () => {
  const MiB = 1 << 20;
  it('always takes a first round', () => {
    expect(nextPreCopyStep([])).toEqual({ next: 'pre-copy' });
  });
  it('goes on while the dirty set shrinks', () => {
    expect(nextPreCopyStep([{ round: 1, bytes: 256 * MiB }, { round: 2, bytes: 40 * MiB }])).toEqual({ next: 'pre-copy' });
  });
  it('freezes when a round did not shrink by the minimum', () => {
    expect(nextPreCopyStep([{ round: 1, bytes: 100 * MiB }, { round: 2, bytes: 90 * MiB }])).toEqual({
      next: 'frozen',
      why: `round 2 (${90 * MiB} bytes) did not shrink by 20% from round 1 (${100 * MiB} bytes)`,
    });
  });
  it('freezes when the last round was small enough', () => {
    expect(nextPreCopyStep([{ round: 1, bytes: 3 * MiB }]).next).toBe('frozen');
  });
  it('freezes after the maximum number of rounds', () => {
    const rounds = [500, 250, 125, 60, 30].map((m, i) => ({ round: i + 1, bytes: m * MiB }));
    expect(nextPreCopyStep(rounds)).toEqual({ next: 'frozen', why: 'reached 5 rounds' });
  });
});
