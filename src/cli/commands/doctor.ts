import type { Command } from 'commander';
import { isAbsolute } from 'node:path';
import { checkHostReadiness, REQUIRED_CHECKS, type HostReadiness } from '../../../host-agent/doctor/host-readiness';
import { EXIT_FAILURE } from '../exit-codes';
import { ExitWith } from '../main';
import { table, type Io } from '../output';
import { invalidFlag } from './invalid-flag';

/** The doctor's table and verdict (pure). */
export function renderReadiness(readiness: HostReadiness): string {
  const rows = readiness.checks.map((c) => [c.name, c.ok ? 'ok' : 'no', c.detail]);
  const verdict = readiness.canCheckpoint
    ? 'this host can checkpoint shards'
    : `this host cannot checkpoint shards: ${readiness.checks
        .filter((c) => !c.ok && REQUIRED_CHECKS.has(c.name))
        .map((c) => `${c.name}: ${c.detail}`)
        .join('; ')}`;
  return `${table(['CHECK', 'STATUS', 'DETAIL'], rows)}\n\n${verdict}`;
}

/** `shardform doctor [--json]`: exit 0 when this host can checkpoint shards, 1 when not. */
export function registerDoctorCommand(program: Command, io: Io): void {
  program
    .command('doctor')
    .description('report whether this host can checkpoint shards (CRIU, criu check), pre-copy, the CRIU kernel cache, its cgroup layout and netns')
    .option('--json', 'print the report as JSON')
    .option('--criu-prefix <dir>', 'private CRIU prefix (default /opt/shardform/criu)')
    .option('--cgroup-root <dir>', 'where cgroup hierarchies are mounted', '/sys/fs/cgroup')
    .action(async (opts: { json?: boolean; criuPrefix?: string; cgroupRoot: string }) => {
      // An empty or relative directory would be probed from wherever doctor runs and reported as the
      // host's verdict; the agent refuses a relative SHARDFORM_CRIU_PREFIX (agent-flags.ts), so the doctor does too.
      if (opts.criuPrefix !== undefined && !isAbsolute(opts.criuPrefix)) throw invalidFlag('--criu-prefix', opts.criuPrefix, 'an absolute directory');
      const envPrefix = process.env.SHARDFORM_CRIU_PREFIX;
      if (opts.criuPrefix === undefined && envPrefix !== undefined && !isAbsolute(envPrefix)) throw invalidFlag('SHARDFORM_CRIU_PREFIX', envPrefix, 'an absolute directory (default /opt/shardform/criu)');
      if (!isAbsolute(opts.cgroupRoot)) throw invalidFlag('--cgroup-root', opts.cgroupRoot, 'an absolute directory');
      const readiness = await checkHostReadiness({ criuPrefix: opts.criuPrefix, cgroupRoot: opts.cgroupRoot });
      io.out(opts.json ? JSON.stringify(readiness, null, 2) : renderReadiness(readiness));
      if (!readiness.canCheckpoint) throw new ExitWith(EXIT_FAILURE);
    });
}
