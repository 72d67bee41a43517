import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireCriu as requireCriuInstallation } from '../../../host-agent/checkpoint/criu';
import { CriuCheckpointer } from '../../../host-agent/checkpoint/criu-checkpointer';
import { MigrationDriver } from '../../../host-agent/migration/migration-driver';
import { MigrationJournal } from '../../../host-agent/migration/migration-journal';
import { detectCgroupDriver } from '../../../host-agent/cgroups/detect';
import { EmbeddedStore } from '../../../src/store/embedded-store';
import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';
import { requireCriu, requirePython } from '../../helpers/criu-prerequisite';
import { removeOwnerPrefix, sourceSide, startDestinationServer, pidsOf, type DestinationServer } from '../../helpers/migration-hosts';
import { useNetnsHosts } from '../../helpers/netns-hosts';
import { describePrivileged, requireCgroups, requireNetns } from '../../helpers/privileged';
import { namespaceInitPid, readCounter, startWorkload, waitFor } from '../../helpers/scratch-cgroup';

jest.setTimeout(120_000);

describePrivileged('live migration between test hosts (netns, real CRIU)', [requireCgroups, requireNetns, requireCriu, requirePython], () => {
  const hosts = useNetnsHosts(2, 'mg');
  const ownerPrefix = `shardform-e2e-${process.pid}`;
  const TOKEN = 'e2e-fleet-token';
  let work: string;
  let store: EmbeddedStore;
  let server: DestinationServer | undefined;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'shardform-migrate-'));
    writeFileSync(join(work, 'token'), TOKEN);
    store = new EmbeddedStore({ path: join(work, 'store.db') });
  });

  afterEach(async () => {
    await server?.stop();
    server = undefined;
    await removeOwnerPrefix(ownerPrefix, ['host-1', 'host-2']);
  });

  afterAll(async () => {
    await store?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const desired = (shardId: string): DesiredShard => ({
    shardId,
    applicationId: 'counter',
    limits: { cpuCores: 1, memoryBytes: 512 * 2 ** 20 },
    command: ['python3', 'workload.py'],
    env: {},
    stateDirectory: work,
  });

  async function setUp(shardId: string, mib: number, serverOpts: { memoryBytes?: number } = {}, workloadOpts: { children?: number } = {}) {
    const [, b] = hosts().hosts;
    server = await startDestinationServer(b, { tokenFile: join(work, 'token'), images: join(work, 'dest-images'), ownerPrefix, ...serverOpts });
    const source = await sourceSide({
      hostId: 'host-1',
      ownerPrefix,
      imagesRoot: join(work, 'source-images'),
      token: TOKEN,
      destinations: { 'host-2': server.url },
      desired: desired(shardId),
    });
    await source.driver.create(shardId);
    await source.driver.setLimits(shardId, desired(shardId).limits);
    const state = join(work, `${shardId}.state`);
    await startWorkload({ procsFiles: source.procsFiles, pids: source.pids }, state, mib, workloadOpts);
    const destination = detectCgroupDriver({ hostId: 'host-2', ownerPrefix });
    const journal = new MigrationJournal(store);
    const migrationDriver = new MigrationDriver({ journal, effects: source.effects });
    return { source, destination, state, journal, migrationDriver };
  }

  it('moves a counting shard from host-1 to host-2: it runs only there, with the same limits, and counts on', async () => {
    const { source, destination, state, migrationDriver } = await setUp('counter-0', 1);
    await waitFor('the counter to pass 20', () => readCounter(state), (n) => n > 20);
    const before = readCounter(state);

    const record = await migrationDriver.migrate({ id: 'mig-counter', fleet: 'e2e', shardId: 'counter-0', applicationId: 'counter', source: 'host-1', destination: 'host-2' });

    expect(record.history.map((h) => h.state)).toEqual(['planned', 'prepared', 'frozen', 'dumped', 'transferred', 'restored', 'committed', 'released', 'done']);
    expect(await source.driver.exists('counter-0')).toBe(false);
    const destPids = pidsOf(destination.procsFiles('counter-0'));
    expect(namespaceInitPid({ pids: () => destPids })).toBeDefined();
    expect(await destination.readLimits('counter-0')).toMatchObject({ cpuCores: 1, memoryBytes: 512 * 2 ** 20 });
    const after = readCounter(state);
    expect(after).toBeGreaterThanOrEqual(before);
    await waitFor('the migrated counter to advance', () => readCounter(state), (n) => n > after + 20);
    expect(record.bytesSent).toBeGreaterThan(0);
  });

  it('keeps 256 MiB of memory intact across hosts (same sha256 after restore)', async () => {
    const { destination, state, migrationDriver } = await setUp('memory-0', 256);
    const digest = readFileSync(`${state}.sha256`, 'utf8');
    const record = await migrationDriver.migrate({ id: 'mig-memory', fleet: 'e2e', shardId: 'memory-0', applicationId: 'counter', source: 'host-1', destination: 'host-2' });
    expect(record.state).toBe('done');
    expect(record.bytesSent).toBeGreaterThan(256 * 2 ** 20);
    // Where the kernel can, the shard ran on the destination while its memory was filled (lazy restore).
    if (await lazyRestoresHere()) expect(record.lazyPagesMs).toBeGreaterThan(0);
    // Part of the pages went out while CRIU still wrote them (dump-streamer.ts); the digest below proves they arrived whole.
    expect(record.streamedBytes).toBeGreaterThan(0);
    rmSync(`${state}.sha256`);
    const pid = namespaceInitPid({ pids: () => pidsOf(destination.procsFiles('memory-0')) })!;
    process.kill(pid, 'SIGUSR1');
    const after = await waitFor('the digest after migration', () => (existsSync(`${state}.sha256`) ? readFileSync(`${state}.sha256`, 'utf8') : ''), (d) => d.length === 64);
    expect(after).toBe(digest);
  });

  it('pre-copies 256 MiB while the shard runs, then sends only what changed after the freeze: memory intact, counting on', async () => {
    const { source, destination, state, migrationDriver } = await setUp('precopy-0', 256);
    const digest = readFileSync(`${state}.sha256`, 'utf8');
    const kernelTracksDirtyPages = (await new CriuCheckpointer(await requireCriuInstallation()).supportsPreCopy()).ok;
    await waitFor('the counter to pass 20', () => readCounter(state), (n) => n > 20);
    const before = readCounter(state);

    const record = await migrationDriver.migrate({ id: 'mig-precopy', fleet: 'e2e', shardId: 'precopy-0', applicationId: 'counter', source: 'host-1', destination: 'host-2', preCopy: true });

    expect(record.state).toBe('done');
    // CRIU's own pre-dumps where the kernel tracks dirty pages, else the page-content shadow.
    expect(record.preCopyMethod).toBe(kernelTracksDirtyPages ? 'criu' : 'shadow');
    // A pre-copied image is a chain of rounds; it is restored lazily all the same (lazy-image.ts).
    if (await lazyRestoresHere()) expect(record.lazyPagesMs).toBeGreaterThan(0);
    expect(record.rounds.length).toBeGreaterThanOrEqual(2);
    expect(record.rounds[0]!.bytes).toBeGreaterThan(256 * 2 ** 20); // the first round sends everything
    const preCopied = record.rounds.reduce((sum, r) => sum + r.bytes, 0);
    const afterFreeze = (record.bytesSent ?? 0) - preCopied;
    expect(afterFreeze).toBeLessThan(16 * 2 ** 20); // the idle 256 MiB are not sent again while frozen
    expect(afterFreeze).toBeGreaterThan(0);
    expect(await source.driver.exists('precopy-0')).toBe(false);
    const pid = namespaceInitPid({ pids: () => pidsOf(destination.procsFiles('precopy-0')) })!;
    const after = readCounter(state);
    expect(after).toBeGreaterThanOrEqual(before);
    await waitFor('the migrated counter to advance', () => readCounter(state), (n) => n > after + 20);
    rmSync(`${state}.sha256`);
    process.kill(pid, 'SIGUSR1');
    const digestAfter = await waitFor('the digest after migration', () => (existsSync(`${state}.sha256`) ? readFileSync(`${state}.sha256`, 'utf8') : ''), (d) => d.length === 64);
    expect(digestAfter).toBe(digest);
  });

  it.each([
    ['pre-copies', true],
    // Without pre-copy, the three pages files go out one after another while CRIU writes them (dump-streamer.ts).
    ['streams the final dump of', false],
  ])('%s a shard of three processes (an init and two children, each with its own memory): each comes back with its own memory, counting on', async (_how, preCopy) => {
    const shardId = preCopy ? 'family-0' : 'family-1';
    const { source, destination, state, migrationDriver } = await setUp(shardId, 48, {}, { children: 2 });
    const files = [state, `${state}.child0`, `${state}.child1`];
    const digests = files.map((f) => readFileSync(`${f}.sha256`, 'utf8'));
    expect(new Set(digests).size).toBe(3); // three different memories: a page given to the wrong process shows
    await waitFor('every counter to pass 20', () => Math.min(...files.map(readCounter)), (n) => n > 20);
    const before = files.map(readCounter);
    expect(pidsOf(source.procsFiles)).toHaveLength(4); // unshare, and the three in the namespace

    const record = await migrationDriver.migrate({ id: `mig-${shardId}`, fleet: 'e2e', shardId, applicationId: 'counter', source: 'host-1', destination: 'host-2', preCopy });

    expect(record.state).toBe('done');
    if (await lazyRestoresHere()) expect(record.lazyPagesMs).toBeGreaterThan(0);
    if (preCopy) {
      expect(record.rounds.length).toBeGreaterThanOrEqual(2);
      const preCopied = record.rounds.reduce((sum, r) => sum + r.bytes, 0);
      expect(record.rounds[0]!.bytes).toBeGreaterThan(3 * 48 * 2 ** 20); // every process's memory in round 1
      expect((record.bytesSent ?? 0) - preCopied).toBeLessThan(16 * 2 ** 20); // and none of it again while frozen
    } else {
      expect(record.streamedBytes).toBeGreaterThan(0);
    }
    const after = files.map(readCounter);
    after.forEach((n, i) => expect(n).toBeGreaterThanOrEqual(before[i]!));
    await waitFor('every migrated counter to advance', () => files.map(readCounter), (now) => now.every((n, i) => n > after[i]! + 20));
    const restored = pidsOf(destination.procsFiles(shardId));
    for (const f of files) rmSync(`${f}.sha256`);
    for (const pid of restored) process.kill(pid, 'SIGUSR1');
    const digestsAfter = await waitFor('every digest after migration', () => files.map((f) => (existsSync(`${f}.sha256`) ? readFileSync(`${f}.sha256`, 'utf8') : '')), (d) => d.every((x) => x.length === 64));
    expect(digestsAfter).toEqual(digests);
  });

  it('aborts when the destination is out of capacity: the shard keeps running on the source only', async () => {
    const { source, destination, state, migrationDriver } = await setUp('full-0', 1, { memoryBytes: 64 * 2 ** 20 });
    const record = await migrationDriver.migrate({ id: 'mig-full', fleet: 'e2e', shardId: 'full-0', applicationId: 'counter', source: 'host-1', destination: 'host-2' });
    expect(record.state).toBe('aborted');
    expect(record.abort).toMatchObject({ from: 'prepared', cleanup: 'complete' });
    expect(record.abort?.reason).toContain(`out of capacity: ${64 * 2 ** 20} memory bytes free, shard full-0 needs ${512 * 2 ** 20}`);
    expect(await destination.exists('full-0')).toBe(false);
    expect(namespaceInitPid(source)).toBeDefined();
    const now = readCounter(state);
    await waitFor('the source to keep counting', () => readCounter(state), (n) => n > now + 10);
  });
});

/** Whether this host's destination restores lazily (the server's default; criu check --feature uffd-noncoop). */
async function lazyRestoresHere(): Promise<boolean> {
  return new CriuCheckpointer(await requireCriuInstallation(), { lazyPages: 'auto' }).usesLazyPages();
}
