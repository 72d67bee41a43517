/**
 * `shardform migrate SHARD --to HOST --agent URL`: asks the agent of the host that runs the
 * shard to migrate it and prints the outcome. Exit 0 when the shard runs on HOST, 1 when the
 * migration aborted (the shard runs where it was; the reason is printed), failed part-way (the
 * agent finishes or undoes it on its own; said so) or the agent refused, 2 for bad flags.
 */
import type { Command } from 'commander';
import { checkId, ShardformError, showValue } from '../../errors';
import { checkMigrationList, checkMigrationSummary, type MigrationSummaryReply as MigrationSummary } from '../../contracts/agent-replies';
import { MAX_MIGRATION_TIMEOUT_SECONDS } from '../../contracts/plan-schema';
import { formatBytes, formatDuration, parseDurationSeconds } from '../../contracts/quantities';
import { EXIT_FAILURE } from '../exit-codes';
import { ExitWith } from '../main';
import { table, type Io } from '../output';
import { AgentRequestError, agentClient, call, type AgentClientFlags } from './agent-client';

export function renderMigration(s: MigrationSummary): string {
  const ms = (v: number | null) => (v === null ? '-' : `${v} ms`);
  if (s.state === 'done') {
    const rounds = s.rounds > 0 ? `, ${s.rounds} pre-copy round(s)${s.preCopyMethod === 'shadow' ? ' (page contents compared: no dirty-page tracking here)' : ''}` : s.preCopySkipped ? ` (pre-copy skipped: ${s.preCopySkipped})` : '';
    const how = s.strategy === 'restart' ? ' by restart (stopped, state directory sent, started)' : '';
    const d = s.downtimeSteps;
    const steps = !d
      ? ''
      : s.strategy === 'restart'
        ? ` (stop ${d.freezeMs}, archive ${d.dumpMs}, transfer ${d.transferMs}, start ${d.restoreMs} ms)`
        : ` (freeze ${d.freezeMs}, dump ${d.dumpMs}${s.streamedBytes ? ` with ${formatBytes(s.streamedBytes)} sent meanwhile` : ''}, transfer ${d.transferMs}, restore ${d.restoreMs} ms${s.lazyPagesMs ? `; then it ran while its memory was filled in, ${s.lazyPagesMs} ms` : ''})`;
    return `shard ${s.shardId} moved ${s.source} -> ${s.destination}${how}: downtime ${ms(s.downtimeMs)}${steps}, total ${ms(s.durationMs)}, ${formatBytes(s.bytesSent)} sent${rounds} (migration ${s.id})`;
  }
  return `shard ${s.shardId} stays on ${s.source}: migration ${s.id} ${s.state}: ${s.abortReason ?? 'no reason recorded'}`;
}

/** `--timeout`: whole seconds in the range a plan's migration.timeoutSeconds (and so a destination's prepare) accepts. */
export function parseMigrationTimeout(value: string): number {
  let seconds: number | undefined;
  try {
    // A bare number is seconds, the unit of the plan's migration.timeoutSeconds.
    seconds = /^\s*\d+\s*$/.test(value) ? Number(value) : parseDurationSeconds(value, '--timeout');
  } catch (error) {
    if (!(error instanceof ShardformError)) throw error;
  }
  if (seconds === undefined || !Number.isInteger(seconds) || seconds < 1 || seconds > MAX_MIGRATION_TIMEOUT_SECONDS)
    throw new ShardformError(
      'INVALID_ARGUMENT',
      '--timeout',
      value,
      `--timeout: ${showValue(value)} is not a migration timeout; use whole seconds from 1s to ${formatDuration(MAX_MIGRATION_TIMEOUT_SECONDS)} (${MAX_MIGRATION_TIMEOUT_SECONDS} s), as a plan's migration.timeoutSeconds, e.g. 90s, 30m or 2h`,
    );
  return seconds;
}

/** How long past the migration's own timeout the CLI waits for the agent's answer (its abort, the summary). */
const ANSWER_MARGIN_SECONDS = 60;

