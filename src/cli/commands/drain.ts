/**
 * `shardform drain`: stop every shard of a host cleanly (SIGTERM, grace, SIGKILL; cgroups
 * removed) and keep them stopped until `--undo`. Through the running agent (`--agent URL`), or,
 * when no agent runs, locally from its state directory (`--host ID --state-dir DIR`): the
 * local drain adopts the shards like a starting agent would, stops them, and records the drain
 * in the store so the next agent does not start them again.
 */
import type { Command } from 'commander';
import { ShardformError, showValue } from '../../errors';
import { EXIT_FAILURE } from '../exit-codes';
import { ExitWith } from '../main';
import type { Io } from '../output';
import { checkDrainReply, type DrainReply } from '../../contracts/agent-replies';
import { AgentRequestError, agentClient, call } from './agent-client';
import { checkAgentFlags } from './agent-flags';

interface DrainFlags {
  agent?: string;
  tokenFile?: string;
  host?: string;
  stateDir?: string;
  ownerPrefix?: string;
  undo?: boolean;
  graceSeconds?: string;
}

/** The agent's reply, or the local drain's report (whose list is read-only). */
type DrainAnswer = Omit<DrainReply, 'actions'> & { readonly actions: readonly DrainReply['actions'][number][] };

const LOCAL_DRAIN_FLAGS = [
  ['stateDir', '--state-dir'],
  ['ownerPrefix', '--owner-prefix'],
  ['graceSeconds', '--grace-seconds'],
] as const;

function render(answer: DrainAnswer): string {
  const lines = answer.actions.map((a) => `${a.ok ? 'stopped' : 'FAILED '} ${a.shardId}${a.error ? `: ${a.error}` : ''}`);
  lines.push(answer.drained ? `host drained (${answer.actions.filter((a) => a.ok).length} shard(s) stopped)` : 'drain lifted; the agent starts the host\'s shards again');
  return lines.join('\n');
}

export function registerDrainCommand(program: Command, io: Io): void {
  program
    .command('drain')
    .description('stop every shard of this host cleanly and keep them stopped (through the agent, or locally with --host/--state-dir)')
    .option('--agent <url>', 'the running agent\'s API URL')
    .option('--token-file <file>', 'file holding the fleet token (default: $SHARDFORM_TOKEN)')
    .option('--host <id>', 'local drain: this host\'s id (no agent running)')
    .option('--state-dir <dir>', 'local drain: the agent\'s state directory (default /var/lib/shardform/<host>)')
    .option('--owner-prefix <name>', 'local drain: the cgroup directory the agent uses (default shardform)')
    .option('--grace-seconds <n>', 'SIGTERM-to-SIGKILL grace per shard (local drain; default 10)')
    .option('--undo', 'lift the drain (through the agent)')
    .action(async (flags: DrainFlags) => {
      // `--agent ''` and `--host ''` are given (bad) values, refused as such, never taken for the other mode.
      if (flags.agent !== undefined && flags.host !== undefined) throw new ShardformError('INVALID_ARGUMENT', '--host', flags.host, '--host: give either --agent (drain through the agent) or --host (local drain), not both');
      if (flags.agent === undefined && flags.host === undefined)
        throw new ShardformError(
          'INVALID_ARGUMENT',
          '--agent',
          undefined,
          '--agent / --host: give one: --agent URL to drain through the running agent, or --host ID (with --state-dir if not the default) to drain locally when no agent runs',
        );
      let answer: DrainAnswer;
      if (flags.agent !== undefined) {
        // The agent drains with its own state directory, cgroups and grace: a value given here would be ignored.
        for (const [key, flag] of LOCAL_DRAIN_FLAGS) {
          const value = flags[key];
          if (value !== undefined) throw new ShardformError('INVALID_ARGUMENT', flag, value, `${flag}: ${showValue(value)} is for a local drain only (with --host ID); a drain through --agent uses the agent's own`);
        }
        try {
          answer = await call(agentClient(flags), 'POST', '/v1/drain', checkDrainReply, flags.undo ? { undo: true } : {});
        } catch (error) {
          if (!(error instanceof AgentRequestError)) throw error;
          io.err(`error: ${error.message}`);
          throw new ExitWith(EXIT_FAILURE);
        }
      } else {
        if (flags.undo) throw new ShardformError('INVALID_ARGUMENT', '--undo', true, '--undo: lifting a drain goes through the agent (--agent URL); a starting agent reads the drain from its store');
        const checked = checkAgentFlags({ host: flags.host, stateDir: flags.stateDir, ownerPrefix: flags.ownerPrefix });
        const graceText = flags.graceSeconds ?? '10';
        const grace = Number(graceText);
        if (!/^\d+(\.\d+)?$/.test(graceText) || !(grace >= 0 && grace <= 3600))
          throw new ShardformError('INVALID_ARGUMENT', '--grace-seconds', graceText, `--grace-seconds: ${JSON.stringify(graceText)} is not a number of seconds between 0 and 3600`);
        // Loaded only for a local drain: it brings the agent's kernel and stores (see agent.ts).
        const { drainLocally } = require('../../../host-agent/local-drain') as typeof import('../../../host-agent/local-drain');
        answer = await drainLocally({ hostId: checked.host, stateDir: checked.stateDir, ownerPrefix: checked.ownerPrefix, graceSeconds: grace });
      }
      io.out(render(answer));
      if (!answer.converged) throw new ExitWith(EXIT_FAILURE);
    });
}
