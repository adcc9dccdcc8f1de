/**
 * A Dynamics 365 Finance & Operations simulator: a real HTTPS server on loopback with the shapes
 * and quirks of the parts syncbridge uses. Used by `npm start`, the tests and the benchmark;
 * never deployed.
 *
 * TLS: a self-signed certificate for localhost / 127.0.0.1 / ::1 is made at start (`caPem`).
 * The app's downloader is https-only even in tests; a test or the local host trusts `caPem` and
 * allows loopback through the downloader's `unsafeTestOnly` options (never from configuration).
 *
 * What it serves:
 * - Exports: plain entity files (CSV, XML, JSON) and data packages (zip with Manifest.xml,
 *   PackageHeader.xml and one file per entity), generated from rows on each download (a row
 *   function streams millions of rows without holding them).
 * - SAS-like download URLs: `/blob/exports/<id>/<file>?sv&se&sr&sp&sig`, valid until `se`
 *   (default one hour): an expired or tampered URL answers 403 `AuthenticationFailed` and an
 *   unknown blob 404 `BlobNotFound`, with Azure Storage's XML error body and x-ms-error-code.
 * - The business-event sender: POSTs a "Data export" event (DownloadURL, EntityName,
 *   ExecutionId, an increasing ControlNumber beyond 2^32) or the endpoint-activation test event
 *   (`BusinessEventsTestEndpointContract`) to a URL.
 * - Entra client-credentials tokens: `POST /<tenant>/oauth2/v2.0/token` (client_id,
 *   client_secret, scope `<base>/.default`); every API below wants `Authorization: Bearer`.
 * - The package API: `POST /data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.
 *   ExportToPackage | GetExecutionSummaryStatus | GetExportedPackageUrl`, answers `{"value": ...}`
 *   (GetExportedPackageUrl optionally `{"value": {"value": url}}`), fresh URLs on request.
 * - Recurring integrations: `GET /api/connector/dequeue/<activity>` (200 with CorrelationId,
 *   PopReceipt and an **http://** DownloadLocation, as production does; 204 when empty),
 *   `GET /api/connector/download/<id>` (bearer), `POST /api/connector/ack/<activity>` with the
 *   dequeue body. A dequeued message not acknowledged within `redeliveryMs` (default 30 min)
 *   is delivered again with a new PopReceipt.
 * - Fault switches: answer a status (with Retry-After) to the next n requests of a route, hang,
 *   cut a download short, redirect a download to the same or another host, slow every answer.
 * - A virtual clock (`advance(ms)`) moves URL expiry, token expiry and re-delivery in tests.
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import type { TokenCredential } from '@azure/identity';
import { generate } from 'selfsigned';
import { dataPackage, exportFile, type ExportRow, type TextFormat } from './finops-export-files';

export type FinOpsRoute =
  'download' | 'token' | 'package-api' | 'dequeue' | 'ack' | 'connector-download' | 'any';

export interface FinOpsSimulatorOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  tenantId?: string;
  clientId?: string;
  clientSecret?: string;
  /** Lifetime of a download URL; default one hour. */
  urlTtlMs?: number;
  /** Re-delivery of a dequeued, unacknowledged message; default 30 minutes. */
  redeliveryMs?: number;
  /** How long an ExportToPackage execution stays Executing; default 0. */
  executionMs?: number;
  /** GetExportedPackageUrl's answer: `{"value": url}` (default) or `{"value": {"value": url}}`. */
  packageUrlShape?: 'string' | 'nested';
  /** Lifetime of a token; default 3599 s. */
  tokenTtlMs?: number;
}

export interface EntitySpec {
  entity: string;
  format: TextFormat;
  columns: readonly string[];
  /** The rows, or a function giving them afresh for each download (large exports). */
  rows: Iterable<ExportRow> | (() => Iterable<ExportRow>);
  fileName?: string;
}

export interface ExportHandle {
  exportId: string;
  executionId: string;
  fileName: string;
  /** The entity named in events (a package's first entity). */
  entity: string;
}

interface StoredExport extends ExportHandle {
  kind: 'file' | 'package';
  entities: EntitySpec[];
}

interface QueuedMessage {
  correlationId: string;
  exportId: string;
  popReceipt?: string;
  dequeuedAt?: number;
  acked: boolean;
  deliveries: number;
}

interface Execution {
  exportId: string;
  startedAt: number;
  status?: string;
}

