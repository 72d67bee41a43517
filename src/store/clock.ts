/**
 * Time as the store sees it, passed in so lease expiry is exact in tests (STYLE.md "Time is
 * passed in"): tests advance a ManualClock instead of sleeping, production uses the system
 * clock. Several processes sharing one embedded store compare absolute milliseconds, so they
 * must share a clock too: the system clock in production, one ManualClock in a test process.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** A clock that only moves when told to. */
export class ManualClock implements Clock {
  constructor(private ms = 1_700_000_000_000) {}
  nowMs(): number {
    return this.ms;
  }
  advance(seconds: number): void {
    this.ms += Math.round(seconds * 1000);
  }
}
