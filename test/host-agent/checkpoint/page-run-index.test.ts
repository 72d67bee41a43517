import { PageRunIndex } from '../../../host-agent/checkpoint/page-run-index';

describe('PageRunIndex', () => {
  // Runs of a file: 0x1000-0x3000 (2 pages at offset 0), 0x8000 (1 page at offset 0x2000).
  const index = new PageRunIndex([{ vaddr: 0x1000, pages: 2 }, { vaddr: 0x8000, pages: 1 }], 0x1000);

  it('finds the offset of a page, or -1 outside the runs', () => {
    expect(index.pages).toBe(3);
    expect([0x1000, 0x2000, 0x8000, 0x0, 0x3000, 0x9000].map((v) => index.offsetOf(v))).toEqual([0, 0x1000, 0x2000, -1, -1, -1]);
  });

  it('cuts a range into spans inside the runs (with offsets) and outside them, in address order', () => {
    expect([...index.spans(0x0, 0xa000)]).toEqual([
      { from: 0x0, to: 0x1000, offset: undefined },
      { from: 0x1000, to: 0x3000, offset: 0 },
      { from: 0x3000, to: 0x8000, offset: undefined },
      { from: 0x8000, to: 0x9000, offset: 0x2000 },
      { from: 0x9000, to: 0xa000, offset: undefined },
    ]);
    expect([...index.spans(0x2000, 0x2000 + 0x1000)]).toEqual([{ from: 0x2000, to: 0x3000, offset: 0x1000 }]);
  });
});
