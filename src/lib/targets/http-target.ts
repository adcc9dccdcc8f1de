/**
 * The `http` target: one request per record to the user's own REST API.
 *
 * Request
 *   PUT (or POST) <url template expanded>        body: HttpTargetBody (JSON, see below)
 *   Idempotency-Key: <key>:<version>              same key for every retry and redelivery
 *   Record-Version: <version>                     decimal, for APIs that compare in a header
 *   Content-Type: application/json
 *   + the auth header (a header secret, a bearer secret, or an Entra ID token for a scope)
 * A delete is the same request with `deleted: true` (deleteMode 'tombstone', the default) or a
 * DELETE to the same URL with the same body and headers (deleteMode 'delete').
 *
 * Answer → outcome
 *   2xx                                   'applied'
 *   2xx with `Idempotent-Replayed: true`  'skipped' (the API replayed an earlier answer)
 *   the configured `skippedStatus` (2xx)  'skipped' (e.g. 208: "not newer, nothing changed")
 *   409 / 412 and conflictMeansSkipped    'skipped' (the API holds this version or a newer one)
 *   404 / 410 to a DELETE                 'applied' (nothing left to delete)
 *   408, 5xx, network error, timeout      retried here with backoff; then TransientError
 *   429                                   retried after Retry-After (up to maxRetryAfterMs);
 *                                         then TransientError carrying retryAfterMs
 *   401 with an Entra token               token refreshed, one more attempt; then as below
 *   3xx, any other 4xx                    PermanentError (the record is quarantined) with
 *                                         the status and a bounded, scrubbed body excerpt
 * No error message contains the auth header, the secret, the token or the URL's query string.
 * A retry after a timeout may repeat a request the API already applied: only an API that keeps
 * the contract in docs/targets.md turns that into "no duplicate effect".
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { TokenCredential } from '@azure/identity';
import { backOff } from 'exponential-backoff';
import { Agent, fetch, type Response } from 'undici';
import { ConfigError, PermanentError, TransientError } from '../errors';
import { parseRetryAfter } from '../flowfinity/view-client';
import type { ApplyOutcome, TargetRecord, TargetSystem } from '../ports';
import { splitRecordKey } from '../records';
import { EntraToken } from './entra-token';

export type HttpTargetAuth =
  | { kind: 'none' }
  /** A static secret in a header of your choice (`x-api-key: <secret>`). */
  | { kind: 'header'; header: string; secret: string }
  /** `Authorization: Bearer <secret>`. */
  | { kind: 'bearer'; secret: string }
  /** `Authorization: Bearer <Entra ID token for scope>`, e.g. scope `api://<app-id>/.default`. */
  | { kind: 'entra'; credential: TokenCredential; scope: string };

export interface HttpTargetOptions {
  /**
   * Absolute http(s) URL with placeholders `{key}`, `{id}`, `{flow}`, `{version}`, each replaced
   * by its URL-encoded value, e.g. `https://api.example.com/records/{key}`.
   */
  urlTemplate: string;
  /** Method for writes. Default PUT. */
  method?: 'PUT' | 'POST';
  /** 'tombstone' (default): a delete is a write with `deleted: true`; 'delete': an HTTP DELETE. */
  deleteMode?: 'tombstone' | 'delete';
  auth?: HttpTargetAuth;
  /** 409 and 412 mean "already holds this version or a newer one" → 'skipped'. Default true. */
  conflictMeansSkipped?: boolean;
  /** A 2xx status by which the API says "not newer, nothing changed" (e.g. 208). Default none. */
  skippedStatus?: number;
  /** Timeout of one request, headers and body. Default 10 s. */
  timeoutMs?: number;
  /** Attempts per apply before a TransientError goes back to the queue. Default 4. */
  maxAttempts?: number;
  /** First backoff delay (full jitter, doubling). Default 200 ms. */
  retryBaseDelayMs?: number;
  /** Longest backoff delay. Default 5 s. */
  retryMaxDelayMs?: number;
  /** Longest Retry-After waited for in process; a longer one goes back to the queue. Default 30 s. */
  maxRetryAfterMs?: number;
  /** Keep-alive connections per origin: size it to the records function's concurrency. Default 16. */
  connections?: number;
  /** Extra static headers (not secrets: they may appear in diagnostics). */
  headers?: Record<string, string>;
}

