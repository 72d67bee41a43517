/**
 * Runs an async task one at a time: a call during a run returns that run's promise and asks for
 * exactly one more run after it (the trigger may have come too late for the running pass to see).
 * Used for reconcile passes, which plan changes, store watches and timers all trigger.
 */
export class CoalescedTask<T> {
  private inFlight: Promise<T> | undefined;
  private again = false;

  constructor(private readonly task: () => Promise<T>) {}

  run(): Promise<T> {
    if (this.inFlight) {
      this.again = true;
      return this.inFlight;
    }
    this.inFlight = this.task().finally(() => {
      this.inFlight = undefined;
      if (this.again) {
        this.again = false;
        void this.run().catch(() => {});
      }
    });
    return this.inFlight;
  }

  /** Resolves when no run is in progress (shutdown). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight.catch(() => {});
  }
}
