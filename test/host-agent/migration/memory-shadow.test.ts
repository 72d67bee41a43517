import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodePagemap, parsePagemap, PE_LAZY, PE_PARENT, PE_PRESENT, type PagemapEntry } from '../../../host-agent/checkpoint/pagemap-image';
import { listImageFiles } from '../../../host-agent/checkpoint/image-manifest';
import { pageSize } from '../../../host-agent/checkpoint/process-memory';
import { captureShadow, compareFrozenWithShadow, diffDumpWithShadows, systemShadowPreCopy, type FrozenComparison, type Shadow } from '../../../host-agent/migration/memory-shadow';
import { tempDir } from '../../helpers/cli';
import { startMemoryChild, type MemoryChild } from '../../helpers/memory-child';

const PAGE = pageSize();
const page = (byte: number) => Buffer.alloc(PAGE, byte);

/** The pages an image of `entries` holds in its pages file, by address (entries in the file's order). */
function pagesByAddress(entries: readonly PagemapEntry[], pages: Buffer): Map<number, Buffer> {
  const found = new Map<number, Buffer>();
  let at = 0;
  for (const e of entries) {
    if ((e.flags & PE_PRESENT) === 0 || (e.flags & PE_PARENT) !== 0) continue;
    for (let i = 0; i < e.pages; i += 1, at += PAGE) found.set(e.vaddr + i * PAGE, pages.subarray(at, at + PAGE));
  }
  expect(at).toBe(pages.length);
  return found;
}

/** Which flags each page of [from, from + count pages) carries in `entries`. */
function flagsOf(entries: readonly PagemapEntry[], from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => {
    const vaddr = from + i * PAGE;
    return entries.find((e) => vaddr >= e.vaddr && vaddr < e.vaddr + e.pages * PAGE)?.flags ?? -1;
  });
}

describe('shadow pre-copy: rounds while the shard runs', () => {
  const dir = tempDir('shardform-shadow');
  let child: MemoryChild;
  beforeAll(async () => {
    child = await startMemoryChild(128);
  });
  afterAll(async () => {
    await child.stop();
    dir.remove();
  });

  it('sends every page in the first round and only the pages written since in the next, the rest marked as in the parent image', async () => {
    const round1 = join(dir.path, '1');
    const round2 = join(dir.path, '2');
    mkdirSync(round1);
    mkdirSync(round2);
    const first = (await captureShadow({ pid: child.pid, vpid: 1, round: 1, dir: round1 }))!;
    expect(first.upload).toEqual(['pagemap-1.img', 'pages-1.img']);
    const firstMap = parsePagemap(readFileSync(join(round1, 'pagemap-1.img')));
    expect(firstMap.pagesId).toBe(1);
    expect(flagsOf(firstMap.entries, child.data, 128).every((f) => f === PE_PRESENT)).toBe(true);
    const firstPages = pagesByAddress(firstMap.entries, readFileSync(join(round1, 'pages-1.img')));
    expect(firstPages.get(child.data + 5 * PAGE)).toEqual(child.initial(5));
    expect(first.pagesBytes).toBe(statSync(join(round1, 'pages-1.img')).size);

    await child.write(5, 0xee);
    await child.write(6, 0xef);
    await child.write(100, 0xf0);
    const second = (await captureShadow({ pid: child.pid, vpid: 1, round: 2, dir: round2, previous: first.shadow }))!;
    const secondMap = parsePagemap(readFileSync(join(round2, 'pagemap-1.img')));
    const flags = flagsOf(secondMap.entries, child.data, 128);
    expect(flags.map((f, i) => (f === PE_PRESENT ? i : -1)).filter((i) => i >= 0)).toEqual([5, 6, 100]);
    expect(flags.filter((f) => f === PE_PARENT)).toHaveLength(125);
    const secondPages = pagesByAddress(secondMap.entries, readFileSync(join(round2, 'pages-1.img')));
    expect(secondPages.get(child.data + 6 * PAGE)).toEqual(page(0xef));
    // The interpreter dirties a few pages of its own meanwhile; the 128-page buffer is not resent.
    expect(second.pagesBytes).toBeGreaterThanOrEqual(3 * PAGE);
    expect(second.pagesBytes).toBeLessThan(first.pagesBytes / 4);
    expect(existsSync(first.shadow.path)).toBe(false); // the previous shadow is no base for anything now
    expect(existsSync(second.shadow.path)).toBe(true);
  });

  it('compares a stopped process with its shadow: every page but those written since is unchanged', async () => {
    const round1 = join(dir.path, 'frozen-1');
    mkdirSync(round1);
    const first = (await captureShadow({ pid: child.pid, vpid: 1, round: 1, dir: round1 }))!;
    await child.write(7, 0xa1);
    await child.write(8, 0xa2);
    await child.write(90, 0xa3);
    process.kill(child.pid, 'SIGSTOP');
    let compared: FrozenComparison;
    try {
      compared = await compareFrozenWithShadow({ pid: child.pid, shadow: first.shadow });
    } finally {
      process.kill(child.pid, 'SIGCONT');
    }
    expect(compared.vpid).toBe(1);
    expect(compared.round).toBe(1);
    const inBuffer = compared.unchanged.filter((r) => r.vaddr + r.pages * PAGE > child.data && r.vaddr < child.data + 128 * PAGE);
    const unchangedPages = new Set<number>();
    for (const r of inBuffer) for (let i = 0; i < r.pages; i += 1) unchangedPages.add((r.vaddr - child.data) / PAGE + i);
    const buffer = Array.from({ length: 128 }, (_, i) => i);
    expect(buffer.filter((i) => !unchangedPages.has(i))).toEqual([7, 8, 90]);
    // Runs are merged and in address order.
    for (let i = 1; i < compared.unchanged.length; i += 1) {
      const before = compared.unchanged[i - 1]!;
      expect(compared.unchanged[i]!.vaddr).toBeGreaterThan(before.vaddr + before.pages * PAGE);
    }
  });

  it('stops comparing a frozen process when told to', async () => {
    const round1 = join(dir.path, 'frozen-stop');
    mkdirSync(round1);
    const first = (await captureShadow({ pid: child.pid, vpid: 1, round: 1, dir: round1 }))!;
    const stop = new AbortController();
    stop.abort(new Error('the dump failed'));
    await expect(compareFrozenWithShadow({ pid: child.pid, shadow: first.shadow, signal: stop.signal })).rejects.toThrow('the dump failed');
  });

  it('skips a process that ended since the round listed it (a short-lived child): nothing of it is written or sent, and the round goes on', async () => {
    const ended = spawn('/bin/true');
    await new Promise((resolve) => ended.on('exit', resolve));
    const round = join(dir.path, 'ended');
    mkdirSync(round);
    await expect(captureShadow({ pid: ended.pid!, vpid: 7, round: 1, dir: round })).resolves.toBeUndefined();
    expect(readdirSync(round)).toEqual([]);
  });

  it('finds the processes CRIU dumps: those in the root process\'s PID namespace, named by their pid there', async () => {
    const found = await systemShadowPreCopy.processes(child.pid, [child.pid, 2 ** 22 + 777]);
    expect(found).toEqual([{ pid: child.pid, vpid: child.pid }]);
  });
});

