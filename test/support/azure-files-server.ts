/**
 * A protocol-level Azure Files REST server for tests (never part of the product). It serves the
 * subset of the File service that the `fileshare` cursor store uses, on 127.0.0.1, with
 * path-style URLs (`/<account>/<share>/<dir>/<file>`), so that `ShareServiceClient` from
 * `@azure/storage-file-share` works unmodified against
 * `FileEndpoint=http://127.0.0.1:<port>/<account>` (or https with `tls: true`).
 *
 * Implemented: create share / directory / file, put range (update, clear), get file (full and
 * ranged), get properties (HEAD), set HTTP headers (resize), set metadata, delete, rename, and
 * file leases (acquire infinite, release, change, break) with lease enforcement. Status codes
 * and error codes follow the real service; errors carry an XML body and the `x-ms-error-code`
 * header. The SharedKey signature is not verified, but an Authorization header must be present.
 *
 * As the real service:
 * - Lease states are `available`, `leased` and `broken`. Break ends a lease at once (file leases
 *   are infinite) and leaves it `broken`; on `broken`, acquire takes a new lease, break succeeds
 *   again, and release with the broken lease's id succeeds (→ `available`).
 * - A write (create, put range, set properties/metadata, delete, rename source) on a leased file
 *   needs the lease id: `LeaseIdMissing`, `LeaseIdMismatchWithFileOperation`; a lease id on a file
 *   without an active lease is `LeaseNotPresentWithFileOperation`. A READ that carries a lease id
 *   is checked the same way. The documentation gives 412 for these in one place and 409 in
 *   another: `leaseErrorStatus` (default 412) picks the status, the code stays.
 * - Names are case-insensitive (and case-preserving); a path component above 255 characters is
 *   400 `OutOfRangeInput`.
 * - A Bearer (OAuth / managed identity) request must carry `x-ms-file-request-intent: backup`,
 *   else 400 `MissingRequiredHeader` (as Azure answers it); any bearer token is accepted (no
 *   Entra ID here). The data roles cannot create shares: a Bearer Create Share is 403.
 * - Lease operations do not change a file's ETag nor its Last-Modified; writes and metadata do.
 *   `Date` and `Last-Modified` come from the service clock, which a test can move
 *   (`advanceClock`) to let time pass for the service without waiting.
 *
 * Fault switches: `failNext` (answer an error and change nothing), `failNextAfterApplying`
 * (apply the operation, then lose the response: 500 or a dropped connection, so the SDK retries
 * an operation that already happened) and `onRequest` (delay or observe requests).
 *
 * Quirk handled: the SDK's `rename()` builds the destination URL as `/<share>/<path>`, dropping
 * the account segment of path-style URLs; a first segment that is not the account name is
 * therefore taken as the share.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { generate as generateCertificate } from 'selfsigned';
import { AZURITE_ACCOUNT, AZURITE_KEY } from '../../src/local/azurite';

const SERVICE_VERSION = '2026-04-06';
const MAX_NAME_LENGTH = 255;

export interface FilesRequestInfo {
  method: string;
  operation: string;
  share: string;
  /** Path inside the share ('' for the share itself). */
  path: string;
  headers: http.IncomingHttpHeaders;
}

export interface FilesServerStats {
  requests: number;
  byOperation: Record<string, number>;
}

export type LeaseState = 'available' | 'leased' | 'broken';

export interface AzureFilesServerOptions {
  account?: string;
  /** Serve https with a self-signed certificate for 127.0.0.1 (Bearer auth needs https). */
  tls?: boolean;
  /** Status of lease errors on file operations (default 412; the docs also give 409). */
  leaseErrorStatus?: 409 | 412;
}

