/**
 * `shardform migrate SHARD --to HOST --agent URL`: asks the agent of the host that runs the
 * shard to migrate it and prints the outcome. Exit 0 when the shard runs on HOST, 1 when the
 * migration aborted (the shard runs where it was; the reason is printed), failed part-way (the
 * agent finishes or undoes it on its own; said so) or the agent refused, 2 for bad flags.
 */
import type { Command } from 'commander';
import { checkId } from '../../errors';
import { checkMigrationSummary, type MigrationSummaryReply as MigrationSummary } from '../../contracts/agent-replies';
import { formatBytes } from '../../contracts/quantities';
import { EXIT_FAILURE } from '../exit-codes';
import { ExitWith } from '../main';
import type { Io } from '../output';
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
        : ` (freeze ${d.freezeMs}, dump ${d.dumpMs}, transfer ${d.transferMs}, restore ${d.restoreMs} ms)`;
    return `shard ${s.shardId} moved ${s.source} -> ${s.destination}${how}: downtime ${ms(s.downtimeMs)}${steps}, total ${ms(s.durationMs)}, ${formatBytes(s.bytesSent)} sent${rounds} (migration ${s.id})`;
  }
  return `shard ${s.shardId} stays on ${s.source}: migration ${s.id} ${s.state}: ${s.abortReason ?? 'no reason recorded'}`;
}

export function registerMigrateCommand(program: Command, io: Io): void {
  program
    .command('migrate')
    .argument('<shard>', 'shard id')
    .requiredOption('--to <host>', 'destination host id')
    .requiredOption('--agent <url>', 'API base URL of the agent on the host that runs the shard')
    .option('--token-file <file>', 'file holding the fleet token (default: $SHARDFORM_TOKEN)')
    .option('--pre-copy', 'pre-copy memory while the shard runs (when the kernel can track dirty pages)')
    .option('--json', "print the agent's JSON answer")
    .description('migrate a running shard to another host (checkpoint, stream, restore); exit 0 moved, 1 aborted or refused')
    .action(async (shard: string, flags: AgentClientFlags & { to: string; preCopy?: boolean; json?: boolean }) => {
      const shardId = checkId('<shard>', shard);
      const to = checkId('--to', flags.to);
      const http = agentClient(flags);
      // A migration of a large shard takes longer than an ordinary request.
      http.defaults.timeout = 15 * 60_000;
      let summary: MigrationSummary;
      try {
        summary = await call(http, 'POST', '/v1/migrations', checkMigrationSummary, { shardId, to, ...(flags.preCopy ? { preCopy: true } : {}) });
      } catch (error) {
        if (error instanceof AgentRequestError) {
          io.err(`error: ${error.message}`);
          // A 500 is a migration that failed part-way (e.g. its abort could not reach the destination):
          // the journal holds it, and the source agent's recovery finishes it.
          if (error.status === 500) io.err(`if the migration was journaled, the agent finishes or undoes it on its own (retried every reconcile, 10 s); GET /v1/migrations on it shows where it stands`);
          throw new ExitWith(EXIT_FAILURE);
        }
        throw error;
      }
      io.out(flags.json ? JSON.stringify(summary, null, 2) : renderMigration(summary));
      if (summary.state !== 'done') throw new ExitWith(EXIT_FAILURE);
    });
}
