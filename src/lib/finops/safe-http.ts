/**
 * The one HTTPS client of the F&O integration: downloads of event URLs, the recurring-integration
 * API and the package API all go through it, so every request obeys the same rules:
 *
 * - https only (also in tests: the simulators serve TLS with a certificate made at start);
 * - the host must match the caller's allow-list (`*.blob.core.windows.net` matches any name
 *   ending in `.blob.core.windows.net`); no user name or password in the URL;
 * - the name is resolved here and EVERY address it resolves to is vetted (address-policy.ts);
 *   the connection then goes to a vetted address (a pinned `lookup`), so a second DNS answer
 *   cannot swap in another address (DNS rebinding), while TLS still checks the certificate
 *   against the host name (SNI and Host header stay the name);
 * - redirects are followed for GET only, to the same scheme, host and port, at most
 *   `maxRedirects` times; a redirect elsewhere is refused (the credential in the URL or the
 *   bearer token must never travel to another host);
 * - a timeout bounds the wait for the response headers and every pause in the body;
 * - errors name the URL as scheme://host/path only: a query string (a SAS signature) never
 *   appears in an error message, and no low-level error that could carry the URL is attached.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import type { LookupFunction } from 'node:net';
import { isIP } from 'node:net';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { AppError, ConfigError, PermanentError, TransientError } from '../errors';
import { AddressPolicy, familyOf } from './address-policy';

/** scheme://host/path of a URL: what errors and logs may show (never the query or fragment). */
export function safeUrlText(url: string | URL): string {
  try {
    const u = typeof url === 'string' ? new URL(url) : url;
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(unparseable URL)';
  }
}

/** A host allow-list: exact names, or `*.suffix` for any name under the suffix. */
export class HostAllowList {
  private readonly exact = new Set<string>();
  private readonly suffixes: string[] = [];

  constructor(readonly patterns: readonly string[]) {
    for (const raw of patterns) {
      const p = normaliseHost(raw.trim());
      if (p === '') continue;
      if (p.startsWith('*.') && p.length > 2 && !p.slice(2).includes('*')) this.suffixes.push(p.slice(1));
      else if (!p.includes('*')) this.exact.add(p);
      else throw new ConfigError(`FNO_DOWNLOAD_ALLOWED_HOSTS: "${raw}" is not a host name or *.suffix`);
    }
  }

  allows(host: string): boolean {
    const h = normaliseHost(host);
    return this.exact.has(h) || this.suffixes.some((s) => h.endsWith(s) && h.length > s.length);
  }
}

const normaliseHost = (h: string) =>
  h
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');

/** Resolves a host name to its addresses (injectable so tests can make a name resolve anywhere). */
export type Resolver = (hostname: string) => Promise<{ address: string; family: 4 | 6 }[]>;

const systemResolver: Resolver = async (hostname) =>
  (await dnsLookup(hostname, { all: true, verbatim: true })).map((a) => ({
    address: a.address,
    family: a.family === 6 ? 6 : 4,
  }));

/** TESTS ONLY. Never built from configuration: the composition root of a test or of `npm start` passes it. */
export interface UnsafeTestOnlyOptions {
  /** Let requests reach loopback addresses (the local simulators). */
  allowLoopback?: boolean;
  /** Trust this CA certificate (PEM) in addition to the system's (the simulators' self-signed certificate). */
  extraCaPem?: string;
}

export interface SafeHttpOptions {
  /** Private ranges that may be reached (storage behind a private endpoint). */
  allowedPrivateCidrs?: readonly string[];
  /** Wait for headers, and longest pause in a body; default 30 s. */
  timeoutMs?: number;
  /** Default 3. */
  maxRedirects?: number;
  resolver?: Resolver;
  unsafeTestOnly?: UnsafeTestOnlyOptions;
}

export interface SafeRequest {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** The hosts this request may go to. */
  allowedHosts: HostAllowList;
  signal?: AbortSignal;
  /** What the request is, for messages ("download", "dequeue"...). */
  purpose: string;
}

