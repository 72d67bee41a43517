/**
 * The agent and its host claim (host-claim.ts) over fakes for the kernel and the real embedded
 * store: a second agent for the same host id, on another address, is refused before it adopts
 * anything; after the first stops it starts at once; an agent whose host id another agent took
 * over stops itself (shards keep running) and says who has it.
 */
import { join } from 'node:path';
import { Agent } from '../../host-agent/agent';
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

  const agentFor = (name: string, wrap: (store: EmbeddedStore) => EmbeddedStore = (store) => store) => {
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
    let away = false;
    const { agent, manager } = agentFor('away', (store) =>
      // The store as the agent sees it: every call fails while "away".
      new Proxy(store, {
        get(target, name, receiver) {
          const value = Reflect.get(target, name, receiver) as unknown;
          if (typeof value !== 'function' || name === 'close') return value;
          return (...args: unknown[]) => (away ? Promise.reject(storeError('STORE_UNAVAILABLE', 'store', 'embedded', 'away (test)')) : (value as (...a: unknown[]) => unknown).apply(target, args));
        },
      }),
    );
    await agent.start();
    const applies = () => manager.calls.filter((c) => c.method === 'apply').length;
    const held = async () => (await agent.metrics.registry.getSingleMetricAsString('shardform_host_claim_held')).trim().endsWith(' 1');
    const before = applies();
    away = true;
    await until('the claim to count as not held', async () => !(await held()));
    expect(await agent.reconcile()).toBeUndefined();
    expect(applies()).toBe(before);
    away = false;
    // The lease ran out meanwhile: the next renewal finds it gone, and the key is claimed again.
    await until('the claim held again', held);
    await agent.reconcile();
    expect(applies()).toBe(before + 1);
    await agent.stop();
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
