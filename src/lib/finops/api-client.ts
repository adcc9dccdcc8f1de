/**
 * JSON calls to an F&O environment (`FNO_BASE_URL`) with an Entra token for `<base>/.default`
 * (FNO_SCOPE overrides it), through the safe HTTPS client: only the environment's own host is
 * allowed, so the token never goes anywhere else. Retries TransientErrors (network, timeouts,
 * 408, 429 and 5xx) with backoff, waiting at least what Retry-After asks.
 *
 * Errors: a token that cannot be had, 401 or 403 → ConfigError (the app registration, its
 * secret or its F&O access is wrong: a setting to fix); other 4xx → PermanentError with the
 * OData error's message (cut short); 408/429/5xx → TransientError after the retries.
 */
import type { TokenCredential } from '@azure/identity';
import type { Readable } from 'node:stream';
import { ConfigError, PermanentError, TransientError } from '../errors';
import { retryAfterMsOf, withRetries, type RetryOptions } from './retry';
import { HostAllowList, safeUrlText, toSafeError, type SafeHttpClient } from './safe-http';

export interface FinOpsApiOptions {
  /** The environment's URL (FNO_BASE_URL), e.g. https://contoso.operations.dynamics.com. */
  baseUrl: string;
  credential: TokenCredential;
  /** Token scope (FNO_SCOPE); default `<base origin>/.default`. */
  scope?: string;
  http: SafeHttpClient;
  retry?: RetryOptions;
}

export interface ApiResponse {
  status: number;
  /** Body text (JSON or empty). */
  text: string;
}

const MAX_BODY_CHARS = 1024 * 1024;

export class FinOpsApiClient {
  readonly base: URL;
  readonly scope: string;
  readonly allowedHosts: HostAllowList;

  constructor(private readonly o: FinOpsApiOptions) {
    let base: URL;
    try {
      base = new URL(o.baseUrl);
    } catch {
      throw new ConfigError(
        'FNO_BASE_URL is not a URL (expected https://<environment>.operations.dynamics.com)',
      );
    }
    if (base.protocol !== 'https:') throw new ConfigError('FNO_BASE_URL must be an https URL');
    this.base = base;
    this.scope = o.scope ?? `${base.origin}/.default`;
    this.allowedHosts = new HostAllowList([base.hostname]);
  }

  /** A bearer token for the environment. */
  async authorization(): Promise<string> {
    let token: { token: string } | null;
    try {
      token = await this.o.credential.getToken(this.scope);
    } catch (e) {
      const name = e instanceof Error ? e.name : 'Error';
      const text = e instanceof Error ? e.message.split('\n')[0]!.slice(0, 200) : '';
      throw new ConfigError(
        `could not get an Entra token for ${this.scope} (${name}: ${text}); check the app registration settings`,
      );
    }
    if (!token)
      throw new ConfigError(`no Entra token for ${this.scope}; check the app registration settings`);
    return `Bearer ${token.token}`;
  }

  /**
   * One call, retried while it fails transiently. `retry: false` makes one attempt only (for a
   * call that must not run twice).
   */
  async call(
    method: 'GET' | 'POST',
    pathOrUrl: string,
    body: string | undefined,
    purpose: string,
    o: { retry?: boolean; signal?: AbortSignal } = {},
  ): Promise<ApiResponse> {
    const url = new URL(pathOrUrl, this.base);
    const attempt = async () => {
      const res = await this.o.http.request(url, {
        method,
        headers: {
          authorization: await this.authorization(),
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body,
        allowedHosts: this.allowedHosts,
        signal: o.signal,
        purpose,
      });
      const text = await readText(res.body, purpose, safeUrlText(url));
      if (res.status >= 200 && res.status < 300) return { status: res.status, text };
      throw statusError(purpose, safeUrlText(url), res.status, text, res.headers['retry-after']);
    };
    return withRetries(attempt, {
      ...(this.o.retry ?? {}),
      ...(o.retry === false ? { attempts: 1 } : {}),
      signal: o.signal,
    });
  }
}

async function readText(body: Readable, purpose: string, where: string): Promise<string> {
  let text = '';
  try {
    for await (const chunk of body) {
      text += (chunk as Buffer).toString('utf8');
      if (text.length > MAX_BODY_CHARS) {
        body.destroy();
        throw new PermanentError(`${purpose} ${where} answered more than ${MAX_BODY_CHARS} characters`, {
          code: 'api_protocol',
        });
      }
    }
  } catch (e) {
    throw toSafeError(e, purpose, where);
  }
  return text;
}

/** The OData error message of a body, cut short, or '' when there is none. */
function odataMessage(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: { message?: unknown } | string; error_description?: unknown };
    const m = typeof j.error === 'object' ? j.error?.message : (j.error_description ?? j.error);
    return typeof m === 'string' ? m.slice(0, 300) : '';
  } catch {
    return '';
  }
}

function statusError(
  purpose: string,
  where: string,
  status: number,
  text: string,
  retryAfter: string | string[] | undefined,
) {
  const message = odataMessage(text);
  const suffix = message ? `: ${message}` : '';
  if (status === 401 || status === 403)
    return new ConfigError(
      `${purpose} ${where} answered ${status}${suffix}; check that the app registration is allowed in F&O (Microsoft Entra applications) and FNO_SCOPE`,
      { upstreamStatus: status },
    );
  if (status === 408 || status === 429 || status >= 500)
    return new TransientError(`${purpose} ${where} answered ${status}${suffix}`, {
      code: 'api_unavailable',
      upstreamStatus: status,
      retryAfterMs: retryAfterMsOf(typeof retryAfter === 'string' ? retryAfter : undefined),
    });
  return new PermanentError(`${purpose} ${where} answered ${status}${suffix}`, {
    code: 'api_refused',
    upstreamStatus: status,
  });
}
