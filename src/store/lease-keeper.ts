/**
 * Keeps a lease alive until stopped or lost. Leases are never kept alive behind the caller's
 * back (a hung holder must lose its lease, that is the point of one), so a holder that is
 * healthy runs one of these. It renews at a third of the ttl, as etcd's own clients do, so two
 * renewals can fail (a slow disk, a busy loop) before the lease runs out.
 */
import type { Lease } from './store';
import { StoreError } from './store-error';

export interface LeaseKeeper {
  /** Resolves with the error when the lease is lost (expired, revoked) — never when stopped. */
  readonly lost: Promise<Error>;
  stop(): void;
}

export function keepLeaseAlive(lease: Lease, opts: { intervalMs?: number } = {}): LeaseKeeper {
  const intervalMs = opts.intervalMs ?? (lease.ttlSeconds * 1000) / 3;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let markLost!: (error: Error) => void;
  const lost = new Promise<Error>((resolve) => {
    markLost = resolve;
  });
  const renew = async (): Promise<void> => {
    if (stopped) return;
    const startedAt = Date.now();
    try {
      await lease.keepAlive();
    } catch (error) {
      // LEASE_LOST is final; anything else (etcd briefly unreachable) is retried next round,
      // and if it lasts past the ttl the next keepAlive reports LEASE_LOST.
      if (error instanceof StoreError && (error.code === 'LEASE_LOST' || error.code === 'STORE_CLOSED')) {
        stopped = true;
        markLost(error);
        return;
      }
    }
    // At a fixed rate, not a fixed pause: a renewal that took its whole deadline (5 s on etcd)
    // must not push the next one past the ttl.
    if (!stopped) timer = setTimeout(() => void renew(), Math.max(0, intervalMs - (Date.now() - startedAt)));
  };
  timer = setTimeout(() => void renew(), intervalMs);
  return {
    lost,
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
