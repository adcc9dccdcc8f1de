/**
 * A records API for the `http` target: a real HTTP server on loopback that stores records in
 * memory. No dependencies beyond Node. Used by the tests and, later, by `npm start`.
 *
 * Routes (the http target's URL template is `<url>/records/{key}`):
 *   PUT | POST | DELETE /records/<url-encoded key>   body: { key, id, flow, version, deleted, data }
 *   POST /records                                    same body; the key comes from the body
 *   GET /records                                     every stored record (JSON array, by key)
 *   GET /records/<key>                               one record, or 404
 *
 * Modes:
 * - `versionChecked` keeps the "no duplicate effects" contract of docs/targets.md:
 *   an `Idempotency-Key` seen before (with the same request) replays the first answer with
 *   `Idempotent-Replayed: true` and changes nothing;
 *   a version not newer than the stored one is refused with 409 and changes nothing;
 *   a DELETE keeps a tombstone with its version.
 * - `naive` does neither: every write is applied (an older version overwrites a newer one, a
 *   redelivery is a second effect) and a DELETE removes the record, so a late older write
 *   brings it back. It is what an API that ignores the contract does.
 * Every write that changed something is appended to `effects` (think: the API's audit log, the
 * e-mail it sends, the row its webhook consumers see): the same key and version there twice
 * is a duplicated effect.
 *
 * Fault switches, consumed in order, one per request: failNext(n, status), hangNext(n) (reads the
 * request, never answers), throttleNext(n, retryAfter) (429 with Retry-After), loseAnswerNext(n)
 * (handles the request as usual, then drops the connection instead of answering: the client
 * cannot know whether its write happened, the case an Idempotency-Key exists for).
 */
import { createHash } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

export type RecordsApiMode = 'versionChecked' | 'naive';

export interface ApiRecord {
  key: string;
  /** Decimal string (may exceed 2^53). */
  version: string;
  deleted: boolean;
  data: Record<string, unknown>;
}

export interface ApiEffect {
  method: string;
  key: string;
  version: string;
  deleted: boolean;
}

export interface ApiRequestLog {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  status: number;
}

export interface RecordsApiSimulatorOptions {
  mode?: RecordsApiMode;
  /** Accepts or refuses a request by its headers (refused: 401). Default: every request. */
  authorize?: (headers: IncomingHttpHeaders) => boolean;
  /** Largest request body; larger: 413. Default 16 MiB. */
  maxBodyBytes?: number;
  port?: number;
}

type Fault =
  | { kind: 'fail'; status: number; body: (req: IncomingMessage) => string }
  | { kind: 'hang' }
  | { kind: 'throttle'; retryAfter: string }
  | { kind: 'loseAnswer' };

interface StoredAnswer {
  fingerprint: string;
  status: number;
  body: string;
}

export class RecordsApiSimulator {
  mode: RecordsApiMode;
  /** Base URL, e.g. http://127.0.0.1:54321 */
  url = '';
  readonly effects: ApiEffect[] = [];
  readonly requests: ApiRequestLog[] = [];
  private readonly store = new Map<string, ApiRecord>();
  private readonly answers = new Map<string, StoredAnswer>();
  private readonly faults: Fault[] = [];
  private readonly hanging = new Set<ServerResponse>();
  private readonly losing = new WeakSet<ServerResponse>();
  private readonly server: Server;

