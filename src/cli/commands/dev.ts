import type { Command } from 'commander';
import { checkNetnsTag, createNetnsHosts, MAX_HOSTS, refuseLiveOwner, removeLeftoverNetnsHosts, removeNetnsHosts, type NetnsHostSet } from '../../dev/netns-hosts';
import { ExitWith } from '../main';
import { ShardformError } from '../../errors';
import { table, type Io } from '../output';

function parseCount(value: string): number {
  const count = Number(value);
  if (!/^\d+$/.test(value) || count < 1 || count > MAX_HOSTS) {
    throw new ShardformError('INVALID_ARGUMENT', '--count', value, `--count: ${JSON.stringify(value)} must be a whole number from 1 to ${MAX_HOSTS}`);
  }
  return count;
}

/** Namespaces, bridges and the owner records need root: say so at once, before anything is half done. */
function requireRoot(action: 'up' | 'down'): void {
  if (process.getuid?.() === 0) return;
  throw new ShardformError('NEEDS_ROOT', 'uid', process.getuid?.(), `dev hosts ${action} needs root (it creates and removes network namespaces, interfaces and /run/shardform/netns-hosts); run it as root`);
}

/** `shardform dev hosts up|down`: test hosts as network namespaces on this machine (root). */
export function registerDevCommands(program: Command, io: Io): void {
  const dev = program.command('dev').description('development helpers');
  const hosts = dev.command('hosts').description('test hosts as network namespaces joined by a bridge');
  hosts
    .command('up')
    .description('create N hosts (replacing a set with the same tag, unless a live test run owns it) and print their addresses')
    .option('--count <n>', 'how many hosts', '2')
    .option('--tag <tag>', 'names the set (1-6 of a-z0-9)', 'dev')
    .option('--json', 'print the set as JSON')
    .action(async (opts: { count: string; tag: string; json?: boolean }) => {
      const count = parseCount(opts.count);
      const tag = checkNetnsTag(opts.tag, '--tag');
      requireRoot('up');
      refuseLiveOwner(tag, undefined, '--tag');
      // Ctrl-C or a SIGTERM half-way must not leave half a set behind: stop, remove it, exit as killed.
      const interrupt = new AbortController();
      let received: NodeJS.Signals | undefined;
      const onSignal = (signal: NodeJS.Signals) => {
        received = signal;
        interrupt.abort();
      };
      process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
      let set: NetnsHostSet | undefined;
      try {
        set = await createNetnsHosts({ count, tag: opts.tag, keptUntilDown: true, signal: interrupt.signal });
      } catch (error) {
        if (received === undefined) throw error;
      } finally {
        process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
      }
      // (set is undefined only when a signal stopped the creation.)
      if (received !== undefined || set === undefined) {
        await removeNetnsHosts(opts.tag);
        io.err(`interrupted (${received}): removed test hosts '${opts.tag}'`);
        throw new ExitWith(received === 'SIGTERM' ? 143 : 130);
      }
      if (opts.json) {
        io.out(JSON.stringify(set, null, 2));
        return;
      }
      io.out(table(['HOST', 'NETNS', 'ADDRESS', 'LINK'], set.hosts.map((h) => [h.id, h.netns, h.address, h.link])));
      io.out(`bridge ${set.bridge} ${set.gateway} (${set.subnet}); run a command on a host with: nsenter --net=/run/netns/<NETNS> <command>`);
    });
  hosts
    .command('down')
    .description('remove the set (or, with --all, every shardform test host on this machine)')
    .option('--tag <tag>', 'the set to remove', 'dev')
    .option('--all', 'remove every set, including those of running tests and leftovers of crashed runs')
    .action(async (opts: { tag: string; all?: boolean }) => {
      if (!opts.all) checkNetnsTag(opts.tag, '--tag');
      requireRoot('down');
      if (opts.all) {
        const removed = await removeLeftoverNetnsHosts({ all: true });
        io.out(`removed ${removed.length} namespace(s) and interface(s)`);
        return;
      }
      const stopped = await removeNetnsHosts(checkNetnsTag(opts.tag, '--tag'));
      io.out(`removed test hosts '${opts.tag}'${stopped.length > 0 ? ` (stopped ${stopped.length} process(es) still running in them: ${stopped.join(', ')})` : ''}`);
    });
}
