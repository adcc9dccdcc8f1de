/**
 * The HTTP side of the local host: a node:http server on 127.0.0.1 that routes
 * `/<routePrefix>/<route or function name>` to HTTP-triggered functions, turns the raw request
 * into an `HttpRequest` from `@azure/functions` (body as the raw bytes, so signatures can be
 * checked on them) and writes the function's `HttpResponse` / `HttpResponseInit`.
 *
 * Like `func start`, the local host does NOT enforce function keys: `authLevel: 'function'`
 * routes answer without a `code` / `x-functions-key`. Do not expose this port beyond loopback.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpResponse, type HttpResponseInit } from '@azure/functions';
import { findRoute, type CompiledRoute } from './http-routes';
import type { RpcHttpRequest } from './rpc';

/** The Functions host's default request size limit (100 MB). */
const MAX_BODY_BYTES = 100 * 1024 * 1024;

export interface HttpTarget {
  functionName: string;
}

export type HttpInvoke = (functionName: string, request: RpcHttpRequest) => Promise<HttpResponseInit>;

export interface LocalHttpServer {
  readonly url: string;
  close(): Promise<void>;
}

export interface HttpServerOptions {
  port: number;
  routePrefix: string;
  routes: CompiledRoute<HttpTarget>[];
  invoke: HttpInvoke;
  log: (level: 'info' | 'warn' | 'error', line: string) => void;
}

interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

function sendJson(
  res: http.ServerResponse,
  status: number,
  body: ErrorBody,
  headers: Record<string, string> = {},
) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
  });
  res.end(text);
}

async function readBody(req: http.IncomingMessage): Promise<Buffer | 'tooLarge'> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return 'tooLarge';
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * Every header, repeated ones joined with ", " (Fetch semantics, as the Functions host passes
 * them). `req.headers` would silently keep only the first of a repeated Content-Type,
 * Authorization, ...: a request Azure refuses would pass locally.
 */
function headerRecord(req: http.IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (values === undefined) continue;
    headers[name] = values.join(', ');
  }
  return headers;
}

/** Splits a path into decoded segments below the route prefix; null when outside it. */
function pathBelowPrefix(pathname: string, routePrefix: string): string[] | null {
  const segments = pathname.split('/').filter((s) => s !== '');
  const prefix = routePrefix.split('/').filter((s) => s !== '');
  for (let i = 0; i < prefix.length; i++) {
    if (segments[i]?.toLowerCase() !== prefix[i]!.toLowerCase()) return null;
  }
  try {
    return segments.slice(prefix.length).map((s) => decodeURIComponent(s));
  } catch {
    return null;
  }
}

/** The request's absolute URL, as the caller addressed it (Host header) when that is well-formed. */
function requestUrl(req: http.IncomingMessage, fallbackBase: string): URL {
  const host = req.headers.host;
  if (host && /^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:.]+\](:\d+)?$/.test(host)) {
    try {
      return new URL(req.url ?? '/', `http://${host}`);
    } catch {
      // fall through to the listening address
    }
  }
  return new URL(req.url ?? '/', fallbackBase);
}

/** Converts what a handler returned (or set as its http output) into an HttpResponse. */
export function toHttpResponse(result: unknown): HttpResponse {
  if (result instanceof HttpResponse) return result;
  if (result === undefined || result === null) return new HttpResponse({ status: 204 });
  if (typeof result !== 'object') return new HttpResponse({ body: String(result) });
  const init = result as HttpResponseInit;
  return new HttpResponse({ ...init, status: init.status ?? 200 });
}

function serializeCookies(response: HttpResponse): string[] {
  return response.cookies.map((c) => {
    const parts = [`${c.name}=${c.value}`];
    if (c.domain) parts.push(`Domain=${c.domain}`);
    if (c.path) parts.push(`Path=${c.path}`);
    if (c.expires) parts.push(`Expires=${new Date(c.expires).toUTCString()}`);
    if (c.maxAge !== undefined) parts.push(`Max-Age=${c.maxAge}`);
    if (c.secure) parts.push('Secure');
    if (c.httpOnly) parts.push('HttpOnly');
    if (c.sameSite) parts.push(`SameSite=${c.sameSite}`);
    return parts.join('; ');
  });
}

export async function startHttpServer(o: HttpServerOptions): Promise<LocalHttpServer> {
  const server = http.createServer((req, res) => {
    void handle(req, res).catch((e: unknown) => {
      o.log('error', `HTTP ${req.method} ${req.url?.split('?')[0]}: ${(e as Error).message}`);
      if (!res.headersSent)
        sendJson(res, 500, { error: { code: 'InternalServerError', message: 'The request failed.' } });
      else res.destroy();
    });
  });

  let baseUrl = '';

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const url = requestUrl(req, baseUrl);
    const path = pathBelowPrefix(url.pathname, o.routePrefix);
    const lookup = path ? findRoute(o.routes, method, path) : ({ kind: 'notFound' } as const);
    if (lookup.kind === 'notFound') {
      req.resume();
      sendJson(res, 404, { error: { code: 'NotFound', message: `No function handles ${url.pathname}.` } });
      return;
    }
    if (lookup.kind === 'methodNotAllowed') {
      req.resume();
      sendJson(
        res,
        405,
        { error: { code: 'MethodNotAllowed', message: `${method} is not allowed on ${url.pathname}.` } },
        { allow: lookup.allowed.join(', ') },
      );
      return;
    }
    const body = await readBody(req);
    if (body === 'tooLarge') {
      sendJson(res, 413, { error: { code: 'PayloadTooLarge', message: 'The request body is too large.' } });
      return;
    }
    const { route, params } = lookup.match;
    // What the host sends the worker for an HTTP trigger (`RpcHttp`); the worker makes the HttpRequest.
    const request: RpcHttpRequest = {
      method,
      url: url.href,
      headers: headerRecord(req),
      query: Object.fromEntries(url.searchParams),
      params,
      body: body.length > 0 ? { bytes: body } : undefined,
    };
    let result: unknown;
    try {
      result = await o.invoke(route.target.functionName, request);
    } catch {
      // The invocation logged the failure; the caller gets no message, stack or secret.
      sendJson(res, 500, {
        error: { code: 'InternalServerError', message: 'The function failed. See the host log for details.' },
      });
      return;
    }
    const response = toHttpResponse(result);
    const payload = method === 'HEAD' ? Buffer.alloc(0) : Buffer.from(await response.arrayBuffer());
    const headers: Record<string, string | string[]> = {};
    response.headers.forEach((value, name) => {
      headers[name] = value;
    });
    const cookies = serializeCookies(response);
    if (cookies.length > 0) headers['set-cookie'] = cookies;
    if (method !== 'HEAD') headers['content-length'] = String(payload.length);
    res.writeHead(response.status, headers);
    res.end(payload);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  baseUrl = `http://127.0.0.1:${port}`;

  return {
    url: baseUrl,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeIdleConnections();
      }),
  };
}