  constructor(private readonly o: RecordsApiSimulatorOptions = {}) {
    this.mode = o.mode ?? 'versionChecked';
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        if (!res.headersSent) this.answer(req, res, 500, { error: 'internal', message: String(e) });
      });
    });
  }

  /** The http target's URL template for this API. */
  get urlTemplate(): string {
    return `${this.url}/records/{key}`;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(this.o.port ?? 0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.hanging.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Stored records (tombstones included), by key. */
  records(): ApiRecord[] {
    return [...this.store.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  get(key: string): ApiRecord | undefined {
    return this.store.get(key);
  }

  /** Effects per `key|version`: a count above 1 is a duplicated effect. */
  effectCounts(): Map<string, number> {
    const m = new Map<string, number>();
    for (const e of this.effects) m.set(`${e.key}|${e.version}`, (m.get(`${e.key}|${e.version}`) ?? 0) + 1);
    return m;
  }

  /** The next n requests answer `status` (with `body`, a function of the request if you like). */
  failNext(n: number, status: number, body: string | ((req: IncomingMessage) => string) = ''): void {
    const f = typeof body === 'function' ? body : () => body;
    for (let i = 0; i < n; i++) this.faults.push({ kind: 'fail', status, body: f });
  }

  /** The next n requests are read and never answered (until the client gives up or close()). */
  hangNext(n: number): void {
    for (let i = 0; i < n; i++) this.faults.push({ kind: 'hang' });
  }

  /** The next n requests answer 429 with `Retry-After: retryAfter` (seconds or an HTTP date). */
  throttleNext(n: number, retryAfter: number | string): void {
    for (let i = 0; i < n; i++) this.faults.push({ kind: 'throttle', retryAfter: String(retryAfter) });
  }

  /** The next n requests are handled, then their connection is dropped without an answer. */
  loseAnswerNext(n: number): void {
    for (let i = 0; i < n; i++) this.faults.push({ kind: 'loseAnswer' });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await this.readBody(req);
    if (raw === undefined) return this.answer(req, res, 413, { error: 'payload_too_large' });
    const fault = this.faults.shift();
    if (fault?.kind === 'hang') {
      this.hanging.add(res);
      res.on('close', () => this.hanging.delete(res));
      this.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, status: 0 });
      return;
    }
    if (fault?.kind === 'loseAnswer') this.losing.add(res);
    if (fault?.kind === 'fail') return this.answerText(req, res, fault.status, fault.body(req));
    if (fault?.kind === 'throttle')
      return this.answer(req, res, 429, { error: 'too_many_requests' }, { 'retry-after': fault.retryAfter });
    if (this.o.authorize && !this.o.authorize(req.headers))
      return this.answer(req, res, 401, { error: 'unauthorized' }, { 'www-authenticate': 'Bearer' });

    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    const m = /^\/records(?:\/(.*))?$/.exec(url.pathname);
    if (!m) return this.answer(req, res, 404, { error: 'not_found' });
    let pathKey: string | undefined;
    try {
      pathKey = m[1] === undefined || m[1] === '' ? undefined : decodeURIComponent(m[1]);
    } catch {
      return this.answer(req, res, 400, { error: 'bad_key' });
    }
    if (method === 'GET') {
      if (pathKey === undefined) return this.answer(req, res, 200, this.records());
      const r = this.store.get(pathKey);
      return r ? this.answer(req, res, 200, r) : this.answer(req, res, 404, { error: 'not_found' });
    }
    if (!['PUT', 'POST', 'DELETE'].includes(method) || (method !== 'POST' && pathKey === undefined))
      return this.answer(req, res, 405, { error: 'method_not_allowed' });

    const body = parseBody(raw.toString('utf8'));
    if (typeof body === 'string') return this.answer(req, res, 400, { error: 'bad_body', message: body });
    if (pathKey !== undefined && pathKey !== body.key)
      return this.answer(req, res, 400, {
        error: 'key_mismatch',
        message: 'the body key differs from the URL key',
      });

    if (this.mode === 'naive') return this.naive(req, res, method, body);

    const idem = header(req.headers, 'idempotency-key');
    const fingerprint = createHash('sha256').update(`${method} ${body.key}\n`).update(raw).digest('hex');
    // A key seen before with the same request replays the first answer. The same key with
    // another request (same version, other data) is left to the version check, which refuses it.
    const seen = idem === undefined ? undefined : this.answers.get(idem);
    if (seen?.fingerprint === fingerprint)
      return this.answerText(req, res, seen.status, seen.body, { 'idempotent-replayed': 'true' });
    const stored = this.store.get(body.key);
    if (stored && BigInt(stored.version) >= BigInt(body.version))
      return this.answer(req, res, 409, { error: 'not_newer', storedVersion: stored.version });
    const deleted = method === 'DELETE' || body.deleted;
    this.store.set(body.key, { key: body.key, version: body.version, deleted, data: body.data });
    this.effects.push({ method, key: body.key, version: body.version, deleted });
    const status = stored ? 200 : 201;
    const answer = JSON.stringify({ key: body.key, version: body.version, deleted });
    if (idem !== undefined) this.answers.set(idem, { fingerprint, status, body: answer });
    return this.answerText(req, res, status, answer);
  }

  private naive(req: IncomingMessage, res: ServerResponse, method: string, body: ParsedBody): void {
    if (method === 'DELETE') this.store.delete(body.key);
    else
      this.store.set(body.key, {
        key: body.key,
        version: body.version,
        deleted: body.deleted,
        data: body.data,
      });
    this.effects.push({
      method,
      key: body.key,
      version: body.version,
      deleted: method === 'DELETE' || body.deleted,
    });
    this.answer(req, res, 200, { key: body.key, version: body.version });
  }

  private async readBody(req: IncomingMessage): Promise<Buffer | undefined> {
    const max = this.o.maxBodyBytes ?? 16 * 1024 * 1024;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) return undefined;
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  private answer(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    this.answerText(req, res, status, JSON.stringify(body), headers);
  }

  private answerText(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    text: string,
    headers: Record<string, string> = {},
  ): void {
    if (this.losing.has(res)) {
      this.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, status: 0 });
      res.destroy();
      return;
    }
    this.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, status });
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(text);
  }
}

interface ParsedBody {
  key: string;
  version: string;
  deleted: boolean;
  data: Record<string, unknown>;
}

/** The body, or a string saying what is wrong with it. */
function parseBody(text: string): ParsedBody | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a JSON object';
  const b = v as Record<string, unknown>;
  if (typeof b.key !== 'string' || b.key === '') return 'key: a non-empty string is required';
  if (typeof b.version !== 'string' || !/^\d+$/.test(b.version))
    return 'version: a decimal string is required';
  if (typeof b.deleted !== 'boolean') return 'deleted: a boolean is required';
  if (typeof b.data !== 'object' || b.data === null || Array.isArray(b.data))
    return 'data: an object is required';
  return { key: b.key, version: b.version, deleted: b.deleted, data: b.data as Record<string, unknown> };
}

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

export async function startRecordsApiSimulator(
  o: RecordsApiSimulatorOptions = {},
): Promise<RecordsApiSimulator> {
  return new RecordsApiSimulator(o).start();
}
