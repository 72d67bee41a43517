/**
 * Shadow pre-copy: pre-copy for kernels without dirty-page tracking (no CONFIG_MEM_SOFT_DIRTY,
 * where `criu pre-dump` cannot run), by comparing page contents instead of page-table bits.
 *
 * - Each pre-copy round reads the shard's memory while it runs (process-memory.ts) into a local
 *   *shadow* per process (`shadow-<pid in its namespace>.img`, its pages back to back in address
 *   order) and sends it as a CRIU memory image of that round: `pagemap-<pid>.img` and
 *   `pages-<pid>.img`. Round 1 sends every page; a later round compares each page with the
 *   previous round's shadow and sends only the pages that differ, marking the others
 *   `PE_PARENT` ("in the parent image") — the chain `criu pre-dump` itself builds.
 * - After the freeze CRIU dumps as usual; then each process's pages file is rewritten to hold
 *   only the pages that differ from its last shadow, its pagemap marking the rest `PE_PARENT`.
 *   Which pages differ is found while CRIU dumps: the frozen memory is compared with the shadow
 *   (compareFrozenWithShadow) on the agent's core while CRIU works on another, so the rewrite
 *   after the dump only picks pages. A process that could not be compared that way has its
 *   pages file compared with its shadow page by page instead.
 *
 * The destination does nothing new: rounds arrive as image files (streamed, size and sha256
 * checked), each later round linked to the one before as its `parent`, and `criu restore`
 * reads unchanged pages from the parent images, as after CRIU's own pre-copy. Correctness
 * rests on the final comparison alone: pages read while the shard ran may be torn or stale and
 * are then sent again in the final image.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { writeAllSync } from '../checkpoint/write-all';
import { join } from 'node:path';
import { appendEntry, encodePagemap, inPagesFile, parsePagemap, PE_PARENT, PE_PRESENT, type PagemapEntry } from '../checkpoint/pagemap-image';
import { pageSize, privatePageRuns, pushPages, READ_PAGES, readPages, yieldToEventLoop, type PageExtent, type PageRun } from '../checkpoint/process-memory';
import { readNsPids } from '../runner/proc-info';
import { PageRunIndex } from '../checkpoint/page-run-index';

/** The last shadow of one process: where its pages are, locally, and which pages they are. */
export interface Shadow {
  /** The process's pid inside the shard's PID namespace (what CRIU names its images by). */
  readonly vpid: number;
  readonly round: number;
  /** The source's local copy of every page read this round (sent as such only in a round without a base). */
  readonly path: string;
  /** The pages in that file, in order (file offsets are cumulative). */
  readonly runs: readonly PageRun[];
}

export function shadowFileName(vpid: number): string {
  return `shadow-${vpid}.img`;
}

/**
 * Writes one process's memory image relative to a base shadow: pages equal to the base's page
 * at the same address become `PE_PARENT` entries, the others are appended to the pages file.
 * Bounded memory: one extent and the base span it is compared with.
 */
class IncrementalPages {
  readonly entries: PagemapEntry[] = [];
  /** Bytes appended to the pages file. */
  pagesBytes = 0;
  private readonly size = pageSize();
  private readonly baseBuffer: Buffer;

  constructor(
    private readonly pagesFd: number,
    private readonly base: { fd: number; index: PageRunIndex } | undefined,
    maxExtentBytes: number,
  ) {
    this.baseBuffer = Buffer.allocUnsafe(maxExtentBytes);
  }

  private entry(vaddr: number, pages: number, flags: number): void {
    appendEntry(this.entries, vaddr, pages, flags, this.size);
  }

  /** An entry without data in this image (a hole, or pages already in a parent): kept as it is. */
  passThrough(entry: PagemapEntry): void {
    this.entries.push(entry);
  }

  /** Pages sent in this image: appended to the pages file under one `presentFlags` entry. */
  keep(vaddr: number, data: Buffer, presentFlags: number): void {
    writeAllSync(this.pagesFd, data);
    this.pagesBytes += data.length;
    this.entry(vaddr, data.length / this.size, presentFlags);
  }

