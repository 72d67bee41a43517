import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkpoints, criuCheckpointing, timeLimitIn } from '../../../host-agent/checkpoint/criu-at-work';
import { tempDir } from '../../helpers/cli';

const LOADER = ['/opt/shardform/criu/usr/lib64/ld-linux-x86-64.so.2', '--library-path', '/opt/shardform/criu/usr/lib/x86_64-linux-gnu', '/opt/shardform/criu/usr/sbin/criu'];
const FREEZER = '/sys/fs/cgroup/freezer/shardform/host-1/web-0';

describe('CRIU still checkpointing a shard', () => {
  it('recognises a dump or pre-dump of the shard by its tree or its freezer cgroup, through the private loader or not', () => {
    expect(checkpoints([...LOADER, 'dump', '-t', '4242', '-D', '/img', '--leave-stopped', '--freeze-cgroup', FREEZER], { rootPid: 4242 })).toBe(true);
    expect(checkpoints(['/usr/sbin/criu', 'pre-dump', '-t', '4242', '-D', '/img'], { rootPid: 4242 })).toBe(true);
    expect(checkpoints(['criu', 'dump', '--tree', '4242'], { rootPid: 4242 })).toBe(true);
    expect(checkpoints([...LOADER, 'dump', '-t', '999', '--freeze-cgroup', FREEZER], { freezeCgroup: FREEZER })).toBe(true);
  });

  it('ignores other shards, restores, checks and everything that is not CRIU', () => {
    expect(checkpoints([...LOADER, 'dump', '-t', '4243', '--freeze-cgroup', `${FREEZER}-1`], { rootPid: 4242, freezeCgroup: FREEZER })).toBe(false);
    expect(checkpoints([...LOADER, 'restore', '-D', '/img', '--restore-detached'], { rootPid: 4242, freezeCgroup: FREEZER })).toBe(false);
    expect(checkpoints(['/usr/sbin/criu', 'check'], { rootPid: 4242 })).toBe(false);
    expect(checkpoints(['python3', 'dump', '-t', '4242'], { rootPid: 4242 })).toBe(false);
    expect(checkpoints(['/usr/bin/criu-ns', 'dump', '-t', '4242'], { rootPid: 4242 })).toBe(false);
    expect(checkpoints([...LOADER, 'dump', '-t', '4242'], {})).toBe(false);
  });

  it('scans a proc tree: pids ascending, unreadable and non-numeric entries skipped', async () => {
    const dir = tempDir('criu-at-work');
    try {
      const proc = (pid: string, argv: string[] | undefined) => {
        mkdirSync(join(dir.path, pid), { recursive: true });
        if (argv) writeFileSync(join(dir.path, pid, 'cmdline'), `${argv.join('\0')}\0`);
      };
      proc('120', [...LOADER, 'dump', '-t', '4242', '--freeze-cgroup', FREEZER]);
      proc('35', ['/usr/sbin/criu', 'pre-dump', '-t', '4242']);
      proc('36', ['/usr/sbin/criu', 'dump', '-t', '777']);
      proc('37', undefined); // gone while scanned: no cmdline
      proc('self', ['/usr/sbin/criu', 'dump', '-t', '4242']);
      writeFileSync(join(dir.path, 'uptime'), '1000.50 1900.00\n');
      // Started 500 s after boot (50000 ticks at 100 Hz); 120's stat is unreadable: no age.
      writeFileSync(join(dir.path, '35', 'stat'), `35 (criu) S 1 35 35 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 50000 0 0\n`);
      // 35 was started by an agent that names its limit; 120's environment cannot be read.
      writeFileSync(join(dir.path, '35', 'environ'), `PATH=/usr/bin\0SHARDFORM_CRIU_TIME_LIMIT_MS=1054000\0`);
      expect(await criuCheckpointing({ rootPid: 4242, freezeCgroup: FREEZER }, dir.path)).toEqual([{ pid: 35, ageSeconds: 500.5, startTime: 50000, timeLimitMs: 1_054_000 }, { pid: 120, environmentUnreadable: true }]);
      expect(await criuCheckpointing({ freezeCgroup: FREEZER }, dir.path)).toEqual([{ pid: 120, environmentUnreadable: true }]);
      expect(await criuCheckpointing({}, dir.path)).toEqual([]);
      expect(await criuCheckpointing({ rootPid: 4242 }, join(dir.path, 'missing'))).toEqual([]);
    } finally {
      dir.remove();
    }
  });

  it('reads the time limit its agent gave it from its environment, and nothing that is not a whole number of ms', () => {
    expect(timeLimitIn('A=1\0SHARDFORM_CRIU_TIME_LIMIT_MS=120000\0B=2\0')).toBe(120_000);
    expect(timeLimitIn('A=1\0')).toBeUndefined(); // an agent from before the limit grew: 120 s
    for (const bad of ['', '0', '-5', '1.5', '1e9', ' 120000', '99999999999999999']) expect(timeLimitIn(`SHARDFORM_CRIU_TIME_LIMIT_MS=${bad}\0`)).toBeUndefined();
  });
});
