import { once } from 'node:events';
import { execFileSync, spawn } from 'node:child_process';
import { createNetnsHosts, cutLink, removeLeftoverNetnsHosts, restoreLink, spawnInHost } from '../../../src/dev/netns-hosts';
import { nodeInHost, runTag, useNetnsHosts } from '../../helpers/netns-hosts';
import { describePrivileged, requireNetns } from '../../helpers/privileged';
import { runCli } from '../../helpers/cli';

jest.setTimeout(60_000);

const SERVER = "require('net').createServer((s) => s.end('hello from ' + process.argv[1])).listen(7000, process.argv[1], () => console.log('listening'))";
const CLIENT = `
const s = require('net').connect({ host: process.argv[1], port: 7000, timeout: 1500 });
let data = '';
s.on('data', (d) => (data += d)).on('end', () => console.log(data));
s.on('timeout', () => { console.log('timeout'); s.destroy(); }).on('error', (e) => console.log(e.code));
`;

const netnsNames = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });

describePrivileged('test hosts as network namespaces', [requireNetns], () => {
  const hosts = useNetnsHosts(3, 'nt');
  let server: ReturnType<typeof spawnInHost> | undefined;

  afterAll(() => {
    server?.kill('SIGKILL');
  });

  it('gives every host its own address on one bridge, reachable from the others', async () => {
    const [a, b, c] = hosts().hosts;
    expect(new Set([a.address, b.address, c.address]).size).toBe(3);
    server = spawnInHost(b, [process.execPath, '-e', SERVER, b.address], { stdio: ['ignore', 'pipe', 'inherit'] });
    await once(server.stdout!, 'data');
    expect((await nodeInHost(a, CLIENT, [b.address])).trim()).toBe(`hello from ${b.address}`);
    expect((await nodeInHost(c, CLIENT, [b.address])).trim()).toBe(`hello from ${b.address}`);
  });

  it('has no route out of the private subnet', async () => {
    const [a] = hosts().hosts;
    expect((await nodeInHost(a, CLIENT, ['192.0.2.123'])).trim()).toBe('ENETUNREACH');
  });

  it('cuts a link so the host is unreachable, and restores it', async () => {
    const [a, b] = hosts().hosts;
    await cutLink(b);
    expect((await nodeInHost(a, CLIENT, [b.address])).trim()).not.toBe(`hello from ${b.address}`);
    await restoreLink(b);
    let reply = '';
    for (let attempt = 0; attempt < 20 && reply !== `hello from ${b.address}`; attempt += 1) reply = (await nodeInHost(a, CLIENT, [b.address])).trim();
    expect(reply).toBe(`hello from ${b.address}`);
  });

  it('`shardform dev hosts up|down` creates and removes a set; leftover cleanup removes sets of dead test runs and spares those made by `up`', async () => {
    // Tags of this run only: the same suite may run beside it on this machine.
    const [cli, left] = [runTag('k'), runTag('l')];
    const up = await runCli('dev', 'hosts', 'up', '--count', '2', '--tag', cli, '--json');
    expect(up.code).toBe(0);
    const set = JSON.parse(up.stdout);
    expect(set.hosts.map((h: { netns: string }) => h.netns)).toEqual([`shardform-${cli}-host-1`, `shardform-${cli}-host-2`]);
    expect(netnsNames()).toContain(`shardform-${cli}-host-2`);
    expect((await runCli('dev', 'hosts', 'down', '--tag', cli)).code).toBe(0);
    expect(netnsNames()).not.toContain(`shardform-${cli}`);

    // A set whose owner (a test run) is gone is a leftover; one made by `up` is somebody's, kept until `down`.
    const dead = spawn('true');
    await once(dead, 'exit');
    await createNetnsHosts({ count: 1, tag: left, ownerPid: dead.pid });
    expect((await runCli('dev', 'hosts', 'up', '--count', '1', '--tag', cli)).code).toBe(0);
    const removed = await removeLeftoverNetnsHosts();
    expect(removed).toEqual(expect.arrayContaining([`shardform-${left}-host-1`, `sfb-${left}`]));
    expect(netnsNames()).not.toContain(`shardform-${left}`);
    expect(removed.some((n) => n.includes(`-${cli}-`) || n === `sfb-${cli}`)).toBe(false);
    expect(netnsNames()).toContain(`shardform-${cli}-host-1`);
    expect((await runCli('dev', 'hosts', 'down', '--tag', cli)).code).toBe(0);
    expect(netnsNames()).not.toContain(`shardform-${cli}`);
    // this suite's own set belongs to a live process: leftover cleanup spares it
    const own = hosts().tag;
    expect(removed.some((n) => n.includes(`-${own}-`) || n === `sfb-${own}`)).toBe(false);
    expect(netnsNames()).toContain(`shardform-${own}-host-1`);
  });

  it('`down` stops what still runs in the hosts (a nameless namespace would keep it running, unreachable) and leaves nothing of the set', async () => {
    const tag = runTag('p');
    expect((await runCli('dev', 'hosts', 'up', '--count', '1', '--tag', tag)).code).toBe(0);
    // In its own session, as somebody at a shell would start it, and deaf to SIGTERM (an ignored
    // signal stays ignored across exec): only SIGKILL stops it.
    const left = spawn('ip', ['netns', 'exec', `shardform-${tag}-host-1`, 'sh', '-c', "trap '' TERM; exec sleep 1000"], { detached: true, stdio: 'ignore' });
    left.unref();
    let pids = '';
    for (let attempt = 0; attempt < 50 && !pids.trim(); attempt += 1) {
      pids = execFileSync('ip', ['netns', 'pids', `shardform-${tag}-host-1`], { encoding: 'utf8' });
      if (!pids.trim()) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const inside = pids.trim().split(/\s+/).map(Number);
    expect(inside.length).toBeGreaterThan(0);
    const down = await runCli('dev', 'hosts', 'down', '--tag', tag);
    expect(down.code).toBe(0);
    expect(down.stdout).toContain(`removed test hosts '${tag}' (stopped ${inside.length} process(es) still running in them`);
    for (const pid of inside) expect(() => process.kill(pid, 0)).toThrow();
    expect(netnsNames()).not.toContain(`shardform-${tag}`);
    expect(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })).not.toMatch(new RegExp(`sf[bv]-${tag}\\b`));
  });
});

describe('shardform dev hosts (flags)', () => {
  it('refuses a count out of range, naming the flag and the value', async () => {
    const result = await runCli('dev', 'hosts', 'up', '--count', '0');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--count: "0" must be a whole number from 1 to 32');
  });
  it('refuses a tag that would not fit interface names', async () => {
    const result = await runCli('dev', 'hosts', 'up', '--tag', 'Much-Too-Long');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('tag: "Much-Too-Long" must be 1-6 characters of a-z and 0-9');
  });
});
