/**
 * CRIU's kernel probe cache on hosts whose /run is not a tmpfs.
 *
 * Every `criu` run first probes what the kernel can do (~30-40 ms on this project's CI
 * kernel) unless it can load `/run/criu.kdat`. CRIU saves that file only when /run is a tmpfs
 * (as systemd mounts it), so that it dies with the boot and a new kernel is probed again. Where
 * /run is a plain directory (containers, some VMs) the probe runs in every dump and every
 * restore: time the shard spends frozen.
 *
 * The agent then keeps the probe the way CRIU would: it has CRIU write it into a tmpfs mounted
 * over /run in a private mount namespace, keeps the file on a tmpfs (`/dev/shm/shardform`), and
 * bind-mounts it at `/run/criu.kdat` over an empty file. It dies with the boot like CRIU's own:
 * after a reboot the bind mount is gone, CRIU reads the empty file, calls it stale and probes.
 * Like CRIU's own cache it is one file for every CRIU of the host (CRIU checks only its size
 * and two fixed magic numbers), so the agent probes again at every start.
 */
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, statfsSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { criuCommandLine, criuSwitchOn, type CriuInstallation } from './criu';

export const TMPFS_MAGIC = 0x01021994;
/** Where CRIU looks (compiled in). */
export const CRIU_RUN_DIR = '/run';
export const DEFAULT_KDAT_KEEP_DIR = '/dev/shm/shardform';

export interface KdatCacheOptions {
  /** Where the bind mount goes; CRIU reads `<runDir>/criu.kdat` (tests use another directory). */
  runDir?: string;
  /** A directory on a tmpfs for the file itself. */
  keepDir?: string;
  /** File system type of a path (statfs f_type); injectable for tests. */
  fsTypeOf?: (path: string) => number;
}

export interface KdatCacheResult {
  /** Whether CRIU loads its probe instead of probing on every run. */
  readonly ok: boolean;
  readonly detail: string;
}

/** Runs a command to its end (killed after 30 s); its exit code (null when it could not run or was killed), stdout and stderr. */
function run(file: string, args: readonly string[]): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { encoding: 'buffer', timeout: 30_000, killSignal: 'SIGKILL', maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, stdout, stderr: stderr.toString('utf8').trim() || (error?.message ?? '') });
    });
  });
}

const fsType = (path: string) => statfsSync(path).type;

/**
 * `SHARDFORM_CRIU_KDAT_CACHE=off` leaves /run/criu.kdat alone (default `on`); any other value
 * is a usage error naming the variable and the value.
 */
export function kdatCacheWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return criuSwitchOn('SHARDFORM_CRIU_KDAT_CACHE', env);
}

/** Whether `<runDir>/criu.kdat` is the kept probe: a non-empty file on a tmpfs. */
export function isKdatKept(runDir = CRIU_RUN_DIR, fsTypeOf: (path: string) => number = fsType): boolean {
  const target = join(runDir, 'criu.kdat');
  try {
    return fsTypeOf(target) === TMPFS_MAGIC && statSync(target).size > 0;
  } catch {
    return false;
  }
}

/** Whether `dir` is a directory (not a link) that only this user can write: nobody else can plant links or files in it. */
function privateDirectory(dir: string): boolean {
  const info = lstatSync(dir);
  return info.isDirectory() && info.uid === process.getuid?.() && (info.mode & 0o022) === 0;
}

/**
 * Whether the mount at `target` is a bind of `<keepDir>/criu.kdat` that has been deleted: the
 * kernel shows its root as `.../<keepDir's name>/criu.kdat//deleted` on the keep directory's own
 * file system (same device).
 */
export function orphanedKeptMount(target: string, keepDir: string, mountinfo = '/proc/self/mountinfo'): boolean {
  try {
    const dev = statSync(keepDir).dev;
    const lines = readFileSync(mountinfo, 'utf8').split('\n');
    // The last mount at a path is the one seen there. Paths are escaped (space as \040, see
    // proc(5) and the kernel's show_mountinfo/mangle): compared unescaped.
    const entry = lines
      .map((line) => line.split(' '))
      .filter((fields) => fields.length > 4 && unescapeMountinfo(fields[4]!) === target)
      .pop();
    if (!entry) return false;
    const [major, minor] = entry[2]!.split(':').map(Number) as [number, number];
    return deviceNumber(major, minor) === dev && unescapeMountinfo(entry[3]!).endsWith(`/${basename(keepDir)}/criu.kdat//deleted`);
  } catch {
    return false;
  }
}

/** A path field of /proc/self/mountinfo as the path it is: the kernel writes space, tab, newline and backslash as octal escapes. */
export function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * `major:minor` as Node's stat reports st_dev (glibc's makedev over statx's major and minor).
 * In arithmetic, not 32-bit bitwise operators: a minor of 2^19 or more (anonymous devices go up
 * to 2^20 - 1) or a major of 2^12 or more came out negative or wrong, and never matched.
 */
