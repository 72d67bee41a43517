/**
 * Real `shardform agent` processes on netns test hosts: one agent per host, each in its host's
 * network namespace (nsenter --net, so /sys and the cgroup hierarchies stay visible), all
 * reading one plan file and sharing one embedded store file, under one cgroup owner prefix per
 * run. `cleanup()` SIGKILLs the agents, every process left in the prefix's cgroups and removes
 * the directories, even when the test failed.
 */
import type { ChildProcess } from 'node:child_process';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serializePlan } from '../../src/contracts/plan';
import type { Plan, UnsignedPlan } from '../../src/contracts/plan-schema';
import { spawnInHost, type NetnsHost } from '../../src/dev/netns-hosts';
import { removeOwnedCgroups } from './agent-process';
import { BIN } from './cli';
import { examplePlan } from './plan-fixture';

export const AGENT_PORT = 7101;

export interface NetnsAgent {
  readonly host: NetnsHost;
  readonly url: string;
  readonly stateDir: string;
  readonly logFile: string;
  child?: ChildProcess;
  api<T = any>(path: string, init?: RequestInit): Promise<{ status: number; body: T }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  logLines(): Record<string, unknown>[];
  /**
   * Starts the agent. With `ownDisk` (remembered for later starts), in a mount namespace of the
   * host's own where that directory is a tmpfs: a host whose disk is not the other hosts' (what
   * the test hosts, sharing one machine, otherwise hide). The namespace outlives the agent, as a
   * host's disk outlives an agent restart; what the agent starts or restores lives in it too.
   */
  start(opts?: { ownDisk?: string }): void;
  /** The directory `ownDisk` was given, if any. */
  ownDisk?: string;
  /** `path` as this host sees it (through its own mount namespace when it has its own disk; the agent must be running). */
  seen(path: string): string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface NetnsAgents {
  readonly dir: string;
  readonly ownerPrefix: string;
  readonly token: string;
  readonly tokenFile: string;
  readonly agents: readonly NetnsAgent[];
  /** A plan with every host at its netns address, the shared store and token; `edit` adds applications. */
  plan(generation: number, edit?: (plan: UnsignedPlan) => void): Plan;
  writePlan(plan: Plan): void;
  /** Polls `probe` until it returns a value (not undefined); bounded by attempts, not by a clock. */
  waitFor<T>(what: string, probe: () => Promise<T | undefined>, attempts?: number, everyMs?: number): Promise<T>;
  cleanup(): Promise<void>;
}

/** The interpreter behind `python3` (a pyenv shim is a shell script; the agent runs argv as is). */
export function realPython(): string {
  return execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
}

export function netnsAgents(label: string, hosts: readonly NetnsHost[]): NetnsAgents {
  const dir = mkdtempSync(join(tmpdir(), `sf-${label}-`));
  const ownerPrefix = `sfit-${label}-${process.pid}`;
  const token = `it-token-${Math.random().toString(36).slice(2)}-0123456789`;
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const planFile = join(dir, 'plan.json');

  /** Persistent mount namespaces of the hosts with their own disk, bound under this directory. */
  const namespaces = join(dir, 'mount-namespaces');
  const ownDiskNamespaces = new Map<string, string>();

  const agents: NetnsAgent[] = hosts.map((host) => {
    /**
     * The host's own mount namespace, made at its first start: `dir` is a fresh tmpfs there. Bound
     * to a file (on a private mount, which unshare requires), so later starts enter the same one.
     */
    const ownDiskNamespace = (disk: string): string => {
      const existing = ownDiskNamespaces.get(host.id);
      if (existing) return existing;
      if (ownDiskNamespaces.size === 0) {
        mkdirSync(namespaces, { recursive: true });
        execFileSync('mount', ['--bind', namespaces, namespaces]);
        execFileSync('mount', ['--make-private', namespaces]);
      }
      const file = join(namespaces, host.id);
      writeFileSync(file, '');
      mkdirSync(disk, { recursive: true });
      execFileSync('/usr/bin/unshare', [`--mount=${file}`, '--propagation', 'private', '--', 'mount', '-t', 'tmpfs', '-o', 'size=64m', 'shardform-test-disk', disk]);
      ownDiskNamespaces.set(host.id, file);
      return file;
    };
    const stateDir = join(dir, host.id);
    mkdirSync(stateDir, { recursive: true });
    const logFile = join(dir, `${host.id}.log`);
    const url = `http://${host.address}:${AGENT_PORT}`;
    const agent: NetnsAgent = {
      host,
      url,
      stateDir,
      logFile,
      async api(path, init = {}) {
        const response = await fetch(`${url}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
        const text = await response.text();
        return { status: response.status, body: text.startsWith('{') ? JSON.parse(text) : text };
      },
      logLines() {
        if (!existsSync(logFile)) return [];
        return readFileSync(logFile, 'utf8')
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      },
      start(opts = {}) {
        const out = openSync(logFile, 'a');
        const argv = [process.execPath, BIN, 'agent', '--plan', planFile, '--host', host.id, '--state-dir', stateDir, '--owner-prefix', ownerPrefix];
        if (opts.ownDisk) agent.ownDisk = opts.ownDisk;
        const disk = agent.ownDisk ? ['/usr/bin/nsenter', `--mount=${ownDiskNamespace(agent.ownDisk)}`, '--'] : [];
        agent.child = spawnInHost(host, [...disk, ...argv], {
          stdio: ['ignore', out, out],
          // Tests leave the host's /run alone (the agent would keep CRIU's kernel probe there).
          env: { ...process.env, SHARDFORM_LOG_LEVEL: 'info', SHARDFORM_CRIU_KDAT_CACHE: 'off' },
        });
      },
      seen(path) {
        if (!agent.ownDisk) return path;
        if (!agent.child?.pid || agent.child.exitCode !== null || agent.child.signalCode !== null) throw new Error(`${host.id}: its agent is not running; its own disk is seen only through it`);
        return `/proc/${agent.child.pid}/root${path}`;
      },
      async stop(signal = 'SIGTERM') {
        const child = agent.child;
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill(signal);
        await exited;
      },
    };
    return agent;
  });

  const tail = () => agents.map((a) => `--- ${a.host.id}\n${existsSync(a.logFile) ? readFileSync(a.logFile, 'utf8').slice(-2500) : '(no log)'}`).join('\n');

  return {
    dir,
    ownerPrefix,
    token,
    tokenFile,
    agents,
    plan(generation, edit = () => {}) {
      return examplePlan((p) => {
        p.generation = generation;
        p.pools[0]!.hosts = hosts.map((h) => ({ id: h.id, address: `${h.address}:${AGENT_PORT}`, capacity: { cpuCores: 2, memoryBytes: 4 * 2 ** 30, readIops: 0, writeIops: 0 }, labels: {} }));
        p.applications = [];
        p.policies = [];
        p.store = { kind: 'embedded', path: join(dir, 'store.db') };
        p.security = { auth: 'token', tokenFile };
        p.agent.port = AGENT_PORT;
        p.agent.sampleIntervalSeconds = 1;
        edit(p);
      });
    },
    writePlan(plan) {
      writeFileSync(`${planFile}.tmp`, serializePlan(plan));
      renameSync(`${planFile}.tmp`, planFile);
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
      throw new Error(`gave up waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}; agent logs:\n${tail()}`);
    },
    async cleanup() {
      for (const agent of agents) await agent.stop('SIGKILL');
      removeOwnedCgroups(ownerPrefix);
      // The hosts' own disks go with their namespaces (lazily: a process may still be leaving).
      for (const file of ownDiskNamespaces.values()) spawnSync('umount', ['-l', file], { stdio: 'ignore' });
      if (ownDiskNamespaces.size > 0) spawnSync('umount', ['-l', namespaces], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
