/**
 * A pre-copy chain made lazily restorable (lazy-image.ts), on synthetic CRIU images: every page
 * reads the same through the new image as through the chain, before and after, the chain is not
 * changed for what it reads, and what cannot be done says why and writes nothing beside it.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { lazyRestorableImage } from '../../../host-agent/checkpoint/lazy-image';
import { encodePagemap, inPagesFile, parsePagemap, PE_LAZY, PE_PARENT, PE_PRESENT, type PagemapEntry } from '../../../host-agent/checkpoint/pagemap-image';
import { tempDir } from '../../helpers/cli';

const SIZE = 4096;
const P = PE_PRESENT;
const L = PE_LAZY;
const UP = PE_PARENT;

/** A page's content: who wrote it and where. */
const page = (tag: string, vaddr: number) => Buffer.alloc(SIZE, `${tag}@${vaddr.toString(16)};`);

/** One round of one process: entries [vaddr, pages, flags]; pages in the file are `tag`'s content. */
function writeRound(dir: string, vpid: number, pagesId: number, tag: string, entries: [number, number, number][], parent?: string): void {
  mkdirSync(dir, { recursive: true });
  const data: Buffer[] = [];
  const list: PagemapEntry[] = entries.map(([vaddr, pages, flags]) => {
    if (inPagesFile({ vaddr, pages, flags })) for (let i = 0; i < pages; i++) data.push(page(tag, vaddr + i * SIZE));
    return { vaddr, pages, flags };
  });
  writeFileSync(join(dir, `pagemap-${vpid}.img`), encodePagemap({ pagesId, entries: list }));
  writeFileSync(join(dir, `pages-${pagesId}.img`), Buffer.concat(data));
  if (parent && !existsSync(join(dir, 'parent'))) symlinkSync(parent, join(dir, 'parent'));
}

/** What CRIU reads for the page at `vaddr` of `vpid` from the image in `dir` (following parents), or undefined. */
function readPage(dir: string, vpid: number, vaddr: number): string | undefined {
  const pagemap = parsePagemap(readFileSync(join(dir, `pagemap-${vpid}.img`)));
  let offset = 0;
  for (const e of pagemap.entries) {
    const end = e.vaddr + e.pages * SIZE;
    if (vaddr >= e.vaddr && vaddr < end) {
      if (inPagesFile(e)) return readFileSync(join(dir, `pages-${pagemap.pagesId}.img`)).subarray(offset + (vaddr - e.vaddr), offset + (vaddr - e.vaddr) + SIZE).toString();
      if (e.flags & PE_PARENT) return readPage(resolve(dir, readlinkSync(join(dir, 'parent'))), vpid, vaddr);
      return undefined;
    }
    if (inPagesFile(e)) offset += e.pages * SIZE;
  }
  return undefined;
}

/** Every page address the final round lists as present or in its parent. */
function pagesOf(dir: string, vpid: number): number[] {
  const out: number[] = [];
  for (const e of parsePagemap(readFileSync(join(dir, `pagemap-${vpid}.img`))).entries) {
    if (e.flags & (PE_PRESENT | PE_PARENT)) for (let i = 0; i < e.pages; i++) out.push(e.vaddr + i * SIZE);
  }
  return out;
}

