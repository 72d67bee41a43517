/**
 * The `shardform` CLI. Each command group lives in its own file under ./commands and registers
 * itself here; errors are mapped to exit codes in one place (0 ok, 1 invalid/failed, 2 usage).
 */
import { Command, CommanderError } from 'commander';
import { ShardformError, type ShardformErrorCode } from '../errors';
import { SHARDFORM_VERSION } from '../version';
import { EXIT_FAILURE, EXIT_USAGE } from './exit-codes';
import { processIo, type Io } from './output';
import { registerPlanCommands } from './commands/plan';
import { registerVectorCommands } from './commands/vector';
import { registerDoctorCommand } from './commands/doctor';
import { registerDevCommands } from './commands/dev';
import { registerMigrateCommand, registerMigrationsCommand } from './commands/migrate';
import { registerAgentCommand } from './commands/agent';
import { registerShardsCommands } from './commands/shards';
import { registerDrainCommand } from './commands/drain';
import { registerPredictCommand } from './commands/predict';
import { registerBacktestCommand } from './commands/backtest';

/** Thrown by commands that have already printed their result and only need an exit code. */
export class ExitWith extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export function buildProgram(io: Io = processIo): Command {
  const program = new Command('shardform')
    .description('Resource shards as code: plans, host agents, prediction and migration.')
    .version(SHARDFORM_VERSION, '-V, --version', 'print the version of shardform')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  registerPlanCommands(program, io);
  registerVectorCommands(program, io);
  registerDoctorCommand(program, io);
  registerDevCommands(program, io);
  registerMigrateCommand(program, io);
  registerMigrationsCommand(program, io);
  registerAgentCommand(program, io);
  registerShardsCommands(program, io);
  registerDrainCommand(program, io);
  registerPredictCommand(program, io);
  registerBacktestCommand(program, io);
  // Every subcommand inherits the overrides so usage errors surface as CommanderError.
  for (const command of program.commands) command.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  return program;
}

/** Runs the CLI and resolves to the exit code; never calls process.exit itself. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv as string[]);
    return 0;
  } catch (error) {
    return exitCodeFor(error, io);
  }
}

/** Codes of the checks that parse flags and arguments (ids, quantities) and of files that cannot be read. */
const USAGE_ERROR_CODES: ReadonlySet<ShardformErrorCode> = new Set(['UNREADABLE_FILE', 'INVALID_ARGUMENT', 'INVALID_QUANTITY', 'INVALID_ID']);

export function exitCodeFor(error: unknown, io: Io): number {
  if (error instanceof ExitWith) return error.code;
  if (error instanceof CommanderError) {
    // help and version are successful exits; everything else is a usage error
    return error.exitCode === 0 ? 0 : EXIT_USAGE;
  }
  if (error instanceof ShardformError) {
    io.err(`error: ${error.message}`);
    return USAGE_ERROR_CODES.has(error.code) ? EXIT_USAGE : EXIT_FAILURE;
  }
  io.err(`error: ${(error as Error)?.stack ?? String(error)}`);
  return EXIT_FAILURE;
}
