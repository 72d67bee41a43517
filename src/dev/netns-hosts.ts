/**
 * Test hosts on one machine: N network namespaces joined by a Linux bridge, each with its own
 * address in a private /24 (10.213.<k>.0/24, k derived from the tag or the next one no interface
 * or route of the machine uses; the bridge at .1 so the root namespace can reach every agent,
 * host i at .(10+i)). No default route and no NAT: traffic stays
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

/**
 * `<tag>.owner` holds the pid of the process that owns a set (a test run), or KEPT_UNTIL_DOWN for
 * a set made by `shardform dev hosts up`.
 */
export const OWNER_DIR = '/run/shardform/netns-hosts';
const KEPT_UNTIL_DOWN = 'kept-until-down';

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
  /** Third octet of 10.213.<k>.0/24, refused when in use; default derived from the tag, else the next free one. */
  subnetOctet?: number;
  /**
   * The process owning the set: leftover cleanup spares sets whose owner is alive, so
   * parallel test runs on one machine do not remove each other's hosts. Default: none.
   */
  ownerPid?: number;
  /**
   * A set somebody works with by hand (`shardform dev hosts up`): leftover cleanup never removes
   * it, not even while it is being built; only `down` (or `up` with the same tag) does.
   */
  keptUntilDown?: boolean;
  /** Stops a creation half-way (SIGINT, SIGTERM): what was made is removed and the promise rejects. */
  signal?: AbortSignal;
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

/**
 * Creates the set (replacing one with the same tag, unless another live process owns it); on
 * failure or abort removes what it made. Its /24 is the first one no interface or route of this
 * machine already uses, starting from the tag's (or exactly `subnetOctet`'s, refused when in use):
 * two bridges with one subnet would send the root namespace's packets for both sets to the older one.
 */
export async function createNetnsHosts(opts: NetnsHostsOptions): Promise<NetnsHostSet> {
  const planned = planNetnsHosts(opts);
  refuseLiveOwner(planned.tag, opts.ownerPid);
  await removeNetnsHosts(planned.tag);
  try {
    if (opts.ownerPid !== undefined || opts.keptUntilDown) {
      mkdirSync(OWNER_DIR, { recursive: true });
      writeFileSync(join(OWNER_DIR, `${planned.tag}.owner`), opts.keptUntilDown ? KEPT_UNTIL_DOWN : String(opts.ownerPid));
    }
    opts.signal?.throwIfAborted();
    await ip(['link', 'add', planned.bridge, 'type', 'bridge']);
    const set = await claimSubnet(planned, opts.subnetOctet !== undefined);
    await ip(['link', 'set', set.bridge, 'up']);
    for (const host of set.hosts) {
      opts.signal?.throwIfAborted();
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
    opts.signal?.throwIfAborted();
    return set;
  } catch (error) {
    await removeNetnsHosts(planned.tag);
    throw error;
  }
}

/** An IPv4 network of this (root) namespace: an interface's address or a route, with the interface's index. */
interface NetworkInUse {
  readonly cidr: string;
  readonly dev: string;
  readonly index: number | undefined;
}

const ipv4ToNumber = (address: string) => address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);

/** Whether two IPv4 networks (`a.b.c.d/len`, a bare address being /32) share an address (pure). */
export function networksOverlap(a: string, b: string): boolean {
  const [addrA = '', lenA = '32'] = a.split('/');
  const [addrB = '', lenB = '32'] = b.split('/');
  const len = Math.min(Number(lenA), Number(lenB));
  const block = 2 ** (32 - len);
  return Math.floor(ipv4ToNumber(addrA) / block) === Math.floor(ipv4ToNumber(addrB) / block);
}

async function networksInUse(): Promise<{ networks: NetworkInUse[]; indexes: Map<string, number> }> {
  const indexes = await linkIndexes();
  const networks: NetworkInUse[] = [];
  for (const line of (await ip(['-o', '-4', 'addr', 'show'])).split('\n')) {
    const match = /^\d+:\s+(\S+)\s+inet\s+(\S+)/.exec(line);
    if (match) networks.push({ cidr: match[2] as string, dev: match[1] as string, index: indexes.get(match[1] as string) });
  }
  for (const line of (await ip(['-4', 'route', 'show'])).split('\n')) {
    const words = line.trim().split(/\s+/);
    const cidr = ['unreachable', 'blackhole', 'prohibit', 'throw'].includes(words[0] ?? '') ? words[1] : words[0];
    // The default route (any /0) covers every address without using any of them.
    if (!cidr || !/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(cidr) || cidr.endsWith('/0')) continue;
    const dev = words.includes('dev') ? (words[words.indexOf('dev') + 1] ?? '') : '';
    networks.push({ cidr, dev, index: indexes.get(dev) });
  }
  return { networks, indexes };
}