describe('lazyRestorableImage', () => {
  const tmp = tempDir('lazy-image');
  afterAll(() => tmp.remove());
  let n = 0;
  const chainDir = () => join(tmp.path, `m${++n}`);

  /**
   * Three rounds of process 1: the root holds 0x1000-0x4000 and 0x10000; round 2 sends 0x2000
   * again and a new page 0x8000; the final round sends 0x1000 (lazy), 0x4000 (not lazy) and a
   * new page 0x9000, keeps the rest in its parent (lazy or not as CRIU said), and has a hole.
   */
  function threeRounds(base: string): string {
    writeRound(join(base, '1'), 1, 1, 'r1', [[0x1000, 4, P], [0x10000, 1, P]]);
    writeRound(join(base, '2'), 1, 1, 'r2', [[0x1000, 1, UP], [0x2000, 1, P], [0x3000, 2, UP], [0x8000, 1, P], [0x10000, 1, UP]], '../1');
    const final = join(base, '3');
    writeRound(final, 1, 7, 'r3', [[0x1000, 1, P | L], [0x2000, 2, UP | L], [0x4000, 1, P], [0x8000, 1, UP], [0x9000, 1, P | L], [0x10000, 1, UP | L], [0x20000, 2, 0]], '../2');
    writeFileSync(join(final, 'core-1.img'), 'core');
    writeFileSync(join(final, 'pagemap-shmem-5.img'), encodePagemap({ pagesId: 9, entries: [{ vaddr: 0, pages: 1, flags: P }] }));
    writeFileSync(join(final, 'criu-restore.log'), 'an earlier attempt');
    return final;
  }

  it('reads every page the same as the chain, keeps the lazy ones in its own pages file, and leaves the chain reading as before', async () => {
    const final = threeRounds(chainDir());
    const addresses = pagesOf(final, 1);
    const before = addresses.map((a) => readPage(final, 1, a));
    expect(before).toEqual(['r3@1000;', 'r2@2000;', 'r1@3000;', 'r3@4000;', 'r2@8000;', 'r3@9000;', 'r1@10000;'].map((s) => s.repeat(Math.ceil(SIZE / s.length)).slice(0, SIZE)));

    const made = await lazyRestorableImage(final, SIZE);
    expect(made).toEqual({ dir: `${final}.lazy` });
    const lazy = `${final}.lazy`;
    expect(addresses.map((a) => readPage(lazy, 1, a))).toEqual(before);
    expect(addresses.map((a) => readPage(final, 1, a))).toEqual(before);

    // Lazy pages only where the root had the page (its own file); new pages from the small parent, not lazy.
    const entries = parsePagemap(readFileSync(join(lazy, 'pagemap-1.img'))).entries;
    expect(entries).toEqual([
      { vaddr: 0x1000, pages: 3, flags: P | L },
      { vaddr: 0x4000, pages: 1, flags: P },
      { vaddr: 0x8000, pages: 2, flags: UP },
      { vaddr: 0x10000, pages: 1, flags: P | L },
      { vaddr: 0x20000, pages: 2, flags: 0 },
    ]);
    // The root's pages file itself, no copy of the memory; the rest of the image linked, not the log.
    expect(statSync(join(lazy, 'pages-7.img')).ino).toBe(statSync(join(dirname(final), '1', 'pages-1.img')).ino);
    expect(statSync(join(lazy, 'core-1.img')).ino).toBe(statSync(join(final, 'core-1.img')).ino);
    expect(existsSync(join(lazy, 'pagemap-shmem-5.img'))).toBe(true);
    expect(existsSync(join(lazy, 'criu-restore.log'))).toBe(false);
    expect(readlinkSync(join(lazy, 'parent'))).toBe('../3.lazy-parent');
    expect(readdirSync(`${final}.lazy-parent`).sort()).toEqual(['pagemap-1.img', 'pages-1.img']);
  });

  it("splits one entry of the final round that runs from a new page into the root's pages", async () => {
    const base = chainDir();
    writeRound(join(base, '1'), 1, 1, 'r1', [[0x2000, 1, P]]);
    const final = join(base, '2');
    // The stack grew down by a page: one entry covers the new page and the root's.
    writeRound(final, 1, 2, 'r2', [[0x1000, 2, P | L]], '../1');
    const before = [0x1000, 0x2000].map((a) => readPage(final, 1, a));
    expect(await lazyRestorableImage(final, SIZE)).toEqual({ dir: `${final}.lazy` });
    expect([0x1000, 0x2000].map((a) => readPage(`${final}.lazy`, 1, a))).toEqual(before);
    expect(parsePagemap(readFileSync(join(`${final}.lazy`, 'pagemap-1.img'))).entries).toEqual([
      { vaddr: 0x1000, pages: 1, flags: UP },
      { vaddr: 0x2000, pages: 1, flags: P | L },
    ]);
  });

  it('puts in the pages a later round sent in one run that starts where the root had none (a stack grown down, a heap touched below)', async () => {
    // The root holds 0x2000-0x3000; round 2 sends 0x1000-0x3000 as one run (a new page, then both
    // of the root's, changed); the final round sends the new page again and keeps the others in its parent.
    const base = chainDir();
    writeRound(join(base, '1'), 1, 1, 'r1', [[0x2000, 2, P | L], [0x8000, 1, P | L]]);
    writeRound(join(base, '2'), 1, 2, 'r2', [[0x1000, 3, P | L], [0x8000, 1, UP | L]], '../1');
    const final = join(base, '3');
    writeRound(final, 1, 3, 'r3', [[0x1000, 1, P], [0x2000, 2, UP | L], [0x8000, 1, UP | L]], '../2');
    const addresses = pagesOf(final, 1);
    const before = addresses.map((a) => readPage(final, 1, a));
    expect(before.map((s) => s?.slice(0, 8))).toEqual(['r3@1000;', 'r2@2000;', 'r2@3000;', 'r1@8000;']);

    expect(await lazyRestorableImage(final, SIZE)).toEqual({ dir: `${final}.lazy` });
    // Round 2's 0x2000 and 0x3000, not the root's (which the tree would otherwise run on).
    expect(addresses.map((a) => readPage(`${final}.lazy`, 1, a)?.slice(0, 8))).toEqual(before.map((s) => s?.slice(0, 8)));
    expect(addresses.map((a) => readPage(`${final}.lazy`, 1, a))).toEqual(before);
    expect(addresses.map((a) => readPage(final, 1, a))).toEqual(before);
  });

  it('keeps lazy the root\'s pages of a final run that starts where the root had none', async () => {
    const base = chainDir();
    writeRound(join(base, '1'), 1, 1, 'r1', [[0x2000, 2, P | L]]);
    const final = join(base, '2');
    writeRound(final, 1, 2, 'r2', [[0x1000, 3, P | L]], '../1');
    const before = pagesOf(final, 1).map((a) => readPage(final, 1, a));
    expect(await lazyRestorableImage(final, SIZE)).toEqual({ dir: `${final}.lazy` });
    expect(pagesOf(final, 1).map((a) => readPage(`${final}.lazy`, 1, a))).toEqual(before);
    expect(parsePagemap(readFileSync(join(`${final}.lazy`, 'pagemap-1.img'))).entries).toEqual([
      { vaddr: 0x1000, pages: 1, flags: UP },
      { vaddr: 0x2000, pages: 2, flags: P | L },
    ]);
  });

  it('can be made again (a retried restore): same pages, nothing left of the first', async () => {
    const final = threeRounds(chainDir());
    const addresses = pagesOf(final, 1);
    const before = addresses.map((a) => readPage(final, 1, a));
    await lazyRestorableImage(final, SIZE);
    writeFileSync(join(`${final}.lazy`, 'criu-restore.log'), 'first attempt');
    expect(await lazyRestorableImage(final, SIZE)).toEqual({ dir: `${final}.lazy` });
    expect(addresses.map((a) => readPage(`${final}.lazy`, 1, a))).toEqual(before);
    expect(existsSync(join(`${final}.lazy`, 'criu-restore.log'))).toBe(false);
  });

  it.each<[string, (base: string) => string, RegExp]>([
    [
      'a page of the root the final round no longer has (memory given back)',
      (base) => {
        writeRound(join(base, '1'), 1, 1, 'r1', [[0x1000, 2, P]]);
        writeRound(join(base, '2'), 1, 2, 'r2', [[0x1000, 1, UP | L]], '../1');
        return join(base, '2');
      },
      /^process 1: the final round no longer has 1 page\(s\) of the root round \(memory given back\)$/,
    ],
    [
      'a process the root round does not have',
      (base) => {
        writeRound(join(base, '1'), 1, 1, 'r1', [[0x1000, 1, P]]);
        writeRound(join(base, '2'), 1, 2, 'r2', [[0x1000, 1, UP | L]], '../1');
        writeRound(join(base, '2'), 4, 3, 'r2', [[0x5000, 1, P | L]]);
        return join(base, '2');
      },
      /^process 4 is not in the root round 1$/,
    ],
    [
      'shared memory kept in a parent',
      (base) => {
        writeRound(join(base, '1'), 1, 1, 'r1', [[0x1000, 1, P]]);
        writeRound(join(base, '2'), 1, 2, 'r2', [[0x1000, 1, UP | L]], '../1');
        writeFileSync(join(base, '2', 'pagemap-shmem-5.img'), encodePagemap({ pagesId: 9, entries: [{ vaddr: 0, pages: 1, flags: UP }] }));
        return join(base, '2');
      },
      /^pagemap-shmem-5\.img keeps pages in a parent image$/,
    ],
    [
      'no parent at all',
      (base) => {
        writeRound(join(base, '1'), 1, 1, 'r1', [[0x1000, 1, P | L]]);
        return join(base, '1');
      },
      /has no parent image$/,
    ],
  ])('says why it cannot, and writes nothing beside the image: %s', async (_what, make, reason) => {
    const final = make(chainDir());
    const made = await lazyRestorableImage(final, SIZE);
    expect(made).toEqual({ reason: expect.stringMatching(reason) });
    expect(existsSync(`${final}.lazy`)).toBe(false);
  });

  it('agrees with the chain on random pre-copy chains of several processes (pages written, dropped, new; rounds made twice)', async () => {
    // A small LCG: the same chains at every run.
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const PAGES = 12;
    const at = (i: number) => 0x10000 + i * SIZE;
    let made = 0;
    for (let trial = 0; trial < 100; trial++) {
      const base = chainDir();
      const rounds = 2 + Math.floor(random() * 3);
      // Per process, what each page holds now (a tag), or undefined: not mapped (or dropped).
      const memory = new Map<number, (string | undefined)[]>();
      for (let vpid = 1; vpid <= 1 + Math.floor(random() * 3); vpid++) memory.set(vpid, Array.from({ length: PAGES }, (_, i) => (random() < 0.8 ? `v${vpid}r1p${i}` : undefined)));
      let dumped = new Map<number, boolean[]>();
      for (let round = 1; round <= rounds; round++) {
        const dir = join(base, String(round));
        mkdirSync(dir, { recursive: true });
        if (round > 1) symlinkSync(`../${round - 1}`, join(dir, 'parent'));
        const now = new Map<number, boolean[]>();
        // pages ids as CRIU hands them out: per dump, in no particular order of the processes.
        const order = [...memory.keys()].sort(() => random() - 0.5);
        order.forEach((vpid, n) => {
          const pages = memory.get(vpid)!;
          const written = pages.map(() => round === 1);
          if (round > 1) {
            for (let i = 0; i < PAGES; i++) {
              const x = random();
              if (x < 0.15) (pages[i] = `v${vpid}r${round}p${i}`), (written[i] = true);
              else if (x < 0.16) pages[i] = undefined;
              else if (x < 0.3 && pages[i] === undefined) (pages[i] = `v${vpid}r${round}p${i}`), (written[i] = true);
            }
          }
          // Soft-dirty: a page the previous round had and nobody wrote since is in the parent; every other one is sent.
          const entries: [number, number, number][] = [];
          const data: Buffer[] = [];
          for (let i = 0; i < PAGES; i++) {
            if (pages[i] === undefined) continue;
            const flags = (round > 1 && !written[i] && dumped.get(vpid)?.[i] ? UP : P) | (random() < 0.7 ? L : 0);
            const last = entries[entries.length - 1];
            if (last && last[2] === flags && last[0] + last[1] * SIZE === at(i)) last[1] += 1;
            else entries.push([at(i), 1, flags]);
            if (flags & P) data.push(Buffer.alloc(SIZE, `${pages[i]};`));
          }
          const pagesId = 100 * round + n;
          writeFileSync(join(dir, `pagemap-${vpid}.img`), encodePagemap({ pagesId, entries: entries.map(([vaddr, count, flags]) => ({ vaddr, pages: count, flags })) }));
          writeFileSync(join(dir, `pages-${pagesId}.img`), Buffer.concat(data));
          now.set(vpid, pages.map((p) => p !== undefined));
        });
        dumped = now;
      }
      const final = join(base, String(rounds));
      const reads = (dir: string) => [...memory].flatMap(([vpid, pages]) => pages.flatMap((p, i) => (p === undefined ? [] : [`${vpid}@${i}: ${readPage(dir, vpid, at(i))?.slice(0, 12)}`])));
      const want = [...memory].flatMap(([vpid, pages]) => pages.flatMap((p, i) => (p === undefined ? [] : [`${vpid}@${i}: ${`${p};`.repeat(3).slice(0, 12)}`])));
      expect(reads(final)).toEqual(want);
      for (let attempt = 0; attempt < 2; attempt++) {
        const image = await lazyRestorableImage(final, SIZE);
        expect(reads(final)).toEqual(want);
        if ('dir' in image) {
          expect(reads(image.dir)).toEqual(want);
          made += attempt === 0 ? 1 : 0;
        }
      }
    }
    // Most of them could be made (the others gave memory back).
    expect(made).toBeGreaterThan(50);
  });

  it('keeps only the new pages the final round has, and gives up (eager) past the bound on them', async () => {
    // Round 2 sends two new pages; the final round keeps one of them (the other was given back).
    const base = chainDir();
    writeRound(join(base, '1'), 1, 1, 'r1', [[0x1000, 1, P]]);
    writeRound(join(base, '2'), 1, 2, 'r2', [[0x1000, 1, UP], [0x5000, 1, P], [0x9000, 1, P]], '../1');
    const final = join(base, '3');
    writeRound(final, 1, 3, 'r3', [[0x1000, 1, UP | L], [0x5000, 1, UP]], '../2');
    expect(await lazyRestorableImage(final, SIZE, SIZE)).toEqual({ dir: `${final}.lazy` });
    expect(readFileSync(join(`${final}.lazy-parent`, 'pages-1.img')).length).toBe(SIZE);
    expect([0x1000, 0x5000].map((a) => readPage(`${final}.lazy`, 1, a))).toEqual([0x1000, 0x5000].map((a) => readPage(final, 1, a)));
    const grown = chainDir();
    writeRound(join(grown, '1'), 1, 1, 'r1', [[0x1000, 1, P]]);
    writeRound(join(grown, '2'), 1, 2, 'r2', [[0x1000, 1, UP | L], [0x5000, 2, P | L]], '../1');
    expect(await lazyRestorableImage(join(grown, '2'), SIZE, SIZE)).toEqual({ reason: `process 1: more than ${SIZE} bytes of its memory are new since the root round (kept in memory to make the image)` });
  });

  it('refuses a chain whose parent links loop', async () => {
    const base = chainDir();
    writeRound(join(base, '1'), 1, 1, 'r1', [[0x1000, 1, UP]], '../2');
    writeRound(join(base, '2'), 1, 2, 'r2', [[0x1000, 1, UP]], '../1');
    expect(await lazyRestorableImage(join(base, '2'), SIZE)).toEqual({ reason: expect.stringMatching(/loop back to/) });
  });
});