  /** Pages left to the parent image (`presentFlags` as they would be sent, turned into a parent entry). */
  inParent(vaddr: number, pages: number, presentFlags: number): void {
    this.entry(vaddr, pages, (presentFlags & ~PE_PRESENT) | PE_PARENT);
  }

  /** Pages with their content: those equal to the base at the same address go to the parent, the others are sent. */
  add(extent: PageExtent, presentFlags: number): void {
    const { size } = this;
    compareWithBase(extent, this.base, this.baseBuffer, (from, to, same) => {
      if (same) this.inParent(extent.vaddr + from * size, to - from, presentFlags);
      else this.keep(extent.vaddr + from * size, extent.data.subarray(from * size, to * size), presentFlags);
    });
  }
}

/**
 * Splits `extent` into spans, in address order, that are equal to `base` at the same address
 * (`same`) and spans that differ or that the base does not have. `buffer` bounds the base bytes
 * read at once (at least the extent's length). Adjacent spans of one kind are merged.
 */
function compareWithBase(
  extent: PageExtent,
  base: { fd: number; index: PageRunIndex } | undefined,
  buffer: Buffer,
  visit: (fromPage: number, toPage: number, same: boolean) => void,
): void {
  const size = pageSize();
  const pages = extent.data.length / size;
  let spanFrom = 0;
  let spanSame: boolean | undefined;
  const mark = (page: number, same: boolean) => {
    if (spanSame === same) return;
    if (spanSame !== undefined && page > spanFrom) visit(spanFrom, page, spanSame);
    spanFrom = page;
    spanSame = same;
  };
  for (let i = 0; i < pages; ) {
    const offset = base ? base.index.offsetOf(extent.vaddr + i * size) : -1;
    if (offset < 0) {
      mark(i, false);
      i += 1;
      continue;
    }
    // Pages consecutive in the base too: one read, then compared page by page.
    let end = i + 1;
    while (end < pages && base!.index.offsetOf(extent.vaddr + end * size) === offset + (end - i) * size) end += 1;
    const got = readSync(base!.fd, buffer, 0, (end - i) * size, offset);
    if (got === (end - i) * size && extent.data.compare(buffer, 0, got, i * size, end * size) === 0) {
      // The usual case for idle memory: the whole span is unchanged, one comparison.
      mark(i, true);
      i = end;
      continue;
    }
    for (let k = i; k < end; k += 1) {
      const at = (k - i) * size;
      mark(k, at + size <= got && extent.data.compare(buffer, at, at + size, k * size, (k + 1) * size) === 0);
    }
    i = end;
  }
  if (spanSame !== undefined && pages > spanFrom) visit(spanFrom, pages, spanSame);
}

/** What one shadow round wrote: the new shadow, and the image files to send for it. */
export interface ShadowRound {
  readonly shadow: Shadow;
  /** File names in the round directory to upload: `pagemap-<vpid>.img`, `pages-<vpid>.img`. */
  readonly upload: readonly string[];
  /** Bytes of the pages sent this round: what changed since the previous round. */
  readonly pagesBytes: number;
}

/**
 * Reads the memory of one running process and writes the round's image of it: every page (no
 * previous shadow, or one from another round than the one before) or only the pages that differ
 * from the previous shadow. The new shadow is the round's pages file itself when every page is
 * sent, else `<dir>/shadow-<vpid>.img`. The previous shadow is removed once compared: the source
 * keeps one copy of the shard's memory at most, and the final dump, which comes right after the
 * last round, writes into the room that copy leaves.
 * Undefined when the process ended before its memory could be read.
 */
export async function captureShadow(opts: { pid: number; vpid: number; round: number; dir: string; previous?: Shadow }): Promise<ShadowRound | undefined> {
  try {
    return await captureRound(opts);
  } catch (error) {
    if (existsSync(`/proc/${opts.pid}`)) throw error;
    // It ended since the round listed it (a short-lived child of the workload): CRIU will not
    // dump it, so it has nothing to pre-copy and is no reason to fail the migration. What it
    // wrote goes; its previous shadow, left in place, is removed with the others that ended.
    for (const name of [shadowFileName(opts.vpid), `pages-${opts.vpid}.img`, `pagemap-${opts.vpid}.img`]) rmSync(join(opts.dir, name), { force: true });
    return undefined;
  }
}

