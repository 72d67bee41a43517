/**
 * Jest fixture: N test hosts as network namespaces for one suite. Removes leftovers of
 * crashed runs (by name prefix, sparing sets whose owner process is alive) before creating its set, and its own set in afterAll, which
 * jest runs even when tests fail. Call inside a describePrivileged body (needs root + ip netns).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createNetnsHosts, inHost, removeLeftoverNetnsHosts, removeNetnsHosts, type NetnsHost, type NetnsHostSet } from '../../src/dev/netns-hosts';

const execFileAsync = promisify(execFile);

/**
 * A tag of this test run only: `prefix` (1-2 characters) and four from the pid, so the same suite
 * run by two people on one machine builds two sets instead of replacing the other's.
 */
export function runTag(prefix: string): string {
  if (!/^[a-z]{1,2}$/.test(prefix)) throw new Error(`runTag: ${JSON.stringify(prefix)} must be 1-2 of a-z`);
  return `${prefix}${(process.pid % 36 ** 4).toString(36).padStart(4, '0')}`;
}

/** `prefix` (1-2 of a-z) names the suite; the set's tag is runTag(prefix), this run's only. */
export function useNetnsHosts(count: number, prefix: string): () => NetnsHostSet {
  const tag = runTag(prefix);
  let set: NetnsHostSet | undefined;
  beforeAll(async () => {
    await removeLeftoverNetnsHosts();
    set = await createNetnsHosts({ count, tag, ownerPid: process.pid });
  });
  afterAll(async () => {
    // Only a set this run made: a refused create (another live run holds the tag) leaves that one be;
    // a create that failed half-way removed its own part already.
    if (set) await removeNetnsHosts(tag);
  });
  return () => {
    if (!set) throw new Error(`netns hosts '${tag}' were not created (see beforeAll)`);
    return set;
  };
}

/** Runs a short node script inside a host's namespace and returns its stdout. */
export async function nodeInHost(host: NetnsHost, script: string, args: readonly string[] = [], timeoutMs = 10_000): Promise<string> {
  const [file, argv] = inHost(host, [process.execPath, '-e', script, ...args]);
  const { stdout } = await execFileAsync(file, argv, { timeout: timeoutMs });
  return stdout;
}
