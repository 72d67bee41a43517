/**
 * What `shardform doctor` reports: can this host checkpoint shards (CRIU found, `criu check`
 * passes), can it pre-copy (dirty-page tracking, else page contents), can CRIU keep what it
 * learns about the kernel between runs, which cgroup layout it has, and whether network
 * namespaces (test hosts) work. Each probe says why not, in one line.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statfsSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { probeCgroupLayout } from '../cgroups/probe';
import { criuSwitchOn, locateCriu } from '../checkpoint/criu';
import { CriuCheckpointer } from '../checkpoint/criu-checkpointer';
import { CRIU_RUN_DIR, isKdatKept, TMPFS_MAGIC } from '../checkpoint/criu-kdat-cache';
import { systemShadowPreCopy } from '../migration/memory-shadow';

const execFileAsync = promisify(execFile);

export interface ReadinessCheck {
  readonly name: 'root' | 'criu' | 'criu-check' | 'pre-copy' | 'lazy-restore' | 'criu-cache' | 'cgroups' | 'cgroup-freeze' | 'netns';
  readonly ok: boolean;
  readonly detail: string;
}

export interface HostReadiness {
  /** True when a shard on this host can be checkpointed and restored (root, criu, criu check, cgroups). */
  readonly canCheckpoint: boolean;
  readonly checks: readonly ReadinessCheck[];
}

/**
 * Which hierarchies are mounted under `root`, in words, and whether the agent can run on them:
 * the verdict is the agent's own probe (probeCgroupLayout), so the doctor never passes a host the
 * agent refuses at start, nor fails one it runs on (a hybrid host freezes through cgroup2).
 */
export function describeCgroupLayout(root = '/sys/fs/cgroup'): { ok: boolean; detail: string } {
  if (existsSync(join(root, 'cgroup.controllers'))) return { ok: true, detail: `v2 (unified) at ${root}` };
  let entries: string[] = [];
  try {
    entries = readdirSync(root);
  } catch {
    return { ok: false, detail: `no cgroup hierarchy at ${root}` };
  }
  const v1 = entries.filter((e) => existsSync(join(root, e, 'cgroup.procs')) && e !== 'unified' && e !== 'systemd').sort();
  const unified = existsSync(join(root, 'unified', 'cgroup.controllers'));
  const layout = unified ? `hybrid: v1 ${v1.join(',')} + unified at ${join(root, 'unified')}` : `v1: ${v1.join(',')}`;
  try {
    const probe = probeCgroupLayout(root);
    return { ok: true, detail: probe.layout === 'hybrid' ? `${layout} (freezes through it)` : layout };
  } catch (error) {
    return { ok: false, detail: v1.length === 0 && !unified ? (error as Error).message : `${layout}; ${(error as Error).message}` };
  }
}

/**
 * Whether shards can be frozen here (a migration freezes its shard before the final dump; a
 * drain and `freeze` do too). cgroup2's `cgroup.freeze` came with Linux 5.2 and exists in every
 * cgroup but the root, so a child of the unified mount shows it; with no child to look at, the
 * kernel's release decides. A v1 host freezes through the freezer controller the layout probe
 * already requires.
 */
