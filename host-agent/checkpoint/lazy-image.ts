/**
 * Makes a pre-copied image (a chain: the final round, its `parent` link, and so on back to a
 * round with every page) restorable lazily, without copying the memory in the frozen window.
 *
 * Why: `criu lazy-pages` (4.1.1) reads a page kept in a parent image but never completes the
 * fault (its parent page reads do not call the fault's completion back), so a lazy restore of a
 * chain hangs on the first such page. Only pages marked lazy go through the daemon, though: CRIU's
 * own restore reads every other page, parents included, before the tree runs.
 *
 * So, beside the final round `F`, a directory `F.lazy` holds an image whose lazy pages are all in
 * its own pages file, per process:
 * - The pages file is the root round's (hard-linked): it already holds every page the process
 *   had then, in address order. The pages sent again by each later round (those that changed)
 *   are written over it at their place, oldest round first, so it holds each page as the final
 *   round sees it. Reading `F` through its chain stays right while and after this happens: a
 *   page the chain reads from the root round is one no later round sent, so it is never written.
 * - Pages the process has now but did not have at the root round (a few: a grown stack or heap)
 *   go into a small parent image of their own (`F.lazy-parent`), marked in-parent and not lazy,
 *   so CRIU's restore puts them in before the tree runs.
 * - Its pagemap lists the final round's pages in address order: those of the root round as
 *   present, lazy where the final round said lazy; the others as in the parent.
 *
 * Not possible (`{ reason }`; the caller restores the chain eagerly): a page the
 * root round had that the final round does not (the process gave memory back: the root's file
 * cannot drop it), a process the root round does not have, a root round that is not whole, or
 * any other memory image (shared memory) that relies on a parent. Everything else of `F` is
 * hard-linked as it is. `F` itself is never changed, so an eager restore of it stays possible.
 */
