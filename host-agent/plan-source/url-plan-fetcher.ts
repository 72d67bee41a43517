/**
 * A plan behind an http(s) URL, polled with ETag / If-None-Match (RFC 9110 §13.1.2): an
 * unchanged plan costs one 304 and no parsing. A whole-request timeout and a size cap bound it,
 * so a slow or hostile server cannot stall or bloat the agent.
 */
import axios, { type AxiosInstance } from 'axios';
import type { FetchOutcome, PlanFetcher } from './plan-fetcher';

export interface UrlPlanFetcherOptions {
  /** Whole-request timeout; default 5 s. */
  timeoutMs?: number;
  /** Largest plan accepted; default 16 MiB. */
  maxBytes?: number;
}

export class UrlPlanFetcher implements PlanFetcher {
  readonly source: string;
  private etag: string | undefined;
  private readonly http: AxiosInstance;
  private readonly timeoutMs: number;

  constructor(
    private readonly url: string,
    options: UrlPlanFetcherOptions = {},
  ) {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    this.source = parsed.toString();
    const maxBytes = options.maxBytes ?? 16 * 2 ** 20;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.http = axios.create({
      maxContentLength: maxBytes,
      maxBodyLength: maxBytes,
      maxRedirects: 3,
      responseType: 'text',
      // Keep the body as bytes-as-text: judging parses it (and reports "not JSON" itself).
      transformResponse: [(data: unknown) => data],
      validateStatus: () => true,
    });
  }

  async fetch(): Promise<FetchOutcome> {
    try {
      const response = await this.http.get<string>(this.url, {
        // axios' own `timeout` is the socket's idle timeout (req.setTimeout): a server that sends a
        // byte now and then never trips it. The signal bounds the whole request, body included.
        signal: AbortSignal.timeout(this.timeoutMs),
        headers: { Accept: 'application/json', ...(this.etag ? { 'If-None-Match': this.etag } : {}) },
      });
      if (response.status === 304) return { kind: 'unchanged' };
      if (response.status !== 200) return { kind: 'failed', message: `HTTP ${response.status}` };
      const etag = response.headers.etag;
      this.etag = typeof etag === 'string' ? etag : undefined;
      return { kind: 'content', text: String(response.data) };
    } catch (error) {
      if (axios.isCancel(error)) return { kind: 'failed', message: `no complete answer within ${this.timeoutMs} ms` };
      const e = error as { code?: string; message?: string };
      return { kind: 'failed', message: e.code ? `${e.code}: ${e.message}` : String(e.message) };
    }
  }

  watch(): () => void {
    // Nothing to subscribe to over HTTP: PlanSource's periodic check does the polling.
    return () => {};
  }

  forget(): void {
    this.etag = undefined;
  }
}