async function captureRound(opts: { pid: number; vpid: number; round: number; dir: string; previous?: Shadow }): Promise<ShadowRound> {
  const size = pageSize();
  const pagesFile = `pages-${opts.vpid}.img`;
  const pagemapFile = `pagemap-${opts.vpid}.img`;
  const previous = opts.previous && opts.previous.round === opts.round - 1 && existsSync(opts.previous.path) ? opts.previous : undefined;
  // Without a base every page is sent, so the pages file is the shadow.
  const shadowPath = join(opts.dir, previous ? shadowFileName(opts.vpid) : pagesFile);
  const runs = privatePageRuns(opts.pid);
  const captured: PageRun[] = [];
  const shadowFd = openSync(shadowPath, 'w');
  const pagesFd = previous ? openSync(join(opts.dir, pagesFile), 'w') : undefined;
  const baseFd = previous ? openSync(previous.path, 'r') : undefined;
  let image: IncrementalPages | undefined;
  try {
    image = new IncrementalPages(pagesFd ?? shadowFd, previous ? { fd: baseFd as number, index: new PageRunIndex(previous.runs, size) } : undefined, READ_PAGES * size);
    const pages = image;
    await readPages(opts.pid, runs, (extent) => {
      if (pagesFd !== undefined) writeAllSync(shadowFd, extent.data);
      pages.add(extent, PE_PRESENT);
      pushPages(captured, extent.vaddr, extent.data.length / size, size);
    });
  } finally {
    closeSync(shadowFd);
    if (pagesFd !== undefined) closeSync(pagesFd);
    if (baseFd !== undefined) closeSync(baseFd);
  }
  if (previous) rmSync(previous.path, { force: true });
  writeFileSync(join(opts.dir, pagemapFile), encodePagemap({ pagesId: opts.vpid, entries: image.entries }));
  return { shadow: { vpid: opts.vpid, round: opts.round, path: shadowPath, runs: captured }, upload: [pagemapFile, pagesFile], pagesBytes: image.pagesBytes };
}

/**
 * Which pages of a frozen process still hold what its shadow holds: compared while CRIU dumps
 * the same frozen memory, so that the dump's rewrite only has to pick pages, not compare them.
 */
export interface FrozenComparison {
  readonly vpid: number;
  /** The round of the shadow compared with (the final dump's parent). */
  readonly round: number;
  /** Pages equal to the shadow at the same address, in address order. */
  readonly unchanged: readonly PageRun[];
}

/**
 * Compares the memory of a frozen process with its shadow. Only the content matters, not when
 * it is read, because nothing of the shard runs: CRIU's parasite, dumping at the same time,
 * maps its own pages and may briefly patch a code page, and either only shows up here as a
 * page that differs — which the dump then sends as CRIU read it. Pages that cannot be read are
 * left out of `unchanged` (sent) too.
 *
 * One write can come after this read: when the parasite runs in a thread, the kernel updates
 * the thread's rseq area (cpu and node ids; a critical-section pointer it clears) in its TLS.
 * Such a page, found unchanged before, is restored as it was before the parasite ran. Those
 * fields are the kernel's own: CRIU registers rseq again on restore, and the kernel rewrites
 * them before the restored thread runs a user instruction.
 */
export async function compareFrozenWithShadow(opts: { pid: number; shadow: Shadow; signal?: AbortSignal }): Promise<FrozenComparison> {
  const size = pageSize();
  const buffer = Buffer.allocUnsafe(READ_PAGES * size);
  const baseFd = openSync(opts.shadow.path, 'r');
  const base = { fd: baseFd, index: new PageRunIndex(opts.shadow.runs, size) };
  const unchanged: PageRun[] = [];
  try {
    await readPages(opts.pid, privatePageRuns(opts.pid), (extent) => {
      // Stopped between two extents when the dump it runs beside has failed: the shard is to be resumed, not compared.
      opts.signal?.throwIfAborted();
      compareWithBase(extent, base, buffer, (from, to, same) => {
        if (same) pushPages(unchanged, extent.vaddr + from * size, to - from, size);
      });
    });
  } finally {
    closeSync(baseFd);
  }
  return { vpid: opts.shadow.vpid, round: opts.shadow.round, unchanged };
}

