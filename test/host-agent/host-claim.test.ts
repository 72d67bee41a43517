/**
 * One agent per host id (host-agent/host-claim.ts), on the real embedded store with a manual
 * clock for lease expiry: a live holder refuses a start, naming itself; a holder elsewhere is
 * waited out for one ttl; a killed agent of this machine is taken over at once; a claim lost
 * while running is taken again when free, and a takeover by another agent is reported.
 */
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { HOST_CLAIM_KEY, HostClaim, type Claimant } from '../../host-agent/host-claim';
import { parseProcStat } from '../../host-agent/runner/proc-info';
import { createLogger, memoryLogDestination } from '../../host-agent/log';
import type { EmbeddedStore } from '../../src/store/embedded-store';
import { embeddedHarness, type EmbeddedHarness } from '../store/embedded-harness';

const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
const pidNamespace = readlinkSync('/proc/self/ns/pid');
const startTicksOf = (pid: number): number | undefined => {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.startTime;
  } catch {
    return undefined;
  }
};

async function until(what: string, condition: () => boolean, timeoutMs = 8000): Promise<void> {
  for (const end = Date.now() + timeoutMs; !condition(); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('HostClaim: one agent per host id', () => {
  let harness: EmbeddedHarness;
  let store: EmbeddedStore;
  const claims: HostClaim[] = [];
  const logs = memoryLogDestination();
  const logger = createLogger({ level: 'debug', destination: logs });
  const acquire = async (options: Partial<Parameters<typeof HostClaim.acquire>[0]> = {}) => {
    const claim = await HostClaim.acquire({ store, hostId: 'host-a', logger, ttlSeconds: 3, ...options });
    claims.push(claim);
    return claim;
  };
  /** Writes a claim as another agent would, on its own lease. */
  const holdAs = async (claimant: Partial<Claimant>, ttlSeconds = 3) => {
    const lease = await store.grantLease(ttlSeconds);
    const value = { machine: 'other-machine', bootId: 'b0b0b0b0-0000-4000-8000-000000000000', pidNamespace: 'pid:[4026531836]', pid: 4242, startTicks: 99, instance: 'other', since: '2026-11-28T00:00:00.000Z', ...claimant };
    const result = await store.txn([{ key: HOST_CLAIM_KEY('host-a'), modRevision: 0 }], [{ kind: 'put', key: HOST_CLAIM_KEY('host-a'), value: JSON.stringify(value), leaseId: lease.id }]);
    expect(result.succeeded).toBe(true);
    return lease;
  };
  const holder = async () => JSON.parse((await store.get(HOST_CLAIM_KEY('host-a')))!.value) as Claimant;

  beforeEach(async () => {
    harness = await embeddedHarness();
    store = harness.openEmbedded();
  });
  afterEach(async () => {
    for (const claim of claims.splice(0)) await claim.release();
    await harness.close();
  });

  it('claims the host id with who holds it, and a second agent is refused at once, named; after release the next one claims', async () => {
    const first = await acquire({ address: '10.0.0.1:7100' });
    expect(first.held()).toBe(true);
    expect(await holder()).toMatchObject({ bootId, pidNamespace, pid: process.pid, startTicks: startTicksOf(process.pid), address: '10.0.0.1:7100' });
    const started = Date.now();
    // A live agent of this machine (here: the same process, another agent instance) is not waited for.
    await expect(acquire({ waitMs: 60_000 })).rejects.toMatchObject({
      code: 'HOST_CLAIMED',
      field: '--host',
      value: 'host-a',
      message: expect.stringMatching(new RegExp(`^--host: another agent holds host "host-a": pid ${process.pid} on .+ serving 10\\.0\\.0\\.1:7100, since 20\\d\\d-.+; stop it first`)),
    });
    expect(Date.now() - started).toBeLessThan(30_000);
    await first.release();
    expect(await store.get(HOST_CLAIM_KEY('host-a'))).toBeUndefined();
    expect((await acquire()).held()).toBe(true);
  });

  it('waits for a claim held on another machine to expire, then claims; refuses, naming it, if it does not', async () => {
    await holdAs({ address: '10.0.0.9:7100' });
    const started = Date.now();
    await expect(acquire({ waitMs: 300 })).rejects.toMatchObject({ code: 'HOST_CLAIMED', message: expect.stringContaining('pid 4242 on other-machine serving 10.0.0.9:7100, since 2026-11-28T00:00:00.000Z') });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    // That agent died: its lease runs out while this one waits.
    setTimeout(() => harness.clock.advance(4), 200);
    const claim = await acquire({ waitMs: 5000 });
    expect(claim.held()).toBe(true);
    expect((await holder()).instance).toBe(claim.claimant.instance);
  });

  it('takes over at once the claim of an agent of this machine that was killed, or whose pid now names another process', async () => {
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    await until('the child to start', () => startTicksOf(child.pid!) !== undefined);
    const ticks = startTicksOf(child.pid!)!;
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    await until('the child to be reaped', () => startTicksOf(child.pid!) === undefined);
    await holdAs({ machine: 'this', bootId, pidNamespace, pid: child.pid!, startTicks: ticks }, 600);
    const started = Date.now();
    const claim = await acquire({ waitMs: 60_000 });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await holder()).instance).toBe(claim.claimant.instance);
    await claim.release();

    // Hung (stopped) is alive: refused. Killed but not yet reaped (a zombie): gone. The parent
    // here is a `sleep` that never reaps, so the killed child stays a zombie.
    const parent = spawn('sh', ['-c', 'sleep 60 & echo $!; exec sleep 61'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const hung = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()))));
    try {
      await until('the child to start', () => startTicksOf(hung) !== undefined);
      process.kill(hung, 'SIGSTOP');
      await holdAs({ machine: 'this', bootId, pidNamespace, pid: hung, startTicks: startTicksOf(hung)! }, 600);
      await expect(acquire({ waitMs: 60_000 })).rejects.toMatchObject({ code: 'HOST_CLAIMED' });
      process.kill(hung, 'SIGKILL');
      await until('the zombie', () => readFileSync(`/proc/${hung}/stat`, 'utf8').split(') ')[1]!.startsWith('Z'));
      expect((await acquire({ waitMs: 60_000 })).held()).toBe(true);
      await claims.at(-1)!.release();
    } finally {
      parent.kill('SIGKILL');
    }

    // A live pid with another start time: the pid was reused, the agent is gone.
    await holdAs({ machine: 'this', bootId, pidNamespace, pid: process.pid, startTicks: startTicksOf(process.pid)! + 1 }, 600);
    expect((await acquire({ waitMs: 60_000 })).held()).toBe(true);
  });

  it('a holder of this boot in another PID namespace (a container) is not judged by pid: it is waited out, not taken over', async () => {
    // Its pid means nothing here (this one is surely not running here); only its lease can tell.
    await holdAs({ machine: 'container', bootId, pidNamespace: 'pid:[4026532999]', pid: 2 ** 22 + 7, startTicks: 1 }, 600);
    await expect(acquire({ waitMs: 300 })).rejects.toMatchObject({ code: 'HOST_CLAIMED', message: expect.stringContaining('pid 4194311 on container') });
  });

  it('a claim held elsewhere whose value cannot be read is waited out and shown raw', async () => {
    const lease = await store.grantLease(3);
    await store.put(HOST_CLAIM_KEY('host-a'), 'not json', { leaseId: lease.id });
    await expect(acquire({ waitMs: 100 })).rejects.toMatchObject({ code: 'HOST_CLAIMED', message: expect.stringContaining('claim not json') });
  });

  it('lost while running (lease expired): claims again once free, held meanwhile reported as 0', async () => {
    const held: boolean[] = [];
    const onTakenOver = jest.fn();
    const claim = await acquire({ onHeld: (h) => held.push(h), onTakenOver });
    harness.clock.advance(4); // the store was away past the ttl: the next renewal finds the lease gone
    await until('the loss', () => held.includes(false));
    await until('the claim again', () => held.at(-1) === true && claim.held());
    expect(held).toEqual([true, false, true]);
    expect((await holder()).instance).toBe(claim.claimant.instance);
    expect(onTakenOver).not.toHaveBeenCalled();
    expect(logs.lines().some((l) => l.msg === 'host claim held again')).toBe(true);
  });

  it('a renewal that succeeds only after more than a ttl reports not held, then held again once a prompt one follows', async () => {
    const held: boolean[] = [];
    let slowOnce = false;
    // The store as the claim sees it: one renewal answers after 3.5 s (the ttl is 3 s), as a store
    // that hung and came back would; the lease itself never lapses (the harness's clock stands).
    const slowStore = new Proxy(store, {
      get(target, name, receiver) {
        if (name !== 'grantLease') return Reflect.get(target, name, receiver) as unknown;
        return async (ttl: number) => {
          const lease = await target.grantLease(ttl);
          return Object.assign(Object.create(Object.getPrototypeOf(lease) as object) as typeof lease, lease, {
            keepAlive: async () => {
              if (slowOnce) {
                slowOnce = false;
                await new Promise((resolve) => setTimeout(resolve, 3500));
              }
              return lease.keepAlive();
            },
            revoke: () => lease.revoke(),
          });
        };
      },
    });
    const claim = await acquire({ store: slowStore, onHeld: (h) => held.push(h) });
    slowOnce = true;
    await until('held again', () => held.length === 3 && claim.held());
    expect(held).toEqual([true, false, true]);
    expect(logs.lines().some((l) => l.msg === 'host claim renewed again')).toBe(true);
    expect((await holder()).instance).toBe(claim.claimant.instance);
  });

  it('a claim key deleted behind the agent\'s back (etcdctl del) counts as lost, and is claimed again', async () => {
    const held: boolean[] = [];
    const claim = await acquire({ onHeld: (h) => held.push(h) });
    await store.delete(HOST_CLAIM_KEY('host-a'));
    await until('the claim again', () => held.length === 3);
    expect(held).toEqual([true, false, true]);
    expect((await holder()).instance).toBe(claim.claimant.instance);
    expect(logs.lines().some((l) => l.reason === 'its key was deleted')).toBe(true);
  });

  it('lost while running and taken by another agent: reports the takeover once, naming the holder, and stays released', async () => {
    const onTakenOver = jest.fn();
    const claim = await acquire({ onTakenOver });
    // The renewal loop is slower than this: the lease expires and another agent claims first.
    harness.clock.advance(4);
    expect(await store.get(HOST_CLAIM_KEY('host-a'))).toBeUndefined();
    await holdAs({ address: '10.0.0.9:7100' }, 600);
    await until('the takeover report', () => onTakenOver.mock.calls.length > 0);
    expect(onTakenOver).toHaveBeenCalledTimes(1);
    expect(onTakenOver.mock.calls[0][0]).toMatchObject({ pid: 4242, machine: 'other-machine' });
    expect(onTakenOver.mock.calls[0][1]).toBe('another agent now holds host "host-a": pid 4242 on other-machine serving 10.0.0.9:7100, since 2026-11-28T00:00:00.000Z');
    expect(claim.held()).toBe(false);
    // Releasing leaves the other agent's claim alone.
    await claim.release();
    expect((await holder()).pid).toBe(4242);
  });
});
