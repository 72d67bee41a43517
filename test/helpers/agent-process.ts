/**
 * Runs `shardform agent` as a real child process for integration tests and the benchmark:
 * a plan file written by the test, a unique cgroup owner prefix and state directory per run,
 * the API on a free 127.0.0.1 port, and full cleanup (processes left in our cgroups are
 * SIGKILLed by pid, our cgroup directories removed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LOCK_DIR } from '../../host-agent/cgroup-root-lock';
import { serializePlan } from '../../src/contracts/plan';
import type { Plan, UnsignedPlan } from '../../src/contracts/plan-schema';
import { BIN } from './cli';
import { examplePlan } from './plan-fixture';

export const CGROUP_ROOT = '/sys/fs/cgroup';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export interface AgentRun {
  readonly dir: string;
  readonly stateDir: string;
  readonly planFile: string;
  readonly ownerPrefix: string;
  readonly token: string;
  readonly url: string;
  readonly logFile: string;
  child?: ChildProcess;
  /** A plan for this run: one host (host-a) at this run's port, token file and store in the run's directory. */
  plan(generation: number, edit?: (plan: UnsignedPlan) => void): Plan;
  writePlan(content: Plan | string): void;
  start(extraArgs?: string[], env?: NodeJS.ProcessEnv): ChildProcess;
  api<T = any>(path: string, init?: RequestInit): Promise<{ status: number; body: T }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  metrics(): Promise<string>;
  logLines(): Record<string, unknown>[];
  /** Polls `probe` until it returns a value (not undefined) or `attempts` x `everyMs` pass. */
  waitFor<T>(what: string, probe: () => Promise<T | undefined>, attempts?: number, everyMs?: number): Promise<T>;
  stop(signal?: NodeJS.Signals): Promise<void>;
  cleanup(): Promise<void>;
}

export async function agentRun(label: string, options: { prefix?: 'sfit' | 'sfbench' } = {}): Promise<AgentRun> {
  const dir = mkdtempSync(join(tmpdir(), `sf-${label}-`));
  const stateDir = join(dir, 'state');
  const planFile = join(dir, 'plan.json');
  const logFile = join(dir, 'agent.log');
  const ownerPrefix = `${options.prefix ?? 'sfit'}-${label}-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  const token = `it-token-${Math.random().toString(36).slice(2)}-0123456789`;
  writeFileSync(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;

  const run: AgentRun = {
    dir, stateDir, planFile, ownerPrefix, token, url, logFile,
    plan(generation, edit = () => {}) {
      return examplePlan((p) => {
        p.generation = generation;
        p.pools[0].hosts = [{ ...p.pools[0].hosts[0], address: `127.0.0.1:${port}` }];
        p.applications[0].stateDirectory = join(dir, 'web');
        p.applications[0].command = ['/bin/sleep', 'infinity'];
        p.store = { kind: 'embedded', path: 'store.db' };
        p.security = { auth: 'token', tokenFile: join(dir, 'token') };
        p.agent.sampleIntervalSeconds = 1;
        p.agent.stateDirectory = stateDir;
        edit(p);
      });
    },
    writePlan(content) {
      writeFileSync(`${planFile}.tmp`, typeof content === 'string' ? content : serializePlan(content));
      renameSync(`${planFile}.tmp`, planFile);
    },
    start(extraArgs = [], env = {}) {
      const out = openSync(logFile, 'a');
      const child = spawn(
        process.execPath,
        [BIN, 'agent', '--plan', planFile, '--host', 'host-a', '--state-dir', stateDir, '--owner-prefix', ownerPrefix, ...extraArgs],
        { stdio: ['ignore', out, out], env: { ...process.env, SHARDFORM_LOG_LEVEL: 'info', SHARDFORM_CRIU_KDAT_CACHE: 'off', ...env } },
      );
      run.child = child;
      return child;
    },
    async api(path, init = {}) {
      const response = await fetch(`${url}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
      const text = await response.text();
      return { status: response.status, body: text.startsWith('{') ? JSON.parse(text) : text };
    },
    async metrics() {
      return (await run.api<string>('/metrics')).body;
    },
    logLines() {
      if (!existsSync(logFile)) return [];
      return readFileSync(logFile, 'utf8')
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    async waitFor(what, probe, attempts = 300, everyMs = 100) {
      let last: unknown;
      for (let i = 0; i < attempts; i += 1) {
        try {
          const value = await probe();
          if (value !== undefined) return value;
        } catch (error) {
          last = error;
        }
        await new Promise((r) => setTimeout(r, everyMs));
      }
      throw new Error(`gave up waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}; agent log:\n${existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-3000) : '(none)'}`);
    },
    async stop(signal = 'SIGTERM') {
      const child = run.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill(signal);
      await exited;
    },
    async cleanup() {
      await run.stop('SIGKILL');
      removeOwnedCgroups(ownerPrefix);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return run;
}

/** SIGKILLs every process left in cgroups under `<hierarchy>/<ownerPrefix>` and removes the directories, deepest first, and the prefix's lock files. */
export function removeOwnedCgroups(ownerPrefix: string): void {
  if (!/^sfit-|^sfbench-/.test(ownerPrefix)) throw new Error(`refusing to clean a prefix this helper did not create: ${ownerPrefix}`);
  const tops = readdirSync(CGROUP_ROOT, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => join(CGROUP_ROOT, e.name, ownerPrefix))
    .concat(join(CGROUP_ROOT, ownerPrefix))
    .filter((p) => existsSync(p));
  const dirs: string[] = [];
  const walk = (d: string) => {
    dirs.push(d);
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
  };
  tops.forEach(walk);
  for (const d of dirs) {
    const procs = join(d, 'cgroup.procs');
    if (!existsSync(procs)) continue;
    for (const pid of readFileSync(procs, 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  const deadline = Date.now() + 5000;
  for (const d of dirs.sort((a, b) => b.length - a.length)) {
    for (;;) {
      try {
        rmdirSync(d);
        break;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || Date.now() > deadline) throw error;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      }
    }
  }
  // The agents' cgroup-root locks (cgroup-root-lock.ts), their holders dead by now.
  const lockDir = process.env.SHARDFORM_LOCK_DIR ?? DEFAULT_LOCK_DIR;
  if (existsSync(lockDir)) for (const name of readdirSync(lockDir)) if (name.startsWith(`${ownerPrefix}.`)) rmSync(join(lockDir, name), { force: true });
}
