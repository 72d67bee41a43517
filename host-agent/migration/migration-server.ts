/**
 * A destination agent that serves only the migration routes, for test hosts (network
 * namespaces) and `shardform dev`: real cgroups (its own `shardform/<host>` root), real CRIU,
 * the fleet token from a file. Run it inside a host's namespace:
 *   nsenter --net=/run/netns/shardform-dev-host-2 node -r tsx/cjs host-agent/migration/migration-server.ts \
 *     --host-id host-2 --listen 10.213.x.12:7100 --token-file /run/token --images /var/tmp/images \
 *     --cpu-cores 2 --memory-bytes 4294967296
 * Prints one JSON line `{"listening":"http://..."}` when ready; SIGTERM closes it.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { detectCgroupDriver } from '../cgroups/detect';
import { criuSwitchOn, requireCriu } from '../checkpoint/criu';
import { CriuCheckpointer } from '../checkpoint/criu-checkpointer';
import { kdatCacheWanted, keepCriuKdatCache } from '../checkpoint/criu-kdat-cache';
import { buildMigrationApp } from '../api/migration-app';
import { migrationRoutes } from '../api/migration-routes';
import { CgroupHandover } from './cgroup-handover';
import { IncomingMigrations } from './incoming-migrations';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'host-id': { type: 'string' },
      listen: { type: 'string' },
      'token-file': { type: 'string' },
      images: { type: 'string' },
      'cpu-cores': { type: 'string', default: '2' },
      'memory-bytes': { type: 'string', default: String(4 * 2 ** 30) },
      'owner-prefix': { type: 'string', default: 'shardform' },
    },
  });
  const hostId = values['host-id'];
  const listen = values.listen;
  const tokenFile = values['token-file'];
  const images = values.images;
  if (!hostId || !listen || !tokenFile || !images) throw new Error('usage: migration-server --host-id ID --listen ADDR:PORT --token-file FILE --images DIR');
  const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];
  const capacity = { cpuCores: Number(values['cpu-cores']), memoryBytes: Number(values['memory-bytes']) };
  const driver = detectCgroupDriver({ hostId, ownerPrefix: values['owner-prefix'] });
  const criu = await requireCriu();
  // As the agent does at start: CRIU loads its kernel probe instead of probing in every restore.
  if (kdatCacheWanted()) await keepCriuKdatCache(criu);
  const checkpointer = new CriuCheckpointer(criu, { lazyPages: criuSwitchOn('SHARDFORM_CRIU_LAZY_PAGES') ? 'auto' : 'off' });
  const incoming = IncomingMigrations.withFixedCapacity(images, capacity);
  const token = readFileSync(tokenFile, 'utf8').trim();
  const app = await buildMigrationApp({
    token: () => token,
    plugins: [
      migrationRoutes({
        hostId,
        incoming,
        handover: new CgroupHandover(driver),
        restorer: { restore: (dir, target) => checkpointer.restore(dir, target) },
      }),
    ],
  });
  const address = await app.listen({ host, port });
  process.stdout.write(`${JSON.stringify({ listening: address, hostId })}\n`);
  const stop = () => void app.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: Error) => {
  process.stderr.write(`migration-server: ${error.message}\n`);
  process.exit(1);
});
