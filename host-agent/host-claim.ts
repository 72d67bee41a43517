/**
 * One agent per host id. Two agents acting for one host would each adopt and supervise the same
 * shards, and each start a shard the other already runs; the plan's address of the host keeps a
 * second agent off the same machine only while both use it (`--listen` elsewhere, another
 * machine given the same `--host`, or a host renamed in the plan while its old agent still runs
 * all get past it). So an agent claims its host id in the plan's store before it touches
 * anything: a key written only if absent, attached to a lease it keeps alive, released on stop.
 *
 * - A claim held by a live agent refuses the start (HOST_CLAIMED, naming the holder: machine,
 *   pid, address, since when). A holder on another machine may be an agent that died without
 *   releasing: its lease runs out within one ttl, so a start waits that long before refusing.
 * - A holder on this machine (same boot id and PID namespace) is checked at once: if its process is gone (or the
 *   pid now belongs to a process started later), the claim is stale — a SIGKILLed agent — and is
 *   taken over without waiting. A live one refuses the start at once.
 * - Lost while running (the lease expired: the store was unreachable for longer than the ttl, or
 *   the agent hung): the agent keeps supervising what it runs — the store being away is no reason
 *   to leave shards unattended — and claims again as soon as the key is free. If another agent
 *   holds it by then, the host has two agents: `onTakenOver` fires, and the agent stops.
 */
