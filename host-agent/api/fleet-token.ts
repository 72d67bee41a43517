/**
 * The fleet credential: a bearer token every API caller but /healthz must present. Compared in
 * constant time over sha256 digests (equal lengths whatever the input, so neither the content
 * nor the length of the token leaks through timing; crypto.timingSafeEqual needs equal lengths).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ShardformError } from '../../src/errors';
import type { SecuritySettings } from '../../src/contracts/plan-schema';

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

export function tokenMatches(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

/** `Authorization: Bearer <token>` -> token; undefined for anything else. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}

/**
 * Reads the token the plan points at (`--token-file` overrides): a file (first line, trimmed)
 * or an environment variable. Throws a ShardformError naming where it looked.
 */
export function readFleetToken(security: SecuritySettings, opts: { tokenFile?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const env = opts.env ?? process.env;
  if (opts.tokenFile) return readTokenFile(opts.tokenFile, '--token-file');
  if (security.auth !== 'token')
    throw new ShardformError('INVALID_ARGUMENT', 'security.auth', security.auth, `security.auth: ${JSON.stringify(security.auth)} is not supported by this agent yet; use "token" (or pass --token-file)`);
  if (security.tokenFile) return readTokenFile(security.tokenFile, 'security.tokenFile');
  if (security.tokenEnv) {
    const value = env[security.tokenEnv]?.trim();
    if (!value) throw new ShardformError('INVALID_ARGUMENT', 'security.tokenEnv', security.tokenEnv, `security.tokenEnv: environment variable ${security.tokenEnv} is empty or unset`);
    return value;
  }
  throw new ShardformError('INVALID_ARGUMENT', 'security', security, 'security: the plan names neither tokenFile nor tokenEnv; pass --token-file');
}

function readTokenFile(path: string, field: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ShardformError('UNREADABLE_FILE', field, path, `${field}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const token = text.split('\n')[0].trim();
  if (token.length < 16) throw new ShardformError('INVALID_ARGUMENT', field, path, `${field}: the token in ${path} is shorter than 16 characters`);
  return token;
}