interface FaultRule {
  route: FinOpsRoute;
  n: number;
  action:
    | { kind: 'status'; status: number; retryAfterSeconds?: number }
    | { kind: 'hang' }
    | { kind: 'truncate' }
    | { kind: 'stall' }
    | { kind: 'redirect'; to: 'same-host' | 'other-host' };
}

export interface FinOpsFaults {
  /** The next n requests of `route` answer `status` (default 500), with Retry-After if given. */
  failNext(n: number, o?: { status?: number; retryAfterSeconds?: number; route?: FinOpsRoute }): void;
  /** The next n requests of `route` are accepted and never answered. */
  hangNext(n: number, route?: FinOpsRoute): void;
  /** The next n downloads send part of the body, then the connection is cut. */
  truncateNext(n: number, route?: 'download' | 'connector-download'): void;
  /** The next n downloads send part of the body, then nothing more (the connection stays open). */
  stallNext(n: number, route?: 'download' | 'connector-download'): void;
  /** The next n downloads answer 302 to the same path on the same host, or on `localhost` (another host name). */
  redirectNext(n: number, to: 'same-host' | 'other-host'): void;
  /** Delay before any answer. */
  slowMs: number;
  /** Clears every pending fault. */
  clear(): void;
}

export interface FinOpsStats {
  requests: number;
  byRoute: Partial<Record<FinOpsRoute | 'other', number>>;
  downloadsCompleted: number;
  tokensIssued: number;
  eventsSent: number;
}

const DM_ACTIONS = '/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.';

export class FinOpsSimulator {
  readonly baseUrl: string;
  /** The certificate clients must trust (PEM). */
  readonly caPem: string;
  readonly tenantId: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly stats: FinOpsStats = {
    requests: 0,
    byRoute: {},
    downloadsCompleted: 0,
    tokensIssued: 0,
    eventsSent: 0,
  };
  readonly faults: FinOpsFaults;
  /** Test hook: runs when a message is acknowledged, before the answer (to see the app's state at ack time). */
  onAck?: (correlationId: string) => void | Promise<void>;

  private readonly exports = new Map<string, StoredExport>();
  private readonly executions = new Map<string, Execution>();
  private readonly groups = new Map<string, EntitySpec[]>();
  private readonly queues = new Map<string, QueuedMessage[]>();
  private readonly tokens = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  private readonly sasKey = randomBytes(32);
  private rules: FaultRule[] = [];
  private clockOffsetMs = 0;
  private nextControlNumber = 5637611083n;

  private constructor(
    private readonly server: Server,
    private readonly o: FinOpsSimulatorOptions,
    caPem: string,
    port: number,
    host: string,
  ) {
    this.caPem = caPem;
    this.baseUrl = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.tenantId = o.tenantId ?? 'sim-tenant';
    this.clientId = o.clientId ?? 'syncbridge-local';
    this.clientSecret = o.clientSecret ?? 'local-dev-secret';
    const add = (rule: FaultRule) => this.rules.push(rule);
    this.faults = {
      failNext: (n, f = {}) =>
        add({
          route: f.route ?? 'any',
          n,
          action: { kind: 'status', status: f.status ?? 500, retryAfterSeconds: f.retryAfterSeconds },
        }),
      hangNext: (n, route = 'any') => add({ route, n, action: { kind: 'hang' } }),
      truncateNext: (n, route = 'download') => add({ route, n, action: { kind: 'truncate' } }),
      stallNext: (n, route = 'download') => add({ route, n, action: { kind: 'stall' } }),
      redirectNext: (n, to) => add({ route: 'download', n, action: { kind: 'redirect', to } }),
      slowMs: 0,
      clear: () => {
        this.rules = [];
      },
    };
  }