/** Splits address ranges by membership in a sorted list of page runs. */
class RunMembership {
  private readonly starts: number[];
  private readonly ends: number[];

  constructor(runs: readonly PageRun[], size: number) {
    this.starts = runs.map((r) => r.vaddr);
    this.ends = runs.map((r) => r.vaddr + r.pages * size);
  }

  /** From `vaddr` up to `limit`: whether it is in a run, and where that stops being so. */
  spanAt(vaddr: number, limit: number): { member: boolean; end: number } {
    let lo = 0;
    let hi = this.starts.length - 1;
    let next = limit;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const start = this.starts[mid] as number;
      if (vaddr < start) {
        next = Math.min(next, start);
        hi = mid - 1;
      } else if (vaddr >= (this.ends[mid] as number)) lo = mid + 1;
      else return { member: true, end: Math.min(limit, this.ends[mid] as number) };
    }
    return { member: false, end: next };
  }
}

/** What the final comparison changed in a dump directory. */
export interface DumpDiff {
  /** Per pages file: the bytes CRIU wrote and the bytes left after the comparison. */
  readonly rewritten: readonly { readonly file: string; readonly dumpedBytes: number; readonly sentBytes: number }[];
}

/**
 * Rewrites a finished dump relative to the shadows of `round` (its parent image): each
 * process's pages file keeps only the pages that differ from its shadow, its pagemap marks the
 * rest `PE_PARENT`. Processes without a shadow of that round keep their images as CRIU wrote them.
 * A process with a `frozen` comparison against that round has its pages picked by it (only the
 * changed ones are read); the others are compared with their shadow page by page.
 */
export async function diffDumpWithShadows(
  dumpDir: string,
  shadows: ReadonlyMap<number, Shadow>,
  round: number,
  frozen: ReadonlyMap<number, FrozenComparison> = new Map(),
): Promise<DumpDiff> {
  const size = pageSize();
  const chunk = Buffer.allocUnsafe(READ_PAGES * size);
  const rewritten: { file: string; dumpedBytes: number; sentBytes: number }[] = [];
  for (const name of readdirSync(dumpDir).sort()) {
    const match = /^pagemap-(\d+)\.img$/.exec(name);
    if (!match) continue;
    const shadow = shadows.get(Number(match[1]));
    if (!shadow || shadow.round !== round || !existsSync(shadow.path)) continue;
    const pagemapPath = join(dumpDir, name);
    const pagemap = parsePagemap(readFileSync(pagemapPath), pagemapPath);
    const pagesPath = join(dumpDir, `pages-${pagemap.pagesId}.img`);
    if (!existsSync(pagesPath)) continue;
    const dumpedBytes = statSync(pagesPath).size;
    const partial = `${pagesPath}.partial`;
    const pagesFd = openSync(pagesPath, 'r');
    const outFd = openSync(partial, 'w');
    const baseFd = openSync(shadow.path, 'r');
    let image: IncrementalPages;
    try {
      image = new IncrementalPages(outFd, { fd: baseFd, index: new PageRunIndex(shadow.runs, size) }, chunk.length);
      const compared = frozen.get(shadow.vpid);
      const unchanged = compared && compared.round === round ? new RunMembership(compared.unchanged, size) : undefined;
      let at = 0;
      let sinceYield = 0;
      for (const entry of pagemap.entries) {
        if (!inPagesFile(entry)) {
          image.passThrough(entry);
          continue;
        }
        const entryEnd = entry.vaddr + entry.pages * size;
        for (let vaddr = entry.vaddr; vaddr < entryEnd; ) {
          const limit = Math.min(entryEnd, vaddr + chunk.length);
          // Compared while frozen: unchanged spans need no read at all, changed ones are copied.
          const span = unchanged?.spanAt(vaddr, limit);
          if (span?.member) {
            image.inParent(vaddr, (span.end - vaddr) / size, entry.flags);
            at += span.end - vaddr;
            vaddr = span.end;
            continue;
          }
          const end = span ? span.end : limit;
          const got = readSync(pagesFd, chunk, 0, end - vaddr, at);
          if (got !== end - vaddr) throw new Error(`${pagesPath} ends at byte ${at + got}, its pagemap lists more pages`);
          if (unchanged) image.keep(vaddr, chunk.subarray(0, got), entry.flags);
          else image.add({ vaddr, data: chunk.subarray(0, got) }, entry.flags);
          at += got;
          vaddr = end;
          // The event loop runs between megabytes handled, not between the small spans a
          // frozen comparison leaves: each yield waits behind the uploads in flight meanwhile.
          sinceYield += got;
          if (sinceYield >= chunk.length) {
            sinceYield = 0;
            await yieldToEventLoop();
          }
        }
      }
      if (at !== dumpedBytes) throw new Error(`${pagesPath} holds ${dumpedBytes} bytes, its pagemap lists ${at}`);
    } catch (error) {
      rmSync(partial, { force: true });
      throw error;
    } finally {
      closeSync(pagesFd);
      closeSync(outFd);
      closeSync(baseFd);
    }
    renameSync(partial, pagesPath);
    writeFileSync(pagemapPath, encodePagemap({ pagesId: pagemap.pagesId, entries: image.entries }));
    rewritten.push({ file: `pages-${pagemap.pagesId}.img`, dumpedBytes, sentBytes: image.pagesBytes });
  }
  return { rewritten };
}

