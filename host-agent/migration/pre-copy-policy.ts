/**
 * When to stop pre-copying: iterative pre-copy converges only while each round has fewer
 * dirty pages to send than the one before (Clark et al., "Live Migration of Virtual
 * Machines", NSDI 2005, stop conditions of the iterative pre-copy phase). Stop when the dirty
 * set stops shrinking, when it is small enough that the final dump is short anyway, or after
 * a bounded number of rounds.
 */
import type { PreCopyRound } from './migration-record';

export interface PreCopyLimits {
  /** Hard bound on rounds; default 5. */
  readonly maxRounds: number;
  /** A round must be at least this fraction smaller than the previous to be worth another; default 0.2. */
  readonly minShrink: number;
  /** Stop once a round sends at most this many bytes; default 4 MiB. */
  readonly smallEnoughBytes: number;
}

export const DEFAULT_PRECOPY_LIMITS: PreCopyLimits = { maxRounds: 5, minShrink: 0.2, smallEnoughBytes: 4 << 20 };

export type PreCopyDecision = { next: 'pre-copy' } | { next: 'frozen'; why: string };

export function nextPreCopyStep(rounds: readonly PreCopyRound[], limits: PreCopyLimits = DEFAULT_PRECOPY_LIMITS): PreCopyDecision {
  if (rounds.length === 0) return { next: 'pre-copy' };
  const last = rounds[rounds.length - 1] as PreCopyRound;
  if (rounds.length >= limits.maxRounds) return { next: 'frozen', why: `reached ${limits.maxRounds} rounds` };
  if (last.bytes <= limits.smallEnoughBytes) return { next: 'frozen', why: `round ${last.round} sent ${last.bytes} bytes, at most ${limits.smallEnoughBytes}` };
  if (rounds.length >= 2) {
    const previous = rounds[rounds.length - 2] as PreCopyRound;
    if (last.bytes > previous.bytes * (1 - limits.minShrink)) {
      return { next: 'frozen', why: `round ${last.round} (${last.bytes} bytes) did not shrink by ${limits.minShrink * 100}% from round ${previous.round} (${previous.bytes} bytes)` };
    }
  }
  return { next: 'pre-copy' };
}
