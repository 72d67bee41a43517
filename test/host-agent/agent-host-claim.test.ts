/**
 * The agent and its host claim (host-claim.ts) over fakes for the kernel and the real embedded
 * store: a second agent for the same host id, on another address, is refused before it adopts
 * anything; after the first stops it starts at once; an agent whose host id another agent took
 * over stops itself (shards keep running) and says who has it.
 */
import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../host-agent/agent';
import type { AgentMigrationContext } from '../../host-agent/agent-migration';
import { HOST_CLAIM_KEY } from '../../host-agent/host-claim';
import { createLogger, memoryLogDestination } from '../../host-agent/log';
import { serializePlan } from '../../src/contracts/plan';
import { EmbeddedStore } from '../../src/store/embedded-store';
import { storeError } from '../../src/store/store-error';
import { tempDir } from '../helpers/cli';
import { examplePlan } from '../helpers/plan-fixture';
import { FakeDriver, FakeShardManager, MemoryHistory } from '../helpers/agent-fakes';

const TOKEN = 'agent-test-token-0123456789';

async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; !(await condition()); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The store as an agent sees it: every call but close fails while `away` (a partition, a hung server). */
function awayableStore() {
  const state = {
    away: false,
    wrap: (store: EmbeddedStore): EmbeddedStore =>
      new Proxy(store, {
        get(target, name, receiver) {
          const value = Reflect.get(target, name, receiver) as unknown;
          if (typeof value !== 'function' || name === 'close') return value;
          return (...args: unknown[]) => (state.away ? Promise.reject(storeError('STORE_UNAVAILABLE', 'store', 'embedded', 'away (test)')) : (value as (...a: unknown[]) => unknown).apply(target, args));
        },
      }),
  };
  return state;
}

const heldOf = (agent: Agent) => async () => (await agent.metrics.registry.getSingleMetricAsString('shardform_host_claim_held')).trim().endsWith(' 1');

