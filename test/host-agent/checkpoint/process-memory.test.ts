import { accessSync, constants } from 'node:fs';
import { dumpableRegions, pageSize, parseMaps, privatePageRuns, readPages, type PageRun } from '../../../host-agent/checkpoint/process-memory';
import { startMemoryChild, type MemoryChild } from '../../helpers/memory-child';
import { describePrivileged } from '../../helpers/privileged';

const MAPS = `55d0c6a00000-55d0c6a2d000 r--p 00000000 fe:01 1055 /usr/bin/python3.11
55d0c6a2d000-55d0c6d00000 r-xp 0002d000 fe:01 1055 /usr/bin/python3.11
55d0c7000000-55d0c7100000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000010000 rw-s 00000000 00:01 33 /dev/zero (deleted)
7f0000010000-7f0000020000 ---p 00000000 00:00 0
7ffd10000000-7ffd10021000 rw-p 00000000 00:00 0 [stack]
7ffd100fe000-7ffd10100000 r--p 00000000 00:00 0 [vvar]
7ffd10100000-7ffd10102000 r-xp 00000000 00:00 0 [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
`;

const requireKpageflags = () => {
  try {
    accessSync('/proc/kpageflags', constants.R_OK);
    return undefined;
  } catch {
    return 'needs read access to /proc/kpageflags (root) to tell the zero page';
  }
};

function pagesIn(runs: readonly PageRun[], from: number, count: number): number {
  let found = 0;
  for (let i = 0; i < count; i += 1) {
    const vaddr = from + i * pageSize();
    if (runs.some((r) => vaddr >= r.vaddr && vaddr < r.vaddr + r.pages * pageSize())) found += 1;
  }
  return found;
}

describe('reading a running process the way CRIU dumps it', () => {
  it('parses /proc/<pid>/maps and keeps the private, readable regions CRIU dumps pages of (the vdso too)', () => {
    const regions = parseMaps(MAPS);
    expect(regions).toHaveLength(8); // [vsyscall] lies above 2^53 and is dropped
    expect(dumpableRegions(regions).map((r) => r.path || `${r.perms} anon`)).toEqual(['/usr/bin/python3.11', '/usr/bin/python3.11', '[heap]', '[stack]', '[vdso]']);
  });

  describe('a live child', () => {
    let child: MemoryChild;
    beforeAll(async () => {
      child = await startMemoryChild(64, 8);
    });
    afterAll(() => child.stop());

    it('finds every written private page among its present pages', () => {
      expect(pagesIn(privatePageRuns(child.pid), child.data, 64)).toBe(64);
    });

    it('reads their content while it runs, in address order, in bounded extents', async () => {
      const seen = new Map<number, Buffer>();
      let last = -1;
      await readPages(child.pid, privatePageRuns(child.pid), (extent) => {
        expect(extent.vaddr).toBeGreaterThan(last);
        expect(extent.data.length % pageSize()).toBe(0);
        expect(extent.data.length).toBeLessThanOrEqual(256 * pageSize());
        last = extent.vaddr;
        for (let at = 0; at < extent.data.length; at += pageSize()) seen.set(extent.vaddr + at, Buffer.from(extent.data.subarray(at, at + pageSize())));
      });
      for (let page = 0; page < 64; page += 1) expect(seen.get(child.data + page * pageSize())).toEqual(child.initial(page));
    });

    describePrivileged('with /proc/kpageflags', [requireKpageflags], () => {
      it('leaves out pages that are the kernel zero page (read, never written), as CRIU does', async () => {
        const runs = privatePageRuns(child.pid);
        expect(pagesIn(runs, child.zero, 8)).toBe(8); // present in the page tables...
        const read: number[] = [];
        await readPages(child.pid, runs, (extent) => read.push(...Array.from({ length: extent.data.length / pageSize() }, (_, i) => extent.vaddr + i * pageSize())));
        expect(read.filter((v) => v >= child.zero && v < child.zero + 8 * pageSize())).toEqual([]); // ...but never read into a shadow
        expect(read.filter((v) => v >= child.data && v < child.data + 64 * pageSize())).toHaveLength(64);
      });

      it('keeps a page the process wrote zeroes to: only the kernel zero page is left out', async () => {
        await child.write(3, 0);
        const read = new Map<number, Buffer>();
        await readPages(child.pid, privatePageRuns(child.pid), (extent) => {
          for (let at = 0; at < extent.data.length; at += pageSize()) read.set(extent.vaddr + at, Buffer.from(extent.data.subarray(at, at + pageSize())));
        });
        expect(read.get(child.data + 3 * pageSize())).toEqual(Buffer.alloc(pageSize()));
      });
    });
  });

  it('says which process it could not read', async () => {
    expect(() => privatePageRuns(2 ** 22 + 12345)).toThrow(/cannot read \/proc\/4206649\/maps/);
    await expect(readPages(2 ** 22 + 12345, [{ vaddr: 0x10000, pages: 1 }], () => undefined)).rejects.toThrow(/cannot open \/proc\/4206649\/mem/);
  });
});
