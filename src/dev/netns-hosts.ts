/**
 * Test hosts on one machine: N network namespaces joined by a Linux bridge, each with its own
 * address in a private /24 (default 10.213.<k>.0/24, the bridge at .1 so the root namespace
 * can reach every agent, host i at .(10+i)). No default route and no NAT: traffic stays
 * between these namespaces, the bridge and loopback. Used by `shardform dev hosts up|down`
 * and by test/helpers/netns-hosts.ts.
 *
 * Every name carries the set's tag, so a crashed run's leftovers are found and removed by
 * prefix (removeLeftoverNetnsHosts). Interface names stay within IFNAMSIZ (15 characters).
 */
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ShardformError } from '../errors';

const execFileAsync = promisify(execFile);

export const NETNS_PREFIX = 'shardform-';
const BRIDGE_PREFIX = 'sfb-';
const VETH_PREFIX = 'sfv-';
export const MAX_HOSTS = 32;
const TAG_PATTERN = /^[a-z0-9]{1,6}$/;

/** A set's tag becomes interface names and the file name of its owner record: checked before it touches either. */
export function checkNetnsTag(tag: string, field = 'tag'): string {
  if (!TAG_PATTERN.test(tag)) throw new ShardformError('INVALID_ARGUMENT', field, tag, `${field}: ${JSON.stringify(tag)} must be 1-6 characters of a-z and 0-9`);
  return tag;
}

/** `<tag>.owner` holds the pid of the process that owns a set (a test run); none for the CLI's. */
export const OWNER_DIR = '/run/shardform/netns-hosts';

export interface NetnsHost {
  /** `host-1`, `host-2`, ... */
  readonly id: string;
  /** Network namespace name, for `ip netns exec`. */
  readonly netns: string;
  readonly address: string;
  /** The bridge side of the host's veth pair: cut and restore the link with it. */
  readonly link: string;
}

export interface NetnsHostSet {
  readonly tag: string;
  readonly bridge: string;
  /** The bridge's address (the root namespace's way in). */
  readonly gateway: string;
  readonly subnet: string;
  readonly hosts: readonly NetnsHost[];
}

export interface NetnsHostsOptions {
  count: number;
  /** Up to 6 of a-z0-9; names every namespace and interface of the set. Default 'dev'. */
  tag?: string;
  /** Third octet of 10.213.<k>.0/24; default derived from the tag. */
  subnetOctet?: number;
  /**
   * The process owning the set: leftover cleanup spares sets whose owner is alive, so
   * parallel test runs on one machine do not remove each other's hosts. Default: none.
   */
  ownerPid?: number;
}

async function ip(args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync('ip', args as string[], { timeout: 15_000 });
    return stdout;
  } catch (error) {
    const stderr = ((error as { stderr?: string }).stderr ?? (error as Error).message).trim();
    throw new Error(`ip ${args.join(' ')}: ${stderr}`);
  }
}

function octetFor(tag: string): number {
  let hash = 0;
  for (const ch of tag) hash = (hash * 31 + ch.charCodeAt(0)) % 200;
  return 20 + hash;
}

/** The names and addresses of a set, without touching the kernel (pure). */
export function planNetnsHosts(opts: NetnsHostsOptions): NetnsHostSet {
  const tag = checkNetnsTag(opts.tag ?? 'dev');
  if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > MAX_HOSTS) {
    throw new ShardformError('INVALID_ARGUMENT', 'count', opts.count, `count: ${opts.count} must be a whole number from 1 to ${MAX_HOSTS}`);
  }
  const octet = opts.subnetOctet ?? octetFor(tag);
  if (!Number.isInteger(octet) || octet < 0 || octet > 255) throw new ShardformError('INVALID_ARGUMENT', 'subnetOctet', octet, `subnetOctet: ${octet} must be 0-255`);
  const base = `10.213.${octet}`;
  return {
    tag,
    bridge: `${BRIDGE_PREFIX}${tag}`,
    gateway: `${base}.1`,
    subnet: `${base}.0/24`,
    hosts: Array.from({ length: opts.count }, (_, i) => ({
      id: `host-${i + 1}`,
      netns: `${NETNS_PREFIX}${tag}-host-${i + 1}`,
      address: `${base}.${10 + i + 1}`,
      link: `${VETH_PREFIX}${tag}-${i + 1}`,
    })),
  };
}

