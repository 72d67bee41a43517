import { encodePagemap, inPagesFile, parsePagemap, PE_LAZY, PE_PARENT, PE_PRESENT } from '../../../host-agent/checkpoint/pagemap-image';

/** The first bytes of a pagemap CRIU 4.1.1 wrote for test/helpers/workload.py (magics, head, two entries). */
const CRIU_WRITTEN = Buffer.from(
  [
    '19435654', '25400856', // IMG_COMMON, PAGEMAP
    '02000000', '0801', // head: pages_id = 1
    '0c000000', '0880c0a4d4f0c715', '1001', '2004', // vaddr 0x563f0a892000, 1 page, PE_PRESENT
    '0c000000', '088080a5d4f0c715', '1002', '2004', // vaddr 0x563f0a894000, 2 pages, PE_PRESENT
  ].join(''),
  'hex',
);

describe('CRIU pagemap image', () => {
  it('reads what CRIU wrote: the pages id and each entry with its address, length and flags', () => {
    const pagemap = parsePagemap(CRIU_WRITTEN, 'pagemap-1.img');
    expect(pagemap.pagesId).toBe(1);
    expect(pagemap.entries).toEqual([
      { vaddr: 0x563f0a892000, pages: 1, flags: PE_PRESENT },
      { vaddr: 0x563f0a894000, pages: 2, flags: PE_PRESENT },
    ]);
  });

  it('writes images it reads back unchanged, large addresses included', () => {
    const pagemap = {
      pagesId: 7,
      entries: [
        { vaddr: 0x7ffd_1234_5000, pages: 65536, flags: PE_PRESENT | PE_LAZY },
        { vaddr: 0x7ffd_2234_5000, pages: 3, flags: PE_PARENT },
        { vaddr: 0x7ffd_2234_8000, pages: 1, flags: 0 },
      ],
    };
    expect(parsePagemap(encodePagemap(pagemap))).toEqual(pagemap);
  });

  it('knows which entries have their pages in this image: present and not in a parent', () => {
    expect(inPagesFile({ vaddr: 0, pages: 1, flags: PE_PRESENT | PE_LAZY })).toBe(true);
    expect(inPagesFile({ vaddr: 0, pages: 1, flags: PE_PARENT })).toBe(false);
    expect(inPagesFile({ vaddr: 0, pages: 1, flags: PE_PARENT | PE_PRESENT })).toBe(false);
    expect(inPagesFile({ vaddr: 0, pages: 1, flags: 0 })).toBe(false);
  });

  it('refuses what is not a pagemap image, naming the file and what is wrong', () => {
    expect(() => parsePagemap(Buffer.from('not an image'), 'x/pagemap-1.img')).toThrow('x/pagemap-1.img is not a CRIU pagemap image (magic 6e6f7420616e2069)');
    expect(() => parsePagemap(CRIU_WRITTEN.subarray(0, 13), 'p')).toThrow('p: entry at byte 8 runs past the end (2 bytes)');
    expect(() => parsePagemap(CRIU_WRITTEN.subarray(0, 10), 'p')).toThrow('p: truncated entry length at byte 8');
    expect(() => parsePagemap(CRIU_WRITTEN.subarray(0, 8), 'p')).toThrow('p has no pagemap head');
    const cutVarint = Buffer.concat([CRIU_WRITTEN.subarray(0, 14), Buffer.from('03000000' + '0880c0', 'hex')]);
    expect(() => parsePagemap(cutVarint, 'p')).toThrow('p entry 1: truncated varint');
    const noLength = Buffer.concat([CRIU_WRITTEN.subarray(0, 14), Buffer.from('02000000' + '0801', 'hex')]);
    expect(() => parsePagemap(noLength, 'p')).toThrow('p entry 1: no vaddr or nr_pages');
  });

  it('reads images of older CRIU that say in_parent instead of flags', () => {
    // vaddr 0x2000 (varint 80 40), nr_pages 1, in_parent true; then one without in_parent.
    const old = Buffer.concat([CRIU_WRITTEN.subarray(0, 14), Buffer.from('07000000' + '088040100118' + '01' + '05000000' + '0880601001', 'hex')]);
    expect(parsePagemap(old).entries).toEqual([
      { vaddr: 0x2000, pages: 1, flags: PE_PARENT },
      { vaddr: 0x3000, pages: 1, flags: PE_PRESENT },
    ]);
  });
});