export interface AzureFilesServer {
  port: number;
  account: string;
  /** `http(s)://127.0.0.1:<port>/<account>`: the file endpoint. */
  endpoint: string;
  /** PEM certificate to trust when `tls` is on. */
  ca: string | undefined;
  connectionString: string;
  stop(): Promise<void>;
  /** The next `n` requests answer `status` (500 InternalError by default) and change nothing. */
  failNext(n: number, status?: number): void;
  /**
   * The next `n` requests of `operation` (e.g. 'rename', 'putRange'; any when omitted) are
   * APPLIED, then their response is lost: a 500 (`mode: 'status'`, default) or a dropped
   * connection (`mode: 'drop'`). The SDK then retries an operation that already happened.
   */
  failNextAfterApplying(n: number, o?: { operation?: string; mode?: 'status' | 'drop' }): void;
  /** Sets the status of lease errors on file operations (LeaseIdMismatchWithFileOperation...). */
  setLeaseErrorStatus(status: 409 | 412): void;
  /** Moves the service clock (Date and Last-Modified headers) forward. */
  advanceClock(ms: number): void;
  /** The service clock, in ms. */
  now(): number;
  /** Creates a share as infra (or the portal) does. */
  createShare(name: string): void;
  deleteShare(name: string): void;
  /** Current content of a file, or undefined when it does not exist. */
  fileContent(share: string, path: string): Buffer | undefined;
  /** Paths of all files in a share (as created: case preserved), sorted. */
  filePaths(share: string): string[];
  /** Metadata of a file, or undefined when it does not exist. */
  fileMetadata(share: string, path: string): Record<string, string> | undefined;
  /** The ACTIVE lease id of a file, or undefined (none, or broken). */
  fileLeaseId(share: string, path: string): string | undefined;
  /** Lease state of a file, or undefined when it does not exist. */
  fileLeaseState(share: string, path: string): LeaseState | undefined;
  /**
   * Called for every request after its body is read and before it is processed; may return a
   * promise to delay the request (the request is evaluated against the state at the time the
   * promise resolves). Set to undefined to remove.
   */
  onRequest: ((info: FilesRequestInfo) => void | Promise<void>) | undefined;
  stats: FilesServerStats;
}

interface FileEntry {
  /** The path as it was created (case preserved). */
  name: string;
  content: Buffer;
  metadata: Record<string, string>;
  contentType: string;
  etag: string;
  lastModified: Date;
  leaseState: LeaseState;
  /** The active lease's id (leased), or the broken lease's id (broken). */
  leaseId?: string;
}

interface ShareState {
  etag: string;
  lastModified: Date;
  /** Lower-case path → path as created ('' is the root). */
  directories: Map<string, string>;
  /** Lower-case path → file. */
  files: Map<string, FileEntry>;
}

class FilesError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const xmlEscape = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function parseRange(value: string | undefined): { start: number; end: number } | undefined {
  if (value === undefined) return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(value.trim());
  if (!m)
    throw new FilesError(
      400,
      'InvalidHeaderValue',
      `The range header ${JSON.stringify(value)} is not valid.`,
    );
  const start = Number(m[1]);
  const end = m[2] === '' ? Number.MAX_SAFE_INTEGER : Number(m[2]);
  if (end < start)
    throw new FilesError(
      416,
      'InvalidRange',
      'The range specified is invalid for the current size of the resource.',
    );
  return { start, end };
}

function metadataFrom(req: http.IncomingMessage): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers))
    if (k.startsWith('x-ms-meta-') && v !== undefined)
      meta[k.slice('x-ms-meta-'.length)] = Array.isArray(v) ? v.join(',') : v;
  return meta;
}

const key = (path: string) => path.toLowerCase();
const parentOf = (path: string) => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');

function checkNameLengths(path: string) {
  for (const part of path.split('/'))
    if (part.length > MAX_NAME_LENGTH)
      throw new FilesError(
        400,
        'OutOfRangeInput',
        `The specified resource name length is not within the permissible limits (a path component has ${part.length} characters; at most ${MAX_NAME_LENGTH}).`,
      );
}

