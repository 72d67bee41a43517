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

  it.each([1, 16, 300, 2016])('goes on after a reload like the ring it was saved from, capacity %i, saved at any point', (capacity) => {
    const random = seededRandom(capacity + 1);
    const samples: [number, number][] = [];
    let step = 7_000_000;
    for (let i = 0; i < 1500; i++) {
      const r = random();
      step += r < 0.8 ? 1 : r < 0.9 ? 0 : r < 0.97 ? Math.floor(random() * 10) : Math.floor(random() * 2 * capacity) + 1;
      samples.push([step * 300, random() < 0.05 ? NaN : random() * 10]);
    }
    for (const savedAfter of [0, 1, 3, 17, 200, 1400]) {
      const ring = new SampleRing(capacity, 300);
      for (const [at, value] of samples.slice(0, savedAfter)) ring.push(at, value);
      const reloaded = SampleRing.fromJSON(JSON.parse(JSON.stringify(ring.toJSON())));
      expect(reloaded.toJSON()).toEqual(ring.toJSON());
      for (const [at, value] of samples.slice(savedAfter)) {
        expect(reloaded.push(at, value)).toBe(ring.push(at, value));
        for (const ago of [0, 1, capacity >> 1, capacity - 1]) expect(reloaded.at(ago)).toBe(ring.at(ago));
      }
      expect(reloaded.toJSON()).toEqual(ring.toJSON());
    }
  });

  it('reloads a young ring into storage for its samples, not its whole capacity', () => {
    const storage = (ring: SampleRing) => (ring as unknown as { values: Float64Array }).values.length;
    const ring = new SampleRing(2016, 300);
    expect(storage(SampleRing.fromJSON(ring.toJSON()))).toBe(0);
    for (let k = 0; k < 3; k++) ring.push((100 + k) * 300, k);
    expect(storage(SampleRing.fromJSON(ring.toJSON()))).toBe(16);
    for (let k = 3; k < 2100; k++) ring.push((100 + k) * 300, k);
    expect(storage(SampleRing.fromJSON(ring.toJSON()))).toBe(2016);
  });

  it('refuses values saved without a newest step (toJSON never writes them; they would surface after the next sample)', () => {
    const saved = { ...new SampleRing(3, 300).toJSON(), values: [null, 5, null] };
    expect(() => SampleRing.fromJSON(saved)).toThrow('state.ring.values: 5 is not null before the first sample');
  });
});
