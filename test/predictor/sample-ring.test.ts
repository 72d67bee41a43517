import { SampleRing } from '../../src/predictor/sample-ring';
import { seededRandom } from '../../src/predictor/seeded-random';

/** The plain form a ring must equal: every (step, value) kept, `at` answered from the newest. */
class Reference {
  readonly steps = new Map<number, number>();
  last: number | null = null;
  constructor(readonly capacity: number) {}
  push(step: number, value: number): number {
    if (this.last !== null && step < this.last) return -1;
    if (this.last !== null && step === this.last) {
      const before = this.steps.get(step) ?? NaN;
      if (value === value && !(before >= value)) this.steps.set(step, value);
      return 0;
    }
    const advance = this.last === null ? 1 : step - this.last;
    this.last = step;
    this.steps.set(step, value);
    return advance;
  }
  at(ago: number): number {
    if (this.last === null || ago < 0 || ago >= this.capacity) return NaN;
    return this.steps.get(this.last - ago) ?? NaN;
  }
}

describe('sample ring storage', () => {
  it.each([1, 5, 16, 17, 300, 2016])('answers like a ring that keeps everything, capacity %i, through growth, wrapping, gaps and jumps', (capacity) => {
    const random = seededRandom(capacity);
    const ring = new SampleRing(capacity, 300);
    const reference = new Reference(capacity);
    let step = 5_000_000;
    for (let i = 0; i < 3000; i++) {
      const r = random();
      step += r < 0.7 ? 1 : r < 0.8 ? 0 : r < 0.95 ? Math.floor(random() * 10) : Math.floor(random() * 3 * capacity) + 1;
      const value = random() < 0.05 ? NaN : random() * 10;
      expect(ring.push(step * 300, value)).toBe(reference.push(step, value));
      if (i % 97 === 0 || i === 2999) {
        for (let ago = -1; ago <= capacity; ago++) expect(ring.at(ago)).toBe(reference.at(ago));
        const reloaded = SampleRing.fromJSON(JSON.parse(JSON.stringify(ring.toJSON())));
        for (let ago = 0; ago < capacity; ago++) expect(reloaded.at(ago)).toBe(reference.at(ago));
      }
    }
  });

  it('saves a ring that has not wrapped in the wrapped format (slot = step mod capacity)', () => {
    const ring = new SampleRing(10, 300);
    ring.push(23 * 300, 1);
    ring.push(24 * 300, 2);
    const saved = ring.toJSON();
    expect(saved.values).toEqual([null, null, null, 1, 2, null, null, null, null, null]);
    expect(saved.lastStep).toBe(24);
  });
});