export function deviceNumber(major: number, minor: number): number {
  return (minor % 0x100) + (major % 0x1000) * 0x100 + Math.floor(minor / 0x100) * 0x100000 + Math.floor(major / 0x1000) * 2 ** 44;
}

const sameFile = (a: string, b: string) => {
  try {
    const [x, y] = [statSync(a), statSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
};

/**
 * Makes CRIU load its kernel probe on this host from now until reboot (see the module comment);
 * idempotent, never throws: a host where it cannot be done says why and CRIU probes as before.
 * Two callers at once (an agent and a migration server starting together) may both mount the
 * same file; the second mount hides the first, which is harmless.
 */
export async function keepCriuKdatCache(criu: CriuInstallation, opts: KdatCacheOptions = {}): Promise<KdatCacheResult> {
  const runDir = opts.runDir ?? CRIU_RUN_DIR;
  const keepDir = opts.keepDir ?? DEFAULT_KDAT_KEEP_DIR;
  const fsTypeOf = opts.fsTypeOf ?? fsType;
  const target = join(runDir, 'criu.kdat');
  const kept = join(keepDir, 'criu.kdat');
  try {
    if (fsTypeOf(runDir) === TMPFS_MAGIC) return { ok: true, detail: `${runDir} is a tmpfs: CRIU keeps its kernel probe there itself` };
    mkdirSync(keepDir, { recursive: true, mode: 0o700 });
    // /dev/shm is world-writable: a directory somebody else made there could hold a link that
    // root would then write through, or a probe of their making.
    if (!privateDirectory(keepDir)) return { ok: false, detail: `${keepDir} is not a directory only this user can write (a link, or made by somebody else): left alone` };
    if (fsTypeOf(keepDir) !== TMPFS_MAGIC) return { ok: false, detail: `${keepDir} is not a tmpfs: a probe kept there would outlive a reboot` };
    // Something on a tmpfs already at the target: ours (probed again below, in place) or not ours (left alone).
    let mountedAlready = existsSync(target) && fsTypeOf(target) === TMPFS_MAGIC;
    if (mountedAlready && !sameFile(target, kept)) {
      // Ours, orphaned: a bind of our kept file that was deleted since (/dev/shm cleaned). Left in
      // place it would hide every new probe until reboot: unmounted, and kept again below.
      if (!orphanedKeptMount(target, keepDir)) return { ok: false, detail: `${target} is a mount of another file than ${kept}: left alone` };
      const unmounted = await run('umount', [target]);
      if (unmounted.code !== 0) return { ok: false, detail: `cannot unmount ${target}, a bind of a deleted ${kept}: ${unmounted.stderr || `exit ${unmounted.code}`}` };
      mountedAlready = false;
    }

    // CRIU writes the probe only to a tmpfs /run: give it one, in a mount namespace of its own.
    const check = criuCommandLine(criu, ['check']);
    const script = 'mount -t tmpfs -o size=1m,mode=0700 shardform-kdat /run || exit 97; "$@" >/dev/null 2>&1; exec cat /run/criu.kdat';
    const probed = await run('unshare', ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script, 'shardform-kdat', check.file, ...check.args]);
    if (probed.code !== 0 || probed.stdout.length === 0) {
      return { ok: false, detail: `criu check wrote no kernel probe (exit ${probed.code}${probed.stderr ? `: ${probed.stderr.split('\n').pop()}` : ''})` };
    }
    // Written into the kept file (on the tmpfs), never through the target's path: if the mount
    // went away meanwhile, the probe must not land on a /run that outlives the boot. Probed again
    // at every start, in place: a CRIU reading it meanwhile finds it short, calls it stale and
    // probes; nothing worse.
    writeFileSync(kept, probed.stdout, { mode: 0o600 });
    if (mountedAlready && sameFile(target, kept)) return { ok: true, detail: `CRIU's kernel probe is kept on a tmpfs, bind-mounted at ${target} (probed again)` };

    // An empty file under the mount: after a reboot that is what CRIU finds, and it probes again.
    if (existsSync(target)) truncateSync(target, 0);
    else writeFileSync(target, '', { mode: 0o600 });
    const mounted = await run('mount', ['--bind', kept, target]);
    if (mounted.code !== 0) return { ok: false, detail: `cannot bind-mount ${kept} at ${target}: ${mounted.stderr || `exit ${mounted.code}`}` };
    if (!readFileSync(target).equals(probed.stdout)) return { ok: false, detail: `${target} does not show the kept probe after the bind mount` };
    return { ok: true, detail: `CRIU's kernel probe is kept on a tmpfs (${kept}), bind-mounted at ${target}: ${runDir} is not a tmpfs` };
  } catch (error) {
    return { ok: false, detail: `cannot keep CRIU's kernel probe: ${(error as Error).message}` };
  }
}
