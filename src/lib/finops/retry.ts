/**
 * Retry helpers for the F&O API clients: Retry-After parsing and a bounded retry loop with
 * exponential backoff (full jitter) that waits at least what the server asked for.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { TransientError } from '../errors';

/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMsOf(
  value: string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  if (value === undefined || value === null || value.trim() === '') return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

export interface RetryOptions {
  /** Attempts in all, the first included; default 5. */
  attempts?: number;
  /** Default 500 ms. */
  baseDelayMs?: number;
  /** Default 30 s. */
  maxDelayMs?: number;
  /** A Retry-After longer than this ends the retries (the error is rethrown); default 120 s. */
  maxRetryAfterMs?: number;
  signal?: AbortSignal;
}

/**
 * Runs `attempt` until it succeeds, retrying TransientErrors only. The wait is the larger of the
 * backoff delay and the error's `retryAfterMs`. The last error is rethrown as it is.
 */
export async function withRetries<T>(attempt: (n: number) => Promise<T>, o: RetryOptions = {}): Promise<T> {
  const attempts = o.attempts ?? 5;
  const base = o.baseDelayMs ?? 500;
  const max = o.maxDelayMs ?? 30_000;
  const maxRetryAfter = o.maxRetryAfterMs ?? 120_000;
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (e) {
      if (!(e instanceof TransientError) || n >= attempts || o.signal?.aborted) throw e;
      if (e.retryAfterMs !== undefined && e.retryAfterMs > maxRetryAfter) throw e;
      const backoff = Math.random() * Math.min(max, base * 2 ** (n - 1));
      await sleep(Math.max(backoff, e.retryAfterMs ?? 0), undefined, { signal: o.signal });
    }
  }
}