export function registerMigrateCommand(program: Command, io: Io): void {
  program
    .command('migrate')
    .argument('<shard>', 'shard id')
    .requiredOption('--to <host>', 'destination host id')
    .requiredOption('--agent <url>', 'API base URL of the agent on the host that runs the shard')
    .option('--token-file <file>', 'file holding the fleet token (default: $SHARDFORM_TOKEN)')
    .option('--timeout <duration>', "give up and resume the shard where it runs after this long (e.g. 30m, 2h; at most 1d); default: the application's migration timeout in the plan")
    .option('--pre-copy', 'pre-copy memory while the shard runs (when the kernel can track dirty pages)')
    .option('--json', "print the agent's JSON answer")
    .description('migrate a running shard to another host (checkpoint, stream, restore); exit 0 moved, 1 aborted or refused')
    .action(async (shard: string, flags: AgentClientFlags & { to: string; preCopy?: boolean; json?: boolean; timeout?: string }) => {
      const shardId = checkId('<shard>', shard);
      const to = checkId('--to', flags.to);
      const timeoutSeconds = flags.timeout === undefined ? undefined : parseMigrationTimeout(flags.timeout);
      const http = agentClient(flags);
      // The agent answers when the migration is done or aborted, at the latest at its timeout: this
      // one, or the plan's (up to MAX_MIGRATION_TIMEOUT_SECONDS), which the CLI does not know. A
      // shorter wait (it was 15 minutes) reported a failure while a long migration went on.
      http.defaults.timeout = ((timeoutSeconds ?? MAX_MIGRATION_TIMEOUT_SECONDS) + ANSWER_MARGIN_SECONDS) * 1000;
      let summary: MigrationSummary;
      try {
        summary = await call(http, 'POST', '/v1/migrations', checkMigrationSummary, { shardId, to, ...(flags.preCopy ? { preCopy: true } : {}), ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}) });
      } catch (error) {
        if (error instanceof AgentRequestError) {
          io.err(`error: ${error.message}`);
          // A 500 is a migration that failed part-way (e.g. its abort could not reach the destination):
          // the journal holds it, and the source agent's recovery finishes it.
          if (error.status === 500) io.err(`if the migration was journaled, the agent finishes or undoes it on its own (retried every reconcile, 10 s); shardform migrations --agent URL shows where it stands`);
          throw new ExitWith(EXIT_FAILURE);
        }
        throw error;
      }
      io.out(flags.json ? JSON.stringify(summary, null, 2) : renderMigration(summary));
      if (summary.state !== 'done') throw new ExitWith(EXIT_FAILURE);
    });
}

/** What `shardform migrations` shows of a migration still under way or aborted: its reason, cut to fit a line. */
const REASON_CHARS = 100;

export function renderMigrationList(migrations: readonly MigrationSummary[]): string {
  if (migrations.length === 0) return '(no migrations)';
  const ms = (v: number | null) => (v === null ? '-' : `${v} ms`);
  const reason = (s: MigrationSummary) => {
    const text = s.abortReason ?? s.preCopySkipped ?? '';
    return text.length > REASON_CHARS ? `${text.slice(0, REASON_CHARS - 3)}...` : text || '-';
  };
  return table(
    ['MIGRATION', 'SHARD', 'FROM', 'TO', 'STRATEGY', 'STATE', 'STARTED', 'DOWNTIME', 'TOTAL', 'SENT', 'ROUNDS', 'REASON'],
    migrations.map((s) => [
      s.id,
      s.shardId,
      s.source,
      s.destination,
      s.strategy,
      s.state,
      s.startedAt ?? '-',
      ms(s.downtimeMs),
      ms(s.durationMs),
      formatBytes(s.bytesSent),
      String(s.rounds),
      reason(s),
    ]),
  );
}

function parseLimit(value: string): number {
  const limit = /^[0-9]+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(limit) || limit < 1)
    throw new ShardformError('INVALID_ARGUMENT', '--limit', value, `--limit: ${showValue(value)} is not a whole number of migrations of 1 or more`);
  return limit;
}

export function registerMigrationsCommand(program: Command, io: Io): void {
  program
    .command('migrations')
    .requiredOption('--agent <url>', 'API base URL of any agent of the fleet (the journal is the fleet\'s)')
    .option('--token-file <file>', 'file holding the fleet token (default: $SHARDFORM_TOKEN)')
    .option('--shard <id>', 'only the migrations of this shard')
    .option('--limit <n>', 'at most this many, newest first', '20')
    .option('--json', 'print the migrations as JSON')
    .description('list the fleet\'s migrations, newest first: done, aborted, and those still under way with the step they reached')
    .action(async (flags: AgentClientFlags & { shard?: string; limit: string; json?: boolean }) => {
      const shardId = flags.shard === undefined ? undefined : checkId('--shard', flags.shard);
      const limit = parseLimit(flags.limit);
      let reply;
      try {
        reply = await call(agentClient(flags), 'GET', '/v1/migrations', checkMigrationList);
      } catch (error) {
        if (!(error instanceof AgentRequestError)) throw error;
        io.err(`error: ${error.message}`);
        throw new ExitWith(EXIT_FAILURE);
      }
      const shown = reply.migrations.filter((m) => shardId === undefined || m.shardId === shardId).slice(0, limit);
      io.out(flags.json ? JSON.stringify({ migrations: shown }, null, 2) : renderMigrationList(shown));
    });
}
