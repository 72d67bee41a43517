/**
 * Where pages are in a file that holds runs of pages back to back, in address order (a CRIU
 * pages file, or a shadow of one): binary search over the runs, so a lookup costs O(log runs)
 * however many pages there are.
 */
export interface PageRunLike {
  readonly vaddr: number;
  readonly pages: number;
}

export class PageRunIndex {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private readonly offsets: number[] = [];
  /** How many pages the runs hold. */
  readonly pages: number;

  constructor(runs: readonly PageRunLike[], size: number) {
    let offset = 0;
    for (const run of runs) {
      this.starts.push(run.vaddr);
      this.ends.push(run.vaddr + run.pages * size);
      this.offsets.push(offset);
      offset += run.pages * size;
    }
    this.pages = offset / size;
  }

  /** Offset of the page at `vaddr`, or -1 when the runs do not have it. */
  offsetOf(vaddr: number): number {
    const i = this.firstEndingAfter(vaddr);
    return i < this.starts.length && vaddr >= (this.starts[i] as number) ? (this.offsets[i] as number) + (vaddr - (this.starts[i] as number)) : -1;
  }

  /**
   * Cuts `[vaddr, end)` into spans inside the runs (with the span's offset in the file) and spans
   * outside them (offset undefined), in address order.
   */
  *spans(vaddr: number, end: number): Generator<{ from: number; to: number; offset: number | undefined }> {
    let at = vaddr;
    let i = this.firstEndingAfter(vaddr);
    while (at < end) {
      const start = i < this.starts.length ? (this.starts[i] as number) : end;
      if (at < start) {
        // A gap before run i (or after the last): the next span starts run i, if it is in range.
        const to = Math.min(start, end);
        yield { from: at, to, offset: undefined };
        at = to;
        continue;
      }
      const to = Math.min(this.ends[i] as number, end);
      yield { from: at, to, offset: (this.offsets[i] as number) + (at - start) };
      at = to;
      i += 1;
    }
  }

  /** The index of the first run that ends after `vaddr` (runs.length when none does). */
  private firstEndingAfter(vaddr: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.ends[mid] as number) <= vaddr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