import { closeSync, existsSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { writeAllSync } from './write-all';
import { basename, dirname, join, resolve } from 'node:path';
import { PageRunIndex } from './page-run-index';
import { yieldToEventLoop } from './process-memory';
import { appendEntry, encodePagemap, inPagesFile, parsePagemap, PE_LAZY, PE_PARENT, PE_PRESENT, type Pagemap, type PagemapEntry } from './pagemap-image';

/** What CRIU and the agent leave in an image directory that is not part of the image. */
const NOT_IMAGE = /^(criu-.*\.log|restored\.pid|lazy-pages\.socket|stats-restore|parent)$/;
const PROCESS_PAGEMAP = /^pagemap-(\d+)\.img$/;
/** A chain longer than this is not followed (a loop of links, or something not made by a migration). */
const MAX_ROUNDS = 64;

/**
 * At most this much of a process's memory may be new since the root round (kept in the agent's
 * memory while the image is made); more means an eager restore, which reads it from the chain.
 */
const MAX_NEW_PAGE_BYTES = 64 << 20;

/** Bytes read from a round's pages file at once. */
const READ_CHUNK = 4 << 20;

export type LazyImage = { readonly dir: string } | { readonly reason: string };

/** Builds `<dir>.lazy` (and `<dir>.lazy-parent`) from the chain ending at `dir`; see the module comment. */
export async function lazyRestorableImage(dir: string, pageSize: number, maxNewPageBytes = MAX_NEW_PAGE_BYTES): Promise<LazyImage> {
  const chain = roundsOf(dir);
  if (typeof chain === 'string') return { reason: chain };
  const [root, ...later] = chain;
  const rootDir = root as string;
  const finalDir = dir;
  const processes: { vpid: number; final: Pagemap; base: Pagemap }[] = [];
  for (const name of readdirSync(finalDir).sort()) {
    if (!name.startsWith('pagemap-')) continue;
    const match = PROCESS_PAGEMAP.exec(name);
    const final = parsePagemap(readFileSync(join(finalDir, name)), join(finalDir, name));
    if (!match) {
      // Shared memory and the like: fine as long as it does not read from a parent.
      if (final.entries.some((e) => (e.flags & PE_PARENT) !== 0)) return { reason: `${name} keeps pages in a parent image` };
      continue;
    }
    const vpid = Number(match[1]);
    const basePath = join(rootDir, name);
    if (!existsSync(basePath)) return { reason: `process ${vpid} is not in the root round ${basename(rootDir)}` };
    const base = parsePagemap(readFileSync(basePath), basePath);
    if (base.entries.some((e) => !inPagesFile(e))) return { reason: `the root round ${basename(rootDir)} does not hold every page of process ${vpid}` };
    processes.push({ vpid, final, base });
  }

  // Every check before anything is written.
  const plans = new Map<number, ProcessPlan>();
  for (const p of processes) {
    const plan = planProcess(p.final, p.base, pageSize);
    if (typeof plan === 'string') return { reason: `process ${p.vpid}: ${plan}` };
    plans.set(p.vpid, plan);
  }

  const lazyDir = `${finalDir}.lazy`;
  const parentDir = `${finalDir}.lazy-parent`;
  rmSync(lazyDir, { recursive: true, force: true });
  rmSync(parentDir, { recursive: true, force: true });
  mkdirSync(lazyDir);
  mkdirSync(parentDir);
  const rounds = [...later, finalDir];
  for (const p of processes) {
    const plan = plans.get(p.vpid) as ProcessPlan;
    const basePages = join(rootDir, `pages-${p.base.pagesId}.img`);
    const inserted = await applyRounds(rounds, p.vpid, basePages, plan, pageSize, maxNewPageBytes);
    if (typeof inserted === 'string') return { reason: `process ${p.vpid}: ${inserted}` };
    const missing = plan.outside.find(([vaddr, pages]) => !allIn(inserted, vaddr, pages, pageSize));
    if (missing) return { reason: `process ${p.vpid}: no round sent the pages at 0x${missing[0].toString(16)} that the final round keeps in its parent` };
    writeParent(parentDir, p.vpid, inserted, pageSize);
    linkSync(basePages, join(lazyDir, `pages-${p.final.pagesId}.img`));
    writeFileSync(join(lazyDir, `pagemap-${p.vpid}.img`), encodePagemap({ pagesId: p.final.pagesId, entries: plan.entries }));
  }
  const rewritten = new Set(processes.flatMap((p) => [`pagemap-${p.vpid}.img`, `pages-${p.final.pagesId}.img`]));
  for (const name of readdirSync(finalDir)) {
    if (NOT_IMAGE.test(name) || rewritten.has(name)) continue;
    linkSync(join(finalDir, name), join(lazyDir, name));
  }
  // Relative, as CRIU's own chains are: the directories move together.
  symlinkSync(join('..', basename(parentDir)), join(lazyDir, 'parent'));
  return { dir: lazyDir };
}

/** The rounds of the chain ending at `dir`, root first; a string says why it is not one. */
function roundsOf(dir: string): string[] | string {
  const chain = [resolve(dir)];
  for (;;) {
    if (!hasParentImage(chain[0] as string)) break;
    const link = join(chain[0] as string, 'parent');
    if (chain.length > MAX_ROUNDS) return `the chain of parent images is longer than ${MAX_ROUNDS}`;
    const parent = resolve(dirname(link), readlinkSync(link));
    if (chain.includes(parent)) return `the parent images of ${dir} loop back to ${parent}`;
    chain.unshift(parent);
  }
  return chain.length >= 2 ? chain : `${dir} has no parent image`;
}

/** Whether the image in `dir` builds on a previous round's (pre-copy): CRIU follows its `parent` link. */
export function hasParentImage(dir: string): boolean {
  return isLink(join(dir, 'parent'));
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

interface ProcessPlan {
  /** Where the root round's pages are in its pages file. */
  readonly base: PageRunIndex;
  /** The new pagemap. */
  readonly entries: PagemapEntry[];
  /** The pages the root does not have (each `[vaddr, pages]`): they come from the small parent image. */
  readonly outside: readonly (readonly [number, number])[];
}

/** The new pagemap of one process; a string says why it cannot be done. */
function planProcess(final: Pagemap, base: Pagemap, size: number): ProcessPlan | string {
  const index = new PageRunIndex(base.entries, size);
  const entries: PagemapEntry[] = [];
  const outside: [number, number][] = [];
  let kept = 0;
  for (const e of final.entries) {
    if ((e.flags & (PE_PRESENT | PE_PARENT)) === 0) {
      entries.push(e);
      continue;
    }
    for (const span of index.spans(e.vaddr, e.vaddr + e.pages * size)) {
      const pages = (span.to - span.from) / size;
      if (span.offset === undefined) {
        appendEntry(entries, span.from, pages, PE_PARENT, size);
        outside.push([span.from, pages]);
      } else {
        appendEntry(entries, span.from, pages, PE_PRESENT | (e.flags & PE_LAZY), size);
        kept += pages;
      }
    }
  }
  if (kept !== index.pages) return `the final round no longer has ${index.pages - kept} page(s) of the root round (memory given back)`;
  return { base: index, entries, outside };
}

/**
 * Writes each round's own pages over the root's pages file (oldest first); resolves to the pages
 * the root does not have that the final round has, address → content, as the final round sees
 * them; or why not (too many of them: what was written over the root so far is harmless).
 */
async function applyRounds(rounds: readonly string[], vpid: number, basePages: string, plan: ProcessPlan, size: number, maxNewPageBytes: number): Promise<Map<number, Buffer> | string> {
  const inserted = new Map<number, Buffer>();
  // Only the new pages the final round has are kept (in memory: they are few, and bounded).
  const wanted = new PageRunIndex(plan.outside.map(([vaddr, pages]) => ({ vaddr, pages })), size);
  let keptBytes = 0;
  const chunk = Buffer.allocUnsafe(READ_CHUNK);
  const out = openSync(basePages, 'r+');
  try {
    for (const round of rounds) {
      const pagemapPath = join(round, `pagemap-${vpid}.img`);
      if (!existsSync(pagemapPath)) continue;
      const pagemap = parsePagemap(readFileSync(pagemapPath), pagemapPath);
      const pagesPath = join(round, `pages-${pagemap.pagesId}.img`);
      const input = openSync(pagesPath, 'r');
      try {
        let at = 0;
        for (const e of pagemap.entries) {
          if (!inPagesFile(e)) continue;
          const entryEnd = e.vaddr + e.pages * size;
          for (let vaddr = e.vaddr; vaddr < entryEnd; ) {
            const length = Math.min(entryEnd - vaddr, chunk.length);
            const got = readSync(input, chunk, 0, length, at);
            if (got !== length) throw new Error(`${pagesPath} ends at byte ${at + got}, its pagemap lists more pages`);
            for (const span of plan.base.spans(vaddr, vaddr + length)) {
              const data = chunk.subarray(span.from - vaddr, span.to - vaddr);
              if (span.offset !== undefined) writeAllSync(out, data, span.offset, basePages);
              else {
                for (let p = 0; p < data.length; p += size) {
                  if (wanted.offsetOf(span.from + p) < 0) continue;
                  if (!inserted.has(span.from + p)) keptBytes += size;
                  if (keptBytes > maxNewPageBytes) return `more than ${maxNewPageBytes} bytes of its memory are new since the root round (kept in memory to make the image)`;
                  inserted.set(span.from + p, Buffer.from(data.subarray(p, p + size)));
                }
              }
            }
            at += length;
            vaddr += length;
            // Between chunks the agent serves its other requests (uploads, other migrations'
            // restores, whose guards wait for them): a round that sent gigabytes takes seconds here.
            await yieldToEventLoop();
          }
        }
      } finally {
        closeSync(input);
      }
    }
  } finally {
    closeSync(out);
  }
  return inserted;
}

function allIn(pages: Map<number, Buffer>, vaddr: number, count: number, size: number): boolean {
  for (let i = 0; i < count; i++) if (!pages.has(vaddr + i * size)) return false;
  return true;
}

/** The pages the root does not have, as a parent image of their own (present, in address order). */
function writeParent(parentDir: string, vpid: number, inserted: Map<number, Buffer>, size: number): void {
  const entries: PagemapEntry[] = [];
  const fd = openSync(join(parentDir, `pages-${vpid}.img`), 'w');
  try {
    for (const vaddr of [...inserted.keys()].sort((a, b) => a - b)) {
      appendEntry(entries, vaddr, 1, PE_PRESENT, size);
      writeAllSync(fd, inserted.get(vaddr) as Buffer, undefined, join(parentDir, `pages-${vpid}.img`));
    }
  } finally {
    closeSync(fd);
  }
  writeFileSync(join(parentDir, `pagemap-${vpid}.img`), encodePagemap({ pagesId: vpid, entries }));
}
