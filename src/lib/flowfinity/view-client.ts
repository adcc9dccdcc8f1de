/**
 * The Flowfinity REST view client: the production ViewSource.
 *
 * - GET <viewUrl>?onbehalfof=<user>[&previouslastsubmissionid=<n>] with HTTP Basic auth; the
 *   parameter is omitted on the first run (the view then returns every record).
 * - One timeout covers the whole attempt: headers and body. The caller's signal aborts too; a
 *   caller abort is rethrown as the signal's reason, not wrapped in an AppError.
 * - View parameters (`previouslastsubmissionid`, a roster view's `reference`, ...) become query
 *   parameters; an undefined value is left out (the sync view then returns every record).
 * - Retries (exponential backoff with full jitter) on network errors, timeouts, 408, 429 and 5xx,
 *   honouring Retry-After on 429/503; a Retry-After beyond `maxRetryAfterMs` ends the retries.
 *   Only until the first element has been read: once items were yielded, a failure is thrown as
 *   TransientError and the caller discards the partial batch.
 * - The body is parsed as a stream (see json-stream.ts): numbers stay strings, so ids beyond 2^53
 *   keep every digit. Each element goes through parseSourceRecord; an invalid one is yielded as
 *   `malformed` with its raw JSON, never dropped.
 * - Error messages name the setting to check and never contain the password or the
 *   Authorization header (the body excerpt is scrubbed of both as well).
 */
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { setTimeout as sleep } from 'node:timers/promises';
import { backOff } from 'exponential-backoff';
import { ConfigError, TransientError, ValidationError, type AppError } from '../errors';
import type { ViewItem, ViewParams, ViewSource } from '../ports';
import { parseSourceRecord } from './record';
import { jsonArrayElements, JsonArrayProtocolError, type JsonArrayElement } from './json-stream';

export interface ViewClientOptions {
  viewUrl: string;
  onBehalfOf: string;
  username: string;
  password: string;
  /** Timeout of one attempt, headers and body together. */
  timeoutMs: number;
  /** Retries after the first attempt (0 = one attempt only). */
  maxRetries: number;
  /** Base delay of the exponential backoff; default 500 ms (tests use a few ms). */
  retryBaseDelayMs?: number;
  /** Longest backoff delay between attempts; default 15 s. */
  retryMaxDelayMs?: number;
  /** Longest Retry-After the client waits for; a longer one ends the retries. Default 60 s. */
  maxRetryAfterMs?: number;
  fetchImpl?: typeof fetch;
}

/** Raw JSON of a malformed record is kept up to this many bytes. */
export const MAX_MALFORMED_RAW_BYTES = 32 * 1024;
const BODY_EXCERPT_CHARS = 200;

/** A failure worth another attempt. Internal: turned into a TransientError at the end. */
class RetryableFailure extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

interface OpenResponse {
  first: IteratorResult<JsonArrayElement, void>;
  elements: AsyncGenerator<JsonArrayElement, void, undefined>;
  timedOut(): boolean;
  close(): void;
}

export class FlowfinityViewClient implements ViewSource {
  private readonly fetchImpl: typeof fetch;
  private readonly authorization: string;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly where: string;

  constructor(private readonly o: ViewClientOptions) {
    this.fetchImpl = o.fetchImpl ?? fetch;
    this.authorization = 'Basic ' + Buffer.from(`${o.username}:${o.password}`, 'utf8').toString('base64');
    this.baseDelayMs = o.retryBaseDelayMs ?? 500;
    this.maxDelayMs = o.retryMaxDelayMs ?? 15_000;
    this.maxRetryAfterMs = o.maxRetryAfterMs ?? 60_000;
    const u = new URL(o.viewUrl);
    // Origin and path only: a query string may carry something that should not be logged.
    this.where = `${u.origin}${u.pathname}`;
  }

  async *query(params: ViewParams, signal?: AbortSignal): AsyncGenerator<ViewItem, void, undefined> {
    const url = this.buildUrl(params);
    const open = await this.openWithRetries(url, signal);
    let yielded = 0;
    try {
      let next = open.first;
      while (!next.done) {
        yield toItem(next.value);
        yielded++;
        try {
          next = await open.elements.next();
        } catch (e) {
          throw this.failureAfterItems(e, yielded, open, signal);
        }
      }
    } finally {
      open.close();
    }
  }

