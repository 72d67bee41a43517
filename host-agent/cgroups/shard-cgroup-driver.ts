/**
 * The one CgroupDriver implementation, driven by a dialect (v2, v1 or hybrid) chosen once
 * by detectCgroupDriver. It owns the directory layout `<mount>/<ownerPrefix>/<hostId>/<shardId>`
 * in every hierarchy of the dialect, validates ids before they form a path, and leaves the
 * layout-specific knowledge (which files, which values) to the dialect.
 */
import { mkdir, readdir, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ID_PATTERN, checkId } from '../../src/errors';
import { freezeTimeout, HostAgentError, memoryInUse, shardBusy, shardNotFound } from '../errors';
import {
  applyWrites,
  KeptShardFileReader,
  readOptional,
  readParsedOptional,
  recordingReader,
  shardFileReader,
  writeCgroupFile,
  type KeptFileIo,
  type ShardFileReader,
} from './cgroup-files';
import type { CgroupDialect, Hierarchy } from './cgroup-dialect';
import { parsePids, parsePressure } from './cgroup-parse';
import type { CgroupDriver, CgroupLayout, DetectOptions, ShardLimits, ShardUsage } from './driver';
import { checkLimits } from './limits-check';
import { defaultKeptFileLimit, OpenFileBudget } from './open-file-budget';
import type { CgroupProbe } from './probe';

export interface ShardCgroupDriverOptions extends DetectOptions {
  /** How long freeze/thaw wait for the kernel to settle; default 5000 ms. */
  freezeTimeoutMs?: number;
  /** How long killAll(SIGKILL) waits for the shard to empty; default 5000 ms. */
  killTimeoutMs?: number;
  /**
   * How many interface files usage() and oomKills() may keep open for re-reading (cgroup-files.ts,
   * KeptShardFileReader); past it, files are opened per read. 0 keeps none. Default: half the
   * process's soft RLIMIT_NOFILE (open-file-budget.ts).
   */
  maxOpenFiles?: number;
  /**
   * The kept reader's open/pread/close. Only for fixture trees: a regular file stays readable
   * after it is unlinked, where kernfs fails the read with ENODEV (test/host-agent/cgroups/fixture-tree.ts).
   */
  keptFileIo?: KeptFileIo;
}

const PSI_RESOURCES = ['cpu', 'memory', 'io'] as const;

/** Poll step for asynchronous kernel state (freezer, exiting tasks). */
const POLL_MS = 10;

export class ShardCgroupDriver implements CgroupDriver {
  readonly layout: CgroupLayout;
  readonly hostRoot: string;
  private readonly freezePolls: number;
  private readonly killPolls: number;
  private readonly readers = new Map<string, KeptShardFileReader>();
  private readonly budget: OpenFileBudget;
  private readonly keptFileIo: KeptFileIo | undefined;

  constructor(
    private readonly dialect: CgroupDialect,
    readonly probe: CgroupProbe,
    opts: ShardCgroupDriverOptions,
  ) {
    const owner = checkId('ownerPrefix', opts.ownerPrefix ?? 'shardform');
    const host = checkId('hostId', opts.hostId);
    this.layout = dialect.layout;
    this.hostRoot = `${owner}/${host}`;
    this.freezePolls = Math.max(1, Math.ceil((opts.freezeTimeoutMs ?? 5000) / POLL_MS));
    this.killPolls = Math.max(1, Math.ceil((opts.killTimeoutMs ?? 5000) / POLL_MS));
    this.budget = new OpenFileBudget(opts.maxOpenFiles ?? defaultKeptFileLimit());
    this.keptFileIo = opts.keptFileIo;
  }

  paths(shardId: string): Record<string, string> {
    const id = checkId('shardId', shardId);
    const out: Record<string, string> = {};
    for (const h of this.dialect.hierarchies) out[h.key] = join(h.mount, this.hostRoot, id);
    return out;
  }

  /** One cgroup.procs per distinct directory (co-mounted v1 controllers share one). */
  procsFiles(shardId: string): string[] {
    return [...new Set(Object.values(this.paths(shardId)))].map((dir) => join(dir, 'cgroup.procs'));
  }