export async function startAzureFilesServer(
  options: AzureFilesServerOptions = {},
): Promise<AzureFilesServer> {
  const account = options.account ?? AZURITE_ACCOUNT;
  const shares = new Map<string, ShareState>();
  let etagCounter = 0x8dc000000000000n;
  const nextEtag = () => `"0x${(++etagCounter).toString(16).toUpperCase()}"`;
  let pendingFailures: { count: number; status: number } = { count: 0, status: 500 };
  let lostResponses: { count: number; operation?: string; mode: 'status' | 'drop' } = {
    count: 0,
    mode: 'status',
  };
  let leaseErrorStatus: 409 | 412 = options.leaseErrorStatus ?? 412;
  let clockOffsetMs = 0;
  const now = () => Date.now() + clockOffsetMs;
  const stats: FilesServerStats = { requests: 0, byOperation: {} };

  const lookupFile = (share: string, path: string) => shares.get(key(share))?.files.get(key(path));

  const newShare = (): ShareState => ({
    etag: nextEtag(),
    lastModified: new Date(now()),
    directories: new Map([['', '']]),
    files: new Map(),
  });

  const onRequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch((e: unknown) => {
        if (!res.headersSent) sendError(req, res, new FilesError(500, 'InternalError', String(e)));
      });
    });
  };
  let ca: string | undefined;
  let server: http.Server;
  if (options.tls) {
    const pems = await generateCertificate([{ name: 'commonName', value: '127.0.0.1' }], {
      keyType: 'ec',
      curve: 'P-256',
      notAfterDate: new Date(Date.now() + 24 * 3600_000),
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    });
    ca = pems.cert;
    server = https.createServer({ key: pems.private, cert: pems.cert }, onRequestHandler);
  } else server = http.createServer(onRequestHandler);

  function commonHeaders(res: http.ServerResponse) {
    res.setHeader('x-ms-request-id', randomUUID());
    res.setHeader('x-ms-version', SERVICE_VERSION);
    res.setHeader('Date', new Date(now()).toUTCString());
    res.setHeader('Server', 'Windows-Azure-File/1.0 Microsoft-HTTPAPI/2.0');
  }

  function sendError(req: http.IncomingMessage, res: http.ServerResponse, e: FilesError) {
    commonHeaders(res);
    res.setHeader('x-ms-error-code', e.code);
    const body =
      `<?xml version="1.0" encoding="utf-8"?><Error><Code>${xmlEscape(e.code)}</Code>` +
      `<Message>${xmlEscape(e.message)}\nRequestId:${res.getHeader('x-ms-request-id')}\nTime:${new Date(now()).toISOString()}</Message></Error>`;
    res.statusCode = e.status;
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.setHeader('Content-Type', 'application/xml');
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(body);
  }

  function classify(req: http.IncomingMessage, query: URLSearchParams): string {
    const restype = query.get('restype');
    const comp = query.get('comp');
    const m = req.method;
    if (restype === 'share' && !comp)
      return m === 'PUT' ? 'createShare' : m === 'GET' || m === 'HEAD' ? 'getShareProperties' : 'unsupported';
    if (restype === 'directory' && !comp)
      return m === 'PUT'
        ? 'createDirectory'
        : m === 'GET' || m === 'HEAD'
          ? 'getDirectoryProperties'
          : 'unsupported';
    if (restype) return 'unsupported';
    if (m === 'PUT' && !comp && header(req, 'x-ms-type')?.toLowerCase() === 'file') return 'createFile';
    if (m === 'PUT' && comp === 'range') return 'putRange';
    if (m === 'PUT' && comp === 'properties') return 'setProperties';
    if (m === 'PUT' && comp === 'metadata') return 'setMetadata';
    if (m === 'PUT' && comp === 'rename') return 'rename';
    if (m === 'PUT' && comp === 'lease')
      return `lease:${header(req, 'x-ms-lease-action')?.toLowerCase() ?? 'missing'}`;
    if (m === 'GET' && !comp) return 'getFile';
    if (m === 'HEAD' && !comp) return 'getFileProperties';
    if (m === 'DELETE' && !comp) return 'deleteFile';
    return 'unsupported';
  }

  /** `/<account>/<share>/<path...>`; also `/<share>/<path...>` (see the rename quirk above). */
  function locate(pathname: string): { share: string; path: string } {
    const segments = pathname
      .split('/')
      .filter((s) => s !== '')
      .map((s) => decodeURIComponent(s));
    if (segments[0] === account) segments.shift();
    const share = segments.shift();
    if (!share)
      throw new FilesError(400, 'UnsupportedOperation', 'Service-level operations are not supported here.');
    return { share, path: segments.join('/') };
  }

  function requireShare(share: string): ShareState {
    const s = shares.get(key(share));
    if (!s) throw new FilesError(404, 'ShareNotFound', 'The specified share does not exist.');
    return s;
  }

  function requireParent(s: ShareState, path: string) {
    if (!s.directories.has(key(parentOf(path))))
      throw new FilesError(404, 'ParentNotFound', 'The specified parent path does not exist.');
  }

  function requireFile(s: ShareState, path: string): FileEntry {
    const f = s.files.get(key(path));
    if (!f) throw new FilesError(404, 'ResourceNotFound', 'The specified resource does not exist.');
    return f;
  }

  const leaseError = (code: string, message: string) => new FilesError(leaseErrorStatus, code, message);

  /**
   * Lease enforcement for file operations. Writes on a leased file need its id; any operation
   * (reads included) that carries a lease id needs it to be the active one.
   */
  function checkLease(f: FileEntry | undefined, leaseId: string | undefined, write: boolean) {
    if (!f) return;
    if (f.leaseState !== 'leased') {
      if (leaseId !== undefined)
        throw leaseError(
          'LeaseNotPresentWithFileOperation',
          'There is currently no lease on the file, but a lease ID was specified.',
        );
      return;
    }
    if (leaseId === undefined) {
      if (!write) return;
      throw leaseError(
        'LeaseIdMissing',
        'There is currently a lease on the file and no lease ID was specified in the request.',
      );
    }
    if (leaseId !== f.leaseId)
      throw leaseError(
        'LeaseIdMismatchWithFileOperation',
        'The lease ID specified did not match the lease ID for the file.',
      );
  }

  function touch(f: { etag: string; lastModified: Date }) {
    f.etag = nextEtag();
    f.lastModified = new Date(now());
  }

  function fileHeaders(res: http.ServerResponse, f: FileEntry) {
    res.setHeader('ETag', f.etag);
    res.setHeader('Last-Modified', f.lastModified.toUTCString());
  }

  function propertyHeaders(res: http.ServerResponse, f: FileEntry) {
    fileHeaders(res, f);
    res.setHeader('x-ms-type', 'File');
    res.setHeader('Content-Type', f.contentType);
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('x-ms-server-encrypted', 'false');
    res.setHeader('x-ms-file-attributes', 'Archive');
    res.setHeader('x-ms-lease-state', f.leaseState);
    res.setHeader('x-ms-lease-status', f.leaseState === 'leased' ? 'locked' : 'unlocked');
    if (f.leaseState === 'leased') res.setHeader('x-ms-lease-duration', 'infinite');
    for (const [k, v] of Object.entries(f.metadata)) res.setHeader(`x-ms-meta-${k}`, v);
  }

  function authenticate(req: http.IncomingMessage, operation: string) {
    const authorization = header(req, 'authorization');
    if (!authorization)
      throw new FilesError(401, 'NoAuthenticationInformation', 'Server failed to authenticate the request.');
    if (/^Bearer\s+\S/i.test(authorization)) {
      if (header(req, 'x-ms-file-request-intent')?.toLowerCase() !== 'backup')
        throw new FilesError(
          400,
          'MissingRequiredHeader',
          "An HTTP header that's mandatory for this request is not specified. HeaderName: x-ms-file-request-intent",
        );
      if (operation === 'createShare')
        throw new FilesError(
          403,
          'AuthorizationPermissionMismatch',
          'This request is not authorized to perform this operation using this permission.',
        );
    }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) {
    stats.requests++;
    const url = new URL(req.url ?? '/', 'http://localhost');
    const operation = classify(req, url.searchParams);
    stats.byOperation[operation] = (stats.byOperation[operation] ?? 0) + 1;
    try {
      const { share, path } = locate(url.pathname);
      if (server.listening && onRequestHook.current)
        await onRequestHook.current({
          method: req.method ?? '',
          operation,
          share,
          path,
          headers: req.headers,
        });
      if (pendingFailures.count > 0) {
        pendingFailures.count--;
        const status = pendingFailures.status;
        throw new FilesError(
          status,
          status === 503 ? 'ServerBusy' : 'InternalError',
          status === 503 ? 'The server is busy.' : 'Injected failure.',
        );
      }
      authenticate(req, operation);
      if (!header(req, 'x-ms-version'))
        throw new FilesError(
          400,
          'MissingRequiredHeader',
          'An HTTP header that is mandatory for this request is not specified.',
        );
      if (header(req, 'x-ms-structured-body'))
        throw new FilesError(
          400,
          'UnsupportedHeader',
          'Structured message bodies are not supported by this test server.',
        );
      commonHeaders(res);
      const status = dispatch(operation, share, path, req, res, body);
      if (lostResponses.count > 0 && (!lostResponses.operation || lostResponses.operation === operation)) {
        lostResponses.count--;
        // Applied; now the response is lost on its way back.
        if (lostResponses.mode === 'drop') {
          req.socket.destroy();
          return;
        }
        for (const h of res.getHeaderNames()) res.removeHeader(h);
        throw new FilesError(500, 'InternalError', 'Injected failure after the operation was applied.');
      }
      res.statusCode = status.code;
      if (status.body !== undefined) {
        res.setHeader('Content-Length', status.body.length);
        res.end(req.method === 'HEAD' ? undefined : status.body);
      } else {
        if (!res.hasHeader('Content-Length')) res.setHeader('Content-Length', 0);
        res.end();
      }
    } catch (e) {
      if (e instanceof FilesError) sendError(req, res, e);
      else throw e;
    }
  }

  function dispatch(
    operation: string,
    share: string,
    path: string,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
  ): { code: number; body?: Buffer } {
    const leaseId = header(req, 'x-ms-lease-id');
    switch (operation) {
      case 'createShare': {
        if (path !== '')
          throw new FilesError(
            400,
            'InvalidUri',
            'The requested URI does not represent any resource on the server.',
          );
        if (shares.has(key(share)))
          throw new FilesError(409, 'ShareAlreadyExists', 'The specified share already exists.');
        const s = newShare();
        shares.set(key(share), s);
        res.setHeader('ETag', s.etag);
        res.setHeader('Last-Modified', s.lastModified.toUTCString());
        return { code: 201 };
      }
      case 'getShareProperties': {
        const s = requireShare(share);
        res.setHeader('ETag', s.etag);
        res.setHeader('Last-Modified', s.lastModified.toUTCString());
        res.setHeader('x-ms-share-quota', '5120');
        return { code: 200 };
      }
      case 'createDirectory': {
        const s = requireShare(share);
        if (path === '')
          throw new FilesError(409, 'ResourceAlreadyExists', 'The specified resource already exists.');
        checkNameLengths(path);
        requireParent(s, path);
        if (s.directories.has(key(path)) || s.files.has(key(path)))
          throw new FilesError(409, 'ResourceAlreadyExists', 'The specified resource already exists.');
        s.directories.set(key(path), path);
        res.setHeader('ETag', nextEtag());
        res.setHeader('Last-Modified', new Date(now()).toUTCString());
        res.setHeader('x-ms-request-server-encrypted', 'false');
        res.setHeader('x-ms-file-attributes', 'Directory');
        return { code: 201 };
      }
      case 'getDirectoryProperties': {
        const s = requireShare(share);
        if (!s.directories.has(key(path)))
          throw new FilesError(404, 'ResourceNotFound', 'The specified resource does not exist.');
        res.setHeader('ETag', s.etag);
        res.setHeader('Last-Modified', s.lastModified.toUTCString());
        return { code: 200 };
      }
      case 'createFile': {
        const s = requireShare(share);
        checkNameLengths(path);
        requireParent(s, path);
        if (s.directories.has(key(path)))
          throw new FilesError(409, 'ResourceAlreadyExists', 'The specified resource already exists.');
        const size = Number(header(req, 'x-ms-content-length'));
        if (!Number.isSafeInteger(size) || size < 0)
          throw new FilesError(400, 'InvalidHeaderValue', 'The value for x-ms-content-length is not valid.');
        const existing = s.files.get(key(path));
        checkLease(existing, leaseId, true);
        const f: FileEntry = {
          name: existing?.name ?? path,
          content: Buffer.alloc(size),
          metadata: metadataFrom(req),
          contentType: header(req, 'x-ms-content-type') ?? 'application/octet-stream',
          etag: nextEtag(),
          lastModified: new Date(now()),
          leaseState: existing?.leaseState ?? 'available',
          leaseId: existing?.leaseId,
        };
        s.files.set(key(path), f);
        fileHeaders(res, f);
        res.setHeader('x-ms-request-server-encrypted', 'false');
        return { code: 201 };
      }
      case 'putRange': {
        const f = requireFile(requireShare(share), path);
        checkLease(f, leaseId, true);
        const range = parseRange(header(req, 'x-ms-range') ?? header(req, 'range'));
        if (!range || range.end === Number.MAX_SAFE_INTEGER)
          throw new FilesError(400, 'InvalidHeaderValue', 'Put Range needs a closed x-ms-range.');
        if (range.end >= f.content.length)
          throw new FilesError(
            416,
            'InvalidRange',
            'The range specified is invalid for the current size of the resource.',
          );
        const length = range.end - range.start + 1;
        const write = (header(req, 'x-ms-write') ?? '').toLowerCase();
        if (write === 'update') {
          if (body.length !== length)
            throw new FilesError(
              400,
              'InvalidHeaderValue',
              `The body length ${body.length} does not match the range length ${length}.`,
            );
          body.copy(f.content, range.start);
        } else if (write === 'clear') {
          if (body.length !== 0)
            throw new FilesError(400, 'InvalidHeaderValue', 'A clear range must have no body.');
          f.content.fill(0, range.start, range.end + 1);
        } else throw new FilesError(400, 'InvalidHeaderValue', 'x-ms-write must be update or clear.');
        touch(f);
        fileHeaders(res, f);
        res.setHeader('x-ms-request-server-encrypted', 'false');
        return { code: 201 };
      }
      case 'setProperties': {
        const f = requireFile(requireShare(share), path);
        checkLease(f, leaseId, true);
        const sizeHeader = header(req, 'x-ms-content-length');
        if (sizeHeader !== undefined) {
          const size = Number(sizeHeader);
          if (!Number.isSafeInteger(size) || size < 0)
            throw new FilesError(
              400,
              'InvalidHeaderValue',
              'The value for x-ms-content-length is not valid.',
            );
          const resized = Buffer.alloc(size);
          f.content.copy(resized, 0, 0, Math.min(size, f.content.length));
          f.content = resized;
        }
        const type = header(req, 'x-ms-content-type');
        if (type !== undefined) f.contentType = type;
        touch(f);
        fileHeaders(res, f);
        return { code: 200 };
      }
      case 'setMetadata': {
        const f = requireFile(requireShare(share), path);
        checkLease(f, leaseId, true);
        f.metadata = metadataFrom(req);
        touch(f);
        fileHeaders(res, f);
        return { code: 200 };
      }
      case 'deleteFile': {
        const s = requireShare(share);
        const f = requireFile(s, path);
        checkLease(f, leaseId, true);
        s.files.delete(key(path));
        return { code: 202 };
      }
      case 'rename': {
        const s = requireShare(share);
        const sourceHeader = header(req, 'x-ms-file-rename-source');
        if (!sourceHeader)
          throw new FilesError(400, 'MissingRequiredHeader', 'x-ms-file-rename-source is required.');
        const source = locate(new URL(sourceHeader, 'http://localhost').pathname);
        if (key(source.share) !== key(share))
          throw new FilesError(400, 'InvalidHeaderValue', 'The rename source must be in the same share.');
        const f = requireFile(s, source.path);
        checkNameLengths(path);
        requireParent(s, path);
        checkLease(f, header(req, 'x-ms-source-lease-id'), true);
        const target = s.files.get(key(path));
        if (s.directories.has(key(path)))
          throw new FilesError(409, 'ResourceAlreadyExists', 'The specified resource already exists.');
        if (target && key(source.path) !== key(path)) {
          if (header(req, 'x-ms-file-rename-replace-if-exists')?.toLowerCase() !== 'true')
            throw new FilesError(409, 'ResourceAlreadyExists', 'The specified resource already exists.');
          checkLease(target, header(req, 'x-ms-destination-lease-id'), true);
        }
        s.files.delete(key(source.path));
        f.name = path;
        touch(f);
        s.files.set(key(path), f);
        fileHeaders(res, f);
        return { code: 200 };
      }
      case 'getFile': {
        const f = requireFile(requireShare(share), path);
        checkLease(f, leaseId, false);
        propertyHeaders(res, f);
        const range = parseRange(header(req, 'x-ms-range') ?? header(req, 'range'));
        if (!range) {
          res.setHeader('x-ms-content-length', f.content.length);
          return { code: 200, body: Buffer.from(f.content) };
        }
        if (range.start >= f.content.length)
          throw new FilesError(
            416,
            'InvalidRange',
            'The range specified is invalid for the current size of the resource.',
          );
        const end = Math.min(range.end, f.content.length - 1);
        res.setHeader('Content-Range', `bytes ${range.start}-${end}/${f.content.length}`);
        return { code: 206, body: Buffer.from(f.content.subarray(range.start, end + 1)) };
      }
      case 'getFileProperties': {
        const f = requireFile(requireShare(share), path);
        checkLease(f, leaseId, false);
        propertyHeaders(res, f);
        res.setHeader('Content-Length', f.content.length);
        return { code: 200 };
      }
      default:
        if (operation.startsWith('lease:'))
          return leaseOperation(operation.slice(6), share, path, req, res, leaseId);
        throw new FilesError(
          400,
          'UnsupportedOperation',
          `The operation ${req.method} ${req.url ?? ''} is not supported.`,
        );
    }
  }

  function leaseOperation(
    action: string,
    share: string,
    path: string,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    leaseId: string | undefined,
  ): { code: number } {
    const f = requireFile(requireShare(share), path);
    const proposed = header(req, 'x-ms-proposed-lease-id');
    const guid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
    const notPresent = () =>
      new FilesError(409, 'LeaseNotPresentWithLeaseOperation', 'There is currently no lease on the file.');
    const mismatch = () =>
      new FilesError(
        409,
        'LeaseIdMismatchWithLeaseOperation',
        'The lease ID specified did not match the lease ID for the file.',
      );
    // Lease operations change neither the ETag nor Last-Modified.
    fileHeaders(res, f);
    switch (action) {
      case 'acquire': {
        if (header(req, 'x-ms-lease-duration') !== '-1')
          throw new FilesError(400, 'InvalidHeaderValue', 'File leases must have an infinite duration (-1).');
        if (proposed !== undefined && !guid.test(proposed))
          throw new FilesError(400, 'InvalidHeaderValue', 'The proposed lease id is not a GUID.');
        if (f.leaseState === 'leased' && f.leaseId !== proposed)
          throw new FilesError(409, 'LeaseAlreadyPresent', 'There is already a lease present.');
        f.leaseState = 'leased';
        f.leaseId = proposed ?? randomUUID();
        res.setHeader('x-ms-lease-id', f.leaseId);
        return { code: 201 };
      }
      case 'release': {
        if (f.leaseState === 'available') throw notPresent();
        if (leaseId !== f.leaseId) throw mismatch();
        f.leaseState = 'available';
        f.leaseId = undefined;
        return { code: 200 };
      }
      case 'change': {
        if (f.leaseState !== 'leased') throw notPresent();
        if (!proposed || !guid.test(proposed))
          throw new FilesError(400, 'InvalidHeaderValue', 'The proposed lease id is missing or not a GUID.');
        if (leaseId !== f.leaseId && proposed !== f.leaseId) throw mismatch();
        f.leaseId = proposed;
        res.setHeader('x-ms-lease-id', f.leaseId);
        return { code: 200 };
      }
      case 'break': {
        if (f.leaseState === 'available') throw notPresent();
        if (leaseId !== undefined && leaseId !== f.leaseId) throw mismatch();
        f.leaseState = 'broken'; // immediately: file leases are infinite
        res.setHeader('x-ms-lease-time', '0');
        return { code: 202 };
      }
      default:
        throw new FilesError(
          400,
          'UnsupportedOperation',
          `The lease action ${JSON.stringify(action)} is not supported.`,
        );
    }
  }

  const onRequestHook: { current: AzureFilesServer['onRequest'] } = { current: undefined };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const endpoint = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}/${account}`;

  return {
    port,
    account,
    endpoint,
    ca,
    connectionString: [
      `DefaultEndpointsProtocol=${options.tls ? 'https' : 'http'}`,
      `AccountName=${account}`,
      `AccountKey=${AZURITE_KEY}`,
      `FileEndpoint=${endpoint}`,
    ].join(';'),
    stats,
    get onRequest() {
      return onRequestHook.current;
    },
    set onRequest(hook) {
      onRequestHook.current = hook;
    },
    failNext(n: number, status = 500) {
      pendingFailures = { count: n, status };
    },
    failNextAfterApplying(n: number, o: { operation?: string; mode?: 'status' | 'drop' } = {}) {
      lostResponses = { count: n, operation: o.operation, mode: o.mode ?? 'status' };
    },
    setLeaseErrorStatus(status: 409 | 412) {
      leaseErrorStatus = status;
    },
    advanceClock(ms: number) {
      clockOffsetMs += ms;
    },
    now,
    createShare(name: string) {
      if (!shares.has(key(name))) shares.set(key(name), newShare());
    },
    deleteShare(name: string) {
      shares.delete(key(name));
    },
    fileContent(share: string, path: string) {
      const f = lookupFile(share, path);
      return f ? Buffer.from(f.content) : undefined;
    },
    filePaths(share: string) {
      return [...(shares.get(key(share))?.files.values() ?? [])].map((f) => f.name).sort();
    },
    fileMetadata(share: string, path: string) {
      const f = lookupFile(share, path);
      return f ? { ...f.metadata } : undefined;
    },
    fileLeaseId(share: string, path: string) {
      const f = lookupFile(share, path);
      return f?.leaseState === 'leased' ? f.leaseId : undefined;
    },
    fileLeaseState(share: string, path: string) {
      return lookupFile(share, path)?.leaseState;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