describe('Agent: one agent per host id', () => {
  const dir = tempDir('agent-claim');
  const tokenFile = dir.file('token', TOKEN);
  const planFile = dir.file('plan.json', serializePlan(examplePlan((p) => void (p.security = { auth: 'token', tokenFile }))));
  const stores: EmbeddedStore[] = [];
  const agents: Agent[] = [];
  afterAll(async () => {
    for (const agent of agents) await agent.stop();
    for (const store of stores) await store.close();
    dir.remove();
  });

  const agentFor = (name: string, wrap: (store: EmbeddedStore) => EmbeddedStore = (store) => store, extra: Partial<AgentOptions> = {}) => {
    const manager = new FakeShardManager();
    const createKernel = jest.fn(async () => ({ driver: Object.assign(new FakeDriver(), { hostRoot: 'shardform/host-a' }) as never, manager }));
    const logs = memoryLogDestination();
    const agent = new Agent({
      hostId: 'host-a',
      plan: planFile,
      stateDir: join(dir.path, name),
      listen: '127.0.0.1:0',
      logger: createLogger({ level: 'debug', destination: logs }),
      // Each agent its own connection to one store file, as two processes would have.
      openStores: async () => {
        const store = new EmbeddedStore({ path: join(dir.path, 'store.db'), pollIntervalMs: 20 });
        stores.push(store);
        return { store: wrap(store), history: new MemoryHistory(), close: () => store.close() };
      },
      createKernel,
      planPollSeconds: 0,
      reconcileEverySeconds: 3600,
      hostClaimTtlSeconds: 3,
      ...extra,
    });
    agents.push(agent);
    return { agent, manager, createKernel, logs };
  };

  it('refuses a second agent for the host id before it adopts anything, naming the first; starts it once the first stops', async () => {
    const first = agentFor('first');
    await first.agent.start();
    expect(await first.agent.metrics.registry.getSingleMetricAsString('shardform_host_claim_held')).toMatch(/shardform_host_claim_held 1$/m);

    const second = agentFor('second');
    await expect(second.agent.start()).rejects.toMatchObject({
      code: 'HOST_CLAIMED',
      message: expect.stringMatching(new RegExp(`^--host: another agent holds host "host-a": pid ${process.pid} on .+ serving 127\\.0\\.0\\.1:0, since `)),
    });
    expect(second.createKernel).not.toHaveBeenCalled();
    await second.agent.stop();

    await first.agent.stop();
    const third = agentFor('third');
    await third.agent.start();
    expect(third.manager.calls[0]?.method).toBe('start');
    await third.agent.stop();
  });

  it('while its claim cannot be renewed (the store away for a ttl) it starts and stops nothing from the plan; once renewed it does again', async () => {
    const store = awayableStore();
    const { agent, manager } = agentFor('away', store.wrap);
    await agent.start();
    const applies = () => manager.calls.filter((c) => c.method === 'apply').length;
    const held = heldOf(agent);
    const before = applies();
    store.away = true;
    await until('the claim to count as not held', async () => !(await held()));
    expect(await agent.reconcile()).toBeUndefined();
    expect(applies()).toBe(before);
    store.away = false;
    // The lease ran out meanwhile: the next renewal finds it gone, and the key is claimed again.
    await until('the claim held again', held);
    await agent.reconcile();
    expect(applies()).toBe(before + 1);
    await agent.stop();
  });

  it('while its claim is not held it starts, takes in and recovers no migration; recovery runs once it is held again', async () => {
    const store = awayableStore();
    let context: AgentMigrationContext | undefined;
    const recover = jest.fn(async () => ({ recovered: [], failed: [] }));
    const { agent, logs } = agentFor('migrations', store.wrap, {
      reconcileEverySeconds: 0.2,
      // Migration is built only for a keeper that can hand shards over; the fake's is never called.
      createKernel: async () => ({ driver: Object.assign(new FakeDriver(), { hostRoot: 'shardform/host-a' }) as never, manager: new FakeShardManager(), handover: {} as never }),
      migration: async (ctx) => {
        context = ctx;
        return { plugins: [], recover };
      },
    });
    await agent.start();
    expect(recover).toHaveBeenCalledTimes(1); // at start, with the claim held
    expect(context!.notActingReason!()).toBeUndefined();

    store.away = true;
    await until('the claim to count as not held', async () => !(await heldOf(agent)()));
    expect(context!.notActingReason!()).toBe('the agent of host host-a does not hold its host claim now (another agent may act for it); try again once it does');
    // A migration ended unfinished meanwhile: recovery is asked for, and postponed while the claim is not held.
    context!.onRecoveryNeeded!();
    await until('the postponement logged', () => logs.lines().some((l) => String(l.msg).startsWith('migration recovery postponed')));
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(recover).toHaveBeenCalledTimes(1);
    expect(logs.lines().filter((l) => String(l.msg).startsWith('migration recovery postponed'))).toHaveLength(1);

    store.away = false;
    await until('the claim held again', heldOf(agent));
    await until('recovery run again', () => recover.mock.calls.length === 2);
    expect(context!.notActingReason!()).toBeUndefined();
    await agent.stop();
    expect(context!.notActingReason!()).toBe('the agent of host host-a is stopping');
  });

  it('a stop during the start ends the start before it takes anything; stops asked for together are one stop', async () => {
    const early = agentFor('stopped-early');
    const starting = early.agent.start();
    await early.agent.stop();
    await expect(starting).rejects.toThrow('the agent of host host-a was stopped while it started');
    expect(early.createKernel).not.toHaveBeenCalled();

    const { agent, manager } = agentFor('stopped-twice');
    await agent.start();
    const [first, second] = [agent.stop(), agent.stop()];
    // The second resolves only once the stop is done, not at once.
    await second;
    expect(manager.calls.filter((c) => c.method === 'close')).toHaveLength(1);
    await first;
    expect(manager.calls.filter((c) => c.method === 'close')).toHaveLength(1);
    // Nothing of either is left: the next agent for the host starts at once.
    const next = agentFor('after-stops');
    await next.agent.start();
    await next.agent.stop();
  });

  it('a step of stop that fails does not keep the claim: every later step runs, then the failure is thrown', async () => {
    const { agent, manager } = agentFor('failing-stop');
    await agent.start();
    manager.close = async () => {
      throw new Error('close failed (test)');
    };
    await expect(agent.stop()).rejects.toThrow('close failed (test)');
    const check = new EmbeddedStore({ path: join(dir.path, 'store.db') });
    stores.push(check);
    expect(await check.get(HOST_CLAIM_KEY('host-a'))).toBeUndefined();
    const next = agentFor('after-failing-stop');
    await next.agent.start();
    await next.agent.stop();
  });

  it('stops itself when another agent took its host id over, saying who; its shards are left running', async () => {
    const { agent, manager } = agentFor('taken');
    await agent.start();
    // Another agent on another machine claims the host id after this one's claim was removed
    // (an operator deleted it, or its lease ran out while the store was away).
    const other = stores.at(-1)!;
    await other.delete(HOST_CLAIM_KEY('host-a'));
    const lease = await other.grantLease(60);
    const claimant = { machine: 'elsewhere', bootId: 'b0b0b0b0-0000-4000-8000-000000000000', pid: 77, startTicks: 1, instance: 'x', address: '10.0.0.7:7100', since: '2026-11-28T01:02:03.000Z' };
    await other.put(HOST_CLAIM_KEY('host-a'), JSON.stringify(claimant), { leaseId: lease.id });

    const error = await agent.halted;
    expect(error).toMatchObject({ code: 'HOST_CLAIMED', message: 'another agent now holds host "host-a": pid 77 on elsewhere serving 10.0.0.7:7100, since 2026-11-28T01:02:03.000Z' });
    expect(manager.calls.map((c) => c.method)).toContain('close');
    expect(manager.calls.map((c) => c.method)).not.toContain('drain');
    // Its stop left the other agent's claim alone.
    const kept = new EmbeddedStore({ path: join(dir.path, 'store.db') });
    stores.push(kept);
    expect(JSON.parse((await kept.get(HOST_CLAIM_KEY('host-a')))!.value)).toMatchObject({ pid: 77 });
  });
});
