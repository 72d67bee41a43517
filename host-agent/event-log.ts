/**
 * The agent's shard event log: the sink the shard manager reports to. Every event gets a
 * sequence number (the `since` cursor of GET /v1/events), is logged as one JSON line with
 * shard_id and application_id, kept in a bounded in-memory window and written to the store
 * under `/hosts/<host-id>/events/<seq>` so the history survives an agent restart.
 *
 * Numbers never go backwards, across restarts too: a cursor a client holds never names a later
 * event (Kubernetes' resourceVersion, journald's cursors). The store records a high-water mark,
 * `/hosts/<host-id>/event-seq`, and an event is served only once its number is at or below a
 * mark the store has taken; the next agent numbers from above the mark. Numbering from above
 * the newest *stored* event alone gave numbers already served to new events when the writes of
 * the newest ones had failed (the store away) before the agent restarted, and a client polling
 * with that cursor missed the new events. The mark reserves SEQ_BLOCK numbers at a time, like
 * a cached sequence (PostgreSQL `CREATE SEQUENCE ... CACHE`): one write per block, a store
 * outage holds events back only once the block is used up, and a restart skips the unused rest.
 */
import type { Store } from '../src/store/store';
import type { AgentLogger } from './log';
import type { ShardEvent, ShardEventSink } from './shard-event';

export interface SequencedEvent extends ShardEvent {
  readonly seq: number;
}

export interface EventLogOptions {
  readonly hostId: string;
  readonly store?: Pick<Store, 'put' | 'list' | 'delete' | 'get'>;
  readonly logger: AgentLogger;
  /** Events kept in memory and in the store; default 1000. */
  readonly keep?: number;
}

const SEQ_WIDTH = 12;
/** Numbers the high-water mark reserves at a time; a new block is asked for halfway through one. */
const SEQ_BLOCK = 100;

export class EventLog implements ShardEventSink {
  private readonly window: SequencedEvent[] = [];
  private nextSeq = 1;
  private writes: Promise<unknown> = Promise.resolve();
  private readonly keep: number;
  /**
   * Stored events up to this seq are deleted (or were never written). Retention deletes from
   * here on rather than only the one event that falls out with each new one: a write or a
   * deletion that failed (the store briefly away) left that event in the store for good, one
   * more at every failure, and nothing ever deleted it.
   */
  private deletedThrough = 0;
  /** The high-water mark the store has taken: events above it are not served yet. */
  private reservedThrough = 0;
  private reserving = false;

  constructor(private readonly options: EventLogOptions) {
    this.keep = options.keep ?? 1000;
  }

  private get prefix(): string {
    return `/hosts/${this.options.hostId}/events/`;
  }

  private get markKey(): string {
    return `/hosts/${this.options.hostId}/event-seq`;
  }

  /** Restores the window and the sequence from the store (agent restart). */
  async load(): Promise<void> {
    if (!this.options.store) return;
    const kvs = await this.options.store.list(this.prefix);
    const kept = kvs.slice(-this.keep);
    for (const kv of kept) {
      // A damaged entry is skipped; the sequence continues after the newest readable one. Its
      // seq must be the one its key says: a seq of 1e300 (or 2.5) made every later key invalid
      // (`.../events/1e+300`), so no event was ever persisted again.
      const event = parseEvent(kv.value);
      if (event && kv.key === this.keyOf(event.seq) && event.seq >= this.nextSeq) {
        this.window.push(event);
        this.nextSeq = event.seq + 1;
      }
    }
    // What an earlier agent could not delete (listed in key order: older than the kept ones).
    const older = kvs.slice(0, kvs.length - kept.length);
    await this.writeInTurn(async (store) => {
      for (const kv of older) await store.delete(kv.key);
    });
    this.deletedThrough = (this.window[0]?.seq ?? this.nextSeq) - 1;
    // Every number up to the mark may have been served by an earlier agent, stored or not.
    const mark = Number((await this.options.store.get(this.markKey))?.value);
    if (Number.isSafeInteger(mark) && mark >= this.nextSeq) this.nextSeq = mark + 1;
    this.reservedThrough = this.nextSeq - 1;
    this.reserve();
    await this.writes;
  }

