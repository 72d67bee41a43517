import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCgroupDriver } from '../../../host-agent/cgroups/detect';
import { MigrationDriver } from '../../../host-agent/migration/migration-driver';
import { MigrationJournal } from '../../../host-agent/migration/migration-journal';
import type { MigrationEffects } from '../../../host-agent/migration/migration-effects';
import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';
import { cutLink, restoreLink } from '../../../src/dev/netns-hosts';
import { EmbeddedStore } from '../../../src/store/embedded-store';
import { requireCriu, requirePython } from '../../helpers/criu-prerequisite';
import { corruptingRelay, MIGRATION_PORT, pidsOf, removeOwnerPrefix, sourceSide, startDestinationServer, withHooks, type DestinationServer } from '../../helpers/migration-hosts';
import { useNetnsHosts } from '../../helpers/netns-hosts';
import { describePrivileged, requireCgroups, requireNetns } from '../../helpers/privileged';
import { namespaceInitPid, readCounter, startWorkload, waitFor } from '../../helpers/scratch-cgroup';

jest.setTimeout(120_000);

/**
 * Each fault must end with the shard running exactly once: on the source (aborted) with its
 * counter advancing, and nothing running in the destination's cgroup.
 */
describePrivileged('migration faults between test hosts: the shard ends up running exactly once', [requireCgroups, requireNetns, requireCriu, requirePython], () => {
  const hosts = useNetnsHosts(2, 'mf');
  const ownerPrefix = `shardform-faults-${process.pid}`;
  const TOKEN = 'faults-fleet-token';
  let work: string;
  let store: EmbeddedStore;
  let servers: DestinationServer[] = [];

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'shardform-faults-'));
    writeFileSync(join(work, 'token'), TOKEN);
    store = new EmbeddedStore({ path: join(work, 'store.db') });
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop();
    for (const h of hosts().hosts) await restoreLink(h);
    await removeOwnerPrefix(ownerPrefix, ['host-1', 'host-2']);
  });
  afterAll(async () => {
    await store?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const desired = (shardId: string): DesiredShard => ({ shardId, applicationId: 'counter', limits: { cpuCores: 1, memoryBytes: 512 * 2 ** 20 }, command: ['python3'], env: {}, stateDirectory: work });

  async function server() {
    const started = await startDestinationServer(hosts().hosts[1]!, { tokenFile: join(work, 'token'), images: join(work, 'dest-images'), ownerPrefix });
    servers.push(started);
    return started;
  }

  async function setUp(shardId: string, mib: number, destinationUrl?: string) {
    const dest = await server();
    const source = await sourceSide({
      hostId: 'host-1', ownerPrefix, imagesRoot: join(work, 'source-images'), token: TOKEN,
      destinations: { 'host-2': destinationUrl ?? dest.url }, desired: desired(shardId), idleTimeoutMs: 2000, requestTimeoutMs: 3000,
    });
    await source.driver.create(shardId);
    await source.driver.setLimits(shardId, desired(shardId).limits);
    const state = join(work, `${shardId}.state`);
    await startWorkload({ procsFiles: source.procsFiles, pids: source.pids }, state, mib);
    const journal = new MigrationJournal(store);
    const destination = detectCgroupDriver({ hostId: 'host-2', ownerPrefix });
    return { dest, source, state, journal, destination };
  }

  async function expectRunningOnSourceOnly(source: Awaited<ReturnType<typeof setUp>>['source'], destination: ReturnType<typeof detectCgroupDriver>, shardId: string, state: string) {
    expect(namespaceInitPid(source)).toBeDefined();
    expect(pidsOf(destination.procsFiles(shardId))).toEqual([]);
    const now = readCounter(state);
    await waitFor('the source to count on', () => readCounter(state), (n) => n > now + 10);
  }

  const input = (id: string, shardId: string) => ({ id, fleet: 'faults', shardId, applicationId: 'counter', source: 'host-1', destination: 'host-2' });

  it('an image corrupted in transit is caught by sha256: aborted, source resumes', async () => {
    const placeholder = await server();
    const b = hosts().hosts[1]!;
    const relay = await corruptingRelay({ host: b.address, port: MIGRATION_PORT }, 1 << 20);
    await placeholder.stop();
    servers = [];
    try {
      const { source, state, journal, destination } = await setUp('corrupt-0', 8, relay.url);
      const record = await new MigrationDriver({ journal, effects: source.effects }).migrate(input('mig-corrupt', 'corrupt-0'));
      expect(record.state).toBe('aborted');
      expect(record.abort).toMatchObject({ from: 'transferred', cleanup: 'complete' });
      expect(record.abort?.reason).toMatch(/verify round 1 at .*TRANSFER_FAILED round 1: image file pages-\d+.img arrived as \d+ bytes sha256 [0-9a-f]{64}, expected \d+ bytes sha256 [0-9a-f]{64}/);
      await expectRunningOnSourceOnly(source, destination, 'corrupt-0', state);
      expect(await destination.exists('corrupt-0')).toBe(false);
    } finally {
      await relay.close();
    }
  });

  it('the link cut during transfer: aborted, source resumes; the destination is cleaned once the link is back', async () => {
    const { source, state, journal, destination } = await setUp('cut-0', 64);
    const b = hosts().hosts[1]!;
    const effects = withHooks<MigrationEffects>(source.effects, { transfer: () => cutLink(b) });
    const driver = new MigrationDriver({ journal, effects });
    await expect(driver.migrate(input('mig-cut', 'cut-0'))).rejects.toThrow(/abort at .* failed/);
    const pending = (await journal.load('faults', 'mig-cut'))!;
    expect(pending.record.abort).toMatchObject({ from: 'transferred', cleanup: 'pending' });
    expect(pending.record.abort?.reason).toMatch(/^transferred: upload/);
    await expectRunningOnSourceOnly(source, destination, 'cut-0', state);

    await restoreLink(b);
    const recovered = await new MigrationDriver({ journal, effects: source.effects }).recover(pending);
    expect(recovered.abort?.cleanup).toBe('complete');
    expect(await destination.exists('cut-0')).toBe(false);
  });

  it('the destination agent killed during transfer: aborted, source resumes; a restarted destination discards the copy', async () => {
    const { dest, source, state, journal, destination } = await setUp('kill-0', 16);
    const effects = withHooks<MigrationEffects>(source.effects, { transfer: () => dest.stop() });
    await expect(new MigrationDriver({ journal, effects }).migrate(input('mig-kill', 'kill-0'))).rejects.toThrow(/abort at .* failed/);
    await expectRunningOnSourceOnly(source, destination, 'kill-0', state);
    expect(await destination.exists('kill-0')).toBe(true); // prepared by the dead agent

    await server(); // same address: the source's client reaches the new agent
    const [entry] = await journal.unfinished('faults');
    expect(entry?.record.id).toBe('mig-kill');
    await new MigrationDriver({ journal, effects: source.effects }).recover(entry!);
    expect(await destination.exists('kill-0')).toBe(false);
    expect(await journal.unfinished('faults')).toEqual([]);
  });

  it('the source agent killed after the final dump and restarted: recovery aborts, the source runs again, the old driver is fenced off', async () => {
    const { source, state, journal, destination } = await setUp('crash-0', 16);
    let release!: (error: Error) => void;
    const hang = new Promise<void>((_resolve, reject) => (release = reject));
    const dying = new MigrationDriver({ journal, effects: withHooks<MigrationEffects>(source.effects, { transfer: () => hang }) }).migrate(input('mig-crash', 'crash-0'));
    await waitForState(journal, 'mig-crash', 'transferred');
    expect(await counterStopped(state)).toBe(true); // dumped and left stopped: not counting

    // "Restart": a new agent with nothing in memory but the journal and the cgroups.
    const restarted = await sourceSide({ hostId: 'host-1', ownerPrefix, imagesRoot: join(work, 'source-images'), token: TOKEN, destinations: { 'host-2': servers[0]!.url }, desired: desired('crash-0') });
    const [final] = await new MigrationDriver({ journal, effects: restarted.effects }).recoverAll('faults');
    expect(final).toMatchObject({ state: 'aborted', abort: { from: 'transferred', cleanup: 'complete' } });
    await expectRunningOnSourceOnly(source, destination, 'crash-0', state);

    // The old driver wakes up: its journal write is refused, so it cannot act on the shard.
    release(new Error('woke up late'));
    await expect(dying).rejects.toMatchObject({ code: 'JOURNAL_CONFLICT' });
    await expectRunningOnSourceOnly(source, destination, 'crash-0', state);
  });
});

async function waitForState(journal: MigrationJournal, id: string, state: string): Promise<void> {
  for (let i = 0; i < 400; i += 1) {
    const entry = await journal.load('faults', id);
    if (entry?.record.state === state) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`migration ${id} never reached ${state}`);
}

/** True when the counter (written every 100 ms while running) does not move over 400 ms. */
async function counterStopped(state: string): Promise<boolean> {
  const first = readCounter(state);
  await new Promise((r) => setTimeout(r, 400));
  return readCounter(state) === first;
}
