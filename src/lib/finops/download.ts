/**
 * Downloads an export (an event's `DownloadURL`, a recurring-integration `DownloadLocation`, a
 * package URL) safely, as a stream: see safe-http.ts for the network rules (https, host
 * allow-list, vetted addresses, same-host redirects, timeout, no query string in errors).
 *
 * On top of those, the downloader:
 * - caps the size: a Content-Length above the cap is refused before reading, and the stream
 *   fails as soon as the bytes received pass the cap (a server may lie or send no length);
 * - never buffers the body: `body` is a stream for the parser;
 * - types the failures so the flow knows what to do next:
 *   - DownloadUrlExpiredError (permanent, code `download_url_expired`): 401/403/404/410, or Azure
 *     Storage's `AuthenticationFailed`: the SAS URL expired or is wrong: ask the package API for a
 *     fresh URL (GetExportedPackageUrl) or quarantine the event;
 *   - TransientError (`download_unavailable`, `timeout`, `network`): 408, 429, 5xx, a cut
 *     connection: retry later, honouring `retryAfterMs`;
 *   - PermanentError (`download_too_large`, `download_failed`, and the policy refusals of
 *     safe-http.ts such as `host_not_allowed`, `url_not_https`, `address_forbidden`,
 *     `redirect_refused`): retrying cannot help: quarantine with the reason.
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { PermanentError, TransientError, type AppErrorOptions } from '../errors';
import { HostAllowList, safeUrlText, toSafeError, type SafeHttpClient } from './safe-http';
import { retryAfterMsOf } from './retry';

export const DEFAULT_DOWNLOAD_ALLOWED_HOSTS = ['*.blob.core.windows.net'];
export const DEFAULT_DOWNLOAD_MAX_BYTES = 512 * 1024 * 1024;

/** The download URL expired or is refused (SAS expired, wrong signature, blob gone). */
export class DownloadUrlExpiredError extends PermanentError {
  constructor(message: string, o: AppErrorOptions = {}) {
    super(message, { code: 'download_url_expired', ...o });
    this.name = 'DownloadUrlExpiredError';
  }
}

export const isDownloadUrlExpired = (e: unknown): e is DownloadUrlExpiredError =>
  e instanceof DownloadUrlExpiredError;

export interface DownloaderOptions {
  http: SafeHttpClient;
  /** Host patterns for event URLs (FNO_DOWNLOAD_ALLOWED_HOSTS); default `*.blob.core.windows.net`. */
  allowedHosts?: readonly string[];
  /** Largest body accepted (FNO_DOWNLOAD_MAX_BYTES); default 512 MiB. */
  maxBytes?: number;
}

export interface DownloadRequest {
  /** Extra headers (the recurring-integration download sends the bearer token). */
  headers?: Record<string, string>;
  /** Hosts for this request instead of the default list (the F&O host for DownloadLocation). */
  allowedHosts?: HostAllowList;
  signal?: AbortSignal;
  /** For messages; default "download". */
  purpose?: string;
}

export interface Download {
  /** The bytes, capped at maxBytes; errors are AppErrors with safe messages. */
  body: Readable;
  /** The last path segment, decoded ("Customer groups.csv"): names the file in row reports. */
  fileName: string;
  contentType?: string;
  contentLength?: number;
  /** scheme://host/path of the URL that answered. */
  where: string;
  /** Bytes read from `body` so far (for the download metric). */
  bytesRead(): number;
}

export class SafeDownloader {
  private readonly allowedHosts: HostAllowList;
  readonly maxBytes: number;

  constructor(private readonly o: DownloaderOptions) {
    this.allowedHosts = new HostAllowList(o.allowedHosts ?? DEFAULT_DOWNLOAD_ALLOWED_HOSTS);
    this.maxBytes = o.maxBytes ?? DEFAULT_DOWNLOAD_MAX_BYTES;
  }

  /** Checks a URL without any network traffic (for the intake: refuse early what would be refused later). */
  checkUrl(url: string): URL {
    return this.o.http.checkUrl(url, this.allowedHosts, 'download');
  }