export function describeCgroupFreeze(root = '/sys/fs/cgroup', kernelRelease = release()): { ok: boolean; detail: string } {
  let probe;
  try {
    probe = probeCgroupLayout(root);
  } catch (error) {
    return { ok: false, detail: `no cgroup layout the agent runs on: ${(error as Error).message}` };
  }
  if (probe.layout === 'v1') return { ok: true, detail: `v1 freezer (freezer.state) at ${probe.mounts.freezer}` };
  const unified = probe.mounts.unified as string;
  let child: string | undefined;
  try {
    child = readdirSync(unified, { withFileTypes: true }).find((e) => e.isDirectory())?.name;
  } catch (error) {
    return { ok: false, detail: `cannot read ${unified}: ${(error as Error).message}` };
  }
  const missing = `shards cannot be frozen, so no checkpoint migration, drain or freeze works here (cgroup.freeze needs Linux 5.2 or later; this kernel is ${kernelRelease})`;
  if (child !== undefined) {
    const file = join(unified, child, 'cgroup.freeze');
    return existsSync(file) ? { ok: true, detail: `cgroup2 freezer (cgroup.freeze, seen in ${join(unified, child)})` } : { ok: false, detail: `${file} does not exist: ${missing}` };
  }
  const [major = 0, minor = 0] = kernelRelease.split(/[.-]/).map(Number);
  return major > 5 || (major === 5 && minor >= 2) ? { ok: true, detail: `cgroup2 freezer (cgroup.freeze; Linux ${kernelRelease})` } : { ok: false, detail: `${unified} has no cgroup to look at and ${missing}` };
}

/** Checks that a failing one stops this host from checkpointing; the others cost time or features only. */
export const REQUIRED_CHECKS: ReadonlySet<ReadinessCheck['name']> = new Set(['root', 'criu', 'criu-check', 'cgroups', 'cgroup-freeze']);

/**
 * Whether CRIU loads its kernel probe (`criu.kdat`) in `runDir` instead of probing at every run:
 * it saves it only on a tmpfs (so a reboot discards it), through a temporary file created
 * exclusively, which a CRIU killed at that moment leaves behind. Where /run is not a tmpfs the
 * agent keeps the probe on one and bind-mounts it there (criu-kdat-cache.ts). Without it every
 * dump and restore probes the kernel again (~40 ms each on this project's CI kernel) — time the
 * shard spends frozen.
 */
export function describeCriuKdatCache(runDir = CRIU_RUN_DIR, fsType?: number): { ok: boolean; detail: string } {
  let type = fsType;
  if (type === undefined) {
    try {
      type = statfsSync(runDir).type;
    } catch (error) {
      return { ok: false, detail: `cannot stat ${runDir}: ${(error as Error).message}` };
    }
  }
  const cache = join(runDir, 'criu.kdat');
  const slower = 'every dump and restore probes the kernel again (~40 ms each, while the shard is frozen)';
  if (type !== TMPFS_MAGIC) {
    if (isKdatKept(runDir)) return { ok: true, detail: `CRIU's kernel probe is kept on a tmpfs, bind-mounted at ${cache} by the agent (${runDir} is not a tmpfs)` };
    return { ok: false, detail: `${runDir} is not a tmpfs and no agent has bind-mounted a kept probe at ${cache} yet: ${slower}` };
  }
  const stale = ['criu.kdat.tmp', '.criu.kdat'].map((name) => join(runDir, name)).find((path) => existsSync(path));
  if (!existsSync(cache) && stale) return { ok: false, detail: `${stale} was left by a CRIU that was stopped while saving its kernel probe, and blocks the next save: remove it; until then ${slower}` };
  return { ok: true, detail: existsSync(cache) ? `CRIU's kernel probe is kept in ${cache}` : `${runDir} is a tmpfs: CRIU keeps its kernel probe in ${cache} from its next run` };
}

/**
 * Why `criu check` failed, from its output: its Error lines, else everything it said — its last
 * line alone is often only a hint (`setcap ...` after "CRIU needs to have the CAP_SYS_ADMIN or the
 * CAP_CHECKPOINT_RESTORE capability:").
 */
export function criuCheckFailure(lines: readonly string[]): string {
  const errors = lines.filter((l) => /^(Error|BUG)\b/.test(l)).slice(-3);
  const said = (errors.length > 0 ? errors.join(' | ') : lines.join(' ')).replace(/\s+/g, ' ');
  if (!said) return 'it printed nothing';
  return said.length > 400 ? `${said.slice(0, 397)}...` : said;
}