export interface SafeResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /**
   * The body. A timeout destroys it with a TransientError; a connection cut short gives Node's own
   * error ("aborted", ECONNRESET): pass errors through `toSafeError` (readers here do).
   */
  body: IncomingMessage;
  /** The URL that answered (after same-host redirects). */
  url: URL;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class SafeHttpClient {
  private readonly policy: AddressPolicy;
  private readonly agent: Agent;
  private readonly timeoutMs: number;
  private readonly maxRedirects: number;
  private readonly resolver: Resolver;

  constructor(o: SafeHttpOptions = {}) {
    this.policy = new AddressPolicy({
      allowedPrivateCidrs: o.allowedPrivateCidrs,
      allowLoopback: o.unsafeTestOnly?.allowLoopback === true,
    });
    const extraCa = o.unsafeTestOnly?.extraCaPem;
    this.agent = new Agent({
      keepAlive: true,
      maxSockets: 16,
      ...(extraCa ? { secureContext: secureContextWith(extraCa) } : {}),
    });
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.maxRedirects = o.maxRedirects ?? 3;
    this.resolver = o.resolver ?? systemResolver;
  }

  /** Checks a URL against the rules that need no network (scheme, credentials, host). Throws PermanentError. */
  checkUrl(url: string | URL, allowedHosts: HostAllowList, purpose: string): URL {
    let u: URL;
    try {
      u = typeof url === 'string' ? new URL(url) : url;
    } catch {
      // The input is not echoed: it may be a SAS URL with its signature.
      throw refused(`the ${purpose} URL is not a valid URL`, 'url_invalid');
    }
    const where = safeUrlText(u);
    if (u.protocol !== 'https:') throw refused(`the ${purpose} URL ${where} is not https`, 'url_not_https');
    if (u.username !== '' || u.password !== '')
      throw refused(`the ${purpose} URL ${where} carries a user name or password`, 'url_has_credentials');
    if (!allowedHosts.allows(u.hostname))
      throw refused(`the ${purpose} host ${u.hostname} is not on the allow-list`, 'host_not_allowed', {
        host: u.hostname,
      });
    return u;
  }

  async request(url: string | URL, r: SafeRequest): Promise<SafeResponse> {
    let current = this.checkUrl(url, r.allowedHosts, r.purpose);
    for (let hop = 0; ; hop++) {
      const res = await this.once(current, r);
      if (!REDIRECTS.has(res.statusCode ?? 0))
        return { status: res.statusCode ?? 0, headers: res.headers, body: res, url: current };
      res.resume();
      const where = safeUrlText(current);
      const location = res.headers.location;
      if ((r.method ?? 'GET') !== 'GET')
        throw refused(
          `${r.purpose} ${where} answered a redirect to a ${r.method} request`,
          'redirect_refused',
        );
      if (!location)
        throw new TransientError(`${r.purpose} ${where} answered ${res.statusCode} without a Location`, {
          code: 'redirect_invalid',
          upstreamStatus: res.statusCode,
        });
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        throw refused(`${r.purpose} ${where} redirected to an invalid URL`, 'redirect_refused');
      }
      if (
        next.protocol !== current.protocol ||
        next.hostname !== current.hostname ||
        next.port !== current.port
      )
        throw refused(
          `${r.purpose} ${where} redirected to another host (${safeUrlText(next)}); refused`,
          'redirect_refused',
          {
            to: `${next.protocol}//${next.host}`,
          },
        );
      if (hop + 1 > this.maxRedirects)
        throw refused(`${r.purpose} ${where}: more than ${this.maxRedirects} redirects`, 'redirect_refused');
      current = next;
    }
  }

  close(): void {
    this.agent.destroy();
  }

  private async vettedAddresses(u: URL, purpose: string): Promise<{ address: string; family: 4 | 6 }[]> {
    const host = normaliseHost(u.hostname);
    let addresses: { address: string; family: 4 | 6 }[];
    if (isIP(host)) addresses = [{ address: host, family: familyOf(host) === 'ipv6' ? 6 : 4 }];
    else {
      try {
        addresses = await this.resolver(host);
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        throw new TransientError(
          `${purpose} host ${host} could not be resolved (${String(code ?? 'DNS error')})`,
          {
            code: 'host_unresolved',
          },
        );
      }
    }
    if (addresses.length === 0)
      throw new TransientError(`${purpose} host ${host} resolved to no address`, { code: 'host_unresolved' });
    // Every address is vetted, not just the one we would use: a name that mixes public and
    // private answers is a rebinding attempt or a misconfiguration either way.
    for (const a of addresses) {
      const why = this.policy.refusal(a.address);
      if (why)
        throw refused(
          `${purpose} host ${host} resolves to ${a.address}, a ${why} address; refused`,
          'address_forbidden',
          {
            host,
            address: a.address,
          },
        );
    }
    return addresses;
  }

  private async once(u: URL, r: SafeRequest): Promise<IncomingMessage> {
    const addresses = await this.vettedAddresses(u, r.purpose);
    const pinned: LookupFunction = (_hostname, options, callback) => {
      const all = (options as { all?: boolean }).all === true;
      if (all) (callback as (e: null, a: { address: string; family: number }[]) => void)(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    };
    const where = safeUrlText(u);
    const body =
      r.body === undefined ? undefined : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body, 'utf8');
    const options: RequestOptions = {
      protocol: 'https:',
      hostname: u.hostname,
      port: u.port === '' ? 443 : Number(u.port),
      path: `${u.pathname}${u.search}`,
      method: r.method ?? 'GET',
      headers: { ...(r.headers ?? {}), ...(body ? { 'content-length': String(body.length) } : {}) },
      agent: this.agent,
      lookup: pinned,
      servername: isIP(normaliseHost(u.hostname)) ? undefined : normaliseHost(u.hostname),
    };
    return await new Promise<IncomingMessage>((resolve, reject) => {
      if (r.signal?.aborted) return reject(r.signal.reason);
      const req = httpsRequest(options);
      let response: IncomingMessage | undefined;
      const fail = (e: Error) => {
        if (response) response.destroy(e);
        else req.destroy(e);
      };
      const onAbort = () => fail(r.signal?.reason instanceof Error ? r.signal.reason : new Error('aborted'));
      r.signal?.addEventListener('abort', onAbort, { once: true });
      // Inactivity on the socket: covers connect, the wait for headers and every pause in the body.
      req.setTimeout(this.timeoutMs, () =>
        fail(
          new TransientError(`${r.purpose} ${where}: no data for ${this.timeoutMs} ms`, {
            code: 'timeout',
          }),
        ),
      );
      req.on('error', (e) => {
        r.signal?.removeEventListener('abort', onAbort);
        reject(toSafeError(e, r.purpose, where));
      });
      req.on('response', (res) => {
        response = res;
        res.on('close', () => r.signal?.removeEventListener('abort', onAbort));
        // A timeout may destroy the body before its reader listens (or while a redirect body is
        // drained): without a listener that 'error' would crash the process. Readers still get
        // the error (for await, pipeline and their own listeners see it).
        res.on('error', () => undefined);
        resolve(res);
      });
      req.end(body);
    });
  }
}