  async download(url: string | URL, r: DownloadRequest = {}): Promise<Download> {
    const purpose = r.purpose ?? 'download';
    const res = await this.o.http.request(url, {
      method: 'GET',
      headers: { accept: '*/*', ...(r.headers ?? {}) },
      allowedHosts: r.allowedHosts ?? this.allowedHosts,
      signal: r.signal,
      purpose,
    });
    const where = safeUrlText(res.url);
    if (res.status < 200 || res.status > 299) {
      const errorCode = await storageErrorCode(res.headers, res.body);
      throw statusError(purpose, where, res.status, errorCode, res.headers['retry-after']);
    }
    const length =
      res.headers['content-length'] !== undefined ? Number(res.headers['content-length']) : undefined;
    if (length !== undefined && Number.isFinite(length) && length > this.maxBytes) {
      res.body.destroy();
      throw new PermanentError(
        `${purpose} ${where} is ${length} bytes, more than the ${this.maxBytes} allowed (FNO_DOWNLOAD_MAX_BYTES)`,
        { code: 'download_too_large', details: { bytes: length, maxBytes: this.maxBytes } },
      );
    }
    const capped = new ByteCap(this.maxBytes, purpose, where);
    res.body.on('error', (e) => capped.destroy(toSafeError(e, purpose, where)));
    capped.on('close', () => {
      if (!res.body.destroyed && !res.body.readableEnded) res.body.destroy();
    });
    res.body.pipe(capped);
    const segments = res.url.pathname.split('/');
    let fileName = segments[segments.length - 1] ?? '';
    try {
      fileName = decodeURIComponent(fileName);
    } catch {
      /* keep it encoded */
    }
    return {
      body: capped,
      fileName,
      contentType: typeof res.headers['content-type'] === 'string' ? res.headers['content-type'] : undefined,
      contentLength: length,
      where,
      bytesRead: () => capped.seen,
    };
  }
}

/** Passes bytes through and fails once more than `max` have passed. */
class ByteCap extends Transform {
  seen = 0;
  constructor(
    private readonly max: number,
    private readonly purpose: string,
    private readonly where: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.max)
      return cb(
        new PermanentError(
          `${this.purpose} ${this.where} sent more than the ${this.max} bytes allowed (FNO_DOWNLOAD_MAX_BYTES)`,
          { code: 'download_too_large', details: { maxBytes: this.max } },
        ),
      );
    cb(null, chunk);
  }
}

const EXPIRED_STATUSES = new Set([401, 403, 404, 410]);

function statusError(
  purpose: string,
  where: string,
  status: number,
  errorCode: string | undefined,
  retryAfter: string | string[] | undefined,
) {
  const code = errorCode ? ` (${errorCode})` : '';
  if (EXPIRED_STATUSES.has(status) || errorCode === 'AuthenticationFailed')
    return new DownloadUrlExpiredError(
      `${purpose} ${where} answered ${status}${code}: the URL expired or is not valid; ask for a fresh URL`,
      { upstreamStatus: status, details: { status, errorCode } },
    );
  if (status === 408 || status === 429 || status >= 500)
    return new TransientError(`${purpose} ${where} answered ${status}${code}`, {
      code: 'download_unavailable',
      upstreamStatus: status,
      retryAfterMs: retryAfterMsOf(typeof retryAfter === 'string' ? retryAfter : undefined),
      details: { status, errorCode },
    });
  return new PermanentError(`${purpose} ${where} answered ${status}${code}`, {
    code: 'download_failed',
    upstreamStatus: status,
    details: { status, errorCode },
  });
}

/**
 * Azure Storage's error code: the `x-ms-error-code` header, else `<Code>` of the XML body (read up
 * to 4 KB). Only the code is kept: the body's other text can quote the string that was signed.
 */
async function storageErrorCode(
  headers: Record<string, unknown>,
  body: Readable,
): Promise<string | undefined> {
  const header = headers['x-ms-error-code'];
  if (typeof header === 'string' && /^[A-Za-z0-9]{1,100}$/.test(header)) {
    body.resume();
    return header;
  }
  let text = '';
  try {
    for await (const chunk of body) {
      text += (chunk as Buffer).toString('utf8');
      if (text.length >= 4096) break;
    }
  } catch {
    /* the status is enough */
  } finally {
    body.destroy();
  }
  const m = /<Code>([A-Za-z0-9]{1,100})<\/Code>/.exec(text);
  return m?.[1];
}
