/**
 * Pieces of a real migration between test hosts: a destination migration server inside a
 * host's network namespace, and the source side (cgroup driver, hand-over, CRIU, client,
 * effects) in the test process. Every name is under one owner prefix per run, so cleanup
 * (removeOwnerPrefix) finds everything.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { detectCgroupDriver, type DetectedCgroupDriver } from '../../host-agent/cgroups/detect';
import { requireCriu } from '../../host-agent/checkpoint/criu';
import { CriuCheckpointer } from '../../host-agent/checkpoint/criu-checkpointer';
import { CgroupHandover } from '../../host-agent/migration/cgroup-handover';
import { CheckpointMigrationEffects } from '../../host-agent/migration/checkpoint-migration-effects';
import { MigrationClient } from '../../host-agent/migration/migration-client';
import type { DesiredShard } from '../../host-agent/reconcile/desired-shard';
import { spawnInHost, type NetnsHost } from '../../src/dev/netns-hosts';

export const REPO = join(__dirname, '..', '..');
export const MIGRATION_PORT = 7100;

export interface DestinationServer {
  readonly url: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

export async function startDestinationServer(
  host: NetnsHost,
  opts: {
    tokenFile: string; images: string; ownerPrefix: string; memoryBytes?: number; cpuCores?: number;
    /** Keep CRIU's kernel probe on a tmpfs at /run/criu.kdat as the agent does (until reboot); tests leave the host alone. */
    kdatCache?: boolean;
  },
): Promise<DestinationServer> {
  const child = spawnInHost(
    host,
    [
      // tsx's require hook in this very process (its CLI would fork a child that outlives a kill)
      process.execPath, '--require', require.resolve('tsx/cjs'), join(REPO, 'host-agent/migration/migration-server.ts'),
      '--host-id', host.id,
      '--listen', `${host.address}:${MIGRATION_PORT}`,
      '--token-file', opts.tokenFile,
      '--images', opts.images,
      '--owner-prefix', opts.ownerPrefix,
      '--cpu-cores', String(opts.cpuCores ?? 2),
      '--memory-bytes', String(opts.memoryBytes ?? 4 * 2 ** 30),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SHARDFORM_CRIU_KDAT_CACHE: opts.kdatCache ? 'on' : 'off' } },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`migration server on ${host.id} did not start: ${stderr}`)), 30_000);
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line).listening as string);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`migration server on ${host.id} exited ${code}: ${stderr}`));
    });
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  };
  return { url, child, stop };
}

export interface SourceSide {
  readonly driver: DetectedCgroupDriver;
  readonly handover: CgroupHandover;
  readonly effects: CheckpointMigrationEffects;
  readonly desired: DesiredShard;
  /** Sync pids of the shard's cgroup (for the workload helper). */
  pids(): number[];
  procsFiles: readonly string[];
}

export async function sourceSide(opts: {
  hostId: string;
  ownerPrefix: string;
  imagesRoot: string;
  token: string;
  destinations: Record<string, string>;
  desired: DesiredShard;
  idleTimeoutMs?: number;
  requestTimeoutMs?: number;
}): Promise<SourceSide> {
  const driver = detectCgroupDriver({ hostId: opts.hostId, ownerPrefix: opts.ownerPrefix });
  const handover = new CgroupHandover(driver);
  const checkpointer = new CriuCheckpointer(await requireCriu());
  const clients = new Map<string, MigrationClient>();
  const effects = new CheckpointMigrationEffects({
    driver,
    handover,
    checkpointer,
    imagesRoot: opts.imagesRoot,
    describe: async () => opts.desired,
    stateDirectoryOf: async () => opts.desired.stateDirectory,
    client: (hostId) => {
      const baseUrl = opts.destinations[hostId];
      if (!baseUrl) throw new Error(`no test destination ${hostId}`);
      if (!clients.has(hostId)) {
        clients.set(hostId, new MigrationClient({ baseUrl, token: opts.token, idleTimeoutMs: opts.idleTimeoutMs ?? 3000, requestTimeoutMs: opts.requestTimeoutMs ?? 30_000 }));
      }
      return clients.get(hostId)!;
    },
  });
  const shardId = opts.desired.shardId;
  const procsFiles = driver.procsFiles(shardId);
  return { driver, handover, effects, desired: opts.desired, procsFiles, pids: () => pidsOf(procsFiles) };
}

export function pidsOf(procsFiles: readonly string[]): number[] {
  const all = new Set<number>();
  for (const file of procsFiles) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n')) if (line.trim()) all.add(Number(line));
  }
  return [...all];
}

/** Kills and removes every shard of every host under `ownerPrefix`, then the prefix directories. */
export async function removeOwnerPrefix(ownerPrefix: string, hostIds: readonly string[]): Promise<void> {
  for (const hostId of hostIds) {
    const driver = detectCgroupDriver({ hostId, ownerPrefix });
    for (const shardId of await driver.list()) {
      await driver.killAll(shardId).catch(() => undefined);
      await driver.remove(shardId).catch(() => undefined);
    }
    for (const dir of new Set(Object.values(driver.paths('x')).map((p) => join(p, '..')))) {
      try {
        rmdirSync(dir);
      } catch {
        // not there or not empty
      }
    }
  }
  for (const mount of readdirSync('/sys/fs/cgroup')) {
    const top = join('/sys/fs/cgroup', mount, ownerPrefix);
    try {
      rmdirSync(top);
    } catch {
      // absent
    }
  }
  try {
    rmdirSync(join('/sys/fs/cgroup', ownerPrefix)); // a v2-only host
  } catch {
    // absent
  }
}

/** Runs `before[step]` before the effect of that name (fault injection at a precise step). */
export function withHooks<T extends object>(effects: T, before: Partial<Record<keyof T, () => Promise<void>>>): T {
  return new Proxy(effects, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      const hook = before[property as keyof T];
      if (typeof value !== 'function' || !hook) return typeof value === 'function' ? value.bind(target) : value;
      return async (...args: unknown[]) => {
        await hook();
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/**
 * A TCP relay that flips one bit of the byte stream once `afterBytes` have passed: an image
 * corrupted in transit, below HTTP, where only the sha256 check can notice.
 */
export async function corruptingRelay(target: { host: string; port: number }, afterBytes: number): Promise<{ url: string; close(): Promise<void> }> {
  const net = await import('node:net');
  let seen = 0;
  let flipped = false;
  const sockets = new Set<import('node:net').Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (chunk: Buffer) => {
      if (!flipped && seen + chunk.length > afterBytes) {
        const at = Math.max(0, afterBytes - seen);
        chunk[at] = (chunk[at] as number) ^ 0x01;
        flipped = true;
      }
      seen += chunk.length;
      upstream.write(chunk);
    });
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as import('node:net').AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