  private keyOf(seq: number): string {
    return `${this.prefix}${String(seq).padStart(SEQ_WIDTH, '0')}`;
  }

  emit(event: ShardEvent): void {
    const sequenced: SequencedEvent = { ...event, seq: this.nextSeq++ };
    this.reserve();
    this.window.push(sequenced);
    if (this.window.length > this.keep) this.window.splice(0, this.window.length - this.keep);
    const level = event.type === 'failed' || event.type === 'oom-killed' || event.type === 'crash-loop' ? 'warn' : 'info';
    this.options.logger[level]({ shard_id: event.shardId, application_id: event.applicationId, event: event.type, seq: sequenced.seq, ...event.detail }, `shard ${event.type}`);
    this.persist(sequenced);
  }

  /**
   * Events with seq > `since`, oldest first, at most `limit`; only those whose number the store's
   * mark covers. Asks again for a mark the store refused, so events held back while it was away
   * come out once it is back even if no new event comes to ask.
   */
  since(since: number, limit = 500): SequencedEvent[] {
    this.reserve();
    const through = this.servedThrough;
    return this.window.filter((e) => e.seq > since && e.seq <= through).slice(0, limit);
  }

  /** The newest seq served (or that would be): the cursor after every event there is. */
  get lastSeq(): number {
    return this.servedThrough;
  }

  private get servedThrough(): number {
    // Without a store nothing survives a restart, numbers included: nothing to wait for.
    return this.options.store ? Math.min(this.reservedThrough, this.nextSeq - 1) : this.nextSeq - 1;
  }

  /** Resolves when every event emitted so far has been written (shutdown, tests). */
  async flush(): Promise<void> {
    await this.writes;
  }

  /**
   * Writes a mark SEQ_BLOCK past the newest number given when the mark taken is less than half a
   * block ahead of it. One at a time; a refused one is asked for again by the next emit or poll.
   */
  private reserve(): void {
    const newest = this.nextSeq - 1;
    if (!this.options.store || this.reserving || newest <= this.reservedThrough - SEQ_BLOCK / 2) return;
    this.reserving = true;
    const through = newest + SEQ_BLOCK;
    let taken = false;
    void this.writeInTurn(async (store) => {
      await store.put(this.markKey, String(through));
      this.reservedThrough = through;
      taken = true;
    }).then(() => {
      this.reserving = false;
      if (taken) this.reserve(); // a burst may have used up half the block meanwhile
    });
  }

  private persist(event: SequencedEvent): void {
    const key = this.keyOf(event.seq);
    const stale = event.seq - this.keep;
    void this.writeInTurn((store) => store.put(key, JSON.stringify(event)), event.shardId);
    // Whether the write succeeded or not: a failed one must not keep an old event forever.
    void this.writeInTurn(async (store) => {
      while (this.deletedThrough < stale) {
        await store.delete(this.keyOf(this.deletedThrough + 1));
        this.deletedThrough += 1;
      }
    }, event.shardId);
  }

  /** Runs `write` after every write queued before it; a failure is logged, and the next write goes on. */
  private writeInTurn(write: (store: NonNullable<EventLogOptions['store']>) => Promise<unknown>, shardId?: string): Promise<unknown> {
    const store = this.options.store;
    if (!store) return this.writes;
    this.writes = this.writes
      .then(() => write(store))
      .catch((error: Error) => this.options.logger.warn({ ...(shardId ? { shard_id: shardId } : {}), error: error.message }, 'cannot persist shard event'));
    return this.writes;
  }
}

/** A stored event as this log writes it, or undefined (not JSON, wrong shape, seq not a whole number from 1). */
function parseEvent(value: string): SequencedEvent | undefined {
  let event: unknown;
  try {
    event = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof event !== 'object' || event === null) return undefined;
  const e = event as Record<string, unknown>;
  const valid =
    Number.isSafeInteger(e.seq) && (e.seq as number) >= 1 &&
    typeof e.type === 'string' && typeof e.shardId === 'string' && typeof e.applicationId === 'string' &&
    typeof e.at === 'string' && typeof e.detail === 'object' && e.detail !== null;
  return valid ? (event as SequencedEvent) : undefined;
}
