/**
 * Stands in for an agent in a lazy restore (test/integration/checkpoint): restores the image in
 * argv[2] into the cgroups whose cgroup.procs are argv[3...], lazily, and prints the result as
 * one JSON line. A test kills it mid-fill, as a service manager stopping the agent would.
 */
import { requireCriu } from '../../host-agent/checkpoint/criu';
import { CriuCheckpointer } from '../../host-agent/checkpoint/criu-checkpointer';

async function main(): Promise<void> {
  const [dir, ...procsFiles] = process.argv.slice(2);
  const criu = new CriuCheckpointer(await requireCriu(), { lazyPages: 'auto' });
  const restored = await criu.restore(dir as string, { procsFiles });
  process.stdout.write(`${JSON.stringify(restored)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(1);
});
