/**
 * Whether a shard holds established TCP connections, which CRIU does not carry across hosts
 * without tcp-established repair and the peer's cooperation; such shards migrate with the
 * `restart` strategy. "Established" in CRIU's sense: every connected state, not only
 * ESTABLISHED — a connection being set up or closed (SYN_SENT, FIN_WAIT1/2, CLOSE_WAIT,
 * LAST_ACK, CLOSING) is refused by `criu dump` just the same ("Connected TCP socket, consider
 * using --tcp-established option", criu/sk-inet.c can_dump_inet_sk). /proc/<pid>/net/tcp lists every socket of the process's network
 * namespace, not only the process's own, so a connection counts only when its inode is one of
 * the process's socket descriptors (/proc/<pid>/fd/* -> `socket:[inode]`). Parsing is pure;
 * reading /proc is `shardHoldsEstablishedTcp`.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';

/**
 * `st` (hex, as /proc/net/tcp prints it) of the states CRIU dumps only with --tcp-established
 * (include/net/tcp_states.h): ESTABLISHED 1, SYN_SENT 2, FIN_WAIT1 4, FIN_WAIT2 5, CLOSE_WAIT 8,
 * LAST_ACK 9, CLOSING B. LISTEN and CLOSE it dumps; TIME_WAIT and SYN_RECV belong to no descriptor.
 */
const TCP_CONNECTED = new Set(['01', '02', '04', '05', '08', '09', '0B']);

/** Inodes of the connected sockets listed in a /proc/net/tcp or tcp6 text (pure). */
export function establishedInodes(text: string): Set<string> {
  const inodes = new Set<string>();
  for (const line of text.split('\n').slice(1)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10) continue;
    if (TCP_CONNECTED.has(fields[3]!.toUpperCase()) && fields[9] !== '0') inodes.add(fields[9]!);
  }
  return inodes;
}

/** Socket inodes among fd link targets (`socket:[12345]`) (pure). */
export function socketInodes(links: readonly string[]): Set<string> {
  const inodes = new Set<string>();
  for (const link of links) {
    const match = /^socket:\[(\d+)\]$/.exec(link);
    if (match) inodes.add(match[1]!);
  }
  return inodes;
}

/** Bounded: the first 4096 descriptors of each process are looked at. */
const MAX_FDS = 4096;

async function processHoldsEstablished(pid: number): Promise<boolean> {
  let names: string[];
  try {
    names = (await readdir(`/proc/${pid}/fd`)).slice(0, MAX_FDS);
  } catch {
    return false; // exited
  }
  const links: string[] = [];
  for (const name of names) links.push(await readlink(`/proc/${pid}/fd/${name}`).catch(() => ''));
  const mine = socketInodes(links);
  if (mine.size === 0) return false;
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => '');
    for (const inode of establishedInodes(text)) if (mine.has(inode)) return true;
  }
  return false;
}

/** True when any of `pids` has an established TCP connection of its own. */
export async function shardHoldsEstablishedTcp(pids: readonly number[]): Promise<boolean> {
  for (const pid of pids) if (await processHoldsEstablished(pid)) return true;
  return false;
}