/**
 * What else uses `subnet` on this machine, in words, or undefined. The bridge's own entries do
 * not count, nor those of a newer interface: two sets created at the same moment may pick the
 * same /24, and the older bridge keeps it while the newer one moves on (it sees ours as older).
 */
async function subnetUser(subnet: string, bridge: string): Promise<string | undefined> {
  const { networks, indexes } = await networksInUse();
  const ours = indexes.get(bridge) ?? Number.MAX_SAFE_INTEGER;
  const user = networks.find((n) => n.dev !== bridge && networksOverlap(n.cidr, subnet) && !(n.index !== undefined && n.index > ours));
  return user && `${user.cidr}${user.dev ? ` on ${user.dev}` : ''}`;
}

/** Gives the new bridge the first free /24 (see createNetnsHosts) and returns the set planned on it. */
async function claimSubnet(planned: NetnsHostSet, exact: boolean): Promise<NetnsHostSet> {
  const first = Number(planned.subnet.split('.')[2]);
  // Every octet the tag hash can give (20-219), from the tag's own onwards.
  const octets = exact ? [first] : Array.from({ length: 200 }, (_, i) => 20 + ((first - 20 + i) % 200));
  let lastUser = '';
  for (const octet of octets) {
    const set = planNetnsHosts({ count: planned.hosts.length, tag: planned.tag, subnetOctet: octet });
    const before = await subnetUser(set.subnet, set.bridge);
    if (before === undefined) {
      await ip(['addr', 'add', `${set.gateway}/24`, 'dev', set.bridge]);
      const after = await subnetUser(set.subnet, set.bridge);
      if (after === undefined) return set;
      await ip(['addr', 'del', `${set.gateway}/24`, 'dev', set.bridge]);
      lastUser = after;
    } else {
      lastUser = before;
    }
    if (exact) throw new ShardformError('SUBNET_IN_USE', 'subnetOctet', octet, `subnetOctet: ${set.subnet} is already used on this machine (${lastUser}); choose another octet`);
  }
  throw new ShardformError('SUBNET_IN_USE', 'subnet', planned.subnet, `test hosts '${planned.tag}': every /24 from 10.213.20.0 to 10.213.219.0 is already used on this machine (the last: ${lastUser})`);
}

/** What is left of the set `tag`: its namespaces and its root-side interfaces. */
async function setMembers(tag: string): Promise<{ namespaces: string[]; links: string[] }> {
  return {
    namespaces: (await listNetns()).filter((n) => n.startsWith(`${NETNS_PREFIX}${tag}-host-`)),
    links: (await listLinks()).filter((l) => l === `${BRIDGE_PREFIX}${tag}` || l.startsWith(`${VETH_PREFIX}${tag}-`)),
  };
}

/**
 * Removes every namespace and interface of the set `tag`, and stops what still runs in its
 * namespaces first (SIGTERM, then SIGKILL after `graceMs`): `ip netns delete` only drops the
 * name, and an agent left inside would run on, unreachable, in a namespace nobody can name.
 * Then checks that nothing is left (a namespace's interfaces go asynchronously, so it looks a few
 * times) and throws naming what stayed. Idempotent. Returns the pids it stopped.
 */
export async function removeNetnsHosts(tag: string, opts: { graceMs?: number } = {}): Promise<number[]> {
  checkNetnsTag(tag);
  const { namespaces, links } = await setMembers(tag);
  const stopped: number[] = [];
  for (const netns of namespaces) stopped.push(...(await stopProcessesIn(netns, opts.graceMs ?? 5_000)));
  let failures = await removeAll(namespaces, links);
  let left = await setMembers(tag);
  for (let attempt = 0; attempt < 20 && left.namespaces.length + left.links.length > 0; attempt += 1) {
    await sleep(100);
    failures = await removeAll(left.namespaces, left.links);
    left = await setMembers(tag);
  }
  const names = [...left.namespaces, ...left.links];
  if (names.length > 0) throw new Error(`test hosts '${tag}': could not remove ${names.join(', ')}${failures.length > 0 ? `: ${failures.join('; ')}` : ''}`);
  rmSync(join(OWNER_DIR, `${tag}.owner`), { force: true });
  return stopped;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function signal(pid: number, name: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false; // gone already
  }
}

