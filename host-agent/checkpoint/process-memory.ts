/**
 * Reads the private memory of a running process the way CRIU would dump it, without stopping
 * it: the regions of /proc/<pid>/maps that are private and readable (not the kernel's own
 * [vvar]/[vsyscall]; the [vdso] is dumped), the pages of them that /proc/<pid>/pagemap says are present or
 * swapped and are not file or shared pages (CRIU dumps anonymous and copied-on-write pages
 * only; proc(5) "pagemap": bit 63 present, 62 swapped, 61 file-page or shared-anon), minus the
 * shared zero page (CRIU skips it; /proc/kpageflags bit 24 KPF_ZERO_PAGE), read through
 * /proc/<pid>/mem. Root can read any process this way (ptrace access mode, CAP_SYS_PTRACE).
 *
 * The process keeps running, so a page read here may change a moment later: that is fine for
 * the shadow pre-copy, whose final step compares the frozen dump with what was read and sends
 * every page that differs.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { CheckpointError } from './checkpoint-error';

export interface MemoryRegion {
  readonly start: number;
  readonly end: number;
  readonly perms: string;
  readonly path: string;
}

/** A run of consecutive pages: `pages` pages from `vaddr`. */
export interface PageRun {
  readonly vaddr: number;
  readonly pages: number;
}

/** Contiguous pages and their content (length is a multiple of the page size); valid only during the callback that receives it. */
export interface PageExtent {
  readonly vaddr: number;
  readonly data: Buffer;
}

// CRIU dumps the [vdso] pages but not these (the kernel's own, remapped on restore).
const SPECIAL_MAPPINGS = new Set(['[vvar]', '[vvar_vclock]', '[vsyscall]', '[uprobes]']);
const PRESENT = 0x80000000; // bit 63, in the high u32
const SWAPPED = 0x40000000; // bit 62
const FILE_OR_SHARED = 0x20000000; // bit 61
const KPF_ZERO_PAGE = 1n << 24n;
/** Pages read from /proc/<pid>/mem at once. */
export const READ_PAGES = 256;

let pageSizeCache: number | undefined;

/** The kernel's page size (what pagemap and CRIU count in), from the agent's own smaps. */
export function pageSize(): number {
  if (pageSizeCache === undefined) {
    const match = /^KernelPageSize:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/smaps', 'utf8'));
    pageSizeCache = match ? Number(match[1]) * 1024 : 4096;
  }
  return pageSizeCache;
}

/** Parses /proc/<pid>/maps (pure). */
export function parseMaps(text: string): MemoryRegion[] {
  const regions: MemoryRegion[] = [];
  for (const line of text.split('\n')) {
    const match = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+\S+\s+\S+\s+\d+\s*(.*)$/.exec(line);
    if (!match) continue;
    const start = Number.parseInt(match[1] as string, 16);
    const end = Number.parseInt(match[2] as string, 16);
    // Above 2^53 only [vsyscall] lives (0xffffffffff600000); it is skipped anyway.
    if (!Number.isSafeInteger(end)) continue;
    regions.push({ start, end, perms: match[3] as string, path: (match[4] ?? '').trim() });
  }
  return regions;
}

/** The regions whose pages a dump holds: private and readable, not a kernel special mapping (pure). */
export function dumpableRegions(regions: readonly MemoryRegion[]): MemoryRegion[] {
  return regions.filter((r) => r.perms[0] === 'r' && r.perms[3] === 'p' && !SPECIAL_MAPPINGS.has(r.path));
}

/** Adds `pages` pages at `vaddr` to `runs`, extending the last run when they continue it. */
export function pushPages(runs: PageRun[], vaddr: number, pages: number, size: number): void {
  const last = runs[runs.length - 1];
  if (last && last.vaddr + last.pages * size === vaddr) runs[runs.length - 1] = { vaddr: last.vaddr, pages: last.pages + pages };
  else runs.push({ vaddr, pages });
}