describe('shadow pre-copy: the final dump', () => {
  const dir = tempDir('shardform-shadow-dump');
  afterAll(() => dir.remove());

  /** A shadow of round 2 holding pages A (4 pages at 0x10000) and B (2 pages at 0x20000), contents 1..6. */
  function shadowOf(root: string, round = 2): Shadow {
    mkdirSync(join(root, String(round)), { recursive: true });
    const path = join(root, String(round), 'shadow-1.img');
    writeFileSync(path, Buffer.concat([1, 2, 3, 4, 5, 6].map(page)));
    return { vpid: 1, round, path, runs: [{ vaddr: 0x10000, pages: 4 }, { vaddr: 0x20000, pages: 2 }] };
  }

  function dumpOf(root: string, pages: Buffer[], entries: PagemapEntry[]): string {
    const dump = join(root, '3');
    mkdirSync(dump, { recursive: true });
    writeFileSync(join(dump, 'pagemap-1.img'), encodePagemap({ pagesId: 4, entries }));
    writeFileSync(join(dump, 'pages-4.img'), Buffer.concat(pages));
    writeFileSync(join(dump, 'core-1.img'), 'core');
    return dump;
  }

  it('keeps only the pages that differ from the shadow; the others point to the parent image, holes stay holes', async () => {
    const root = join(dir.path, 'a');
    const shadow = shadowOf(root);
    const dump = dumpOf(root, [page(1), page(0x99), page(3), page(4), page(5), page(6), page(7)], [
      { vaddr: 0x10000, pages: 4, flags: PE_PRESENT | PE_LAZY },
      { vaddr: 0x20000, pages: 3, flags: PE_PRESENT }, // 0x22000 is new since the shadow
      { vaddr: 0x30000, pages: 2, flags: 0 },
    ]);
    const diff = await diffDumpWithShadows(dump, new Map([[1, shadow]]), 2);
    expect(diff.rewritten).toEqual([{ file: 'pages-4.img', dumpedBytes: 7 * PAGE, sentBytes: 2 * PAGE }]);
    const pagemap = parsePagemap(readFileSync(join(dump, 'pagemap-1.img')));
    expect(pagemap).toEqual({
      pagesId: 4,
      entries: [
        { vaddr: 0x10000, pages: 1, flags: PE_PARENT | PE_LAZY },
        { vaddr: 0x11000, pages: 1, flags: PE_PRESENT | PE_LAZY },
        { vaddr: 0x12000, pages: 2, flags: PE_PARENT | PE_LAZY },
        { vaddr: 0x20000, pages: 2, flags: PE_PARENT },
        { vaddr: 0x22000, pages: 1, flags: PE_PRESENT },
        { vaddr: 0x30000, pages: 2, flags: 0 },
      ],
    });
    expect(readFileSync(join(dump, 'pages-4.img'))).toEqual(Buffer.concat([page(0x99), page(7)]));
    expect(readFileSync(join(dump, 'core-1.img'), 'utf8')).toBe('core');
    expect((await listImageFiles(dump)).map((f) => f.name)).toEqual(['core-1.img', 'pagemap-1.img', 'pages-4.img']);
  });

  it('with a comparison made while frozen, picks pages by it instead of comparing them with the shadow again', async () => {
    const root = join(dir.path, 'frozen');
    const shadow = shadowOf(root);
    // Page 0x12000 reads as 3 in the shadow file, but the frozen comparison (made against the
    // shadow's content when it was read) found it unchanged: it is trusted, not re-read.
    const dump = dumpOf(root, [page(1), page(0x99), page(0x33), page(4), page(5), page(6), page(7)], [
      { vaddr: 0x10000, pages: 4, flags: PE_PRESENT | PE_LAZY },
      { vaddr: 0x20000, pages: 3, flags: PE_PRESENT },
      { vaddr: 0x30000, pages: 2, flags: 0 },
    ]);
    const frozen = new Map<number, FrozenComparison>([[1, { vpid: 1, round: 2, unchanged: [{ vaddr: 0x10000, pages: 1 }, { vaddr: 0x12000, pages: 2 }, { vaddr: 0x20000, pages: 1 }] }]]);
    const diff = await diffDumpWithShadows(dump, new Map([[1, shadow]]), 2, frozen);
    expect(diff.rewritten).toEqual([{ file: 'pages-4.img', dumpedBytes: 7 * PAGE, sentBytes: 3 * PAGE }]);
    expect(parsePagemap(readFileSync(join(dump, 'pagemap-1.img'))).entries).toEqual([
      { vaddr: 0x10000, pages: 1, flags: PE_PARENT | PE_LAZY },
      { vaddr: 0x11000, pages: 1, flags: PE_PRESENT | PE_LAZY },
      { vaddr: 0x12000, pages: 2, flags: PE_PARENT | PE_LAZY },
      { vaddr: 0x20000, pages: 1, flags: PE_PARENT },
      { vaddr: 0x21000, pages: 2, flags: PE_PRESENT }, // 0x21000 was not found unchanged while frozen: sent
      { vaddr: 0x30000, pages: 2, flags: 0 },
    ]);
    expect(readFileSync(join(dump, 'pages-4.img'))).toEqual(Buffer.concat([page(0x99), page(6), page(7)]));
  });

  it('ignores a frozen comparison against another round\'s shadow and compares with the shadow', async () => {
    const root = join(dir.path, 'frozen-stale');
    const shadow = shadowOf(root);
    const dump = dumpOf(root, [page(1), page(0x99)], [{ vaddr: 0x10000, pages: 2, flags: PE_PRESENT }]);
    const stale = new Map<number, FrozenComparison>([[1, { vpid: 1, round: 1, unchanged: [{ vaddr: 0x10000, pages: 2 }] }]]);
    const diff = await diffDumpWithShadows(dump, new Map([[1, shadow]]), 2, stale);
    expect(diff.rewritten).toEqual([{ file: 'pages-4.img', dumpedBytes: 2 * PAGE, sentBytes: PAGE }]);
    expect(readFileSync(join(dump, 'pages-4.img'))).toEqual(page(0x99));
  });

  it('leaves a dump alone when the only shadow is of another round than the parent image', async () => {
    const root = join(dir.path, 'b');
    const shadow = shadowOf(root, 1);
    const dump = dumpOf(root, [page(1)], [{ vaddr: 0x10000, pages: 1, flags: PE_PRESENT }]);
    expect((await diffDumpWithShadows(dump, new Map([[1, shadow]]), 2)).rewritten).toEqual([]);
    expect(statSync(join(dump, 'pages-4.img')).size).toBe(PAGE);
  });

  it('refuses a pages file shorter than its pagemap and leaves the dump as CRIU wrote it', async () => {
    const root = join(dir.path, 'c');
    const shadow = shadowOf(root);
    const dump = dumpOf(root, [page(1)], [{ vaddr: 0x10000, pages: 2, flags: PE_PRESENT }]);
    await expect(diffDumpWithShadows(dump, new Map([[1, shadow]]), 2)).rejects.toThrow(`${join(dump, 'pages-4.img')} ends at byte ${PAGE}, its pagemap lists more pages`);
    expect(readFileSync(join(dump, 'pages-4.img'))).toEqual(page(1));
    expect(parsePagemap(readFileSync(join(dump, 'pagemap-1.img'))).entries).toEqual([{ vaddr: 0x10000, pages: 2, flags: PE_PRESENT }]);
    expect(existsSync(join(dump, 'pages-4.img.partial'))).toBe(false);
  });
});