/** The shadow pre-copy as the migration effects use it (faked in unit tests). */
export interface ShadowPreCopy {
  /** Whether this host can read a running process's memory map and pages. */
  available(): { ok: true } | { ok: false; reason: string };
  /** The processes CRIU dumps with `rootPid`: those of the shard's cgroup in its PID namespace, with their pid there. */
  processes(rootPid: number, cgroupPids: readonly number[]): Promise<{ pid: number; vpid: number }[]>;
  /** Undefined when the process ended before it could be read (it has nothing to pre-copy). */
  capture(opts: { pid: number; vpid: number; round: number; dir: string; previous?: Shadow }): Promise<ShadowRound | undefined>;
  /** Which pages of a frozen process still equal its shadow (run while CRIU dumps it). */
  compareFrozen(opts: { pid: number; shadow: Shadow; signal?: AbortSignal }): Promise<FrozenComparison>;
  diff(dumpDir: string, shadows: ReadonlyMap<number, Shadow>, round: number, frozen?: ReadonlyMap<number, FrozenComparison>): Promise<DumpDiff>;
}

export const systemShadowPreCopy: ShadowPreCopy = {
  available() {
    for (const file of ['/proc/self/pagemap', '/proc/self/mem']) {
      if (!existsSync(file)) return { ok: false, reason: `${file} is missing (kernel without CONFIG_PROC_PAGE_MONITOR?), so memory cannot be compared either` };
    }
    return { ok: true };
  },
  async processes(rootPid, cgroupPids) {
    const namespace = (pid: number) => {
      try {
        return readlinkSync(`/proc/${pid}/ns/pid`);
      } catch {
        return undefined;
      }
    };
    const rootNamespace = namespace(rootPid);
    const found: { pid: number; vpid: number }[] = [];
    for (const pid of cgroupPids) {
      if (rootNamespace === undefined || namespace(pid) !== rootNamespace) continue;
      const nsPids = await readNsPids(pid);
      const vpid = nsPids?.[nsPids.length - 1];
      if (vpid !== undefined) found.push({ pid, vpid });
    }
    return found.sort((a, b) => a.vpid - b.vpid);
  },
  capture: captureShadow,
  compareFrozen: compareFrozenWithShadow,
  diff: diffDumpWithShadows,
};