  /** The view URL with `onbehalfof` and one query parameter per view parameter (undefined: left out). */
  private buildUrl(params: ViewParams): URL {
    const url = new URL(this.o.viewUrl);
    url.searchParams.set('onbehalfof', this.o.onBehalfOf);
    for (const [name, value] of Object.entries(params)) {
      if (value === undefined) url.searchParams.delete(name);
      else url.searchParams.set(name, value.toString());
    }
    return url;
  }

  private async openWithRetries(url: URL, signal: AbortSignal | undefined): Promise<OpenResponse> {
    const attempts = this.o.maxRetries + 1;
    let retryAfterTooLong: number | undefined;
    try {
      return await backOff(() => this.openOnce(url, signal), {
        numOfAttempts: attempts,
        startingDelay: this.baseDelayMs,
        timeMultiple: 2,
        maxDelay: this.maxDelayMs,
        jitter: 'full',
        delayFirstAttempt: false,
        retry: async (e: unknown, attemptNumber: number) => {
          if (!(e instanceof RetryableFailure) || signal?.aborted || attemptNumber >= attempts) return false;
          if (e.retryAfterMs !== undefined) {
            if (e.retryAfterMs > this.maxRetryAfterMs) {
              retryAfterTooLong = e.retryAfterMs;
              return false;
            }
            // Added to the backoff delay that follows: the server's wish is a minimum.
            try {
              await sleep(e.retryAfterMs, undefined, { signal });
            } catch {
              return false;
            }
          }
          return true;
        },
      });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (e instanceof RetryableFailure) {
        const why =
          retryAfterTooLong !== undefined
            ? `the view asked to retry after ${Math.ceil(retryAfterTooLong / 1000)} s, longer than the client waits`
            : `gave up after ${attempts} attempt${attempts === 1 ? '' : 's'}`;
        throw new TransientError(`Flowfinity view ${this.where} unavailable (${why}): ${e.message}`, {
          upstreamStatus: e.status,
          code: 'view_unavailable',
        });
      }
      throw e;
    }
  }