/**
 * A TLS context trusting the system's root certificates plus `extraCaPem`, made once per PEM: a
 * `ca` option instead would parse every root certificate again for each new connection (and
 * put them all in the agent's pool key), which cost the test runs seconds.
 */
const secureContexts = new Map<string, SecureContext>();
function secureContextWith(extraCaPem: string): SecureContext {
  let ctx = secureContexts.get(extraCaPem);
  if (!ctx) {
    ctx = createSecureContext({ ca: [...rootCertificates, extraCaPem] });
    secureContexts.set(extraCaPem, ctx);
  }
  return ctx;
}

const refused = (message: string, code: string, details?: Record<string, unknown>) =>
  new PermanentError(message, { code, details: details ?? {} });

/** Any error of a request as an AppError whose message holds no URL query and no raw error text. */
export function toSafeError(e: unknown, purpose: string, where: string): AppError {
  if (e instanceof AppError) return e;
  const code = typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : undefined;
  const tls = code !== undefined && /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code);
  if (tls) return new PermanentError(`${purpose} ${where}: TLS failed (${code})`, { code: 'tls_failed' });
  const what = code ?? (e instanceof Error && e.message === 'aborted' ? 'connection cut' : 'network error');
  return new TransientError(`${purpose} ${where}: ${what}`, { code: 'network', details: { errno: code } });
}
