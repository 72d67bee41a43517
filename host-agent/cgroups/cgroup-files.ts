/**
 * The filesystem rim of the cgroup drivers: reading and writing interface files, and the one
 * function that applies a list of limit writes. Everything else in this folder is pure
 * (limits → writes, file text → numbers) or composes these calls.
 */
import { closeSync, constants, existsSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { parseFailed, readFailed, shardNotFound, writeFailed } from '../errors';
import { ParseError } from './cgroup-parse';
import type { OpenFileBudget } from './open-file-budget';

/**
 * One write to one interface file of a shard (containerd/cgroups `cgroup2.Value`): the
 * hierarchy key ('unified' or a v1 controller name, as in `CgroupDriver.paths()`), the file
 * name inside the shard's cgroup directory, and the exact text the kernel expects.
 */
export interface CgroupWrite {
  readonly hierarchy: string;
  readonly file: string;
  readonly value: string;
  /**
   * Skip the write when the kernel does not offer the file (ENOENT), e.g. memory.swap.max
   * without swap accounting. Any other failure still fails.
   */
  readonly ifPresent?: boolean;
  /**
   * Writes to make first when the kernel refuses this one with EINVAL, after which it is written
   * once more. For pairs of files the kernel keeps in an order (v1 memory.limit_in_bytes <=
   * memory.memsw.limit_in_bytes): the write that keeps the order is tried, and the other file is
   * moved out of the way only when it is in the way, so a refusal for any other reason (EBUSY:
   * below usage) leaves both files as they were.
   */
  readonly retryAfter?: readonly CgroupWrite[];
}

/**
 * Writes `value` to an existing interface file. O_TRUNC without O_CREAT: on cgroupfs a file
 * that does not exist means the controller is not enabled there, and a fixture tree must not
 * quietly grow files the kernel would not have.
 */
export async function writeCgroupFile(shardId: string, path: string, value: string): Promise<void> {
  let handle;
  try {
    handle = await open(path, constants.O_WRONLY | constants.O_TRUNC);
    // One write(2) per value: the kernel parses each write as a whole.
    await handle.write(value);
  } catch (cause) {
    throw writeFailed(shardId, path, value, cause);
  } finally {
    await handle?.close();
  }
}

/** Applies writes in order, stopping at the first failure (which names shard, file and value). */
export async function applyWrites(
  shardId: string,
  dirs: Readonly<Record<string, string>>,
  writes: readonly CgroupWrite[],
): Promise<void> {
  for (const w of writes) {
    const dir = dirs[w.hierarchy];
    if (dir === undefined) {
      throw writeFailed(shardId, `${w.hierarchy}/${w.file}`, w.value, new Error(`no ${w.hierarchy} hierarchy in this layout`));
    }
    try {
      await writeCgroupFile(shardId, join(dir, w.file), w.value);
    } catch (err) {
      const errno = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
      if (w.ifPresent && errno === 'ENOENT') continue;
      if (!(w.retryAfter && errno === 'EINVAL')) throw err;
      await applyWrites(shardId, dirs, w.retryAfter);
      await applyWrites(shardId, dirs, [{ hierarchy: w.hierarchy, file: w.file, value: w.value }]);
    }
  }
}

/** Errnos that mean "the kernel does not offer this file here" rather than a failure. */
const ABSENT = new Set(['ENOENT', 'EOPNOTSUPP', 'ENOTSUP']);

/**
 * Reads a whole interface file synchronously into a shared buffer. cgroupfs renders files from
 * kernel memory, so a read never waits on a disk; done synchronously it costs a fraction of
 * the CPU of fs.promises.readFile (no thread-pool hops, no fstat, no promise per step), which
 * is what keeps the sampler near the bare reader's cost (bench:agent).
 */
const buffer = Buffer.allocUnsafe(64 * 1024);

function readWhole(path: string): string {
  const fd = openSync(path, constants.O_RDONLY);
  try {
    let text = '';
    // Interface files are ASCII (cgroup-v2.rst "Format"): latin1 decodes them without UTF-8 validation.
    for (let n = readSync(fd, buffer, 0, buffer.length, null); n > 0; n = readSync(fd, buffer, 0, buffer.length, null)) {
      text += buffer.toString('latin1', 0, n);
    }
    return text;
  } finally {
    closeSync(fd);
  }
}

/** Reads a file the kernel may not offer (memory.peak before 5.19, *.pressure with psi=0). */
export function readOptional(shardId: string, path: string): string | undefined {
  try {
    return readWhole(path);
  } catch (cause) {
    if (ABSENT.has((cause as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw readFailed(shardId, path, cause);
  }
}

export function readRequired(shardId: string, path: string): string {
  try {
    return readWhole(path);
  } catch (cause) {
    throw readFailed(shardId, path, cause);
  }
}

/**
 * Reads a shard's interface files by hierarchy key and name. Synchronous, as the reads under
 * it are (see readWhole): a usage pass over ten files costs no promise per file.
 */
export interface ShardFileReader {
  readonly shardId: string;
  path(hierarchy: string, file: string): string;
  optional(hierarchy: string, file: string): string | undefined;
  required(hierarchy: string, file: string): string;
}

/**
 * A reader bound to a shard's directories. `dirs` are absolute and normalised (the driver
 * joins them once), so a file's path is one concatenation, not a path.join per read.
 */
export function shardFileReader(shardId: string, dirs: Readonly<Record<string, string>>): ShardFileReader {
  const path = (hierarchy: string, file: string): string => `${dirs[hierarchy] ?? `<no ${hierarchy} hierarchy>`}/${file}`;
  return {
    shardId,
    path,
    optional: (hierarchy, file) => readOptional(shardId, path(hierarchy, file)),
    required: (hierarchy, file) => {
      try {
        return readRequired(shardId, path(hierarchy, file));
      } catch (err) {
        throw missingShardOr(shardId, dirs[hierarchy], err);
      }
    },
  };
}

/**
 * A missing file in a missing directory is a missing shard: checked only once a read has
 * failed, so the sampler's reads cost no extra stat per shard.
 */
function missingShardOr(shardId: string, dir: string | undefined, err: unknown): unknown {
  return dir !== undefined && !existsSync(dir) ? shardNotFound(shardId, dir) : err;
}

/** The calls KeptShardFileReader makes: the filesystem by default; fixture-tree unit tests model kernfs with them. */
export interface KeptFileIo {
  open(path: string): number;
  /** pread(2): up to buffer.length bytes from `position`, without moving the file offset. */
  readAt(fd: number, buffer: Buffer, position: number): number;
  close(fd: number): void;
}

export const fsKeptFileIo: KeptFileIo = {
  open: (path) => openSync(path, constants.O_RDONLY),
  readAt: (fd, target, position) => readSync(fd, target, 0, target.length, position),
  close: (fd) => closeSync(fd),
};

/**
 * A shard's reader that keeps each file it has read open and reads it again with one
 * positioned read at offset 0: one pread(2) instead of a path lookup, open, read, read-to-EOF
 * and close.
 *
 * Why that returns fresh numbers: cgroupfs is kernfs, whose reads go through seq_file, and
 * seq_read_iter() resets its iterator when a read starts at offset 0 ("if request is to read
 * from zero offset, reset iterator to first record"), so the file's ->show runs again. Every file
 * usage() reads is a single-record file (cgroup_init_cftypes gives cgroup_kf_single_ops to every
 * cftype without seq_start; only cgroup.procs, cgroup.threads and tasks have one), whose whole
 * text comes back from one read when the buffer is large enough: a read shorter than the buffer
 * is the whole file. Checked on this kernel for each file (test/integration/cgroups.test.ts).
 *
 * Why it fails cleanly: once the cgroup is removed, kernfs deactivates its files and a read on a
 * descriptor still open fails with ENODEV (the directory may even exist again, recreated). Any
 * failed kept read therefore closes every file of the shard and tries once more by path, which
 * either reads the recreated cgroup or fails as the plain reader does (ENOENT, then
 * SHARD_NOT_FOUND when the directory is gone).
 *
 * Descriptors come from a budget shared by the driver's readers (open-file-budget.ts); a file
 * read when the budget is spent is closed again after the read. close() gives them back; the
 * driver calls it when the shard is removed or forgotten.
 */
export class KeptShardFileReader implements ShardFileReader {
  /**
   * Descriptors by hierarchy key, then file name: both are the dialect's string constants, so a
   * lookup hashes no new string, and a file's path is only built to open it or name it in an error.
   */
  private readonly kept = new Map<string, Map<string, number>>();
  private keptCount = 0;

  constructor(
    readonly shardId: string,
    private readonly dirs: Readonly<Record<string, string>>,
    private readonly budget: OpenFileBudget,
    private readonly io: KeptFileIo = fsKeptFileIo,
  ) {}

  path(hierarchy: string, file: string): string {
    return `${this.dirs[hierarchy] ?? `<no ${hierarchy} hierarchy>`}/${file}`;
  }

  optional(hierarchy: string, file: string): string | undefined {
    try {
      return this.read(hierarchy, file);
    } catch (cause) {
      if (ABSENT.has((cause as NodeJS.ErrnoException).code ?? '')) return undefined;
      throw readFailed(this.shardId, this.path(hierarchy, file), cause);
    }
  }

  required(hierarchy: string, file: string): string {
    try {
      return this.read(hierarchy, file);
    } catch (cause) {
      throw missingShardOr(this.shardId, this.dirs[hierarchy], readFailed(this.shardId, this.path(hierarchy, file), cause));
    }
  }

  /** Files held open now. */
  get openFiles(): number {
    return this.keptCount;
  }

  /** Closes every file kept open for the shard; the next read opens them again. */
  close(): void {
    for (const files of this.kept.values()) {
      for (const fd of files.values()) {
        try {
          this.io.close(fd);
        } catch {
          // EBADF cannot happen for a descriptor only this reader holds; nothing else to do.
        }
      }
    }
    this.budget.give(this.keptCount);
    this.keptCount = 0;
    this.kept.clear();
  }

  private read(hierarchy: string, file: string): string {
    const kept = this.kept.get(hierarchy)?.get(file);
    if (kept !== undefined) {
      try {
        return this.readFromStart(kept);
      } catch {
        // ENODEV: the cgroup was removed (perhaps created again since): all its files went with it.
        this.close();
      }
    }
    const fd = this.io.open(this.path(hierarchy, file));
    let text: string;
    try {
      text = this.readFromStart(fd);
    } catch (err) {
      this.io.close(fd);
      throw err;
    }
    if (this.budget.take()) this.keep(hierarchy, file, fd);
    else this.io.close(fd);
    return text;
  }

  private keep(hierarchy: string, file: string, fd: number): void {
    let files = this.kept.get(hierarchy);
    if (files === undefined) this.kept.set(hierarchy, (files = new Map()));
    files.set(file, fd);
    this.keptCount += 1;
  }

  private readFromStart(fd: number): string {
    let n = this.io.readAt(fd, buffer, 0);
    // Interface files are ASCII (cgroup-v2.rst "Format"): latin1 decodes them without UTF-8 validation.
    if (n < buffer.length) return buffer.toString('latin1', 0, n);
    // Longer than the buffer (no usage file is): read on from where the first read ended.
    let text = buffer.toString('latin1', 0, n);
    for (let at = n; (n = this.io.readAt(fd, buffer, at)) > 0; at += n) text += buffer.toString('latin1', 0, n);
    return text;
  }
}

/** Reads and parses one file, turning a parse failure into CGROUP_PARSE_FAILED naming shard and file. */
export function readParsed<T>(files: ShardFileReader, hierarchy: string, file: string, parse: (text: string) => T): T {
  return parseNamed(files, hierarchy, file, files.required(hierarchy, file), parse);
}

/** As readParsed, for files the kernel may not offer: undefined when absent. */
export function readParsedOptional<T>(files: ShardFileReader, hierarchy: string, file: string, parse: (text: string) => T): T | undefined {
  const text = files.optional(hierarchy, file);
  return text === undefined ? undefined : parseNamed(files, hierarchy, file, text, parse);
}

/** Parses text read from a shard file, naming shard and file when it does not parse. */
export function parseNamed<T>(files: ShardFileReader, hierarchy: string, file: string, text: string, parse: (text: string) => T): T {
  try {
    return parse(text);
  } catch (err) {
    if (err instanceof ParseError) throw parseFailed(files.shardId, files.path(hierarchy, file), text.trim(), err.expected);
    throw err;
  }
}

/** A reader that notes every file it read successfully: how usageFiles() learns what usage() reads. */
export function recordingReader(inner: ShardFileReader): ShardFileReader & { readonly seen: string[] } {
  const seen: string[] = [];
  const note = (hierarchy: string, file: string, text: string | undefined): string | undefined => {
    if (text !== undefined) seen.push(inner.path(hierarchy, file));
    return text;
  };
  return {
    shardId: inner.shardId,
    seen,
    path: inner.path,
    optional: (h, f) => note(h, f, inner.optional(h, f)),
    required: (h, f) => note(h, f, inner.required(h, f)) as string,
  };
}