/** The private, present (or swapped), anonymous pages of `pid`, in address order. */
export function privatePageRuns(pid: number): PageRun[] {
  const size = pageSize();
  let maps: string;
  try {
    maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch (error) {
    throw new CheckpointError('MEMORY_UNREADABLE', `cannot read /proc/${pid}/maps: ${(error as Error).message}`);
  }
  const runs: PageRun[] = [];
  const fd = openProc(`/proc/${pid}/pagemap`);
  const entries = Buffer.allocUnsafe(8 * 4096);
  try {
    for (const region of dumpableRegions(parseMaps(maps))) {
      for (let vaddr = region.start; vaddr < region.end; ) {
        const count = Math.min(4096, (region.end - vaddr) / size);
        const got = readSync(fd, entries, 0, count * 8, (vaddr / size) * 8) / 8;
        for (let i = 0; i < got; i += 1) {
          const high = entries.readUInt32LE(i * 8 + 4);
          if ((high & (PRESENT | SWAPPED)) !== 0 && (high & FILE_OR_SHARED) === 0) pushPages(runs, vaddr + i * size, 1, size);
        }
        if (got < count) break; // the region went away meanwhile
        vaddr += count * size;
      }
    }
  } finally {
    closeSync(fd);
  }
  return runs;
}

/**
 * Whether the page of `pid` at `vaddr` is the kernel's shared zero page (a page read but never
 * written): CRIU does not dump it. Asked only of pages that read as all zeroes.
 */
function isZeroPage(pagemapFd: number, kpageflagsFd: number | undefined, vaddr: number, size: number): boolean {
  if (kpageflagsFd === undefined) return false;
  const entry = Buffer.allocUnsafe(8);
  if (readSync(pagemapFd, entry, 0, 8, (vaddr / size) * 8) !== 8) return false;
  const pfn = entry.readBigUInt64LE(0) & ((1n << 55n) - 1n);
  if (pfn === 0n) return false; // frame numbers hidden (no CAP_SYS_ADMIN) or swapped
  const flags = Buffer.allocUnsafe(8);
  if (readSync(kpageflagsFd, flags, 0, 8, Number(pfn) * 8) !== 8) return false;
  return (flags.readBigUInt64LE(0) & KPF_ZERO_PAGE) !== 0n;
}

let zeroPage: Buffer | undefined;

/** memcmp against a page of zeroes: the check runs on every page a round reads. */
function allZero(page: Buffer): boolean {
  if (zeroPage?.length !== page.length) zeroPage = Buffer.alloc(page.length);
  return page.equals(zeroPage);
}

/** Opens a /proc file of the process; MEMORY_UNREADABLE naming it when it cannot (the process ended, no permission). */
function openProc(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (error) {
    throw new CheckpointError('MEMORY_UNREADABLE', `cannot open ${path}: ${(error as Error).message}`);
  }
}

/** Lets the agent's event loop run (API, sampler) between two extents of a long read. */
export const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Reads the content of `runs` from a running process, in bounded extents (never the whole
 * memory at once), yielding to the event loop after each. Pages that cannot be read any more
 * (unmapped meanwhile) and zero pages are left out; `onExtent` sees only what was read, in
 * address order.
 */
export async function readPages(pid: number, runs: readonly PageRun[], onExtent: (extent: PageExtent) => void): Promise<void> {
  const size = pageSize();
  const mem = openProc(`/proc/${pid}/mem`);
  let pagemap: number;
  try {
    pagemap = openProc(`/proc/${pid}/pagemap`);
  } catch (error) {
    closeSync(mem);
    throw error;
  }
  let kpageflags: number | undefined;
  try {
    kpageflags = openSync('/proc/kpageflags', 'r');
  } catch {
    kpageflags = undefined; // no zero-page check: such pages are sent, and the dump's comparison sorts it out
  }
  const buffer = Buffer.allocUnsafe(READ_PAGES * size);
  try {
    for (const run of runs) {
      for (let page = 0; page < run.pages; page += READ_PAGES) {
        const count = Math.min(READ_PAGES, run.pages - page);
        const vaddr = run.vaddr + page * size;
        let got = 0;
        try {
          got = readSync(mem, buffer, 0, count * size, vaddr);
        } catch {
          got = 0;
        }
        // A short or failed read: page by page, keeping what can still be read.
        const whole = got === count * size;
        let extentStart = -1;
        const flush = (end: number) => {
          if (extentStart < 0) return;
          onExtent({ vaddr: vaddr + extentStart * size, data: buffer.subarray(extentStart * size, end * size) });
          extentStart = -1;
        };
        for (let i = 0; i < count; i += 1) {
          let readable = whole;
          if (!whole) {
            try {
              readable = readSync(mem, buffer, i * size, size, vaddr + i * size) === size;
            } catch {
              readable = false;
            }
          }
          const page = buffer.subarray(i * size, (i + 1) * size);
          const keep = readable && !(allZero(page) && isZeroPage(pagemap, kpageflags, vaddr + i * size, size));
          if (keep && extentStart < 0) extentStart = i;
          if (!keep) flush(i);
        }
        flush(count);
        await yieldToEventLoop();
      }
    }
  } finally {
    closeSync(mem);
    closeSync(pagemap);
    if (kpageflags !== undefined) closeSync(kpageflags);
  }
}