  static async start(o: FinOpsSimulatorOptions = {}): Promise<FinOpsSimulator> {
    const host = o.host ?? '127.0.0.1';
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      notBeforeDate: new Date(Date.now() - 60_000),
      extensions: [
        {
          name: 'subjectAltName',
          altNames: [
            { type: 2, value: 'localhost' },
            { type: 7, ip: '127.0.0.1' },
            { type: 7, ip: '::1' },
          ],
        },
      ],
    });
    // The server exists before the simulator object that handles its requests.
    const ref: { sim?: FinOpsSimulator } = {};
    const server = createServer({ key: pems.private, cert: pems.cert }, (req, res) => {
      void ref.sim!.handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port ?? 0, host, () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    const sim = new FinOpsSimulator(server, o, pems.cert, port, host);
    ref.sim = sim;
    server.on('connection', (s: Socket) => {
      sim.sockets.add(s);
      s.on('close', () => sim.sockets.delete(s));
    });
    return sim;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The simulated F&O environment's now (real time plus `advance`). */
  now(): number {
    return Date.now() + this.clockOffsetMs;
  }

  /** Moves the simulator's clock forward (URL and token expiry, re-delivery, executions). */
  advance(ms: number): void {
    this.clockOffsetMs += ms;
  }

  /** The scope a client asks a token for: `<base>/.default`. */
  get scope(): string {
    return `${this.baseUrl}/.default`;
  }

  get tokenUrl(): string {
    return `${this.baseUrl}/${encodeURIComponent(this.tenantId)}/oauth2/v2.0/token`;
  }

  // ---- exports ----------------------------------------------------------------------------

  /** A plain entity file export. */
  addExport(spec: EntitySpec & { executionId?: string }): ExportHandle {
    const fileName = spec.fileName ?? `${spec.entity}.${spec.format}`;
    return this.store({
      kind: 'file',
      entities: [{ ...spec, fileName }],
      fileName,
      entity: spec.entity,
      executionId: spec.executionId,
    });
  }

  /** A data package export (zip). */
  addPackage(entities: EntitySpec[], o: { fileName?: string; executionId?: string } = {}): ExportHandle {
    if (entities.length === 0) throw new Error('a package needs at least one entity');
    return this.store({
      kind: 'package',
      entities,
      fileName: o.fileName ?? `${entities[0]!.entity} package.zip`,
      entity: entities[0]!.entity,
      executionId: o.executionId,
    });
  }

  private store(e: Omit<StoredExport, 'exportId' | 'executionId'> & { executionId?: string }): ExportHandle {
    const exportId = randomUUID();
    const executionId = e.executionId ?? `ExportPackage-${randomUUID()}`;
    const stored: StoredExport = { ...e, exportId, executionId };
    this.exports.set(exportId, stored);
    this.executions.set(executionId, {
      exportId,
      startedAt: this.now() - (this.o.executionMs ?? 0),
      status: 'Succeeded',
    });
    return { exportId, executionId, fileName: stored.fileName, entity: stored.entity };
  }

  /** A SAS-like URL of an export, valid for `ttlMs` (default `urlTtlMs`, one hour). */
  downloadUrl(exportId: string, ttlMs: number = this.o.urlTtlMs ?? 3_600_000): string {
    const e = this.exports.get(exportId);
    const fileName = e?.fileName ?? 'missing.csv';
    const se = new Date(this.now() + ttlMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const sig = this.sign(exportId, se);
    const q = new URLSearchParams({ sv: '2022-11-02', se, sr: 'b', sp: 'r', sig });
    return `${this.baseUrl}/blob/exports/${exportId}/${encodeURIComponent(fileName)}?${q.toString()}`;
  }

  private sign(exportId: string, se: string): string {
    return createHmac('sha256', this.sasKey).update(`r\n${se}\n/exports/${exportId}`).digest('base64');
  }

  // ---- business events ----------------------------------------------------------------------

  /** The JSON of a Data export event for an export (ControlNumber written with every digit). */
  businessEventJson(
    handle: ExportHandle,
    o: {
      controlNumber?: bigint;
      eventId?: string;
      businessEventId?: string;
      urlTtlMs?: number;
      extra?: Record<string, unknown>;
    } = {},
  ): { json: string; controlNumber: bigint; eventId: string } {
    const controlNumber = o.controlNumber ?? this.takeControlNumber();
    const eventId = o.eventId ?? randomUUID().toUpperCase();
    const now = this.now();
    const body = {
      BusinessEventId: o.businessEventId ?? 'DataExportBusinessEvent',
      BusinessEventLegalEntity: 'USMF',
      ContextRecordSubject: '',
      ControlNumber: '__CONTROL_NUMBER__',
      DownloadURL: this.downloadUrl(handle.exportId, o.urlTtlMs),
      EntityName: handle.entity,
      EventId: eventId,
      EventTime: `/Date(${now})/`,
      EventTimeIso8601: new Date(now).toISOString().replace('Z', '0000Z'),
      ExecutionId: handle.executionId,
      InitiatingUserAADObjectId: '{00000000-0000-0000-0000-000000000000}',
      MajorVersion: 0,
      MinorVersion: 0,
      ParentContextRecordSubjects: [],
      ...(o.extra ?? {}),
    };
    return {
      json: JSON.stringify(body).replace('"__CONTROL_NUMBER__"', controlNumber.toString()),
      controlNumber,
      eventId,
    };
  }

  /** POSTs a Data export event for an export to `targetUrl` (the app's webhook). */
  async sendBusinessEvent(
    targetUrl: string,
    handle: ExportHandle,
    o: Parameters<FinOpsSimulator['businessEventJson']>[1] & { headers?: Record<string, string> } = {},
  ): Promise<{ status: number; body: string; controlNumber: bigint; eventId: string; json: string }> {
    const e = this.businessEventJson(handle, o);
    const res = await this.post(targetUrl, e.json, o.headers);
    return { ...res, ...e };
  }

  /** POSTs the endpoint-activation test event F&O sends when an endpoint is set up. */
  async sendActivationTestEvent(
    targetUrl: string,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: string }> {
    const json = `{"BusinessEventId":"BusinessEventsTestEndpointContract","BusinessEventLegalEntity":"USMF","ControlNumber":-9223372036854775808,"EventId":"${randomUUID().toUpperCase()}"}`;
    return this.post(targetUrl, json, headers);
  }

  private takeControlNumber(): bigint {
    // Increasing, with gaps, as F&O's are.
    this.nextControlNumber += 1n + BigInt(Math.floor(Math.random() * 5));
    return this.nextControlNumber;
  }

  private async post(
    url: string,
    json: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: string }> {
    this.stats.eventsSent++;
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: json,
    });
    return { status: res.status, body: await res.text() };
  }

  // ---- recurring integrations ---------------------------------------------------------------

  /** Puts an export on an activity's queue, as a recurring export job does. */
  enqueue(activityId: string, handle: ExportHandle): { correlationId: string } {
    const q = this.queues.get(activityId.toLowerCase()) ?? [];
    this.queues.set(activityId.toLowerCase(), q);
    const correlationId = randomUUID();
    q.push({ correlationId, exportId: handle.exportId, acked: false, deliveries: 0 });
    return { correlationId };
  }

  /** The messages of an activity: how often each was delivered and whether it was acknowledged. */
  activity(activityId: string): { correlationId: string; deliveries: number; acked: boolean }[] {
    return (this.queues.get(activityId.toLowerCase()) ?? []).map((m) => ({
      correlationId: m.correlationId,
      deliveries: m.deliveries,
      acked: m.acked,
    }));
  }

  // ---- package API --------------------------------------------------------------------------

  /** A definition group (export project) ExportToPackage can run. */
  defineGroup(definitionGroupId: string, entities: EntitySpec[]): void {
    this.groups.set(definitionGroupId.toLowerCase(), entities);
  }

  /** An Entra token for tests and the local host (what the client-credentials flow returns). */
  credential(): TokenCredential {
    return {
      getToken: async (scopes) => {
        const scope = Array.isArray(scopes) ? scopes.join(' ') : scopes;
        const form = new URLSearchParams({
          client_id: this.clientId,
          client_secret: this.clientSecret,
          grant_type: 'client_credentials',
          scope,
        });
        const { status, body } = await this.httpsPost(
          this.tokenUrl,
          form.toString(),
          'application/x-www-form-urlencoded',
        );
        if (status !== 200) throw new Error(`token endpoint answered ${status}: ${body}`);
        const t = JSON.parse(body) as { access_token: string; expires_in: number };
        return { token: t.access_token, expiresOnTimestamp: Date.now() + t.expires_in * 1000 };
      },
    };
  }

  private httpsPost(
    url: string,
    body: string,
    contentType: string,
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        url,
        { method: 'POST', ca: this.caPem, headers: { 'content-type': contentType } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  // ---- HTTP ---------------------------------------------------------------------------------

  private routeOf(method: string, path: string): FinOpsRoute | 'other' {
    if (method === 'GET' && path.startsWith('/blob/exports/')) return 'download';
    if (method === 'POST' && path.endsWith('/oauth2/v2.0/token')) return 'token';
    if (method === 'POST' && path.startsWith(DM_ACTIONS)) return 'package-api';
    if (method === 'GET' && path.startsWith('/api/connector/dequeue/')) return 'dequeue';
    if (method === 'GET' && path.startsWith('/api/connector/download/')) return 'connector-download';
    if (method === 'POST' && path.startsWith('/api/connector/ack/')) return 'ack';
    return 'other';
  }

  private takeFault(route: FinOpsRoute | 'other'): FaultRule['action'] | undefined {
    const i = this.rules.findIndex(
      (r) => r.n > 0 && (r.route === route || (r.route === 'any' && route !== 'other')),
    );
    if (i < 0) return undefined;
    const rule = this.rules[i]!;
    if (rule.action.kind === 'redirect' || rule.action.kind === 'truncate' || rule.action.kind === 'stall') {
      if (route !== 'download' && route !== 'connector-download') return undefined;
    }
    rule.n--;
    if (rule.n === 0) this.rules.splice(i, 1);
    return rule.action;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++;
    const url = new URL(req.url ?? '/', this.baseUrl);
    const route = this.routeOf(req.method ?? 'GET', url.pathname);
    this.stats.byRoute[route] = (this.stats.byRoute[route] ?? 0) + 1;
    if (this.faults.slowMs > 0) await new Promise((r) => setTimeout(r, this.faults.slowMs));
    const fault = this.takeFault(route);
    if (fault?.kind === 'hang') return;
    if (fault?.kind === 'status') {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
      res
        .writeHead(fault.status, headers)
        .end(JSON.stringify({ error: { code: 'Simulated', message: `simulated ${fault.status}` } }));
      return;
    }
    if (fault?.kind === 'redirect') {
      const host = fault.to === 'same-host' ? url.host : `localhost:${url.port}`;
      res.writeHead(302, { location: `https://${host}${url.pathname}${url.search}` }).end();
      return;
    }
    switch (route) {
      case 'download':
        return this.serveBlob(
          url,
          res,
          fault?.kind === 'truncate' || fault?.kind === 'stall' ? fault.kind : undefined,
        );
      case 'token':
        return this.serveToken(req, res);
      case 'package-api':
        return this.servePackageApi(req, url, res);
      case 'dequeue':
        return this.serveDequeue(req, url, res);
      case 'connector-download':
        return this.serveConnectorDownload(
          req,
          url,
          res,
          fault?.kind === 'truncate' || fault?.kind === 'stall' ? fault.kind : undefined,
        );
      case 'ack':
        return this.serveAck(req, url, res);
      default:
        res
          .writeHead(404, { 'content-type': 'application/json' })
          .end('{"error":{"code":"NotFound","message":"no such route"}}');
    }
  }

  private storageError(res: ServerResponse, status: number, code: string, message: string): void {
    const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}\nRequestId:${randomUUID()}\nTime:${new Date(this.now()).toISOString()}</Message></Error>`;
    res.writeHead(status, { 'content-type': 'application/xml', 'x-ms-error-code': code }).end(body);
  }

  private async serveBlob(url: URL, res: ServerResponse, cut?: 'truncate' | 'stall'): Promise<void> {
    const [, , , exportId] = url.pathname.split('/');
    const se = url.searchParams.get('se') ?? '';
    const sig = url.searchParams.get('sig') ?? '';
    const expected = Buffer.from(this.sign(exportId ?? '', se));
    const given = Buffer.from(sig);
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      return this.storageError(
        res,
        403,
        'AuthenticationFailed',
        'Server failed to authenticate the request. Signature did not match.',
      );
    const expiry = Date.parse(se);
    if (Number.isNaN(expiry) || expiry <= this.now())
      return this.storageError(
        res,
        403,
        'AuthenticationFailed',
        `Server failed to authenticate the request. Signed expiry time [${se}] must be after signed start time.`,
      );
    const e = this.exports.get(exportId ?? '');
    if (!e) return this.storageError(res, 404, 'BlobNotFound', 'The specified blob does not exist.');
    await this.serveExport(e, res, cut);
  }

  private async serveExport(e: StoredExport, res: ServerResponse, cut?: 'truncate' | 'stall'): Promise<void> {
    const contentType =
      e.kind === 'package'
        ? 'application/zip'
        : { csv: 'text/csv', xml: 'application/xml', json: 'application/json' }[e.entities[0]!.format];
    const fresh = e.entities.map((x) => ({ ...x, rows: typeof x.rows === 'function' ? x.rows() : x.rows }));
    const body =
      e.kind === 'package'
        ? dataPackage(fresh)
        : exportFile(fresh[0]!.format, fresh[0]!.columns, fresh[0]!.rows);
    const small = e.entities.every((x) => typeof x.rows !== 'function');
    const headers: Record<string, string> = { 'content-type': contentType, 'x-ms-blob-type': 'BlockBlob' };
    if (small) {
      // Small exports are sent with a Content-Length, large ones chunked: both paths get used.
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(Buffer.from(c as Buffer));
      const all = Buffer.concat(chunks);
      headers['content-length'] = String(all.length);
      res.writeHead(200, headers);
      if (cut) return this.cut(res, all.subarray(0, Math.floor(all.length / 2)), cut);
      res.end(all);
      this.stats.downloadsCompleted++;
      return;
    }
    res.writeHead(200, headers);
    if (cut) {
      let first = Buffer.alloc(0);
      for await (const c of body) {
        first = Buffer.from(c as Buffer);
        break;
      }
      body.destroy();
      return this.cut(res, first.subarray(0, Math.floor(first.length / 2)), cut);
    }
    try {
      await pipeline(body, res);
      this.stats.downloadsCompleted++;
    } catch {
      /* the client went away */
    }
  }

  /** Sends the headers and part of the body; then cuts the connection, or sends nothing more. */
  private async cut(res: ServerResponse, part: Buffer, how: 'truncate' | 'stall'): Promise<void> {
    await new Promise<void>((resolve) => res.write(part, () => resolve()));
    if (how === 'truncate') res.socket?.destroy();
  }

  private async readBody(req: IncomingMessage, max = 1024 * 1024): Promise<string> {
    let text = '';
    for await (const c of req) {
      text += (c as Buffer).toString('utf8');
      if (text.length > max) throw new Error('body too large');
    }
    return text;
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    res
      .writeHead(status, { 'content-type': 'application/json; odata.metadata=minimal' })
      .end(JSON.stringify(body));
  }

  private async serveToken(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = new URLSearchParams(await this.readBody(req));
    const err = (code: string, description: string) =>
      this.json(res, 400, { error: code, error_description: description });
    if (form.get('grant_type') !== 'client_credentials')
      return err('unsupported_grant_type', 'only client_credentials');
    if (form.get('client_id') !== this.clientId || form.get('client_secret') !== this.clientSecret)
      return this.json(res, 401, {
        error: 'invalid_client',
        error_description: 'AADSTS7000215: Invalid client secret provided.',
      });
    if (form.get('scope') !== this.scope)
      return err('invalid_scope', `AADSTS70011: the scope must be ${this.scope}`);
    const token = randomBytes(24).toString('base64url');
    const ttl = this.o.tokenTtlMs ?? 3_599_000;
    this.tokens.set(token, this.now() + ttl);
    this.stats.tokensIssued++;
    this.json(res, 200, {
      token_type: 'Bearer',
      expires_in: Math.floor(ttl / 1000),
      ext_expires_in: Math.floor(ttl / 1000),
      access_token: token,
    });
  }

  private authorized(req: IncomingMessage, res: ServerResponse): boolean {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    const expires = m ? this.tokens.get(m[1]!) : undefined;
    if (expires !== undefined && expires > this.now()) return true;
    res
      .writeHead(401, { 'www-authenticate': 'Bearer', 'content-type': 'application/json' })
      .end('{"error":{"code":"Unauthorized","message":"missing or expired token"}}');
    return false;
  }

  private async servePackageApi(req: IncomingMessage, url: URL, res: ServerResponse): Promise<void> {
    if (!this.authorized(req, res)) return;
    const action = url.pathname.slice(DM_ACTIONS.length);
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(await this.readBody(req)) as Record<string, unknown>;
    } catch {
      return this.json(res, 400, { error: { code: '', message: 'The request body is not valid JSON.' } });
    }
    const odata = (value: unknown) =>
      this.json(res, 200, { '@odata.context': `${this.baseUrl}/data/$metadata#Edm.String`, value });
    const executionId = typeof body.executionId === 'string' ? body.executionId : '';
    switch (action) {
      case 'ExportToPackage': {
        const group =
          typeof body.definitionGroupId === 'string'
            ? this.groups.get(body.definitionGroupId.toLowerCase())
            : undefined;
        if (!group)
          return this.json(res, 400, {
            error: { code: '', message: `Definition group ${String(body.definitionGroupId)} not found.` },
          });
        const id = executionId !== '' ? executionId : `${String(body.definitionGroupId)}-${randomUUID()}`;
        const handle = this.addPackage(group, {
          executionId: id,
          fileName: `${String(body.packageName ?? 'export')}.zip`,
        });
        this.executions.set(id, { exportId: handle.exportId, startedAt: this.now() });
        return odata(id);
      }
      case 'GetExecutionSummaryStatus':
        return odata(this.statusOf(executionId));
      case 'GetExportedPackageUrl': {
        const x = this.executions.get(executionId);
        const url = x && this.statusOf(executionId) === 'Succeeded' ? this.downloadUrl(x.exportId) : '';
        return odata(this.o.packageUrlShape === 'nested' ? { value: url } : url);
      }
      default:
        return this.json(res, 404, { error: { code: '', message: `No action ${action}.` } });
    }
  }

  private statusOf(executionId: string): string {
    const x = this.executions.get(executionId);
    if (!x) return 'Unknown';
    if (x.status) return x.status;
    return this.now() - x.startedAt >= (this.o.executionMs ?? 0) ? 'Succeeded' : 'Executing';
  }

  private serveDequeue(req: IncomingMessage, url: URL, res: ServerResponse): void {
    if (!this.authorized(req, res)) return;
    const activityId = decodeURIComponent(url.pathname.slice('/api/connector/dequeue/'.length)).toLowerCase();
    const q = this.queues.get(activityId) ?? [];
    const now = this.now();
    const redelivery = this.o.redeliveryMs ?? 30 * 60_000;
    const m = q.find((x) => !x.acked && (x.dequeuedAt === undefined || now - x.dequeuedAt >= redelivery));
    if (!m) {
      res.writeHead(204).end();
      return;
    }
    m.popReceipt = randomUUID();
    m.dequeuedAt = now;
    m.deliveries++;
    const host = url.host;
    this.json(res, 200, {
      CorrelationId: m.correlationId,
      PopReceipt: m.popReceipt,
      // Production answers http:// here; clients must rewrite it to https://.
      DownloadLocation: `http://${host}/api/connector/download/${m.correlationId}?correlation-id=${m.correlationId}`,
      IsDownLoadFileExist: true,
      FileDownLoadErrorMessage: null,
      LastDequeueDateTime: new Date(now).toISOString(),
    });
  }

  private async serveConnectorDownload(
    req: IncomingMessage,
    url: URL,
    res: ServerResponse,
    cut?: 'truncate' | 'stall',
  ): Promise<void> {
    if (!this.authorized(req, res)) return;
    const id = decodeURIComponent(url.pathname.slice('/api/connector/download/'.length));
    const m = [...this.queues.values()].flat().find((x) => x.correlationId === id);
    const e = m ? this.exports.get(m.exportId) : undefined;
    if (!e) return this.json(res, 404, { error: { code: 'NotFound', message: 'no such file' } });
    await this.serveExport(e, res, cut);
  }

  private async serveAck(req: IncomingMessage, url: URL, res: ServerResponse): Promise<void> {
    if (!this.authorized(req, res)) return;
    const activityId = decodeURIComponent(url.pathname.slice('/api/connector/ack/'.length)).toLowerCase();
    let body: { CorrelationId?: unknown; PopReceipt?: unknown };
    try {
      body = JSON.parse(await this.readBody(req)) as typeof body;
    } catch {
      return this.json(res, 400, {
        error: { code: 'BadRequest', message: 'the body must be the dequeue response' },
      });
    }
    const m = (this.queues.get(activityId) ?? []).find((x) => x.correlationId === body.CorrelationId);
    if (!m) return this.json(res, 400, { error: { code: 'BadRequest', message: 'unknown CorrelationId' } });
    if (m.acked) return void res.writeHead(200).end();
    // GAP: what production answers to a stale PopReceipt (after a re-delivery) is not documented.
    if (m.popReceipt !== body.PopReceipt)
      return this.json(res, 400, {
        error: { code: 'BadRequest', message: 'the PopReceipt is not the current one' },
      });
    m.acked = true;
    await this.onAck?.(m.correlationId);
    res.writeHead(200).end();
  }
}

/** Rows from a function of the row number, generated on demand (never held in memory). */
export function generatedRows(count: number, row: (i: number) => ExportRow): () => Iterable<ExportRow> {
  return function* () {
    for (let i = 0; i < count; i++) yield row(i);
  };
}

export type { ExportRow, TextFormat };
