/**
 * `shardform shards ls|get|resize --agent URL`: the shards of one host through its agent's API.
 * Flags are checked before any request (errors name the flag and value, exit 2); an agent that
 * refuses or cannot be reached is exit 1 with its message.
 */
import type { Command } from 'commander';
import { checkId, ShardformError } from '../../errors';
import { formatBytes, parseBytes, parseCpuCores } from '../../contracts/quantities';
import { EXIT_FAILURE } from '../exit-codes';
import { ExitWith } from '../main';
import { table, type Io } from '../output';
import { checkShardDetail, checkShardList, checkShardView, type ShardView } from '../../contracts/agent-replies';
import { AgentRequestError, agentClient, call, type AgentClientFlags } from './agent-client';

type Flags = AgentClientFlags & { json?: boolean };

const agentOptions = (command: Command) =>
  command
    .requiredOption('--agent <url>', 'agent API base URL, e.g. http://127.0.0.1:7100')
    .option('--token-file <file>', 'file holding the fleet token (default: $SHARDFORM_TOKEN)')
    .option('--json', 'print the agent\'s JSON answer');

export function renderShards(shards: readonly ShardView[]): string {
  if (shards.length === 0) return '(no shards)';
  return table(
    ['SHARD', 'APPLICATION', 'STATE', 'PID', 'CPU', 'MEMORY', 'RESTARTS', 'FLAGS'],
    shards.map((s) => [
      s.shardId,
      s.applicationId,
      s.state,
      s.pid === null ? '-' : String(s.pid),
      s.limits.cpuCores == null ? 'max' : String(s.limits.cpuCores),
      s.limits.memoryBytes == null ? 'max' : formatBytes(s.limits.memoryBytes),
      String(s.restarts),
      [s.adopted ? 'adopted' : '', s.frozen ? 'frozen' : ''].filter(Boolean).join(',') || '-',
    ]),
  );
}

async function run(io: Io, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    if (!(error instanceof AgentRequestError)) throw error;
    io.err(`error: ${error.message}`);
    throw new ExitWith(EXIT_FAILURE);
  }
}

export function registerShardsCommands(program: Command, io: Io): void {
  const shards = program.command('shards').description('list, inspect and resize the shards of a host through its agent');
  agentOptions(shards.command('ls').description('every shard on the host: state, pid, limits, restarts')).action((flags: Flags) =>
    run(io, async () => {
      const body = await call(agentClient(flags), 'GET', '/v1/shards', checkShardList);
      io.out(flags.json ? JSON.stringify(body, null, 2) : `${renderShards(body.shards)}${body.drained ? '\n(host drained)' : ''}`);
    }),
  );
  agentOptions(shards.command('get').argument('<shard>', 'shard id').description('one shard with its limits and live usage')).action((id: string, flags: Flags) => {
    const shardId = checkId('<shard>', id);
    return run(io, async () => {
      const body = await call(agentClient(flags), 'GET', `/v1/shards/${shardId}`, checkShardDetail);
      io.out(flags.json ? JSON.stringify(body, null, 2) : `${renderShards([body])}\n\nusage ${JSON.stringify(body.usage)}`);
    });
  });
  agentOptions(
    shards
      .command('resize')
      .argument('<shard>', 'shard id')
      .option('--cpu <cores>', 'new CPU limit: 1, 0.5 or 500m')
      .option('--memory <bytes>', 'new memory limit: 2GiB, 512MiB')
      .description('change a shard\'s limits in place (the workload keeps running); sizes must be multiples of the granularity'),
  ).action((id: string, flags: Flags & { cpu?: string; memory?: string }) => {
    const shardId = checkId('<shard>', id);
    const body: { cpuCores?: number; memoryBytes?: number } = {};
    if (flags.cpu !== undefined) body.cpuCores = parseCpuCores(flags.cpu, '--cpu');
    if (flags.memory !== undefined) body.memoryBytes = parseBytes(flags.memory, '--memory');
    if (body.cpuCores === 0) throw new ShardformError('INVALID_ARGUMENT', '--cpu', flags.cpu, `--cpu: ${JSON.stringify(flags.cpu)} must be more than 0 cores`);
    if (body.memoryBytes === 0) throw new ShardformError('INVALID_ARGUMENT', '--memory', flags.memory, `--memory: ${JSON.stringify(flags.memory)} must be more than 0 bytes`);
    if (Object.keys(body).length === 0) throw new ShardformError('INVALID_ARGUMENT', '--cpu', undefined, '--cpu / --memory: give at least one new limit');
    return run(io, async () => {
      const result = await call(agentClient(flags), 'POST', `/v1/shards/${shardId}/resize`, checkShardView, body);
      io.out(flags.json ? JSON.stringify(result, null, 2) : renderShards([result]));
    });
  });
}
