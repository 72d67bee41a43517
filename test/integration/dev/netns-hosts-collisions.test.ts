import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createNetnsHosts, planNetnsHosts, removeNetnsHosts, type NetnsHostSet } from '../../../src/dev/netns-hosts';
import { BIN, runCli } from '../../helpers/cli';
import { runTag } from '../../helpers/netns-hosts';
import { describePrivileged, requireNetns } from '../../helpers/privileged';

jest.setTimeout(60_000);

const ours = (tag: string) => {
  const names = [...execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n'), ...execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n')];
  return names.filter((l) => l.includes(`-${tag}-`) || l.includes(`sfb-${tag}`));
};
const deviceFor = (address: string) => /\bdev (\S+)/.exec(execFileSync('ip', ['-4', 'route', 'get', address], { encoding: 'utf8' }))?.[1];

describePrivileged('test hosts do not collide with what the machine already has', [requireNetns], () => {
  // Tags of this run only: other runs on the machine use other ones.
  const first = runTag('c');
  const second = runTag('d');
  const created: string[] = [];
  afterAll(async () => {
    for (const tag of created) await removeNetnsHosts(tag);
  });

  it('refuses a /24 already used on this machine, naming it and its interface, and leaves nothing behind', async () => {
    created.push(first, second);
    const a = await createNetnsHosts({ count: 1, tag: first, ownerPid: process.pid });
    const octet = Number(a.subnet.split('.')[2]);
    await expect(createNetnsHosts({ count: 2, tag: second, subnetOctet: octet, ownerPid: process.pid })).rejects.toMatchObject({
      code: 'SUBNET_IN_USE',
      message: expect.stringContaining(`subnetOctet: 10.213.${octet}.0/24 is already used on this machine (${a.gateway}/24 on sfb-${first})`),
    });
    expect(ours(second)).toEqual([]);
    expect(deviceFor(a.hosts[0]!.address)).toBe(`sfb-${first}`);
  });

  it('gives a set whose tag derives the /24 of an existing set the next free one, so both stay reachable', async () => {
    const a = planNetnsHosts({ count: 1, tag: first });
    // A tag of this run whose default /24 is the first set's.
    const stem = runTag('e').slice(0, 4);
    const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
    const twin = [...chars].flatMap((x) => [...chars].map((y) => `${stem}${x}${y}`)).find((t) => planNetnsHosts({ count: 1, tag: t }).subnet === a.subnet);
    expect(twin).toBeDefined();
    created.push(twin!);
    const b: NetnsHostSet = await createNetnsHosts({ count: 1, tag: twin!, ownerPid: process.pid });
    expect(b.subnet).not.toBe(a.subnet);
    expect(deviceFor(a.hosts[0]!.address)).toBe(`sfb-${first}`);
    expect(deviceFor(b.hosts[0]!.address)).toBe(`sfb-${twin}`);
  });

  it('does not replace a set whose owner is another live process (a parallel run of the same suite), and says whose it is', async () => {
    const tag = runTag('f');
    created.push(tag);
    const owner = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      await createNetnsHosts({ count: 2, tag, ownerPid: owner.pid });
      await expect(createNetnsHosts({ count: 1, tag, ownerPid: process.pid })).rejects.toMatchObject({
        code: 'NETNS_HOSTS_IN_USE',
        message: `tag: test hosts '${tag}' belong to process ${owner.pid}, which is still running; use another tag, or stop it (shardform dev hosts down --tag ${tag} removes them anyway)`,
      });
      const cli = await runCli('dev', 'hosts', 'up', '--tag', tag);
      expect(cli.code).toBe(1);
      expect(cli.stderr).toContain(`--tag: test hosts '${tag}' belong to process ${owner.pid}`);
      expect(ours(tag).filter((l) => l.startsWith('shardform-'))).toHaveLength(2);
    } finally {
      owner.kill('SIGKILL');
      await once(owner, 'exit');
    }
    // Its owner gone, the set is a leftover: replaced.
    const replaced = await createNetnsHosts({ count: 1, tag, ownerPid: process.pid });
    expect(replaced.hosts).toHaveLength(1);
    expect(ours(tag).filter((l) => l.startsWith('shardform-'))).toHaveLength(1);
  });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('`dev hosts up` stopped by %s half-way removes what it made and exits %i', async (signal, code) => {
    const tag = runTag(signal === 'SIGINT' ? 'g' : 'h');
    created.push(tag);
    const up = spawn(process.execPath, [BIN, 'dev', 'hosts', 'up', '--count', '32', '--tag', tag], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    up.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = once(up, 'exit');
    // Bounded by attempts: the third namespace is there long before the 32nd.
    for (let i = 0; i < 400 && !ours(tag).some((l) => l.startsWith(`shardform-${tag}-host-3`)); i += 1) await new Promise((r) => setTimeout(r, 25));
    expect(ours(tag).some((l) => l.startsWith(`shardform-${tag}-host-3`))).toBe(true);
    up.kill(signal);
    const [exitCode] = await exited;
    expect(exitCode).toBe(code);
    expect(stderr).toContain(`interrupted (${signal}): removed test hosts '${tag}'`);
    expect(ours(tag)).toEqual([]);
  });

  it('`dev hosts up|down` run without root say so in one line, exit 1 and leave an existing set alone', async () => {
    const tag = runTag('i');
    created.push(tag);
    await createNetnsHosts({ count: 1, tag, ownerPid: process.pid });
    for (const action of ['up', 'down']) {
      const r = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, BIN, 'dev', 'hosts', action, '--tag', tag], { encoding: 'utf8', cwd: '/' });
      expect({ action, code: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({
        action,
        code: 1,
        stdout: '',
        stderr: `error: dev hosts ${action} needs root (it creates and removes network namespaces, interfaces and /run/shardform/netns-hosts); run it as root\n`,
      });
    }
    expect(ours(tag).filter((l) => l.startsWith('shardform-'))).toHaveLength(1);
  });
});