  async create(shardId: string): Promise<void> {
    const id = checkId('shardId', shardId);
    for (const h of this.dialect.hierarchies) {
      let dir = h.mount;
      for (const part of [...this.hostRoot.split('/'), id]) {
        await this.delegate(id, h, dir);
        dir = join(dir, part);
        await mkdir(dir).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw new HostAgentError('CGROUP_WRITE_FAILED', id, dir, undefined, `shard ${id}: mkdir ${dir} failed (${err.code ?? err.message})`, { cause: err });
        });
      }
    }
  }

  /**
   * cgroup-v2.rst "Top-down Constraint": a controller can be enabled for children only where
   * the parent offers it, so each ancestor enables the dialect's controllers it has and lacks.
   */
  private async delegate(shardId: string, h: Hierarchy, dir: string): Promise<void> {
    if (h.delegates.length === 0) return;
    const available = (readOptional(shardId, join(dir, 'cgroup.controllers')) ?? '').trim().split(/\s+/);
    const enabled = (readOptional(shardId, join(dir, 'cgroup.subtree_control')) ?? '').trim().split(/\s+/);
    const missing = h.delegates.filter((c) => available.includes(c) && !enabled.includes(c));
    if (missing.length === 0) return;
    const file = join(dir, 'cgroup.subtree_control');
    const value = missing.map((c) => `+${c}`).join(' ');
    try {
      await writeCgroupFile(shardId, file, value);
    } catch (err) {
      if (((err as Error).cause as NodeJS.ErrnoException | undefined)?.code !== 'EBUSY') throw err;
      // cgroup-v2.rst "No Internal Process Constraint": a non-root cgroup with processes cannot
      // delegate. Typical inside a container whose cgroup namespace root holds the agent itself.
      throw new HostAgentError(
        'CGROUP_WRITE_FAILED',
        shardId,
        file,
        value,
        `shard ${shardId}: writing "${value}" to ${file} failed (EBUSY): ${dir} holds processes, and a cgroup with processes cannot enable controllers for children; move them (e.g. the agent) into a leaf cgroup such as ${join(dir, 'agent')} first`,
        { cause: err },
      );
    }
  }

  async remove(shardId: string): Promise<void> {
    const id = checkId('shardId', shardId);
    // Kept files do not stop an rmdir, but they are of no use after it. Closed before and after
    // it: a reading between two of the rmdirs (one per hierarchy) may have opened some again.
    this.forget(id);
    for (const dir of new Set(Object.values(this.paths(id)))) {
      try {
        await rmdir(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        if (code === 'EBUSY' || code === 'ENOTEMPTY') throw shardBusy(id, dir, await this.pids(id).catch(() => []));
        throw new HostAgentError('CGROUP_WRITE_FAILED', id, dir, undefined, `shard ${id}: rmdir ${dir} failed (${code ?? String(err)})`, { cause: err });
      }
    }
    this.forget(id);
  }

  async exists(shardId: string): Promise<boolean> {
    const dir = this.primaryDir(checkId('shardId', shardId));
    try {
      return (await stat(dir)).isDirectory();
    } catch {
      return false;
    }
  }

  async list(): Promise<string[]> {
    const primary = this.hierarchy(this.dialect.primary);
    try {
      const entries = await readdir(join(primary.mount, this.hostRoot), { withFileTypes: true });
      return entries.filter((e) => e.isDirectory() && ID_PATTERN.test(e.name)).map((e) => e.name).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /**
   * Writes `limits`. A memory limit below what the shard cannot give back is refused
   * (MEMORY_IN_USE) on both layouts and changes nothing: v1's kernel refuses it with EBUSY once
   * reclaim fails; v2's would OOM-kill, so the working set is checked before the writes.
   */
  async setLimits(shardId: string, limits: ShardLimits): Promise<void> {
    const id = checkId('shardId', shardId);
    const checked = checkLimits(id, limits);
    const writes = this.dialect.limitWrites(checked);
    await this.mustExist(id);
    const memoryBytes = checked.memoryBytes;
    if (typeof memoryBytes === 'number' && this.dialect.memoryInUse) {
      const inUse = this.dialect.memoryInUse(shardFileReader(id, this.paths(id)));
      if (memoryBytes < inUse.bytes) throw memoryInUse(id, inUse.file, memoryBytes, inUse.bytes);
    }
    // v1 with swap accounting lowers memory.limit_in_bytes, then memsw: the second can be refused
    // alone (pages the first pushed out to swap still count in memory+swap), so the limit in force
    // before is kept to be put back.
    const memsw = writes.find((w) => w.file === 'memory.memsw.limit_in_bytes');
    const memoryDir = memsw && this.paths(id)[memsw.hierarchy];
    const limitBefore = typeof memoryBytes === 'number' && memoryDir ? readOptional(id, join(memoryDir, 'memory.limit_in_bytes'))?.trim() : undefined;
    try {
      await applyWrites(id, this.paths(id), writes);
    } catch (err) {
      const errno = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
      const field = (err as HostAgentError).field;
      if (typeof memoryBytes !== 'number' || errno !== 'EBUSY' || typeof field !== 'string') throw err;
      if (field.endsWith('/memory.limit_in_bytes')) throw memoryInUse(id, field, memoryBytes, undefined, err);
      if (field.endsWith('/memory.memsw.limit_in_bytes') && limitBefore !== undefined) {
        await applyWrites(id, this.paths(id), [{ hierarchy: memsw!.hierarchy, file: 'memory.limit_in_bytes', value: limitBefore }]);
        throw memoryInUse(id, field, memoryBytes, undefined, err);
      }
      throw err;
    }
  }

  async readLimits(shardId: string): Promise<ShardLimits> {
    return this.dialect.readLimits(await this.files(shardId));
  }

  async freeze(shardId: string): Promise<void> {
    await this.setFrozen(shardId, true);
  }

  async thaw(shardId: string): Promise<void> {
    await this.setFrozen(shardId, false);
  }

  async isFrozen(shardId: string): Promise<boolean> {
    return this.dialect.freezer.state(await this.files(shardId)).state === 'frozen';
  }

  private async setFrozen(shardId: string, frozen: boolean): Promise<void> {
    const files = await this.files(shardId);
    const { freezer } = this.dialect;
    await applyWrites(files.shardId, this.paths(files.shardId), [freezer.request(frozen)]);
    const wanted = frozen ? 'frozen' : 'thawed';
    let seen = '';
    for (let i = 0; i < this.freezePolls; i++) {
      const now = freezer.state(files);
      if (now.state === wanted) return;
      seen = now.text;
      await sleep(POLL_MS);
    }
    // A freeze that did not settle is withdrawn: left requested, the kernel would go on freezing
    // tasks after the caller was told it failed (a shard half-stopped, reported as running). A
    // thaw that did not settle stays requested: running is the state to fall back to.
    const withdrawn = frozen && (await applyWrites(files.shardId, this.paths(files.shardId), [freezer.request(false)]).then(() => true, () => false));
    throw freezeTimeout(files.shardId, files.path(freezer.hierarchy, freezer.stateFile), wanted, seen, withdrawn);
  }

  async killAll(shardId: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const id = checkId('shardId', shardId);
    if (!(await this.exists(id))) return;
    const files = shardFileReader(id, this.paths(id));
    if (!(signal === 'SIGKILL' && (await this.writeKillFile(files)))) this.signalEach(await this.pids(id), signal);
    if (signal !== 'SIGKILL') return;
    // Wait (bounded) until the shard is empty, re-signalling tasks forked meanwhile.
    for (let i = 0; i < this.killPolls; i++) {
      const left = await this.pids(id);
      if (left.length === 0) return;
      this.signalEach(left, signal);
      if (this.dialect.freezer.killNeedsThaw && this.dialect.freezer.state(files).state !== 'thawed') {
        await applyWrites(id, this.paths(id), [this.dialect.freezer.request(false)]);
      }
      await sleep(POLL_MS);
    }
    throw shardBusy(id, this.primaryDir(id), await this.pids(id));
  }

  /** cgroup-v2.rst cgroup.kill (Linux 5.14+): "Writing "1" to the file causes the cgroup and all descendant cgroups to be killed." */
  private async writeKillFile(files: ShardFileReader): Promise<boolean> {
    const key = this.dialect.killHierarchy;
    if (key === undefined) return false;
    // cgroup.kill is write-only: ask whether it exists, never read it.
    if (!(await stat(files.path(key, 'cgroup.kill')).then(() => true, () => false))) return false;
    await writeCgroupFile(files.shardId, files.path(key, 'cgroup.kill'), '1');
    return true;
  }

  private signalEach(pids: readonly number[], signal: NodeJS.Signals): void {
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
  }

  async pids(shardId: string): Promise<number[]> {
    const files = await this.files(shardId);
    return readParsedOptional(files, this.dialect.primary, 'cgroup.procs', parsePids) ?? [];
  }

  /** The sampler's hot path: no existence check up front (a missing shard fails its first read as SHARD_NOT_FOUND). */
  async usage(shardId: string): Promise<ShardUsage> {
    return this.readUsage(this.reader(shardId));
  }

  /** The supervisor's per-tick check: one file, no existence check up front (as usage()). */
  async oomKills(shardId: string): Promise<number> {
    return this.dialect.oomKills(this.reader(shardId));
  }

  /**
   * The files usage() reads for this shard (those the kernel offers), in reading order: what a
   * bare reader must read to be a fair baseline for the sampler (bare-reader.ts).
   */
  async usageFiles(shardId: string): Promise<string[]> {
    const files = recordingReader(await this.files(shardId));
    this.readUsage(files);
    return [...new Set(files.seen)];
  }

  private readUsage(files: ShardFileReader): ShardUsage {
    const usage = this.dialect.usage(files);
    const key = this.dialect.pressureHierarchy;
    if (key !== undefined) {
      for (const resource of PSI_RESOURCES) {
        const stall = readParsedOptional(files, key, `${resource}.pressure`, parsePressure);
        if (stall) usage.pressure[resource] = stall;
      }
    }
    return usage;
  }

  /** Closes the files kept open for the shard (removed, or no longer this agent's to read); the next read opens them again. */
  forget(shardId: string): void {
    const id = checkId('shardId', shardId);
    const files = this.readers.get(id);
    if (files === undefined) return;
    files.close();
    this.readers.delete(id);
  }

  /** Closes every kept file (agent shutdown). */
  close(): void {
    for (const id of [...this.readers.keys()]) this.forget(id);
  }

  /** Files kept open now, over all shards (what the fd-count tests compare with /proc/self/fd). */
  get openFiles(): number {
    return this.budget.inUse;
  }

  /**
   * The reader of a shard's files, kept per shard id with its files held open: the hot paths
   * (usage, oomKills) run for every shard every interval, and the id check, path joins and opens
   * need doing once per shard, not per read. remove() and forget() close them.
   */
  private reader(shardId: string): KeptShardFileReader {
    let files = this.readers.get(shardId);
    if (files === undefined) {
      const id = checkId('shardId', shardId);
      files = new KeptShardFileReader(id, this.paths(id), this.budget, this.keptFileIo);
      this.readers.set(id, files);
    }
    return files;
  }

  private hierarchy(key: string): Hierarchy {
    const h = this.dialect.hierarchies.find((x) => x.key === key);
    if (!h) throw new Error(`dialect ${this.dialect.layout} has no ${key} hierarchy`);
    return h;
  }

  private primaryDir(id: string): string {
    return join(this.hierarchy(this.dialect.primary).mount, this.hostRoot, id);
  }

  private async mustExist(id: string): Promise<void> {
    if (!(await this.exists(id))) throw shardNotFound(id, this.primaryDir(id));
  }

  /** Validated id, existing shard, reader bound to its directories. */
  private async files(shardId: string): Promise<ShardFileReader> {
    const id = checkId('shardId', shardId);
    await this.mustExist(id);
    return shardFileReader(id, this.paths(id));
  }
}
