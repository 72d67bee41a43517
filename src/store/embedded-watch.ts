/**
 * Watches for the embedded store. SQLite has no cross-process notification, so watchers poll
 * the `changes` table by revision: one cheap read of the store revision per tick, and a range
 * read per watcher only when it moved. Writes made in this process nudge an immediate poll,
 * so local watchers do not wait for the interval; other processes' writes are seen within
 * one interval. The timer only runs while there is a watcher (like etcd3's watch stream, it
 * keeps the process alive while something listens).
 */
import type { WatchEvent, Watcher } from './store';
import { StoreError, storeError } from './store-error';

/** What the poller reads from the store. */
export interface ChangeSource {
  /** Housekeeping on every tick: expire due leases, so their keys vanish without other calls. */
  tick(): void;
  revision(): number;
  /** Highest revision no longer in the change log. */
  compacted(): number;
  /** Changes under `prefix` with after < revision <= upTo, in (revision, seq) order; COMPACTED when some are gone. */
  changes(prefix: string, after: number, upTo: number): WatchEvent[];
}

/** Most revisions read for one watcher in one tick, so a far-behind watcher cannot stall the loop. */
const MAX_REVISIONS_PER_READ = 1000;

interface Subscription {
  readonly prefix: string;
  readonly onEvent: (event: WatchEvent) => void;
  readonly onError?: (error: Error) => void;
  /** Last revision delivered (or skipped as not matching). */
  seen: number;
  closed: boolean;
}

export class ChangePoller {
  private readonly subscriptions = new Set<Subscription>();
  private timer: NodeJS.Timeout | undefined;
  private nudged = false;

  constructor(
    private readonly source: ChangeSource,
    private readonly intervalMs: number,
  ) {}

  add(prefix: string, fromRevision: number, onEvent: (event: WatchEvent) => void, onError?: (error: Error) => void): Watcher {
    if (fromRevision < this.source.compacted()) {
      throw storeError('COMPACTED', 'fromRevision', fromRevision, `the change log starts after revision ${this.source.compacted()}`, 're-read the current state and watch from now');
    }
    const subscription: Subscription = { prefix, onEvent, onError, seen: fromRevision, closed: false };
    this.subscriptions.add(subscription);
    if (!this.timer) {
      this.timer = setInterval(() => this.poll(), this.intervalMs);
    }
    // Replays from an older revision start without waiting for the interval.
    this.nudge();
    return {
      close: async () => {
        this.remove(subscription);
      },
    };
  }

  /** Polls soon (on the next turn of the event loop): called after every local write. */
  nudge(): void {
    if (this.nudged || this.subscriptions.size === 0) return;
    this.nudged = true;
    setImmediate(() => {
      this.nudged = false;
      this.poll();
    });
  }

  /** Ends every watch with `error` (store closing), stopping the timer. */
  closeAll(error: StoreError): void {
    for (const subscription of [...this.subscriptions]) {
      this.remove(subscription);
      subscription.onError?.(error);
    }
  }

  private remove(subscription: Subscription): void {
    subscription.closed = true;
    this.subscriptions.delete(subscription);
    if (this.subscriptions.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private poll(): void {
    if (this.subscriptions.size === 0) return;
    let revision: number;
    let compacted: number;
    try {
      this.source.tick();
      revision = this.source.revision();
      compacted = this.source.compacted();
    } catch (error) {
      // The file went away or stayed locked past busy_timeout: end the watches loudly.
      for (const subscription of [...this.subscriptions]) this.fail(subscription, error as Error);
      return;
    }
    for (const subscription of [...this.subscriptions]) {
      if (subscription.seen >= revision) continue;
      if (subscription.seen < compacted) {
        this.fail(subscription, storeError('COMPACTED', 'watch', subscription.prefix, `fell behind: revisions up to ${compacted} were compacted before delivery`, 're-read the state and watch again'));
        continue;
      }
      this.deliver(subscription, revision);
    }
    // A watcher capped by MAX_REVISIONS_PER_READ continues on the next turn, not the next interval.
    if ([...this.subscriptions].some((s) => s.seen < revision)) this.nudge();
  }

  private deliver(subscription: Subscription, revision: number): void {
    const upTo = Math.min(revision, subscription.seen + MAX_REVISIONS_PER_READ);
    let events: WatchEvent[];
    try {
      events = this.source.changes(subscription.prefix, subscription.seen, upTo);
    } catch (error) {
      this.fail(subscription, error as Error);
      return;
    }
    subscription.seen = upTo;
    for (const event of events) {
      if (subscription.closed) return;
      try {
        subscription.onEvent(event);
      } catch (error) {
        // A throwing handler is the caller's bug, not the watch's end: surface it like an
        // EventEmitter listener error, on its own turn, and keep delivering.
        setImmediate(() => {
          throw error;
        });
      }
    }
  }

  private fail(subscription: Subscription, error: Error): void {
    this.remove(subscription);
    subscription.onError?.(error);
  }
}
