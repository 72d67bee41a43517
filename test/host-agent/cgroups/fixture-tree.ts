/**
 * Temporary directory trees that mimic each cgroup layout, so the drivers' v2, v1 and hybrid
 * paths run without root and whatever the kernel of the test machine is. A fixture has no
 * kernel behind it: a write just replaces the file's text, and files appear only where the
 * test puts them (see `shardFiles`), as controllers' files appear only where enabled.
 */
import { closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { detectCgroupDriver, type CgroupLayout, type DetectedCgroupDriver, type KeptFileIo, type ShardCgroupDriverOptions } from '../../../host-agent/cgroups';

export interface FixtureOptions {
  /** v1/hybrid: memory.memsw.* present (swap accounting). Default true. */
  memsw?: boolean;
  /** v1/hybrid: cpu and cpuacct co-mounted at cpu,cpuacct with symlinks, as systemd does. */
  coMountCpu?: boolean;
  /** v1: leave these controllers unmounted. */
  omit?: readonly string[];
}

export interface Fixture {
  readonly root: string;
  /** Writes files (name → text) into `<root>/<hierarchyDir>/<rel>`, creating directories. */
  files(hierarchyDir: string, rel: string, files: Record<string, string>): void;
  read(path: string): string;
  /** Every path under the root (files and dirs), relative and sorted: for "nothing changed" checks. */
  snapshot(): string[];
  cleanup(): void;
}

const V1 = ['cpu', 'cpuacct', 'memory', 'blkio', 'freezer'];

export function fixtureTree(layout: CgroupLayout, opts: FixtureOptions = {}): Fixture {
  const root = mkdtempSync(join(tmpdir(), `shardform-cgfix-${layout}-`));
  const put = (dir: string, files: Record<string, string>): void => {
    mkdirSync(dir, { recursive: true });
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  };
  if (layout === 'v2') {
    put(root, { 'cgroup.controllers': 'cpuset cpu io memory hugetlb pids rdma misc\n', 'cgroup.subtree_control': '', 'cgroup.procs': '' });
  } else {
    const controllers = V1.filter((c) => !(opts.omit ?? []).includes(c) && !(layout === 'hybrid' && c === 'freezer'));
    for (const c of controllers) {
      if (opts.coMountCpu && (c === 'cpu' || c === 'cpuacct')) continue;
      put(join(root, c), { 'cgroup.procs': '' });
    }
    if (opts.coMountCpu) {
      put(join(root, 'cpu,cpuacct'), { 'cgroup.procs': '' });
      symlinkSync('cpu,cpuacct', join(root, 'cpu'));
      symlinkSync('cpu,cpuacct', join(root, 'cpuacct'));
    }
    if (opts.memsw ?? true) put(join(root, 'memory'), { 'memory.memsw.limit_in_bytes': '9223372036854771712\n' });
    if (layout === 'hybrid') put(join(root, 'unified'), { 'cgroup.controllers': '', 'cgroup.subtree_control': '', 'cgroup.procs': '' });
  }
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      const rel = relative(root, path);
      return statSync(path).isDirectory() ? [rel + '/', ...walk(path)] : [rel];
    });
  return {
    root,
    files: (hierarchyDir, rel, files) => put(join(root, hierarchyDir, rel), files),
    read: (path) => readFileSync(path, 'utf8'),
    snapshot: () => walk(root).sort(),
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** What a fresh v2 shard cgroup with cpu, memory and io enabled holds (cgroup-v2.rst defaults). */
export const V2_SHARD_FILES: Record<string, string> = {
  'cgroup.procs': '',
  'cgroup.events': 'populated 0\nfrozen 0\n',
  'cgroup.freeze': '0\n',
  'cpu.max': 'max 100000\n',
  'cpu.stat': 'usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n',
  'memory.max': 'max\n',
  'memory.current': '0\n',
  'memory.peak': '0\n',
  'memory.stat': 'anon 0\nfile 0\nactive_anon 0\ninactive_anon 0\nactive_file 0\ninactive_file 0\n',
  'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n',
  'io.max': '',
  'io.stat': '',
  'cpu.pressure': 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n',
  'memory.pressure': 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n',
  'io.pressure': 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n',
};

/** A fresh v1 shard, per controller (cgroup-v1/*.rst defaults). */
export const V1_SHARD_FILES: Record<string, Record<string, string>> = {
  cpu: {
    'cgroup.procs': '',
    'cpu.cfs_quota_us': '-1\n',
    'cpu.cfs_period_us': '100000\n',
    'cpu.stat': 'nr_periods 0\nnr_throttled 0\nthrottled_time 0\n',
  },
  cpuacct: { 'cgroup.procs': '', 'cpuacct.usage': '0\n' },
  memory: {
    'cgroup.procs': '',
    'memory.limit_in_bytes': '9223372036854771712\n',
    'memory.memsw.limit_in_bytes': '9223372036854771712\n',
    'memory.usage_in_bytes': '0\n',
    'memory.max_usage_in_bytes': '0\n',
    'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n',
  },
  blkio: {
    'cgroup.procs': '',
    'blkio.throttle.read_iops_device': '',
    'blkio.throttle.write_iops_device': '',
    'blkio.throttle.io_serviced': 'Total 0\n',
    'blkio.throttle.io_service_bytes': 'Total 0\n',
  },
  freezer: { 'cgroup.procs': '', 'freezer.state': 'THAWED\n' },
};

/** The unified directory of a hybrid shard: core files and PSI, no controllers. */
export const UNIFIED_CORE_FILES: Record<string, string> = {
  'cgroup.procs': '',
  'cgroup.events': 'populated 0\nfrozen 0\n',
  'cgroup.freeze': '0\n',
  'cgroup.kill': '',
  'cpu.stat': 'usage_usec 0\nuser_usec 0\nsystem_usec 0\n',
  'cpu.pressure': V2_SHARD_FILES['cpu.pressure'] as string,
  'memory.pressure': V2_SHARD_FILES['memory.pressure'] as string,
  'io.pressure': V2_SHARD_FILES['io.pressure'] as string,
};

/**
 * The driver's kept-open reads (KeptShardFileReader) over a fixture tree, behaving as kernfs
 * does where regular files do not: once a cgroup file is removed, a read on a descriptor still
 * open fails with ENODEV, also when a file of the same name exists again (a cgroup removed and
 * created anew); a regular file would go on returning its old text. Checked against the kernel
 * in test/integration/cgroups.test.ts.
 */
export function kernfsLikeIo(): KeptFileIo {
  const opened = new Map<number, { path: string; ino: number }>();
  return {
    open(path) {
      const fd = openSync(path, 'r');
      opened.set(fd, { path, ino: fstatSync(fd).ino });
      return fd;
    },
    readAt(fd, buffer, position) {
      const file = opened.get(fd);
      if (file && statSync(file.path, { throwIfNoEntry: false })?.ino !== file.ino) {
        throw Object.assign(new Error(`ENODEV: no such device, read`), { code: 'ENODEV', errno: -19, syscall: 'read' });
      }
      return readSync(fd, buffer, 0, buffer.length, position);
    },
    close(fd) {
      opened.delete(fd);
      closeSync(fd);
    },
  };
}

/** The driver over a fixture tree, host `host-a`, its kept reads behaving as on kernfs (kernfsLikeIo). Close it after the test. */
export function fixtureDriver(fx: Fixture, opts: Partial<ShardCgroupDriverOptions> = {}): DetectedCgroupDriver {
  return detectCgroupDriver({ root: fx.root, hostId: 'host-a', keptFileIo: kernfsLikeIo(), ...opts });
}

export { openFilesUnder } from '../../helpers/open-files';