/** Stops the processes in `netns` (never this one): SIGTERM, then SIGKILL to those alive after `graceMs`. */
async function stopProcessesIn(netns: string, graceMs: number): Promise<number[]> {
  const listed = await ip(['netns', 'pids', netns]).catch(() => '');
  const pids = listed
    .split(/\s+/)
    .map(Number)
    .filter((pid) => Number.isInteger(pid) && pid > 0 && pid !== process.pid);
  const signalled = pids.filter((pid) => signal(pid, 'SIGTERM'));
  const alive = () => signalled.filter((pid) => signal(pid, 0));
  for (const started = Date.now(); alive().length > 0 && Date.now() - started < graceMs; ) await sleep(50);
  for (const pid of alive()) signal(pid, 'SIGKILL');
  return signalled;
}

function ownerRecord(tag: string): string | undefined {
  try {
    return readFileSync(join(OWNER_DIR, `${tag}.owner`), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The live process that owns the set `tag`, if any. */
function liveOwner(tag: string): number | undefined {
  const pid = Number(ownerRecord(tag));
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    // EPERM: alive, only not ours to signal.
    return (error as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/** Leftover cleanup spares a set made by hand and one whose owner runs. */
const spared = (tag: string) => ownerRecord(tag) === KEPT_UNTIL_DOWN || liveOwner(tag) !== undefined;

/**
 * Throws when the set `tag` belongs to another live process: the same suite run twice on one
 * machine would otherwise pull the first run's hosts away in the middle of its tests.
 */
export function refuseLiveOwner(tag: string, ownerPid?: number, field = 'tag'): void {
  const owner = liveOwner(checkNetnsTag(tag, field));
  if (owner === undefined || owner === ownerPid || owner === process.pid) return;
  throw new ShardformError(
    'NETNS_HOSTS_IN_USE',
    field,
    tag,
    `${field}: test hosts '${tag}' belong to process ${owner}, which is still running; use another tag, or stop it (shardform dev hosts down --tag ${tag} removes them anyway)`,
  );
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
 * every set whose owner process is gone (or that has none) and that `shardform dev hosts up` did
 * not make, or every set with `all`.
 * Returns the names removed.
 */
export async function removeLeftoverNetnsHosts(opts: { all?: boolean } = {}): Promise<string[]> {
  const names = [...(await listNetns()), ...(await listLinks())].filter((n) => tagOf(n) !== undefined);
  const tags = [...new Set(names.map((n) => tagOf(n) as string))].filter((tag) => opts.all || !spared(tag));
  // One set that will not go does not keep the others: each is tried, then the failures are told together.
  const failures: string[] = [];
  for (const tag of tags) await removeNetnsHosts(tag).catch((error: Error) => failures.push(error.message));
  if (failures.length > 0) throw new Error(failures.join('; '));
  return names.filter((n) => tags.includes(tagOf(n) as string));
}

/** Deletes what it is given; returns the errors (an interface its namespace took with it fails here, harmlessly). */
async function removeAll(namespaces: readonly string[], links: readonly string[]): Promise<string[]> {
  const failures: string[] = [];
  // Deleting a namespace deletes the veth end inside it, and with it the bridge end.
  for (const netns of namespaces) await ip(['netns', 'delete', netns]).catch((error: Error) => failures.push(error.message));
  for (const link of links) await ip(['link', 'delete', link]).catch((error: Error) => failures.push(error.message));
  return failures;
}

async function listNetns(): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

/** This (root) namespace's interfaces by name, with their indexes (`ip -o link show`). */
async function linkIndexes(): Promise<Map<string, number>> {
  const indexes = new Map<string, number>();
  for (const line of (await ip(['-o', 'link', 'show'])).split('\n')) {
    const match = /^(\d+):\s+([^:@\s]+)/.exec(line);
    if (match) indexes.set(match[2] as string, Number(match[1]));
  }
  return indexes;
}

async function listLinks(): Promise<string[]> {
  return [...(await linkIndexes()).keys()];
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
