/**
 * A protocol-level Azure Files REST server for tests (never part of the product). It serves the
 * subset of the File service that the `fileshare` cursor store uses, on 127.0.0.1, with
 * path-style URLs (`/<account>/<share>/<dir>/<file>`), so that `ShareServiceClient` from
 * `@azure/storage-file-share` works unmodified against
 * `FileEndpoint=http://127.0.0.1:<port>/<account>`.
 *
 * Implemented: create share / directory / file, put range (update, clear), get file (full and
 * ranged), get properties (HEAD), set HTTP headers (resize), set metadata, delete, rename, and
 * file leases (acquire infinite, release, change, break) with lease enforcement on writes.
 * Status codes and error codes follow the real service; errors carry an XML body and the
 * `x-ms-error-code` header. The SharedKey signature is not verified, but an Authorization header
 * must be present.
 *
 * Quirk handled: the SDK's `rename()` builds the destination URL as `/<share>/<path>`, dropping
 * the account segment of path-style URLs; a first segment that is not the account name is
 * therefore taken as the share.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AZURITE_ACCOUNT, AZURITE_KEY } from '../../src/local/azurite';

const SERVICE_VERSION = '2026-04-06';

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

export interface AzureFilesServer {
  port: number;
  account: string;
  connectionString: string;
  stop(): Promise<void>;
  /** The next `n` requests answer `status` (500 InternalError by default) and change nothing. */
  failNext(n: number, status?: number): void;
  /** Current content of a file, or undefined when it does not exist. */
  fileContent(share: string, path: string): Buffer | undefined;
  /** Paths of all files in a share, sorted. */
  filePaths(share: string): string[];
  /** Metadata of a file, or undefined when it does not exist. */
  fileMetadata(share: string, path: string): Record<string, string> | undefined;
  /** Lease state of a file: the active lease id, or undefined. */
  fileLeaseId(share: string, path: string): string | undefined;
  /**
   * Called for every request after its body is read and before it is processed; may return a
   * promise to delay the request (the request is evaluated against the state at the time the
   * promise resolves). Set to undefined to remove.
   */
  onRequest: ((info: FilesRequestInfo) => void | Promise<void>) | undefined;
  stats: FilesServerStats;
}

interface FileEntry {
  content: Buffer;
  metadata: Record<string, string>;
  contentType: string;
  etag: string;
  lastModified: Date;
  leaseId?: string;
}