async function probeNetns(): Promise<ReadinessCheck> {
  try {
    await execFileAsync('ip', ['netns', 'list'], { timeout: 10_000 });
    return { name: 'netns', ok: true, detail: '`ip netns` works (test hosts: shardform dev hosts up)' };
  } catch (error) {
    const message = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no `ip` command (apt-get install iproute2)' : (error as Error).message.split('\n')[0];
    return { name: 'netns', ok: false, detail: message ?? 'ip netns failed' };
  }
}

/** Whether shards arriving here would run before their memory is all in (not required: eager restores work everywhere). */
async function describeLazyRestore(checkpointer: CriuCheckpointer): Promise<ReadinessCheck> {
  let wanted: boolean;
  try {
    wanted = criuSwitchOn('SHARDFORM_CRIU_LAZY_PAGES');
  } catch (error) {
    return { name: 'lazy-restore', ok: false, detail: (error as Error).message };
  }
  if (!wanted) return { name: 'lazy-restore', ok: false, detail: 'off (SHARDFORM_CRIU_LAZY_PAGES=off): arriving shards run once all their memory is in' };
  const lazy = await checkpointer.usesLazyPages();
  return lazy
    ? { name: 'lazy-restore', ok: true, detail: 'userfaultfd (criu lazy-pages): arriving shards run while their memory is filled in' }
    : { name: 'lazy-restore', ok: false, detail: 'no non-cooperative userfaultfd (criu check --feature uffd-noncoop): arriving shards run once all their memory is in' };
}

export async function checkHostReadiness(opts: { cgroupRoot?: string; criuPrefix?: string } = {}): Promise<HostReadiness> {
  const checks: ReadinessCheck[] = [];
  const isRoot = process.getuid?.() === 0;
  checks.push({ name: 'root', ok: isRoot, detail: isRoot ? 'running as root' : 'checkpoint, cgroups and netns need root' });

  const location = await locateCriu({ prefix: opts.criuPrefix });
  if (location.found) {
    const { criu } = location;
    checks.push({ name: 'criu', ok: true, detail: `${criu.kind} criu ${criu.version} (${criu.kind === 'private' ? criu.prefixArgs[criu.prefixArgs.length - 1] : criu.file})` });
    // lazyPages 'auto': the lazy-restore row asks the kernel as an agent would.
    const checkpointer = new CriuCheckpointer(criu, { timeoutMs: 60_000, lazyPages: 'auto' });
    const check = await checkpointer.check();
    const lines = check.output.split('\n').map((l) => l.trim()).filter((l) => l && !/kdat cache/.test(l));
    checks.push({ name: 'criu-check', ok: check.ok, detail: check.ok ? lines.pop() || 'criu check passed' : `criu check failed: ${criuCheckFailure(lines)}` });
    const preCopy = await checkpointer.supportsPreCopy();
    const shadow = systemShadowPreCopy.available();
    checks.push(
      preCopy.ok
        ? { name: 'pre-copy', ok: true, detail: 'dirty-page tracking available (criu pre-dump)' }
        : shadow.ok
          ? { name: 'pre-copy', ok: true, detail: `by page contents (shadow): ${preCopy.reason}` }
          : { name: 'pre-copy', ok: false, detail: `${preCopy.reason}; ${shadow.reason}; migrations skip pre-copy` },
    );
    checks.push(await describeLazyRestore(checkpointer));
    checks.push({ name: 'criu-cache', ...describeCriuKdatCache() });
  } else {
    checks.push({ name: 'criu', ok: false, detail: `${location.reasons.join('; ')} (install: bash host-agent/checkpoint/install-criu.sh)` });
  }
  const cgroups = describeCgroupLayout(opts.cgroupRoot);
  checks.push({ name: 'cgroups', ...cgroups });
  if (cgroups.ok) checks.push({ name: 'cgroup-freeze', ...describeCgroupFreeze(opts.cgroupRoot) });
  checks.push(await probeNetns());

  const canCheckpoint = checks.filter((c) => REQUIRED_CHECKS.has(c.name)).every((c) => c.ok) && checks.some((c) => c.name === 'criu-check');
  return { canCheckpoint, checks };
}
