/**
 * Runs an async task one at a time. A call during a run waits for one more run that starts
 * after the current one (the trigger may have come too late for the running pass to see);
 * any number of calls during a run share that one follow-up run. Used for plan checks and
 * reconcile passes, which file events, store watches, timers and API calls all trigger.
 */
export class CoalescedTask<T> {
  private inFlight: Promise<T> | undefined;
  private next: Promise<T> | undefined;

  constructor(private readonly task: () => Promise<T>) {}

  run(): Promise<T> {
    if (!this.inFlight) {
      this.inFlight = this.task().finally(() => {
        this.inFlight = undefined;
      });
      return this.inFlight;
    }
    this.next ??= this.inFlight
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.run();
      });
    return this.next;
  }

  /** Resolves when no run is in progress or queued (shutdown). */
  async idle(): Promise<void> {
    while (this.inFlight || this.next) await (this.next ?? this.inFlight)!.catch(() => undefined);
  }
}
