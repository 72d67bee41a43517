/** The agent's flags, checked once before anything starts: every error names the flag and the value (exit 2). */
import { statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { ID_PATTERN, ShardformError, showValue } from '../../errors';
import { parseListenAddress } from '../../../host-agent/api/listen';
import { CRIU_SWITCHES, criuSwitchOn } from '../../../host-agent/checkpoint/criu';

export interface AgentFlags {
  plan?: string;
  host?: string;
  listen?: string;
  stateDir?: string;
  tokenFile?: string;
  ownerPrefix?: string;
  logLevel?: string;
}

export interface CheckedAgentFlags {
  readonly plan: string;
  readonly host: string;
  readonly listen?: string;
  readonly stateDir: string;
  readonly tokenFile?: string;
  readonly ownerPrefix: string;
  readonly logLevel: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const bad = (flag: string, value: unknown, why: string) => new ShardformError('INVALID_ARGUMENT', flag, value, `${flag}: ${showValue(value)} ${why}`);

function id(flag: string, value: string | undefined, fallback?: string): string {
  const v = value ?? fallback;
  if (v === undefined) throw new ShardformError('INVALID_ARGUMENT', flag, undefined, `${flag}: required`);
  if (!ID_PATTERN.test(v)) throw bad(flag, v, "is not a valid id; ids are 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit");
  return v;
}

export function checkAgentFlags(flags: AgentFlags, needPlan = false): CheckedAgentFlags {
  const host = id('--host', flags.host);
  const ownerPrefix = id('--owner-prefix', flags.ownerPrefix, 'shardform');
  if (flags.stateDir !== undefined && flags.stateDir.trim() === '') throw bad('--state-dir', flags.stateDir, 'is empty; give a directory');
  const stateDir = resolve(flags.stateDir ?? `/var/lib/shardform/${host}`);
  // Created on first start; something else already there (a file) is a usage error, not ENOTDIR later.
  const existing = statSync(stateDir, { throwIfNoEntry: false });
  if (existing && !existing.isDirectory()) throw bad('--state-dir', flags.stateDir ?? stateDir, 'exists and is not a directory');
  let plan = flags.plan ?? '';
  if (needPlan) {
    if (!plan) throw new ShardformError('INVALID_ARGUMENT', '--plan', undefined, '--plan: required; a plan file or an http(s) URL');
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(plan)) {
      let url: URL | undefined;
      try {
        url = new URL(plan);
      } catch {
        url = undefined;
      }
      if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw bad('--plan', plan, 'is not a file path or an http(s) URL');
    } else plan = resolve(plan);
  }
  // Syntax only here; the port may come from the plan (any port passes as default).
  if (flags.listen !== undefined) parseListenAddress(flags.listen, '--listen', 0);
  if (flags.tokenFile !== undefined && flags.tokenFile.trim() === '') throw bad('--token-file', flags.tokenFile, 'is empty; give a file');
  const logLevel = flags.logLevel ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw bad('--log-level', logLevel, `is not one of ${LOG_LEVELS.join(', ')}`);
  // Read by the agent's migration set-up; checked here so a typo stops the start as a usage error.
  for (const name of CRIU_SWITCHES) {
    try {
      criuSwitchOn(name);
    } catch (error) {
      throw new ShardformError('INVALID_ARGUMENT', name, process.env[name], (error as Error).message);
    }
  }
  // Where the agent looks for a private CRIU; a relative or empty one would be looked up from
  // wherever the agent was started and quietly leave this host unable to checkpoint.
  const criuPrefix = process.env.SHARDFORM_CRIU_PREFIX;
  if (criuPrefix !== undefined && !isAbsolute(criuPrefix)) {
    throw new ShardformError('INVALID_ARGUMENT', 'SHARDFORM_CRIU_PREFIX', criuPrefix, `SHARDFORM_CRIU_PREFIX=${showValue(criuPrefix)} must be an absolute directory (default /opt/shardform/criu)`);
  }
  return {
    plan,
    host,
    stateDir,
    ownerPrefix,
    logLevel,
    ...(flags.listen !== undefined ? { listen: flags.listen } : {}),
    ...(flags.tokenFile !== undefined ? { tokenFile: resolve(flags.tokenFile) } : {}),
  };
}
