/** Where a plan comes from: a file or an http(s) URL. The fetchers only move bytes; judging is pure (plan-judgement.ts). */

export type FetchOutcome =
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'content'; readonly text: string }
  | { readonly kind: 'failed'; readonly message: string };

export interface PlanFetcher {
  /** The file path or URL, as the operator gave it (URLs without credentials). */
  readonly source: string;
  /** Reads the plan; `unchanged` when the source says nothing changed since the last `content`. */
  fetch(): Promise<FetchOutcome>;
  /** Calls `onHint` when the source may have changed (file events); returns a stop function. */
  watch(onHint: () => void): () => void;
  /** Forgets what was seen, so the next fetch returns content again. */
  forget(): void;
}

export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}
