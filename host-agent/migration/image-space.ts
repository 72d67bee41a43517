/**
 * Disk room for migration images, checked before a migration freezes anything: a dump that
 * runs out of disk fails only after the shard was frozen (and is then resumed), and says so in
 * a CRIU log line. The size of an image is estimated from what CRIU writes for ordinary
 * processes: their anonymous memory, resident or swapped, and shared memory
 * (`/proc/<pid>/smaps_rollup`). Beside the image goes the shard's state directory as an archive
 * (state-archive.ts), which can be far larger than the memory (a database): it counts too.
 */
import { lstat, readdir, readFile } from 'node:fs/promises';
import { statfsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Room kept beyond the memory estimate: the non-memory image files, pagemaps, rounding. */
export const IMAGE_SPACE_MARGIN = 64 * 2 ** 20;

/**
 * What CRIU dumps of one process, from its `smaps_rollup`, in bytes: private anonymous memory
 * (Anonymous), swapped out (Swap), and its share of shared memory (Pss_Shmem: memfd, SysV and
 * shared anonymous mappings, which CRIU dumps once for all sharers); undefined when none of
 * these lines is there.
 */
export function parseAnonymousBytes(smapsRollup: string): number | undefined {
  let found = false;
  let kib = 0;
  for (const line of smapsRollup.split('\n')) {
    const match = /^(Anonymous|Swap|Pss_Shmem):\s+(\d+) kB$/.exec(line.trim());
    if (!match) continue;
    found = true;
    kib += Number(match[2]);
  }
  return found ? kib * 1024 : undefined;
}

/** What the processes `pids` would put in an image, or undefined when any of them cannot be read (ended, no permission). */
export async function anonymousBytesOf(pids: readonly number[], procRoot = '/proc'): Promise<number | undefined> {
  let total = 0;
  for (const pid of pids) {
    let text: string;
    try {
      text = await readFile(`${procRoot}/${pid}/smaps_rollup`, 'utf8');
    } catch {
      return undefined;
    }
    const bytes = parseAnonymousBytes(text);
    if (bytes === undefined) return undefined;
    total += bytes;
  }
  return total;
}

/**
 * What the files under `dir` take on disk (allocated blocks: a sparse file counts by its data, as
 * `tar --sparse` packs it), symlinks not followed; 0 when `dir` does not exist (packed empty),
 * undefined when part of it cannot be read.
 */
export async function directoryBytes(dir: string): Promise<number | undefined> {
  let total = 0;
  const pending = [dir];
  try {
    for (let at = pending.pop(); at !== undefined; at = pending.pop()) {
      const stat = await lstat(at);
      total += stat.blocks * 512;
      if (stat.isDirectory()) for (const name of await readdir(at)) pending.push(join(at, name));
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && total === 0) return 0;
    // A file removed while it was walked is not worth a refusal either way: no estimate.
    return undefined;
  }
  return total;
}

/** Bytes an unprivileged writer may still use on the file system of `dir` (or of its nearest existing parent). */
export function freeBytesUnder(dir: string): number | undefined {
  for (let at = dir; ; at = dirname(at)) {
    try {
      const fs = statfsSync(at);
      return fs.bavail * fs.bsize;
    } catch {
      if (dirname(at) === at) return undefined;
    }
  }
}

const mib = (bytes: number) => `${Math.ceil(bytes / 2 ** 20)} MiB`;

/**
 * Why `free` bytes under `dir` cannot hold `copies` images of `imageBytes` (plus the margin),
 * or undefined when they can or a figure is unknown (the check never blocks on what it cannot
 * measure).
 */
export function imageSpaceShortfall(opts: { dir: string; free: number | undefined; imageBytes: number | undefined; stateBytes?: number; copies?: number; what: string }): string | undefined {
  const { dir, free, imageBytes, stateBytes = 0, copies = 1, what } = opts;
  if (free === undefined || imageBytes === undefined) return undefined;
  const needed = copies * imageBytes + stateBytes + IMAGE_SPACE_MARGIN;
  if (free >= needed) return undefined;
  const state = stateBytes > 0 ? ` + ${mib(stateBytes)} of state directory` : '';
  return `not enough disk under ${dir} for ${what}: ~${mib(needed)} needed (${copies > 1 ? `${copies} x ` : ''}${mib(imageBytes)} of memory${state} + ${mib(IMAGE_SPACE_MARGIN)}), ${mib(free)} free`;
}

/** How the agents measure it (faked in unit tests). */
export interface ImageSpace {
  free(dir: string): number | undefined;
  imageBytes(pids: readonly number[]): Promise<number | undefined>;
  /** What a state directory takes on disk (its archive's size, near enough). */
  stateBytes(dir: string): Promise<number | undefined>;
}

export const systemImageSpace: ImageSpace = { free: freeBytesUnder, imageBytes: (pids) => anonymousBytesOf(pids), stateBytes: directoryBytes };
