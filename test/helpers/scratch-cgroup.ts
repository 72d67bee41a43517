/**
 * A cgroup for checkpoint tests that do not go through a CgroupDriver: the same directory in
 * every hierarchy a shard uses (v2: one dir; v1 or hybrid: cpu, memory, pids, freezer and the
 * unified hierarchy when mounted), under /sys/fs/cgroup/.../shardform-test/<name>. Also starts
 * the checkpointable workload (test/helpers/workload.py) the way the runner starts a shard:
 * joins the cgroups, then `unshare --pid --fork setsid` so the workload is its PID-namespace init.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const SCRATCH_PREFIX = 'shardform-test';
const ROOT = '/sys/fs/cgroup';
const V1_CONTROLLERS = ['cpu', 'memory', 'pids', 'freezer'];

function hierarchies(): { dir: string; kind: 'v2' | 'v1' | 'unified'; controller?: string }[] {
  if (existsSync(join(ROOT, 'cgroup.controllers'))) return [{ dir: ROOT, kind: 'v2' }];
  const found: { dir: string; kind: 'v1' | 'unified'; controller?: string }[] = V1_CONTROLLERS.filter((c) =>
    existsSync(join(ROOT, c, 'cgroup.procs')),
  ).map((c) => ({ dir: join(ROOT, c), kind: 'v1' as const, controller: c }));
  if (existsSync(join(ROOT, 'unified', 'cgroup.procs'))) found.push({ dir: join(ROOT, 'unified'), kind: 'unified' });
  return found;
}

export interface ScratchCgroup {
  readonly name: string;
  readonly dirs: readonly string[];
  readonly procsFiles: readonly string[];
  /** The directory CRIU's --freeze-cgroup takes (v1 freezer, else the v2 dir). */
  readonly freezer: string;
  pids(): number[];
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /** Thaws, SIGKILLs every process and removes the directories (bounded retries). */
  destroy(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Creates `<this pid>-<name>` in every hierarchy. */
export function createScratchCgroup(name: string): ScratchCgroup {
  return openScratchCgroup(`${process.pid}-${name}`);
}

function openScratchCgroup(name: string): ScratchCgroup {
  const found = hierarchies();
  const dirs = found.map((h) => join(h.dir, SCRATCH_PREFIX, name));
  for (const dir of dirs) mkdirSync(dir, { recursive: true });
  const v1Freezer = found.findIndex((h) => h.controller === 'freezer');
  const v2 = found.findIndex((h) => h.kind === 'v2' || h.kind === 'unified');
  const freezer = v1Freezer >= 0 ? dirs[v1Freezer] : dirs[v2];
  const useV1Freezer = v1Freezer >= 0;
  const pids = () => {
    const all = new Set<number>();
    for (const dir of dirs) {
      const text = existsSync(join(dir, 'cgroup.procs')) ? readFileSync(join(dir, 'cgroup.procs'), 'utf8') : '';
      for (const line of text.split('\n')) if (line.trim()) all.add(Number(line));
    }
    return [...all];
  };
  const setFrozen = async (frozen: boolean) => {
    if (useV1Freezer) writeFileSync(join(freezer, 'freezer.state'), frozen ? 'FROZEN' : 'THAWED');
    else writeFileSync(join(freezer, 'cgroup.freeze'), frozen ? '1' : '0');
    for (let i = 0; i < 100; i += 1) {
      const state = useV1Freezer
        ? readFileSync(join(freezer, 'freezer.state'), 'utf8').trim()
        : /frozen 1/.test(readFileSync(join(freezer, 'cgroup.events'), 'utf8'))
          ? 'FROZEN'
          : 'THAWED';
      if (state === (frozen ? 'FROZEN' : 'THAWED')) return;
      await sleep(20);
    }
    throw new Error(`${freezer}: did not become ${frozen ? 'frozen' : 'thawed'}`);
  };
  return {
    name,
    dirs,
    procsFiles: dirs.map((d) => join(d, 'cgroup.procs')),
    freezer,
    pids,
    freeze: () => setFrozen(true),
    thaw: () => setFrozen(false),
    destroy: async () => {
      await setFrozen(false).catch(() => undefined);
      for (let attempt = 0; attempt < 50; attempt += 1) {
        const left = pids();
        for (const pid of left) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        if (left.length === 0) break;
        await sleep(50);
      }
      for (const dir of dirs) {
        for (let attempt = 0; attempt < 20 && existsSync(dir); attempt += 1) {
          try {
            rmdirSync(dir);
          } catch {
            await sleep(50);
          }
        }
        // The shared parent goes with its last child (another suite's child keeps it: ENOTEMPTY).
        try {
          rmdirSync(dirname(dir));
        } catch {
          // still in use, or already gone
        }
      }
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes scratch cgroups crashed runs left behind: names are `<owner pid>-...`, and those
 * whose owner is alive (a suite running in parallel) are spared.
 */
export async function removeLeftoverScratchCgroups(): Promise<void> {
  const names = new Set<string>();
  for (const h of hierarchies()) {
    const top = join(h.dir, SCRATCH_PREFIX);
    if (existsSync(top)) for (const entry of readdirSync(top, { withFileTypes: true })) if (entry.isDirectory()) names.add(entry.name);
  }
  for (const name of names) {
    const owner = Number(/^(\d+)-/.exec(name)?.[1] ?? 0);
    if (owner > 0 && alive(owner)) continue;
    await openScratchCgroup(name).destroy();
  }
}

/** Host pid of the process in `cgroup` that is the init of its own PID namespace. */
export function namespaceInitPid(cgroup: Pick<ScratchCgroup, 'pids'>): number | undefined {
  for (const pid of cgroup.pids()) {
    try {
      const nspid = /^NSpid:\s*(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.trim().split(/\s+/);
      if (nspid && nspid.length > 1 && nspid[nspid.length - 1] === '1') return pid;
    } catch {
      // exited meanwhile
    }
  }
  return undefined;
}

export const WORKLOAD = join(__dirname, 'workload.py');

/**
 * Starts workload.py holding `mib` MiB in `cgroup` as a PID-namespace init (with `children`,
 * that many forked children holding `mib` MiB each, files `<stateFile>.child<N>`); resolves
 * once every process has written its first counter and digest. stdio is /dev/null: CRIU
 * cannot restore pipes to us.
 */
export async function startWorkload(
  cgroup: Pick<ScratchCgroup, 'procsFiles' | 'pids'> & { name?: string },
  stateFile: string,
  mib: number,
  opts: { sessionInsideNamespace?: boolean; children?: number } = {},
): Promise<number> {
  const children = opts.children ?? 0;
  const stateFiles = [stateFile, ...Array.from({ length: children }, (_, n) => `${stateFile}.child${n}`)];
  const workload = ['python3', WORKLOAD, stateFile, String(mib), ...(children > 0 ? [String(children)] : [])];
  const join = 'n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do echo $$ > "$1" || exit 125; shift; i=$((i+1)); done; exec "$@"';
  const child = spawn(
    '/bin/sh',
    // By default the namespace init leads its own session (what CRIU needs); `false` starts it
    // the other way round (setsid outside, around unshare), to test CRIU's refusal.
    opts.sessionInsideNamespace === false
      ? ['-c', join, 'join', String(cgroup.procsFiles.length), ...cgroup.procsFiles, 'setsid', 'unshare', '--pid', '--fork', '--', ...workload]
      : ['-c', join, 'join', String(cgroup.procsFiles.length), ...cgroup.procsFiles, 'unshare', '--pid', '--fork', '--', 'setsid', '--', ...workload],
    { stdio: 'ignore', detached: true },
  );
  child.unref();
  for (let i = 0; i < 600; i += 1) {
    const pid = namespaceInitPid(cgroup);
    if (pid && stateFiles.every((f) => existsSync(f) && existsSync(`${f}.sha256`))) return pid;
    await sleep(50);
  }
  throw new Error(`workload in ${cgroup.name ?? cgroup.procsFiles[0]} did not start within 30 s`);
}

export function readCounter(stateFile: string): number {
  return Number(readFileSync(stateFile, 'utf8').trim());
}

/** Polls until `predicate` holds (bounded); returns its last value. */
export async function waitFor<T>(what: string, probe: () => T, predicate: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const rounds = Math.ceil(timeoutMs / 25);
  let value = probe();
  for (let i = 0; i < rounds && !predicate(value); i += 1) {
    await sleep(25);
    value = probe();
  }
  if (!predicate(value)) throw new Error(`timed out waiting for ${what} (last value ${JSON.stringify(value)})`);
  return value;
}
