/**
 * `shardform agent --plan P --host ID [...]`: runs the host agent in the foreground until SIGTERM
 * or SIGINT, which stop the agent only: shards keep running and the next agent adopts them.
 * Flags are checked first (exit 2); no good plan to start from, or another live agent holding
 * this host id (host-claim.ts), is exit 1.
 */
import type { Command } from 'commander';
import type { Io } from '../output';
import { checkAgentFlags, type AgentFlags } from './agent-flags';

export function registerAgentCommand(program: Command, _io: Io): void {
  program
    .command('agent')
    .description('run the host agent: make the plan real on this host, sample shards, serve the API and /metrics')
    .option('--plan <file|url>', 'the plan: a file (watched) or an http(s) URL (polled with ETag)')
    .option('--host <id>', 'this host\'s id in the plan')
    .option('--listen <addr>', 'serve the API on host:port (default: the plan\'s address of this host)')
    .option('--state-dir <dir>', 'last good plan, shard records, logs, metric history (default /var/lib/shardform/<host>)')
    .option('--token-file <file>', 'the fleet token (default: where the plan\'s security settings say)')
    .option('--owner-prefix <name>', 'top cgroup directory shared by the agents of this machine', 'shardform')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent', process.env.SHARDFORM_LOG_LEVEL ?? 'info')
    .action(async (raw: AgentFlags) => {
      const flags = checkAgentFlags(raw, true);
      // Loaded here, not at the top: every other command (and its --help) starts without the
      // agent's ~600 modules, and the agent's process without the offline tools' (lazy-commands.test.ts).
      const { Agent } = require('../../../host-agent/agent') as typeof import('../../../host-agent/agent');
      const { createAgentMigration } = require('../../../host-agent/agent-migration') as typeof import('../../../host-agent/agent-migration');
      const { createAgentKernel, lockAgentCgroups, openAgentStores } = require('../../../host-agent/agent-parts') as typeof import('../../../host-agent/agent-parts');
      const { createLogger } = require('../../../host-agent/log') as typeof import('../../../host-agent/log');
      const logger = createLogger({ level: flags.logLevel, base: { host_id: flags.host } });
      const agent = new Agent({
        hostId: flags.host,
        plan: flags.plan,
        stateDir: flags.stateDir,
        ...(flags.listen ? { listen: flags.listen } : {}),
        ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}),
        logger,
        openStores: openAgentStores,
        createKernel: createAgentKernel({ ownerPrefix: flags.ownerPrefix }),
        lockCgroups: lockAgentCgroups({ ownerPrefix: flags.ownerPrefix }),
        migration: createAgentMigration,
      });
      try {
        await agent.start();
      } catch (error) {
        await agent.stop().catch(() => {});
        logger.flush();
        throw error;
      }
      // Handlers only once running: a signal during start-up ends the process the default way,
      // which leaves workloads running just the same.
      const stopping = new Promise<string>((resolve) => {
        for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve(signal));
      });
      // Or the agent stops itself: another agent took its host id over (exit 1, naming it).
      const ended = await Promise.race([stopping, agent.halted]);
      if (ended instanceof Error) {
        logger.flush();
        throw ended;
      }
      logger.info({ signal: ended }, 'stopping the agent (shards keep running)');
      await agent.stop();
      logger.flush();
    });
}