/** Creates the set (replacing one with the same tag); on failure removes what it made. */
export async function createNetnsHosts(opts: NetnsHostsOptions): Promise<NetnsHostSet> {
  const set = planNetnsHosts(opts);
  await removeNetnsHosts(set.tag);
  try {
    if (opts.ownerPid !== undefined) {
      mkdirSync(OWNER_DIR, { recursive: true });
      writeFileSync(join(OWNER_DIR, `${set.tag}.owner`), String(opts.ownerPid));
    }
    await ip(['link', 'add', set.bridge, 'type', 'bridge']);
    await ip(['addr', 'add', `${set.gateway}/24`, 'dev', set.bridge]);
    await ip(['link', 'set', set.bridge, 'up']);
    for (const host of set.hosts) {
      const inner = `${host.link}i`;
      await ip(['netns', 'add', host.netns]);
      await ip(['link', 'add', host.link, 'type', 'veth', 'peer', 'name', inner]);
      await ip(['link', 'set', inner, 'netns', host.netns]);
      await ip(['link', 'set', host.link, 'master', set.bridge]);
      await ip(['link', 'set', host.link, 'up']);
      await ip(['-n', host.netns, 'link', 'set', inner, 'name', 'eth0']);
      await ip(['-n', host.netns, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0']);
      await ip(['-n', host.netns, 'link', 'set', 'eth0', 'up']);
      await ip(['-n', host.netns, 'link', 'set', 'lo', 'up']);
    }
    return set;
  } catch (error) {
    await removeNetnsHosts(set.tag);
    throw error;
  }
}

/** Removes every namespace and interface of the set `tag`. Idempotent. */
export async function removeNetnsHosts(tag: string): Promise<void> {
  checkNetnsTag(tag);
  const namespaces = (await listNetns()).filter((n) => n.startsWith(`${NETNS_PREFIX}${tag}-host-`));
  const links = (await listLinks()).filter((l) => l === `${BRIDGE_PREFIX}${tag}` || l.startsWith(`${VETH_PREFIX}${tag}-`));
  await removeAll(namespaces, links);
  rmSync(join(OWNER_DIR, `${tag}.owner`), { force: true });
}

function ownerAlive(tag: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(join(OWNER_DIR, `${tag}.owner`), 'utf8').trim());
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The tag of a namespace or interface of ours, from its name. */
export function tagOf(name: string): string | undefined {
  return (
    new RegExp(`^${NETNS_PREFIX}([a-z0-9]{1,6})-host-\\d+$`).exec(name)?.[1] ??
    new RegExp(`^${BRIDGE_PREFIX}([a-z0-9]{1,6})$`).exec(name)?.[1] ??
    new RegExp(`^${VETH_PREFIX}([a-z0-9]{1,6})-\\d+$`).exec(name)?.[1]
  );
}

/**
 * Removes the sets on this machine that crashed runs left behind, found by name prefix:
 * every set whose owner process is gone (or that has none), or every set with `all`.
 * Returns the names removed.
 */
export async function removeLeftoverNetnsHosts(opts: { all?: boolean } = {}): Promise<string[]> {
  const names = [...(await listNetns()), ...(await listLinks())].filter((n) => tagOf(n) !== undefined);
  const tags = [...new Set(names.map((n) => tagOf(n) as string))].filter((tag) => opts.all || !ownerAlive(tag));
  for (const tag of tags) await removeNetnsHosts(tag);
  return names.filter((n) => tags.includes(tagOf(n) as string));
}

async function removeAll(namespaces: readonly string[], links: readonly string[]): Promise<void> {
  // Deleting a namespace deletes the veth end inside it, and with it the bridge end.
  for (const netns of namespaces) await ip(['netns', 'delete', netns]).catch(() => undefined);
  for (const link of links) await ip(['link', 'delete', link]).catch(() => undefined);
}

async function listNetns(): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

async function listLinks(): Promise<string[]> {
  const out = await ip(['-o', 'link', 'show']);
  return out
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '')
    .filter(Boolean);
}

/** Cuts a host off the bridge (its link goes down); packets in flight are dropped. */
export async function cutLink(host: NetnsHost): Promise<void> {
  await ip(['link', 'set', host.link, 'down']);
}

export async function restoreLink(host: NetnsHost): Promise<void> {
  await ip(['link', 'set', host.link, 'up']);
}

/**
 * The command line that runs argv inside the host's network namespace only. Not
 * `ip netns exec`: that also enters a new mount namespace with a fresh /sys, which hides the
 * cgroup hierarchies mounted under /sys/fs/cgroup from the agent.
 */
export function inHost(host: NetnsHost, argv: readonly string[]): [string, string[]] {
  return ['nsenter', [`--net=/run/netns/${host.netns}`, '--', ...argv]];
}

/** Runs argv inside the host's network namespace (the agent, a workload, a probe). */
export function spawnInHost(host: NetnsHost, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const [file, args] = inHost(host, argv);
  return spawn(file, args, options);
}
