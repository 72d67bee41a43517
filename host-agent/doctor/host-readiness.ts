/**
 * What `shardform doctor` reports: can this host checkpoint shards (CRIU found, `criu check`
 * passes), can it pre-copy (dirty-page tracking, else page contents), which cgroup layout it has, and whether
 * network namespaces (test hosts) work. Each probe says why not, in one line.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { locateCriu } from '../checkpoint/criu';
import { CriuCheckpointer } from '../checkpoint/criu-checkpointer';
import { systemShadowPreCopy } from '../migration/memory-shadow';

const execFileAsync = promisify(execFile);

export interface ReadinessCheck {
  readonly name: 'root' | 'criu' | 'criu-check' | 'pre-copy' | 'cgroups' | 'netns';
  readonly ok: boolean;
  readonly detail: string;
}

export interface HostReadiness {
  /** True when a shard on this host can be checkpointed and restored (root, criu, criu check, cgroups). */
  readonly canCheckpoint: boolean;
  readonly checks: readonly ReadinessCheck[];
}

/** Which hierarchies are mounted under `root`, in words (pure apart from reading the directory). */
export function describeCgroupLayout(root = '/sys/fs/cgroup'): { ok: boolean; detail: string } {
  if (existsSync(join(root, 'cgroup.controllers'))) return { ok: true, detail: `v2 (unified) at ${root}` };
  let entries: string[] = [];
  try {
    entries = readdirSync(root);
  } catch {
    return { ok: false, detail: `no cgroup hierarchy at ${root}` };
  }
  const v1 = entries.filter((e) => existsSync(join(root, e, 'cgroup.procs')) && e !== 'unified' && e !== 'systemd').sort();
  const needed = ['cpu', 'memory', 'freezer'].filter((c) => !v1.includes(c));
  const unified = existsSync(join(root, 'unified', 'cgroup.procs'));
  if (v1.length === 0) return { ok: false, detail: `no cgroup controllers mounted under ${root}` };
  const layout = unified ? `hybrid: v1 ${v1.join(',')} + unified at ${join(root, 'unified')}` : `v1: ${v1.join(',')}`;
  if (needed.length > 0) return { ok: false, detail: `${layout}; missing v1 controller(s) ${needed.join(',')}` };
  return { ok: true, detail: layout };
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

export async function checkHostReadiness(opts: { cgroupRoot?: string; criuPrefix?: string } = {}): Promise<HostReadiness> {
  const checks: ReadinessCheck[] = [];
  const isRoot = process.getuid?.() === 0;
  checks.push({ name: 'root', ok: isRoot, detail: isRoot ? 'running as root' : 'checkpoint, cgroups and netns need root' });

  const location = await locateCriu({ prefix: opts.criuPrefix });
  if (location.found) {
    const { criu } = location;
    checks.push({ name: 'criu', ok: true, detail: `${criu.kind} criu ${criu.version} (${criu.kind === 'private' ? criu.prefixArgs[criu.prefixArgs.length - 1] : criu.file})` });
    const checkpointer = new CriuCheckpointer(criu, { timeoutMs: 60_000 });
    const check = await checkpointer.check();
    const lastLine = check.output.split('\n').filter((l) => l.trim() && !/kdat cache/.test(l)).pop() ?? '';
    checks.push({ name: 'criu-check', ok: check.ok, detail: check.ok ? lastLine || 'criu check passed' : `criu check failed: ${lastLine}` });
    const preCopy = await checkpointer.supportsPreCopy();
    const shadow = systemShadowPreCopy.available();
    checks.push(
      preCopy.ok
        ? { name: 'pre-copy', ok: true, detail: 'dirty-page tracking available (criu pre-dump)' }
        : shadow.ok
          ? { name: 'pre-copy', ok: true, detail: `by page contents (shadow): ${preCopy.reason}` }
          : { name: 'pre-copy', ok: false, detail: `${preCopy.reason}; ${shadow.reason}; migrations skip pre-copy` },
    );
  } else {
    checks.push({ name: 'criu', ok: false, detail: `${location.reasons.join('; ')} (install: bash host-agent/checkpoint/install-criu.sh)` });
  }
  const cgroups = describeCgroupLayout(opts.cgroupRoot);
  checks.push({ name: 'cgroups', ...cgroups });
  checks.push(await probeNetns());

  const required = new Set<ReadinessCheck['name']>(['root', 'criu', 'criu-check', 'cgroups']);
  const canCheckpoint = checks.filter((c) => required.has(c.name)).every((c) => c.ok) && checks.some((c) => c.name === 'criu-check');
  return { canCheckpoint, checks };
}
