/**
 * The CLI's HTTP client for one agent: base URL and token checked once (errors name the flag),
 * bounded timeouts, the agent's `{ message }` turned into one readable error line, and every
 * 2xx reply checked against its schema (src/contracts/agent-replies.ts) before a command reads it.
 */
import axios, { type AxiosInstance } from 'axios';
import { readFileSync } from 'node:fs';
import type { SchemaCheck } from '../../contracts/schema-validator';
import { formatFieldError, ShardformError, showValue } from '../../errors';

export interface AgentClientFlags {
  agent?: string;
  tokenFile?: string;
}

export class AgentRequestError extends Error {
  constructor(readonly status: number | undefined, message: string) {
    super(message);
  }
}

export function agentClient(flags: AgentClientFlags, env: NodeJS.ProcessEnv = process.env): AxiosInstance {
  if (flags.agent === undefined) throw new ShardformError('INVALID_ARGUMENT', '--agent', flags.agent, '--agent: required; give the agent URL, e.g. --agent http://127.0.0.1:7100');
  // Errors show the URL with any user:password hidden: they end up in CI logs and terminals.
  const shown = hideCredentials(flags.agent);
  if (flags.agent.trim() === '') throw new ShardformError('INVALID_ARGUMENT', '--agent', flags.agent, `--agent: ${showValue(flags.agent)} is empty; give the agent URL, e.g. --agent http://127.0.0.1:7100`);
  let base: URL;
  try {
    base = new URL(flags.agent);
  } catch {
    base = new URL('invalid:');
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new ShardformError('INVALID_ARGUMENT', '--agent', shown, `--agent: ${showValue(shown)} is not an http(s) URL; e.g. http://127.0.0.1:7100`);
  // Credentials in the URL would make axios send Basic auth in place of the fleet token (a 401),
  // and would be printed by every later error: refuse them, without repeating them.
  if (base.username !== '' || base.password !== '' || /^[^/?#]*\/\/[^/?#]*@/.test(flags.agent))
    throw new ShardformError(
      'INVALID_ARGUMENT',
      '--agent',
      shown,
      `--agent: ${showValue(shown)} has user credentials; the agent API takes the fleet token (--token-file or SHARDFORM_TOKEN), not a user in the URL`,
    );
  // Request paths are appended to the base: a query or fragment (even an empty `?` or `#`, which
  // URL drops from .search/.hash but keeps in the text) would end up before them.
  if (/[?#]/.test(flags.agent))
    throw new ShardformError('INVALID_ARGUMENT', '--agent', flags.agent, `--agent: ${showValue(flags.agent)} has a query string or fragment; give the agent's base URL only, e.g. http://127.0.0.1:7100`);
  const token = readToken(flags.tokenFile, env);
  return axios.create({
    baseURL: base.toString().replace(/\/$/, ''),
    timeout: 15_000,
    headers: { authorization: `Bearer ${token}` },
    validateStatus: () => true,
    maxRedirects: 0,
  });
}

/**
 * `scheme://user:password@host...` → `scheme://***@host...`; text without `@` unchanged.
 * Everything between the scheme and the last `@` is hidden, not only a well-formed userinfo:
 * the URL parser also reads credentials from `http:/u:p@h`, `http:u:p@h`, `http:\\u:p@h` and
 * text with leading blanks, and a password with an unencoded `/`, `?` or `#` makes the text no URL
 * at all; each of those was echoed whole. Hiding a path's `@` too only shortens an error message.
 */
export function hideCredentials(url: string): string {
  const at = url.lastIndexOf('@');
  if (at < 0) return url;
  // A scheme is kept when slashes follow it (or it is http/https): in `admin:pw@host` `admin:` is the user.
  const scheme = /^\s*(?:https?:[\\/]*|[A-Za-z][A-Za-z0-9+.-]*:[\\/]+)?/i.exec(url)![0];
  return `${scheme.trimStart()}***${url.slice(at)}`;
}

function readToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv): string {
  // `--token-file ''` (an unset variable in a script) is a given, bad file: never a quiet fall-back to $SHARDFORM_TOKEN.
  if (tokenFile !== undefined && tokenFile.trim() === '')
    throw new ShardformError('INVALID_ARGUMENT', '--token-file', tokenFile, `--token-file: ${showValue(tokenFile)} is empty; give the file holding the fleet token`);
  if (tokenFile !== undefined) {
    try {
      const token = readFileSync(tokenFile, 'utf8').split('\n')[0].trim();
      if (token) return token;
    } catch (error) {
      throw new ShardformError('UNREADABLE_FILE', '--token-file', tokenFile, `--token-file: cannot read ${tokenFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    throw new ShardformError('INVALID_ARGUMENT', '--token-file', tokenFile, `--token-file: ${tokenFile} is empty`);
  }
  const token = env.SHARDFORM_TOKEN?.trim();
  if (!token) throw new ShardformError('INVALID_ARGUMENT', '--token-file', undefined, '--token-file: required (or set SHARDFORM_TOKEN); the agent API needs the fleet token');
  return token;
}

/** How many of a bad reply's problems the one error line lists. */
const SHOWN_REPLY_ERRORS = 3;

/**
 * Sends a request; a non-2xx answer or no answer becomes an AgentRequestError with the agent's
 * message, and so does a 2xx reply that fails `check` (e.g. --agent points at another server).
 */
export async function call<T>(http: AxiosInstance, method: 'GET' | 'POST', path: string, check: (data: unknown) => SchemaCheck<T>, body?: unknown): Promise<T> {
  let response;
  try {
    response = await http.request({ method, url: path, data: body });
  } catch (error) {
    const e = error as { code?: string; message?: string };
    throw new AgentRequestError(undefined, `cannot reach the agent at ${http.defaults.baseURL}: ${e.code ?? e.message}`);
  }
  if (response.status >= 200 && response.status < 300) {
    const reply = check(response.data);
    if (reply.ok) return reply.value;
    const shown = reply.errors.slice(0, SHOWN_REPLY_ERRORS).map(formatFieldError);
    if (reply.errors.length > shown.length) shown.push(`and ${reply.errors.length - shown.length} more`);
    throw new AgentRequestError(
      response.status,
      `${http.defaults.baseURL} is not a Shardform agent, or not one this CLI understands: its answer to ${method} ${path} is not what the agent API returns: ${shown.join('; ')}`,
    );
  }
  const message = (response.data as { message?: string } | undefined)?.message ?? `HTTP ${response.status}`;
  throw new AgentRequestError(response.status, `agent answered ${response.status}: ${message}`);
}