import { hostname } from 'node:os';
import { readFileSync, readlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { ShardformError } from '../src/errors';
import type { Lease, Store } from '../src/store/store';
import { StoreError } from '../src/store/store-error';
import type { AgentLogger } from './log';
import { isSameProcessAlive, parseProcStat } from './runner/proc-info';

export const HOST_CLAIM_KEY = (hostId: string) => `/hosts/${hostId}/agent`;
/** Long enough for two missed renewals (a slow disk, a store failing over); a crashed agent on another machine blocks a start this long at most. */
export const HOST_CLAIM_TTL_SECONDS = 15;
/** A PID namespace that could not be read: never judged equal to another. */
const UNKNOWN = 'unknown';
/** How often a start waiting for a claim to expire, or a running agent that lost its claim, looks again. */
const RETRY_MS = 1000;

export type ClaimStore = Pick<Store, 'get' | 'txn' | 'grantLease'>;

/** The store's claim operations, if it has leases and transactions (the embedded store and etcd do; test fakes may not). */
export function claimStoreOf(store: Pick<Store, 'get'> & Partial<Pick<Store, 'txn' | 'grantLease'>>): ClaimStore | undefined {
  const { txn, grantLease } = store;
  if (!txn || !grantLease) return undefined;
  return { get: (key) => store.get(key), txn: txn.bind(store), grantLease: grantLease.bind(store) };
}

/** Who holds a host id: enough for an operator to find the other agent, and for an agent on the same machine to tell whether it still runs. */
export interface Claimant {
  readonly machine: string;
  /** `/proc/sys/kernel/random/boot_id`: the same kernel since its last boot. */
  readonly bootId: string;
  /**
   * `/proc/self/ns/pid` (`pid:[4026531836]`): containers share the host's boot id but not its
   * PID namespace, where another namespace's pid means nothing. Only a holder of the same boot
   * and the same PID namespace is checked by pid; any other is waited out by its lease.
   */
  readonly pidNamespace: string;
  readonly pid: number;
  /** The process's start time (clock ticks since boot, `/proc/<pid>/stat`; runner/proc-info.ts): a reused pid has another. */
  readonly startTicks: number;
  /** Tells two agents of one process apart (tests). */
  readonly instance: string;
  readonly address?: string;
  readonly since: string;
}

export interface HostClaimOptions {
  readonly store: ClaimStore;
  readonly hostId: string;
  readonly logger: AgentLogger;
  readonly address?: string;
  readonly ttlSeconds?: number;
  /** How long a start waits for a claim held elsewhere to expire before refusing; default one ttl and a renewal. */
  readonly waitMs?: number;
  /** Called once if, after losing the claim, another agent is found holding it. */
  readonly onTakenOver?: (holder: Claimant | undefined, message: string) => void;
  /** Claim held (1) or not (0), for the agent's gauge. */
  readonly onHeld?: (held: boolean) => void;
}

export class HostClaim {
  private lease: Lease | undefined;
  private renewal: NodeJS.Timeout | undefined;
  /** The modRevision of the claim this agent wrote: any other means it is not ours any more. */
  private claimRevision: number | undefined;
  private regaining: Promise<void> | undefined;
  /** When the last successful renewal (or the claim) was sent, monotonic ms. */
  private renewedAt = 0;
  /** What onHeld was last told: a change of held() is reported at the end of a renewal round. */
  private reportedHeld = false;
  private released = false;
  private takenOver = false;

  private constructor(
    private readonly options: HostClaimOptions,
    readonly claimant: Claimant,
  ) {}

  /** Claims the host id, waiting out a holder that may have died; throws HOST_CLAIMED when another agent holds it. */
  static async acquire(options: HostClaimOptions): Promise<HostClaim> {
    const claim = new HostClaim(options, thisProcess(options.address));
    const ttl = options.ttlSeconds ?? HOST_CLAIM_TTL_SECONDS;
    const deadline = Date.now() + (options.waitMs ?? ttl * 1000 + RETRY_MS);
    let waited = false;
    for (;;) {
      const holder = await claim.tryClaim();
      if (!holder) break;
      // A live agent of this machine refuses at once; one elsewhere may be gone, which its lease tells.
      if (Date.now() >= deadline || (await claim.liveHere(holder.claimant)) === true) throw claimedError(options.hostId, holder.claimant, holder.value);
      if (!waited) options.logger.warn({ holder: holder.claimant ?? holder.value, wait_ms: deadline - Date.now() }, 'another agent holds this host id; waiting for its claim to expire');
      waited = true;
      await sleep(Math.min(RETRY_MS, Math.max(0, deadline - Date.now())));
    }
    claim.keep();
    options.logger.info({ key: HOST_CLAIM_KEY(options.hostId), ttl_seconds: ttl }, 'host id claimed');
    return claim;
  }

  /**
   * True while the claim is surely this agent's: its lease neither lost nor released, and a
   * renewal sent less than one ttl ago succeeded (the lease runs at least a ttl from when that
   * request left). A store that stops answering renewals does not say the lease expired, but
   * after one ttl it may have, and another agent may hold the key.
   */
  held(): boolean {
    return this.lease !== undefined && !this.released && performance.now() - this.renewedAt < this.lease.ttlSeconds * 1000;
  }

  /** Gives the claim up (stop): the next agent starts at once instead of waiting one ttl. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearTimeout(this.renewal);
    await this.regaining?.catch(() => undefined);
    const lease = this.lease;
    this.lease = undefined;
    await lease?.revoke().catch((error: Error) => this.options.logger.warn({ error: error.message }, 'could not release the host claim; it expires within its ttl'));
    this.options.onHeld?.(false);
  }

  /**
   * One attempt: writes the claim if the key is absent, removes a stale claim of this machine.
   * Resolves to undefined when claimed, else to the holder (as read, and parsed when it can be).
   */
  private async tryClaim(attempt = 1): Promise<{ claimant?: Claimant; value: string } | undefined> {
    const { store, hostId } = this.options;
    const key = HOST_CLAIM_KEY(hostId);
    const sentAt = performance.now();
    const lease = await store.grantLease(this.options.ttlSeconds ?? HOST_CLAIM_TTL_SECONDS);
    let claimed = false;
    try {
      const result = await store.txn([{ key, modRevision: 0 }], [{ kind: 'put', key, value: JSON.stringify(this.claimant), leaseId: lease.id }]);
      claimed = result.succeeded;
      if (claimed) this.claimRevision = result.revision;
    } finally {
      if (!claimed) await lease.revoke().catch(() => undefined);
    }
    if (claimed) {
      this.lease = lease;
      this.renewedAt = sentAt;
      this.reportedHeld = true;
      this.options.onHeld?.(true);
      return undefined;
    }
    const current = await store.get(key);
    // Released between the txn and the read: try again (a few times; the caller retries later).
    if (!current) return attempt < 3 ? this.tryClaim(attempt + 1) : { value: '(released while being read)' };
    const claimant = parseClaimant(current.value);
    if (claimant && (await this.liveHere(claimant)) === false) {
      // A stale claim of this machine (its agent was killed): delete it if unchanged since read.
      const removed = await store.txn([{ key, modRevision: current.modRevision }], [{ kind: 'delete', key }]);
      if (removed.succeeded) this.options.logger.warn({ holder: claimant }, 'took over the host claim of an agent of this machine that no longer runs');
      if (attempt < 3) return this.tryClaim(attempt + 1);
    }
    return { ...(claimant ? { claimant } : {}), value: current.value };
  }

  /** Whether the holder is a live process of this boot: undefined when it is not of this boot (cannot tell). */
  private async liveHere(holder: Claimant | undefined): Promise<boolean | undefined> {
    if (!holder || holder.bootId !== this.claimant.bootId || holder.pidNamespace !== this.claimant.pidNamespace || holder.pidNamespace === UNKNOWN) return undefined;
    if (holder.pid === this.claimant.pid && holder.startTicks === this.claimant.startTicks) return holder.instance !== this.claimant.instance;
    return isSameProcessAlive(holder.pid, holder.startTicks);
  }

  /**
   * Renews at a third of the ttl (as etcd's clients do) and checks the key is still this claim:
   * a lease that expired, or a key deleted or rewritten behind its back (`etcdctl del`), is a
   * loss. A renewal that fails otherwise (the store briefly away) is retried next round; if it
   * stays away past the ttl, the next renewal finds the lease gone.
   */
  private keep(): void {
    const lease = this.lease;
    if (!lease || this.released) return;
    const { store, hostId } = this.options;
    const everyMs = (lease.ttlSeconds * 1000) / 3;
    const renew = async (): Promise<void> => {
      if (this.released || lease !== this.lease) return;
      const startedAt = Date.now();
      const sentAt = performance.now();
      let lost: string | undefined;
      let renewed = false;
      try {
        await lease.keepAlive();
        const current = await store.get(HOST_CLAIM_KEY(hostId));
        if (current?.modRevision !== this.claimRevision) lost = current ? 'its key was rewritten by someone else' : 'its key was deleted';
        else renewed = true;
      } catch (error) {
        if (error instanceof StoreError && error.code === 'STORE_CLOSED') return;
        if (error instanceof StoreError && error.code === 'LEASE_LOST') lost = 'its lease expired';
      }
      if (this.released || lease !== this.lease) return;
      if (renewed) this.renewedAt = sentAt;
      if (lost === undefined) {
        // Told whichever way held() changed. A renewal that succeeds only after more than a ttl
        // leaves it false (the lease may have lapsed meanwhile), until a prompt one follows.
        const held = this.held();
        if (held !== this.reportedHeld) {
          this.reportedHeld = held;
          if (held) this.options.logger.info('host claim renewed again');
          else this.options.logger.error({ ttl_seconds: lease.ttlSeconds }, 'host claim not renewed within its ttl (the store is not answering in time): it may have expired; reconcile passes start and stop nothing until it is renewed');
          this.options.onHeld?.(held);
        }
        // At a fixed rate, not a fixed pause: a slow round (each call may take the store's 5 s
        // deadline) must not push the next renewal past the ttl.
        this.renewal = setTimeout(() => void renew(), Math.max(0, everyMs - (Date.now() - startedAt)));
        return;
      }
      this.lease = undefined;
      await lease.revoke().catch(() => undefined);
      this.reportedHeld = false;
      this.options.onHeld?.(false);
      this.options.logger.error({ reason: lost }, `host claim lost (${lost}); still supervising the shards here, claiming again`);
      this.regaining = this.regain();
    };
    this.renewal = setTimeout(() => void renew(), everyMs);
  }

  /** After a loss: claims again once the key is free; reports a takeover if another agent got it. */
  private async regain(): Promise<void> {
    while (!this.released) {
      try {
        const holder = await this.tryClaim();
        if (!holder) {
          this.options.logger.info('host claim held again');
          this.keep();
          return;
        }
        if (!this.takenOver) {
          this.takenOver = true;
          const message = `another agent now holds host "${this.options.hostId}": ${describe(holder.claimant, holder.value)}`;
          this.options.logger.fatal({ holder: holder.claimant ?? holder.value }, message);
          this.options.onTakenOver?.(holder.claimant, message);
        }
        return;
      } catch (error) {
        if (error instanceof StoreError && error.code === 'STORE_CLOSED') return;
        // The store still away: try again; supervision goes on meanwhile.
      }
      await sleep(RETRY_MS);
    }
  }
}

function claimedError(hostId: string, holder: Claimant | undefined, raw: string): ShardformError {
  return new ShardformError(
    'HOST_CLAIMED',
    '--host',
    hostId,
    `--host: another agent holds host "${hostId}": ${describe(holder, raw)}; stop it first (or give this agent its own --host)`,
  );
}

function describe(holder: Claimant | undefined, raw: string): string {
  if (!holder) return `claim ${raw.slice(0, 200)}`;
  return `pid ${holder.pid} on ${holder.machine}${holder.address ? ` serving ${holder.address}` : ''}, since ${holder.since}`;
}

function parseClaimant(value: string): Claimant | undefined {
  try {
    const parsed = JSON.parse(value) as Partial<Claimant>;
    if (typeof parsed.bootId === 'string' && Number.isInteger(parsed.pid) && Number.isInteger(parsed.startTicks) && typeof parsed.instance === 'string' && typeof parsed.machine === 'string') {
      return parsed as Claimant;
    }
  } catch {
    // an unreadable claim is shown raw and waited out like one held elsewhere
  }
  return undefined;
}

function thisProcess(address: string | undefined): Claimant {
  return {
    machine: hostname(),
    bootId: readBootId(),
    pidNamespace: readPidNamespace(),
    pid: process.pid,
    startTicks: ownStartTicks(),
    instance: randomBytes(6).toString('hex'),
    ...(address ? { address } : {}),
    since: new Date().toISOString(),
  };
}

function ownStartTicks(): number {
  try {
    return parseProcStat(readFileSync('/proc/self/stat', 'utf8'))?.startTime ?? 0;
  } catch {
    return 0;
  }
}

function readPidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return UNKNOWN; // two such agents cannot tell they share a namespace: judged by lease, not pid
  }
}

function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return `unknown-${hostname()}`;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