  /** One attempt: request, status check, and the body up to its first element. */
  private async openOnce(url: URL, signal: AbortSignal | undefined): Promise<OpenResponse> {
    if (signal?.aborted) throw signal.reason;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`timed out after ${this.o.timeoutMs} ms`));
    }, this.o.timeoutMs);
    const onCallerAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onCallerAbort, { once: true });
    let elements: AsyncGenerator<JsonArrayElement, void, undefined> | undefined;
    const close = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onCallerAbort);
      controller.abort();
      void elements?.return();
    };

    try {
      const res = await this.fetchImpl(url, {
        method: 'GET',
        headers: { Authorization: this.authorization, Accept: 'application/json' },
        signal: controller.signal,
        redirect: 'follow',
      });
      if (!res.ok) {
        const excerpt = await this.bodyExcerpt(res);
        throw this.statusFailure(res.status, res.statusText, excerpt, res.headers.get('retry-after'));
      }
      if (!res.body)
        throw new ValidationError(`Flowfinity view ${this.where} answered ${res.status} without a body`, {
          code: 'view_protocol',
        });
      elements = jsonArrayElements(Readable.fromWeb(res.body as unknown as NodeReadableStream<Uint8Array>));
      const first = await elements.next();
      return { first, elements, timedOut: () => timedOut, close };
    } catch (e) {
      close();
      if (signal?.aborted) throw signal.reason;
      if (e instanceof ConfigError || e instanceof ValidationError || e instanceof RetryableFailure) throw e;
      if (e instanceof JsonArrayProtocolError) throw this.protocolError(e, 0);
      if (timedOut) throw new RetryableFailure(`timed out after ${this.o.timeoutMs} ms (headers and body)`);
      throw new RetryableFailure(`request failed: ${this.describe(e)}`);
    }
  }

  private failureAfterItems(e: unknown, yielded: number, open: OpenResponse, signal?: AbortSignal): unknown {
    if (signal?.aborted) return signal.reason;
    if (e instanceof JsonArrayProtocolError) return this.protocolError(e, yielded);
    const what = open.timedOut()
      ? `timed out after ${this.o.timeoutMs} ms`
      : `the connection failed (${this.describe(e)})`;
    return new TransientError(
      `Flowfinity view ${this.where}: ${what} while reading the body, after ${yielded} record(s); the partial result must be discarded`,
      { code: 'view_unavailable' },
    );
  }

  private protocolError(e: JsonArrayProtocolError, yielded: number): ValidationError {
    return new ValidationError(
      `Flowfinity view ${this.where} did not return a JSON array of records (after ${yielded} record(s)): ${this.scrub(e.message)}`,
      { code: 'view_protocol' },
    );
  }

  private statusFailure(
    status: number,
    statusText: string,
    excerpt: string,
    retryAfter: string | null,
  ): AppError | RetryableFailure {
    const head = `Flowfinity view ${this.where} answered ${status}${statusText ? ` ${statusText}` : ''}`;
    const body = excerpt ? ` Body: ${excerpt}` : '';
    const config = (hint: string) =>
      new ConfigError(`${head}: ${hint}.${body}`, { upstreamStatus: status, code: 'view_refused' });
    if (status === 401)
      return config('check FLOWFINITY_USERNAME and FLOWFINITY_PASSWORD (the Integration user)');
    if (status === 403)
      return config(
        'check FLOWFINITY_ON_BEHALF_OF (an account allowed to read the view) and that "REST API access" is ticked on the view',
      );
    if (status === 404)
      return config(
        "check FLOWFINITY_VIEW_URL (copy it from the view's Details page; REST integration must be on)",
      );
    if (status === 408 || status === 429 || status >= 500) {
      const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(retryAfter) : undefined;
      return new RetryableFailure(`${head}.${body}`, status, retryAfterMs);
    }
    return config('the request was rejected; check the FLOWFINITY_* settings');
  }

  /** At most ~200 characters of an error body, whitespace collapsed, secrets scrubbed. */
  private async bodyExcerpt(res: Response): Promise<string> {
    if (!res.body) return '';
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      while (size < 4 * BODY_EXCERPT_CHARS) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        size += value.byteLength;
      }
    } catch {
      // the excerpt is best effort
    } finally {
      void reader.cancel().catch(() => {});
    }
    const text = this.scrub(Buffer.concat(chunks).toString('utf8').replace(/\s+/g, ' ').trim());
    return text.length > BODY_EXCERPT_CHARS ? `${text.slice(0, BODY_EXCERPT_CHARS)}…` : text;
  }

  private describe(e: unknown): string {
    const parts: string[] = [];
    let cur: unknown = e;
    for (let depth = 0; cur && depth < 3; depth++) {
      if (cur instanceof Error) {
        const code = (cur as { code?: unknown }).code;
        parts.push(typeof code === 'string' ? `${cur.message} [${code}]` : cur.message);
        cur = cur.cause;
      } else {
        parts.push(String(cur));
        break;
      }
    }
    return this.scrub(parts.join(': ') || 'unknown error');
  }

  /** Removes the password and the Authorization value from text that may reach a log. */
  private scrub(text: string): string {
    let out = text;
    for (const secret of [this.authorization, this.authorization.slice(6), this.o.password]) {
      if (secret.length >= 3) out = out.split(secret).join('***');
    }
    return out;
  }
}

function toItem(el: JsonArrayElement): ViewItem {
  const parsed = parseSourceRecord(el.value);
  if (parsed.ok) return { kind: 'record', record: parsed.record };
  const { raw, truncated } = rawJson(el.value);
  return {
    kind: 'malformed',
    raw,
    error: truncated ? `${parsed.error} (raw JSON truncated to 32 KB)` : parsed.error,
    index: el.index,
  };
}

/** JSON text of a raw element, cut to MAX_MALFORMED_RAW_BYTES bytes of UTF-8. */
function rawJson(value: unknown): { raw: string; truncated: boolean } {
  const text = JSON.stringify(value) ?? String(value);
  if (Buffer.byteLength(text, 'utf8') <= MAX_MALFORMED_RAW_BYTES) return { raw: text, truncated: false };
  // Cutting bytes may split a character: drop the replacement character left at the end.
  const cut = Buffer.from(text, 'utf8').subarray(0, MAX_MALFORMED_RAW_BYTES).toString('utf8');
  return { raw: cut.replace(/\uFFFD+$/, ''), truncated: true };
}

/** Retry-After as delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