interface ShareState {
  etag: string;
  lastModified: Date;
  directories: Set<string>;
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

export async function startAzureFilesServer(options: { account?: string } = {}): Promise<AzureFilesServer> {
  const account = options.account ?? AZURITE_ACCOUNT;
  const shares = new Map<string, ShareState>();
  let etagCounter = 0x8dc000000000000n;
  const nextEtag = () => `"0x${(++etagCounter).toString(16).toUpperCase()}"`;
  let pendingFailures: { count: number; status: number } = { count: 0, status: 500 };
  const stats: FilesServerStats = { requests: 0, byOperation: {} };

  const lookupFile = (share: string, path: string) => shares.get(share)?.files.get(path);

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch((e: unknown) => {
        if (!res.headersSent) sendError(req, res, new FilesError(500, 'InternalError', String(e)));
      });
    });
  });

  function commonHeaders(res: http.ServerResponse) {
    res.setHeader('x-ms-request-id', randomUUID());
    res.setHeader('x-ms-version', SERVICE_VERSION);
    res.setHeader('Date', new Date().toUTCString());
    res.setHeader('Server', 'Windows-Azure-File/1.0 Microsoft-HTTPAPI/2.0');
  }

  function sendError(req: http.IncomingMessage, res: http.ServerResponse, e: FilesError) {
    commonHeaders(res);
    res.setHeader('x-ms-error-code', e.code);
    const body =
      `<?xml version="1.0" encoding="utf-8"?><Error><Code>${xmlEscape(e.code)}</Code>` +
      `<Message>${xmlEscape(e.message)}\nRequestId:${res.getHeader('x-ms-request-id')}\nTime:${new Date().toISOString()}</Message></Error>`;
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
    const s = shares.get(share);
    if (!s) throw new FilesError(404, 'ShareNotFound', 'The specified share does not exist.');
    return s;
  }

  function requireParent(s: ShareState, path: string) {
    const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    if (!s.directories.has(parent))
      throw new FilesError(404, 'ParentNotFound', 'The specified parent path does not exist.');
  }

  function requireFile(s: ShareState, path: string): FileEntry {
    const f = s.files.get(path);
    if (!f) throw new FilesError(404, 'ResourceNotFound', 'The specified resource does not exist.');
    return f;
  }

  /** Lease enforcement for writes (create, put range, set properties/metadata, delete). */
  function checkWriteLease(f: FileEntry | undefined, leaseId: string | undefined) {
    if (!f) return;
    if (f.leaseId === undefined) {
      if (leaseId !== undefined)
        throw new FilesError(
          412,
          'LeaseNotPresentWithFileOperation',
          'There is currently no lease on the file, but a lease ID was specified.',
        );
      return;
    }
    if (leaseId === undefined)
      throw new FilesError(
        412,
        'LeaseIdMissing',
        'There is currently a lease on the file and no lease ID was specified in the request.',
      );
    if (leaseId !== f.leaseId)
      throw new FilesError(
        412,
        'LeaseIdMismatchWithFileOperation',
        'The lease ID specified did not match the lease ID for the file.',
      );
  }

  function touch(f: { etag: string; lastModified: Date }) {
    f.etag = nextEtag();
    f.lastModified = new Date();
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
    res.setHeader('x-ms-lease-state', f.leaseId ? 'leased' : 'available');
    res.setHeader('x-ms-lease-status', f.leaseId ? 'locked' : 'unlocked');
    if (f.leaseId) res.setHeader('x-ms-lease-duration', 'infinite');
    for (const [k, v] of Object.entries(f.metadata)) res.setHeader(`x-ms-meta-${k}`, v);
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
      if (!header(req, 'authorization'))
        throw new FilesError(
          401,
          'NoAuthenticationInformation',
          'Server failed to authenticate the request.',
        );
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
        const existing = shares.get(share);
        if (existing) throw new FilesError(409, 'ShareAlreadyExists', 'The specified share already exists.');
        const s: ShareState = {
          etag: nextEtag(),
          lastModified: new Date(),
          directories: new Set(['']),
          files: new Map(),
        };
        shares.set(share, s);
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
        requireParent(s, path);
        if (s.directories.has(path) || s.files.has(path))
          throw new FilesError(409, 'ResourceAlreadyExists', 'The specified resource already exists.');
        s.directories.add(path);
        res.setHeader('ETag', nextEtag());
        res.setHeader('Last-Modified', new Date().toUTCString());
        res.setHeader('x-ms-request-server-encrypted', 'false');
        res.setHeader('x-ms-file-attributes', 'Directory');
        return { code: 201 };
      }
      case 'getDirectoryProperties': {
        const s = requireShare(share);
        if (!s.directories.has(path))
          throw new FilesError(404, 'ResourceNotFound', 'The specified resource does not exist.');
        res.setHeader('ETag', s.etag);
        res.setHeader('Last-Modified', s.lastModified.toUTCString());
        return { code: 200 };
      }
      case 'createFile': {
        const s = requireShare(share);
        requireParent(s, path);
        if (s.directories.has(path))
          throw new FilesError(409, 'ResourceAlreadyExists', 'The specified resource already exists.');
        const size = Number(header(req, 'x-ms-content-length'));
        if (!Number.isSafeInteger(size) || size < 0)
          throw new FilesError(400, 'InvalidHeaderValue', 'The value for x-ms-content-length is not valid.');
        const existing = s.files.get(path);
        checkWriteLease(existing, leaseId);
        const f: FileEntry = {
          content: Buffer.alloc(size),
          metadata: metadataFrom(req),
          contentType: header(req, 'x-ms-content-type') ?? 'application/octet-stream',
          etag: nextEtag(),
          lastModified: new Date(),
          leaseId: existing?.leaseId,
        };
        s.files.set(path, f);
        fileHeaders(res, f);
        res.setHeader('x-ms-request-server-encrypted', 'false');
        return { code: 201 };
      }
      case 'putRange': {
        const f = requireFile(requireShare(share), path);
        checkWriteLease(f, leaseId);
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
        checkWriteLease(f, leaseId);
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
        checkWriteLease(f, leaseId);
        f.metadata = metadataFrom(req);
        touch(f);
        fileHeaders(res, f);
        return { code: 200 };
      }
      case 'deleteFile': {
        const s = requireShare(share);
        const f = requireFile(s, path);
        checkWriteLease(f, leaseId);
        s.files.delete(path);
        return { code: 202 };
      }
      case 'rename': {
        const s = requireShare(share);
        const sourceHeader = header(req, 'x-ms-file-rename-source');
        if (!sourceHeader)
          throw new FilesError(400, 'MissingRequiredHeader', 'x-ms-file-rename-source is required.');
        const source = locate(new URL(sourceHeader, 'http://localhost').pathname);
        if (source.share !== share)
          throw new FilesError(400, 'InvalidHeaderValue', 'The rename source must be in the same share.');
        const f = requireFile(s, source.path);
        requireParent(s, path);
        if (f.leaseId !== undefined && header(req, 'x-ms-source-lease-id') !== f.leaseId)
          throw new FilesError(412, 'LeaseIdMismatchWithFileOperation', 'The source file is leased.');
        const target = s.files.get(path);
        if (s.directories.has(path))
          throw new FilesError(409, 'ResourceAlreadyExists', 'The specified resource already exists.');
        if (target && source.path !== path) {
          if (header(req, 'x-ms-file-rename-replace-if-exists')?.toLowerCase() !== 'true')
            throw new FilesError(409, 'ResourceAlreadyExists', 'The specified resource already exists.');
          const destLease = header(req, 'x-ms-destination-lease-id');
          if (target.leaseId !== undefined && destLease !== target.leaseId)
            throw new FilesError(
              412,
              destLease === undefined ? 'LeaseIdMissing' : 'LeaseIdMismatchWithFileOperation',
              'The destination file is leased.',
            );
        }
        s.files.delete(source.path);
        touch(f);
        s.files.set(path, f);
        fileHeaders(res, f);
        return { code: 200 };
      }
      case 'getFile': {
        const f = requireFile(requireShare(share), path);
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
    fileHeaders(res, f);
    switch (action) {
      case 'acquire': {
        if (header(req, 'x-ms-lease-duration') !== '-1')
          throw new FilesError(400, 'InvalidHeaderValue', 'File leases must have an infinite duration (-1).');
        if (proposed !== undefined && !guid.test(proposed))
          throw new FilesError(400, 'InvalidHeaderValue', 'The proposed lease id is not a GUID.');
        if (f.leaseId !== undefined && f.leaseId !== proposed)
          throw new FilesError(409, 'LeaseAlreadyPresent', 'There is already a lease present.');
        f.leaseId = proposed ?? randomUUID();
        res.setHeader('x-ms-lease-id', f.leaseId);
        return { code: 201 };
      }
      case 'release': {
        if (f.leaseId === undefined)
          throw new FilesError(
            409,
            'LeaseNotPresentWithLeaseOperation',
            'There is currently no lease on the file.',
          );
        if (leaseId !== f.leaseId)
          throw new FilesError(
            409,
            'LeaseIdMismatchWithLeaseOperation',
            'The lease ID specified did not match the lease ID for the file.',
          );
        f.leaseId = undefined;
        return { code: 200 };
      }
      case 'change': {
        if (f.leaseId === undefined)
          throw new FilesError(
            409,
            'LeaseNotPresentWithLeaseOperation',
            'There is currently no lease on the file.',
          );
        if (!proposed || !guid.test(proposed))
          throw new FilesError(400, 'InvalidHeaderValue', 'The proposed lease id is missing or not a GUID.');
        if (leaseId !== f.leaseId && proposed !== f.leaseId)
          throw new FilesError(
            409,
            'LeaseIdMismatchWithLeaseOperation',
            'The lease ID specified did not match the lease ID for the file.',
          );
        f.leaseId = proposed;
        res.setHeader('x-ms-lease-id', f.leaseId);
        return { code: 200 };
      }
      case 'break': {
        if (f.leaseId === undefined)
          throw new FilesError(
            409,
            'LeaseNotPresentWithLeaseOperation',
            'There is currently no lease on the file.',
          );
        if (leaseId !== undefined && leaseId !== f.leaseId)
          throw new FilesError(
            409,
            'LeaseIdMismatchWithLeaseOperation',
            'The lease ID specified did not match the lease ID for the file.',
          );
        f.leaseId = undefined;
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

  return {
    port,
    account,
    connectionString: [
      'DefaultEndpointsProtocol=http',
      `AccountName=${account}`,
      `AccountKey=${AZURITE_KEY}`,
      `FileEndpoint=http://127.0.0.1:${port}/${account}`,
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
    fileContent(share: string, path: string) {
      const f = lookupFile(share, path);
      return f ? Buffer.from(f.content) : undefined;
    },
    filePaths(share: string) {
      return [...(shares.get(share)?.files.keys() ?? [])].sort();
    },
    fileMetadata(share: string, path: string) {
      const f = lookupFile(share, path);
      return f ? { ...f.metadata } : undefined;
    },
    fileLeaseId(share: string, path: string) {
      return lookupFile(share, path)?.leaseId;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