/** The JSON body of every request. `version` is a decimal string: it may exceed 2^53. */
export interface HttpTargetBody {
  /** The record key, `<flow>|<id>`. */
  key: string;
  /** The record's id within its flow (a view's RecordID, zero padding kept). */
  id: string;
  /** The flow (view) the record comes from. */
  flow: string;
  version: string;
  deleted: boolean;
  data: Record<string, unknown>;
}

const PLACEHOLDERS = ['key', 'id', 'flow', 'version'] as const;
type Placeholder = (typeof PLACEHOLDERS)[number];
const EXCERPT_CHARS = 300;
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Expands `{key}`, `{id}`, `{flow}`, `{version}`; each value is URL-encoded (a `/` in a key stays in its segment). */
export function expandUrlTemplate(template: string, values: Record<Placeholder, string>): string {
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    (PLACEHOLDERS as readonly string[]).includes(name)
      ? encodeURIComponent(values[name as Placeholder])
      : whole,
  );
}

/**
 * A header value must be printable ASCII: characters outside it (and `%`) are percent-encoded
 * as UTF-8, so `leads|Zoë` becomes `leads|Zo%C3%AB`. Keys of printable ASCII go as they are.
 */
export function headerSafe(text: string): string {
  let out = '';
  for (const c of text) {
    const code = c.codePointAt(0)!;
    if (code >= 0x20 && code <= 0x7e && c !== '%') out += c;
    else for (const b of Buffer.from(c, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** `Idempotency-Key` of a record version: `<key>:<version>` (header-safe). */
export const idempotencyKeyOf = (r: Pick<TargetRecord, 'key' | 'version'>): string =>
  `${headerSafe(r.key)}:${r.version}`;

/** The body sent for a record (documented shape). */
export function httpTargetBody(r: TargetRecord): HttpTargetBody {
  const { flow, id } = splitRecordKey(r.key);
  return { key: r.key, id, flow, version: r.version.toString(), deleted: r.deleted, data: r.data };
}

/** A failure worth another attempt; internal, turned into a TransientError after the last one. */
class Retryable extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export class HttpTarget implements TargetSystem {
  private readonly agent: Agent;
  private readonly token?: EntraToken;
  private readonly o: Required<
    Omit<HttpTargetOptions, 'auth' | 'headers' | 'skippedStatus' | 'urlTemplate'>
  > & { skippedStatus?: number };
  /** Origin + path of the template, for messages (a query string may hold a code). */
  private readonly where: string;

  constructor(private readonly options: HttpTargetOptions) {
    this.o = {
      method: options.method ?? 'PUT',
      deleteMode: options.deleteMode ?? 'tombstone',
      conflictMeansSkipped: options.conflictMeansSkipped ?? true,
      skippedStatus: options.skippedStatus,
      timeoutMs: options.timeoutMs ?? 10_000,
      maxAttempts: options.maxAttempts ?? 4,
      retryBaseDelayMs: options.retryBaseDelayMs ?? 200,
      retryMaxDelayMs: options.retryMaxDelayMs ?? 5_000,
      maxRetryAfterMs: options.maxRetryAfterMs ?? 30_000,
      connections: options.connections ?? 16,
    };
    this.where = validateOptions(options);
    const auth = options.auth;
    if (auth?.kind === 'entra') this.token = new EntraToken(auth.credential, auth.scope);
    // Keep-alive pool: one TLS handshake per connection, not per record.
    this.agent = new Agent({ connections: this.o.connections, keepAliveTimeout: 30_000 });
  }

  async apply(record: TargetRecord): Promise<ApplyOutcome> {
    let body: HttpTargetBody;
    try {
      body = httpTargetBody(record);
    } catch (e) {
      throw new PermanentError(`record key ${JSON.stringify(record.key)} is not <flow>|<id>`, { cause: e });
    }
    const method = record.deleted && this.o.deleteMode === 'delete' ? 'DELETE' : this.o.method;
    const url = expandUrlTemplate(this.options.urlTemplate, {
      key: body.key,
      id: body.id,
      flow: body.flow,
      version: body.version,
    });
    const payload = JSON.stringify(body);
    const what = `${method} ${this.where} for ${record.key} v${record.version}`;
    let retryAfterTooLong: number | undefined;
    let refreshedToken = false;
    try {
      return await backOff(() => this.once(method, url, payload, record, what), {
        numOfAttempts: this.o.maxAttempts,
        startingDelay: this.o.retryBaseDelayMs,
        timeMultiple: 2,
        maxDelay: this.o.retryMaxDelayMs,
        jitter: 'full',
        delayFirstAttempt: false,
        retry: async (e: unknown) => {
          if (e instanceof TokenRefused && !refreshedToken) {
            // An Entra token can be revoked or rotated before its expiry: ask again, once.
            refreshedToken = true;
            this.token?.invalidate(e.token);
            return true;
          }
          if (!(e instanceof Retryable)) return false;
          if (e.retryAfterMs !== undefined) {
            if (e.retryAfterMs > this.o.maxRetryAfterMs) {
              retryAfterTooLong = e.retryAfterMs;
              return false;
            }
            await sleep(e.retryAfterMs); // the backoff delay follows: the server's wish is a minimum
          }
          return true;
        },
      });
    } catch (e) {
      if (e instanceof TokenRefused) throw e.permanent;
      if (e instanceof Retryable) {
        const why =
          retryAfterTooLong !== undefined
            ? `asked to retry after ${Math.ceil(retryAfterTooLong / 1000)} s`
            : `gave up after ${this.o.maxAttempts} attempt(s)`;
        throw new TransientError(`target ${what} unavailable (${why}): ${e.message}`, {
          code: 'target_unavailable',
          upstreamStatus: e.status,
          retryAfterMs: e.retryAfterMs,
        });
      }
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async once(
    method: string,
    url: string,
    payload: string,
    record: TargetRecord,
    what: string,
  ): Promise<ApplyOutcome> {
    const headers: Record<string, string> = {
      ...this.options.headers,
      'content-type': 'application/json',
      accept: 'application/json',
      'idempotency-key': idempotencyKeyOf(record),
      'record-version': record.version.toString(),
    };
    const auth = this.options.auth;
    let token: string | undefined;
    if (auth?.kind === 'header') headers[auth.header.toLowerCase()] = auth.secret;
    else if (auth?.kind === 'bearer') headers.authorization = `Bearer ${auth.secret}`;
    else if (this.token) {
      try {
        token = await this.token.get();
      } catch (e) {
        throw new Retryable(e instanceof Error ? e.message : String(e));
      }
      headers.authorization = `Bearer ${token}`;
    }

    let res: Response;
    const signal = AbortSignal.timeout(this.o.timeoutMs);
    try {
      res = await fetch(url, {
        method,
        headers,
        body: payload,
        signal,
        redirect: 'manual',
        dispatcher: this.agent,
      });
    } catch (e) {
      throw new Retryable(this.failureText(e, signal));
    }
    let excerpt: string;
    try {
      excerpt = await this.excerpt(res);
    } catch (e) {
      throw new Retryable(`${res.status} then ${this.failureText(e, signal)} while reading the body`);
    }
    const s = res.status;
    if (s >= 200 && s < 300) {
      if (s === this.o.skippedStatus || res.headers.get('idempotent-replayed')?.toLowerCase() === 'true')
        return 'skipped';
      return 'applied';
    }
    const head = `${s}${res.statusText ? ` ${res.statusText}` : ''}`;
    const tail = excerpt ? `: ${excerpt}` : '';
    if ((s === 409 || s === 412) && this.o.conflictMeansSkipped) return 'skipped';
    if ((s === 404 || s === 410) && method === 'DELETE') return 'applied';
    if (s === 429 || s === 503)
      throw new Retryable(
        `answered ${head}${tail}`,
        s,
        parseRetryAfter(res.headers.get('retry-after')) ?? undefined,
      );
    if (s === 408 || s >= 500) throw new Retryable(`answered ${head}${tail}`, s);
    const permanent = new PermanentError(`target ${what} answered ${head}${tail}`, {
      code: 'target_refused',
      upstreamStatus: s,
      details: { status: s, excerpt },
    });
    if (s === 401 && token !== undefined) throw new TokenRefused(token, permanent);
    if (s >= 300 && s < 400)
      throw new PermanentError(
        `target ${what} answered ${head} (a redirect): set the final URL in the target's URL setting`,
        { code: 'target_redirect', upstreamStatus: s, details: { status: s } },
      );
    throw permanent;
  }

  private failureText(e: unknown, signal: AbortSignal): string {
    if (signal.aborted) return `timed out after ${this.o.timeoutMs} ms`;
    const parts: string[] = [];
    let cur: unknown = e;
    for (let depth = 0; cur && depth < 3; depth++) {
      if (!(cur instanceof Error)) {
        parts.push(String(cur));
        break;
      }
      const code = (cur as { code?: unknown }).code;
      parts.push(typeof code === 'string' ? `${cur.message} [${code}]` : cur.message);
      cur = cur.cause;
    }
    return `request failed: ${this.scrub(parts.join(': '))}`;
  }

  /** At most EXCERPT_CHARS of the body, whitespace collapsed, secrets scrubbed; the rest discarded. */
  private async excerpt(res: Response): Promise<string> {
    if (!res.body) return '';
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      while (size < 4 * EXCERPT_CHARS) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        size += value.byteLength;
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    const text = this.scrub(Buffer.concat(chunks).toString('utf8').replace(/\s+/g, ' ').trim());
    return text.length > EXCERPT_CHARS ? `${text.slice(0, EXCERPT_CHARS)}…` : text;
  }

  /** Removes every secret this target sends from text that may reach a log or quarantine. */
  private scrub(text: string): string {
    const auth = this.options.auth;
    const secrets = [
      auth?.kind === 'header' || auth?.kind === 'bearer' ? auth.secret : undefined,
      this.token?.current(),
    ];
    let out = text;
    for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('***');
    return out;
  }
}

/** The server refused our Entra token; retried once with a fresh token, else `permanent`. */
class TokenRefused extends Error {
  constructor(
    readonly token: string,
    readonly permanent: PermanentError,
  ) {
    super('token refused');
  }
}

/** What is wrong with the options, one line each (empty: nothing). */
export function httpTargetOptionProblems(o: HttpTargetOptions): string[] {
  const problems: string[] = [];
  for (const [, name] of o.urlTemplate.matchAll(/\{(\w*)\}/g))
    if (!(PLACEHOLDERS as readonly string[]).includes(name!))
      problems.push(`URL template: unknown placeholder {${name}} (use {key}, {id}, {flow} or {version})`);
  let url: URL | undefined;
  try {
    url = new URL(expandUrlTemplate(o.urlTemplate, { key: 'f|k', id: 'k', flow: 'f', version: '1' }));
  } catch {
    problems.push('URL template: not an absolute URL (e.g. https://api.example.com/records/{key})');
  }
  if (url && url.protocol !== 'https:' && url.protocol !== 'http:')
    problems.push(`URL template: ${url.protocol} is not http: or https:`);
  const sendsSecret = o.auth !== undefined && o.auth.kind !== 'none';
  if (url?.protocol === 'http:' && sendsSecret && !LOOPBACK.has(url.hostname))
    problems.push(
      'URL template: a secret or token is sent only over https (http is allowed to loopback only)',
    );
  if (o.auth?.kind === 'header' && !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(o.auth.header))
    problems.push(`auth header name ${JSON.stringify(o.auth.header)} is not a valid header name`);
  if ((o.auth?.kind === 'header' || o.auth?.kind === 'bearer') && o.auth.secret === '')
    problems.push('auth secret is empty');
  if (o.auth?.kind === 'entra' && o.auth.scope.trim() === '') problems.push('Entra scope is empty');
  if (o.skippedStatus !== undefined && !(o.skippedStatus >= 200 && o.skippedStatus < 300))
    problems.push(`skippedStatus ${o.skippedStatus} is not a 2xx status`);
  for (const [k, v] of [
    ['timeoutMs', o.timeoutMs],
    ['maxAttempts', o.maxAttempts],
    ['connections', o.connections],
  ] as const)
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) problems.push(`${k} must be a positive integer`);
  return problems;
}

/** Checks the options; returns the template without its query, for messages. */
function validateOptions(o: HttpTargetOptions): string {
  const problems = httpTargetOptionProblems(o);
  if (problems.length) throw new ConfigError(problems.map((p) => `http target: ${p}`));
  // The template's text up to its query: placeholders stay readable, a code in the query is left out.
  return o.urlTemplate.split(/[?#]/)[0]!;
}

/** Factory: the http target for a flow. Throws ConfigError listing every wrong option. */
export function createHttpTarget(options: HttpTargetOptions): HttpTarget {
  return new HttpTarget(options);
}
