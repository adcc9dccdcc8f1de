/**
 * A WISEflow API simulator: a real HTTP server on loopback with the v1 API's shapes for the
 * external-source flow, used by `npm start`, the tests and the benchmarks; never deployed.
 *
 * - `POST /v1/oauth2/token` (form-encoded client credentials → `{access_token, expires_in,
 *   token_type}`), Bearer tokens that expire, and the `x-api-key` header.
 * - The envelope `{success, data, error}` on every API answer, errors with `{code, message, errors}`.
 * - Flow external sources: list/create/get/update/delete, sync/done and sync/fail by REFERENCE,
 *   add participants (one call), remove all, remove one, sources of a participant; 403 when the
 *   flow is archived or has SIS allocation on (reads still work), 404 for an unknown flow, source
 *   or participant, 409 when the reference exists, 400 for a bad body or reference.
 * - Webhooks management (`/webhooks`, `/webhooks/{id}`, `/webhooks/{id}/test`) with a licence
 *   limit, and a webhook sender that signs like WISEflow (per the documented defaults in
 *   src/lib/wiseflow/webhook.ts) and POSTs `FLOW_EXTERNAL_SOURCE` to a URL.
 * - Rate limits per credential (sliding windows per second and per minute, test-sized if you
 *   like): `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds) on every answer,
 *   429 beyond. Every request is logged with its arrival time and credential, so tests can
 *   measure what a client really sent.
 * - Fault switches: the next n requests fail with a status, hang, or get 429 (a storm); a delay.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  FLOW_EXTERNAL_SOURCE_EVENT,
  formatTimestamp,
  signWiseflowBody,
  WISEFLOW_SIGNATURE_DEFAULTS,
  type WiseflowSignatureParams,
} from '../lib/wiseflow/webhook';

export interface WiseflowSimulatorOptions {
  /** 0 (default): a free port. */
  port?: number;
  host?: string;
  /** OAuth clients; default one with random id and secret. */
  clients?: { clientId: string; clientSecret: string }[];
  /** Accepted x-api-key values; default one random key. */
  apiKeys?: string[];
  /** Default 3599 (what WISEflow answers). */
  tokenLifetimeSeconds?: number;
  /** Per credential. Default 200/s and 5,000/min (WISEflow's). */
  rateLimits?: { perSecond: number; perMinute: number };
  /** Also send Retry-After on a 429 (the documented API sends RateLimit-* only). Default false. */
  retryAfterHeader?: boolean;
  /** The licence's webhook limit. Default 10. */
  maxWebhooks?: number;
  /** Webhook URLs must be https unless this is true. Default true (loopback tests). */
  allowHttpWebhooks?: boolean;
  /** How the webhook sender signs. Default WISEFLOW_SIGNATURE_DEFAULTS. */
  signature?: Partial<WiseflowSignatureParams>;
  /** Clock for token expiry and timestamps (tests). */
  now?: () => number;
}

export interface SimSource {
  id: number;
  reference: string;
  description: string | null;
  createdAt: string;
  updatedAt: string;
  lastRequestedSync: string | null;
  lastSync: string | null;
  state: 'NONE' | 'SUCCESS' | 'PENDING' | 'FAILED';
}

interface StoredSource extends SimSource {
  allocated: Set<number>;
}

interface SimFlow {
  id: number;
  code: string;
  archived: boolean;
  sisAllocation: boolean;
  /** participantId → userId. */
  participants: Map<number, number>;
  sources: Map<number, StoredSource>;
}

export interface RequestLogEntry {
  /** Arrival time (ms since epoch, real clock). */
  at: number;
  /** `client:<id>`, `key:<n>` or `anonymous`. */
  credential: string;
  method: string;
  path: string;
  status: number;
}

export interface AllocationCall {
  at: number;
  flowId: number;
  sourceId: number;
  reference: string;
  kind: 'add' | 'removeAll' | 'removeOne';
  participantIds: number[];
  /** How many allocations the call actually changed (0: it changed nothing). */
  changed: number;
  status: number;
}

export interface SyncCall {
  at: number;
  flowId: number;
  reference: string;
  kind: 'done' | 'fail';
  status: number;
}

export interface SimWebhook {
  id: number;
  title: string;
  url: string;
  active: boolean;
  events: string[];
  secret: string;
  createdAt: string;
  updatedAt: string;
}

export interface WebhookDelivery {
  at: number;
  callId: string;
  url: string;
  status: number | 'error';
  payload: Record<string, unknown>;
}

export interface WebhookCallOptions {
  secret: string;
  signature?: Partial<WiseflowSignatureParams>;
  /** The call's timestamp (ms); default now. */
  timestampMs?: number;
  /** The call's unique id; default a new UUID. */
  callId?: string;
  /** Replace the signature (forgery tests). */
  signatureOverride?: string;
}

export interface WebhookCall {
  body: string;
  headers: Record<string, string>;
  callId: string;
}

const MAX_BODY = 1024 * 1024;
const REFERENCE_STRICT = /^[a-zA-Z0-9\-_]+$/;
const KNOWN_EVENTS = new Set([
  'ALTERNATIVE_GRADE',
  'ASSESSMENT',
  'ASSIGNMENT',
  'FINAL_GRADE',
  'FLOW_EXTERNAL_SOURCE',
  'FLOW_PERIOD_UPDATED',
  'FLOW_STATE_UPDATED',
  'PAPER_SUBMITTED',
]);

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: { reason: string; message: string }[],
  ) {
    super(message);
  }
}

export class WiseflowSimulator {
  readonly baseUrl: string;
  readonly clients: { clientId: string; clientSecret: string }[];
  readonly apiKeys: string[];
  /** Every request, in arrival order. */
  readonly requests: RequestLogEntry[] = [];
  readonly allocationCalls: AllocationCall[] = [];
  readonly syncCalls: SyncCall[] = [];
  readonly deliveries: WebhookDelivery[] = [];
  /** Requests made with a token that had expired (a client that refreshes in time makes none). */
  expiredTokenUses = 0;
  readonly faults = {
    /** Delay before answering any request. */
    slowMs: 0,
    failNext: (n: number, status = 500) => {
      this.failing = { n, status };
    },
    hangNext: (n: number) => {
      this.hanging = n;
    },
    /** The next n requests get 429 with RateLimit-Remaining 0 and RateLimit-Reset `resetSeconds`. */
    rateLimitStorm: (n: number, resetSeconds = 1) => {
      this.storm = { n, resetSeconds };
    },
  };

  private readonly flows = new Map<number, SimFlow>();
  private readonly webhookRegistry = new Map<number, SimWebhook>();
  private readonly tokens = new Map<string, { clientId: string; expiresAt: number }>();
  private readonly arrivals = new Map<string, number[]>();
  private readonly sockets = new Set<Socket>();
  private readonly hungResponses = new Set<ServerResponse>();
  private failing = { n: 0, status: 500 };
  private hanging = 0;
  private storm = { n: 0, resetSeconds: 1 };
  private nextFlowId = 1000;
  private nextSourceId = 1;
  private nextWebhookId = 1;
  private readonly limits: { perSecond: number; perMinute: number };
  private readonly now: () => number;
  readonly signature: WiseflowSignatureParams;

  private constructor(
    private readonly server: Server,
    private readonly o: WiseflowSimulatorOptions,
    host: string,
    port: number,
  ) {
    this.baseUrl = `http://${host}:${port}/v1`;
    this.clients = o.clients ?? [
      { clientId: `client-${randomBytes(4).toString('hex')}`, clientSecret: randomBytes(16).toString('hex') },
    ];
    this.apiKeys = o.apiKeys ?? [randomBytes(16).toString('hex')];
    this.limits = o.rateLimits ?? { perSecond: 200, perMinute: 5000 };
    this.now = o.now ?? Date.now;
    this.signature = { ...WISEFLOW_SIGNATURE_DEFAULTS, ...o.signature };
  }

  static async start(o: WiseflowSimulatorOptions = {}): Promise<WiseflowSimulator> {
    const host = o.host ?? '127.0.0.1';
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const sim = new WiseflowSimulator(server, o, host, (server.address() as AddressInfo).port);
    server.on('connection', (s) => {
      sim.sockets.add(s);
      s.on('close', () => sim.sockets.delete(s));
    });
    server.on('request', (req, res) => {
      sim.handle(req, res).catch(() => res.destroy());
    });
    return sim;
  }

  async stop(): Promise<void> {
    for (const r of this.hungResponses) r.destroy();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The first OAuth client (id and secret) and API key. */
  get credentials(): { clientId: string; clientSecret: string; apiKey: string } {
    return { ...this.clients[0]!, apiKey: this.apiKeys[0]! };
  }

  // ---- data helpers (tests, local runs) -------------------------------------------------------

  /**
   * Adds a flow. Participants are participant ids (their user id is then `userIdOf(p)`) or
   * explicit {participantId, userId} pairs.
   */
  addFlow(f: {
    id?: number;
    code: string;
    participants?: (number | { participantId: number; userId: number })[];
    archived?: boolean;
    sisAllocation?: boolean;
  }): number {
    const id = f.id ?? this.nextFlowId++;
    this.flows.set(id, {
      id,
      code: f.code,
      archived: f.archived ?? false,
      sisAllocation: f.sisAllocation ?? false,
      participants: new Map(),
      sources: new Map(),
    });
    this.addParticipantsToFlow(id, f.participants ?? []);
    return id;
  }

  addParticipantsToFlow(
    flowId: number,
    participants: (number | { participantId: number; userId: number })[],
  ): void {
    const f = this.flow(flowId);
    for (const p of participants)
      if (typeof p === 'number') f.participants.set(p, WiseflowSimulator.userIdOf(p));
      else f.participants.set(p.participantId, p.userId);
  }

  /**
   * Demo data for local runs: a flow `DEMO-EXAM` with participants 1..20 and no external source
   * yet (the "manually created empty flow": the first sync creates the source `DEMO-EXAM`), and
   * a flow `DEMO-CLASSES` with two sources, `CLASS-A` and `CLASS-B`.
   */
  seedDemo(): { emptyFlowId: number; classesFlowId: number } {
    const participants = Array.from({ length: 20 }, (_, i) => i + 1);
    const emptyFlowId = this.addFlow({ code: 'DEMO-EXAM', participants });
    const classesFlowId = this.addFlow({ code: 'DEMO-CLASSES', participants });
    this.addSource(classesFlowId, 'CLASS-A');
    this.addSource(classesFlowId, 'CLASS-B');
    return { emptyFlowId, classesFlowId };
  }

  /** The user id the simulator gives participant `p` when none was given. */
  static userIdOf(participantId: number): number {
    return 100_000 + participantId;
  }

  setArchived(flowId: number, archived: boolean): void {
    this.flow(flowId).archived = archived;
  }

  setSisAllocation(flowId: number, on: boolean): void {
    this.flow(flowId).sisAllocation = on;
  }

  /** Creates a source directly (as a manager would in the app), optionally with allocations. */
  addSource(flowId: number, reference: string, allocated: number[] = []): number {
    const f = this.flow(flowId);
    const id = this.nextSourceId++;
    const t = this.iso();
    f.sources.set(id, {
      id,
      reference,
      description: null,
      createdAt: t,
      updatedAt: t,
      lastRequestedSync: null,
      lastSync: null,
      state: 'NONE',
      allocated: new Set(allocated),
    });
    return id;
  }

  /** Changes allocations directly (as a manager would in the app). */
  setAllocations(flowId: number, reference: string, participantIds: number[]): void {
    this.sourceByReference(flowId, reference).allocated = new Set(participantIds);
  }

  sources(flowId: number): SimSource[] {
    return [...this.flow(flowId).sources.values()].map(publicSource);
  }

  /** Participant ids allocated to the source `reference` of the flow, ascending. */
  allocations(flowId: number, reference: string): number[] {
    return [...this.sourceByReference(flowId, reference).allocated].sort((a, b) => a - b);
  }

  /** The most arrivals from `credential` (default: all credentials together) in any window of `windowMs`. */
  maxRequestsInWindow(windowMs: number, credential?: string): number {
    const times = this.requests
      .filter((r) => credential === undefined || r.credential === credential)
      .map((r) => r.at)
      .sort((a, b) => a - b);
    let max = 0;
    let lo = 0;
    for (let hi = 0; hi < times.length; hi++) {
      while (times[hi]! - times[lo]! >= windowMs) lo++;
      max = Math.max(max, hi - lo + 1);
    }
    return max;
  }

  credentialLabelOfClient(clientId: string): string {
    return `client:${clientId}`;
  }

  get webhooks(): SimWebhook[] {
    return [...this.webhookRegistry.values()].map((w) => ({ ...w, events: [...w.events] }));
  }

  // ---- webhook sender -------------------------------------------------------------------------

  /** The FLOW_EXTERNAL_SOURCE payload WISEflow is assumed to send (see docs/wiseflow.md). */
  externalSourcePayload(
    flowId: number,
    o: { requestId?: string; timestampMs?: number } = {},
  ): Record<string, unknown> {
    const f = this.flow(flowId);
    return {
      event: FLOW_EXTERNAL_SOURCE_EVENT,
      requestId: o.requestId ?? randomUUID(),
      flowId: f.id,
      flowCode: f.code,
      timestamp: Math.floor((o.timestampMs ?? this.now()) / 1000),
    };
  }

  /** Body and headers of one signed webhook call. */
  buildWebhookCall(payload: unknown, o: WebhookCallOptions): WebhookCall {
    const p = { ...this.signature, ...o.signature };
    const body = JSON.stringify(payload);
    const callId = o.callId ?? randomUUID();
    const ts = formatTimestamp(o.timestampMs ?? this.now(), p.timestampFormat);
    const sig = o.signatureOverride ?? signWiseflowBody(Buffer.from(body, 'utf8'), o.secret, p, ts);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      [p.header]: `${p.prefix}${sig}`,
      [p.callIdHeader]: callId,
    };
    if (p.timestampHeader) headers[p.timestampHeader] = ts;
    return { body, headers, callId };
  }

  /** POSTs one signed webhook call to `url` (10 s timeout, like WISEflow). */
  async sendWebhook(
    url: string,
    payload: Record<string, unknown>,
    o: WebhookCallOptions,
  ): Promise<{ status: number | 'error'; body: string; callId: string }> {
    const call = this.buildWebhookCall(payload, o);
    let status: number | 'error' = 'error';
    let text = '';
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: call.headers,
        body: call.body,
        signal: AbortSignal.timeout(10_000),
      });
      status = res.status;
      // WISEflow keeps 1 KB of the answer.
      text = (await res.text()).slice(0, 1024);
    } catch (e) {
      text = e instanceof Error ? e.message : String(e);
    }
    this.deliveries.push({ at: Date.now(), callId: call.callId, url, status, payload });
    return { status, body: text, callId: call.callId };
  }

  /**
   * A manager presses "request update" on the flow: every source goes to PENDING ("Sync
   * Requested") and each active webhook subscribed to FLOW_EXTERNAL_SOURCE gets a signed call.
   */
  async requestUpdate(
    flowId: number,
    o: { requestId?: string } = {},
  ): Promise<{
    requestId: string;
    deliveries: { webhookId: number; status: number | 'error'; callId: string }[];
  }> {
    const f = this.flow(flowId);
    const t = this.iso();
    for (const s of f.sources.values()) {
      s.state = 'PENDING';
      s.lastRequestedSync = t;
    }
    const payload = this.externalSourcePayload(flowId, o);
    const out: { webhookId: number; status: number | 'error'; callId: string }[] = [];
    for (const w of this.webhookRegistry.values()) {
      if (!w.active || !w.events.includes(FLOW_EXTERNAL_SOURCE_EVENT)) continue;
      const r = await this.sendWebhook(w.url, payload, { secret: w.secret });
      out.push({ webhookId: w.id, status: r.status, callId: r.callId });
    }
    return { requestId: String(payload.requestId), deliveries: out };
  }

  // ---- HTTP -----------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = Date.now();
    const url = new URL(req.url ?? '/', 'http://sim');
    const method = req.method ?? 'GET';
    if (url.pathname.startsWith('/sim/')) return this.admin(method, url.pathname, res);
    const entry: RequestLogEntry = { at, credential: 'anonymous', method, path: url.pathname, status: 0 };
    this.requests.push(entry);
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      entry.status = status;
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };

    let raw: Buffer;
    try {
      raw = await readBody(req);
    } catch {
      return send(413, envelopeError(413, 'Request body too large'));
    }
    if (this.faults.slowMs > 0) await sleep(this.faults.slowMs);

    const isToken = method === 'POST' && url.pathname === '/v1/oauth2/token';
    let form: URLSearchParams | undefined;
    if (isToken) {
      form = new URLSearchParams(raw.toString('utf8'));
      entry.credential = `client:${form.get('client_id') ?? ''}`;
    } else {
      entry.credential = this.credentialOf(req);
    }

    if (this.hanging > 0) {
      this.hanging--;
      entry.status = -1;
      this.hungResponses.add(res);
      return;
    }
    if (this.failing.n > 0) {
      this.failing.n--;
      return send(this.failing.status, envelopeError(this.failing.status, 'Simulated failure'));
    }
    if (this.storm.n > 0) {
      this.storm.n--;
      const h: Record<string, string> = {
        'ratelimit-limit': String(this.limits.perSecond),
        'ratelimit-remaining': '0',
        'ratelimit-reset': String(this.storm.resetSeconds),
      };
      if (this.o.retryAfterHeader) h['retry-after'] = String(this.storm.resetSeconds);
      return send(429, envelopeError(429, 'Too many requests'), h);
    }

    // Rate limits count every arrival of the credential, answered or not.
    const rl = entry.credential === 'anonymous' ? undefined : this.rateLimit(entry.credential, at);
    if (rl?.limited) {
      const h = { ...rl.headers };
      if (this.o.retryAfterHeader) h['retry-after'] = h['ratelimit-reset']!;
      return send(429, envelopeError(429, 'Too many requests'), h);
    }
    const rlHeaders = rl?.headers ?? {};

    if (isToken) return this.token(form!, (s, b) => send(s, b, rlHeaders));

    // The API answers a bad x-api-key with the plain JSON string "Unauthorized" (x-api-key-error-response).
    const authError = this.authenticate(req);
    if (authError)
      return send(401, req.headers['x-api-key'] ? 'Unauthorized' : envelopeError(401, authError), rlHeaders);

    try {
      const data = this.route(method, url.pathname, raw, url.searchParams);
      const body: Record<string, unknown> = { success: true, data: data.data ?? null, error: null };
      if (data.pagination) body.pagination = data.pagination;
      send(data.status ?? 200, body, rlHeaders);
    } catch (e) {
      if (e instanceof HttpFailure)
        return send(e.status, envelopeError(e.status, e.message, e.errors), rlHeaders);
      send(500, envelopeError(500, 'Internal simulator error'), rlHeaders);
    }
  }

  /**
   * Local-run controls, outside the API (no auth, not logged in `requests`):
   *   GET  /sim/flows                         every flow with its sources, states and allocations
   *   GET  /sim/flows/{id}                    one flow
   *   POST /sim/flows/{id}/request-update     a manager presses "request update" (signed webhooks)
   */
  private async admin(method: string, path: string, res: ServerResponse): Promise<void> {
    const answer = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body, null, 2) + '\n');
    };
    const seg = path.split('/').filter(Boolean);
    const describe = (f: SimFlow) => ({
      flowId: f.id,
      code: f.code,
      archived: f.archived,
      sources: [...f.sources.values()].map((src) => ({
        ...publicSource(src),
        allocated: [...src.allocated].sort((a, b) => a - b),
      })),
      syncCalls: this.syncCalls.filter((c) => c.flowId === f.id).slice(-10),
    });
    if (seg[1] !== 'flows') return answer(404, { error: 'see GET /sim/flows' });
    if (seg.length === 2 && method === 'GET') return answer(200, [...this.flows.values()].map(describe));
    const flow = this.flows.get(Number(seg[2]));
    if (!flow) return answer(404, { error: `no flow ${seg[2]}; see GET /sim/flows` });
    if (seg.length === 3 && method === 'GET') return answer(200, describe(flow));
    if (seg.length === 4 && seg[3] === 'request-update' && method === 'POST') {
      const r = await this.requestUpdate(flow.id);
      return answer(r.deliveries.length ? 202 : 409, {
        ...r,
        note: r.deliveries.length
          ? `watch: GET /sim/flows/${flow.id} (state PENDING → SUCCESS or FAILED)`
          : 'no active webhook subscribes to FLOW_EXTERNAL_SOURCE: run register-webhooks first',
      });
    }
    return answer(404, { error: 'unknown simulator control' });
  }

  private credentialOf(req: IncomingMessage): string {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) {
      const t = this.tokens.get(auth.slice(7).trim());
      return t ? `client:${t.clientId}` : 'anonymous';
    }
    const key = req.headers['x-api-key'];
    if (typeof key === 'string') {
      const i = this.apiKeys.indexOf(key);
      return i >= 0 ? `key:${i}` : 'anonymous';
    }
    return 'anonymous';
  }

  /** undefined when authenticated, else why not. */
  private authenticate(req: IncomingMessage): string | undefined {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) {
      const t = this.tokens.get(auth.slice(7).trim());
      if (!t) return 'Invalid token';
      if (this.now() >= t.expiresAt) {
        this.expiredTokenUses++;
        return 'Token expired';
      }
      return undefined;
    }
    const key = req.headers['x-api-key'];
    if (typeof key === 'string') return this.apiKeys.includes(key) ? undefined : 'Invalid API key';
    return 'Missing authentication';
  }

  private token(form: URLSearchParams, send: (status: number, body: unknown) => void): void {
    const id = form.get('client_id');
    const secret = form.get('client_secret');
    if (form.get('grant_type') !== 'client_credentials')
      return send(400, {
        error: 'unsupported_grant_type',
        error_description: 'grant_type must be client_credentials',
      });
    const client = this.clients.find((c) => c.clientId === id && c.clientSecret === secret);
    if (!client)
      return send(400, { error: 'invalid_client', error_description: 'Invalid client credentials' });
    const lifetime = this.o.tokenLifetimeSeconds ?? 3599;
    const value = randomBytes(24).toString('base64url');
    this.tokens.set(value, { clientId: client.clientId, expiresAt: this.now() + lifetime * 1000 });
    send(200, { access_token: value, expires_in: lifetime, token_type: 'bearer' });
  }

  private rateLimit(credential: string, at: number): { limited: boolean; headers: Record<string, string> } {
    let list = this.arrivals.get(credential);
    if (!list) this.arrivals.set(credential, (list = []));
    while (list.length > 0 && at - list[0]! >= 60_000) list.shift();
    list.push(at);
    const inSecond = list.filter((t) => at - t < 1000);
    const secondLeft = this.limits.perSecond - inSecond.length;
    const minuteLeft = this.limits.perMinute - list.length;
    const limited = secondLeft < 0 || minuteLeft < 0;
    // Seconds until the binding window has room again.
    let resetMs = 0;
    if (minuteLeft <= 0)
      resetMs = Math.max(resetMs, list[list.length - this.limits.perMinute]! + 60_000 - at);
    if (secondLeft <= 0)
      resetMs = Math.max(resetMs, inSecond[inSecond.length - this.limits.perSecond]! + 1000 - at);
    const headers = {
      'ratelimit-limit': String(this.limits.perSecond),
      'ratelimit-remaining': String(Math.max(0, Math.min(secondLeft, minuteLeft))),
      'ratelimit-reset': String(
        Math.max(secondLeft <= 0 || minuteLeft <= 0 ? 1 : 0, Math.ceil(resetMs / 1000)),
      ),
    };
    return { limited, headers };
  }

  private flowParticipants(flow: SimFlow, query: URLSearchParams): { data: unknown; pagination: unknown } {
    const offset = Number(query.get('offset') ?? 0);
    const limit = Number(query.get('limit') ?? 100);
    if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(limit) || limit < 1 || limit > 100)
      throw new HttpFailure(400, 'Invalid query parameters');
    const all = [...flow.participants.entries()].sort((a, b) => a[0] - b[0]);
    const page = all.slice(offset, offset + limit).map(([participantId, userId], i) => ({
      participantId,
      userId,
      number: offset + i + 1,
      activated: true,
      user: { userId },
    }));
    return { data: page, pagination: { offset, limit, total: all.length } };
  }

  private route(
    method: string,
    path: string,
    raw: Buffer,
    query: URLSearchParams = new URLSearchParams(),
  ): { status?: number; data?: unknown; pagination?: unknown } {
    const seg = path.split('/').filter(Boolean).map(decodeURIComponent);
    if (seg[0] !== 'v1') throw new HttpFailure(404, 'Not found');
    const s = seg.slice(1);

    if (s[0] === 'webhooks') return this.webhookRoute(method, s, raw);
    if (s[0] !== 'flows' || s.length < 3) throw new HttpFailure(404, 'Not found');
    const flow = this.flows.get(Number(s[1]));
    if (!/^\d+$/.test(s[1] ?? '') || !flow) throw new HttpFailure(404, 'Flow not found');
    // GET /flows/{flowId}/participants?offset&limit (max 100)
    if (s[2] === 'participants' && s.length === 3 && method === 'GET')
      return this.flowParticipants(flow, query);
    if (s[2] !== 'external-sources') throw new HttpFailure(404, 'Not found');
    const writable = () => {
      if (flow.archived || flow.sisAllocation)
        throw new HttpFailure(403, 'Flow is archived or has sis allocation enabled');
    };
    const rest = s.slice(3);

    // /flows/{flowId}/external-sources
    if (rest.length === 0) {
      if (method === 'GET') return { data: [...flow.sources.values()].map(publicSource) };
      if (method === 'POST') {
        const body = json(raw) as { reference?: unknown; description?: unknown };
        const ref = body?.reference;
        if (typeof ref !== 'string' || ref.length === 0 || ref.length > 255 || !REFERENCE_STRICT.test(ref))
          throw new HttpFailure(400, 'Invalid reference', [
            { reason: 'INVALID_REFERENCE', message: 'reference must match ^[a-zA-Z0-9-_]+$ (max 255)' },
          ]);
        writable();
        if ([...flow.sources.values()].some((x) => x.reference === ref))
          throw new HttpFailure(409, 'The external source already exists on the flow');
        const id = this.addSource(flow.id, ref);
        const src = flow.sources.get(id)!;
        src.description = typeof body.description === 'string' ? body.description : null;
        return { data: publicSource(src) };
      }
      throw new HttpFailure(405, 'Method not allowed');
    }

    // /flows/{flowId}/external-sources/participants/{participantId}
    if (rest[0] === 'participants' && rest.length === 2 && method === 'GET') {
      const p = Number(rest[1]);
      if (!flow.participants.has(p)) throw new HttpFailure(404, 'Flow or external source not found');
      return { data: [...flow.sources.values()].filter((x) => x.allocated.has(p)).map(publicSource) };
    }

    // /flows/{flowId}/external-sources/{reference}/sync/done|fail
    if (
      rest.length === 3 &&
      rest[1] === 'sync' &&
      (rest[2] === 'done' || rest[2] === 'fail') &&
      method === 'POST'
    ) {
      const kind = rest[2];
      const reference = rest[0]!;
      const call: SyncCall = { at: Date.now(), flowId: flow.id, reference, kind, status: 0 };
      this.syncCalls.push(call);
      try {
        writable();
        const src = [...flow.sources.values()].find((x) => x.reference === reference);
        if (!src) throw new HttpFailure(404, 'Flow or external source not found');
        src.state = kind === 'done' ? 'SUCCESS' : 'FAILED';
        src.updatedAt = this.iso();
        if (kind === 'done') src.lastSync = src.updatedAt;
        call.status = 200;
        return {};
      } catch (e) {
        call.status = e instanceof HttpFailure ? e.status : 500;
        throw e;
      }
    }

    // /flows/{flowId}/external-sources/{id}...
    if (!/^\d+$/.test(rest[0]!)) throw new HttpFailure(404, 'Flow or external source not found');
    const src = flow.sources.get(Number(rest[0]));
    if (!src) throw new HttpFailure(404, 'Flow or external source not found');
    const sub = rest.slice(1);

    if (sub.length === 0) {
      if (method === 'GET') return { data: publicSource(src) };
      if (method === 'PUT') {
        writable();
        const body = json(raw) as { description?: unknown };
        src.description = typeof body?.description === 'string' ? body.description : null;
        src.updatedAt = this.iso();
        return { data: publicSource(src) };
      }
      if (method === 'DELETE') {
        writable();
        flow.sources.delete(src.id);
        return {};
      }
      throw new HttpFailure(405, 'Method not allowed');
    }

    if (sub[0] === 'allocations') {
      const call = (kind: AllocationCall['kind'], ids: number[]): AllocationCall => {
        const c: AllocationCall = {
          at: Date.now(),
          flowId: flow.id,
          sourceId: src.id,
          reference: src.reference,
          kind,
          participantIds: ids,
          changed: 0,
          status: 0,
        };
        this.allocationCalls.push(c);
        return c;
      };
      // DELETE /allocations
      if (sub.length === 1 && method === 'DELETE') {
        const c = call('removeAll', [...src.allocated]);
        return this.recordCall(c, () => {
          writable();
          c.changed = src.allocated.size;
          src.allocated.clear();
        });
      }
      // POST /allocations/participants
      if (sub.length === 2 && sub[1] === 'participants' && method === 'POST') {
        const body = json(raw) as { participantIds?: unknown };
        const ids = body?.participantIds;
        const c = call(
          'add',
          Array.isArray(ids) ? ids.filter((x): x is number => typeof x === 'number') : [],
        );
        return this.recordCall(c, () => {
          if (!Array.isArray(ids) || ids.length === 0 || !ids.every((x) => Number.isSafeInteger(x) && x > 0))
            throw new HttpFailure(400, 'participantIds must be a non-empty array of integers');
          writable();
          const unknown = (ids as number[]).filter((p) => !flow.participants.has(p));
          if (unknown.length > 0)
            throw new HttpFailure(
              400,
              'Invalid participant ids',
              unknown.slice(0, 10).map((p) => ({
                reason: 'PARTICIPANT_NOT_FOUND',
                message: `Participant ${p} is not on the flow`,
              })),
            );
          for (const p of ids as number[])
            if (!src.allocated.has(p)) {
              src.allocated.add(p);
              c.changed++;
            }
        });
      }
      // DELETE /allocations/participants/{participantId}
      if (sub.length === 3 && sub[1] === 'participants' && method === 'DELETE') {
        const p = Number(sub[2]);
        const c = call('removeOne', [p]);
        return this.recordCall(c, () => {
          writable();
          if (!src.allocated.has(p)) throw new HttpFailure(404, 'Flow or participant not found');
          src.allocated.delete(p);
          c.changed = 1;
        });
      }
    }
    throw new HttpFailure(404, 'Not found');
  }

  private recordCall(c: AllocationCall, act: () => void): { data?: unknown } {
    try {
      act();
      c.status = 200;
      return {};
    } catch (e) {
      c.status = e instanceof HttpFailure ? e.status : 500;
      c.changed = 0;
      throw e;
    }
  }

  private webhookRoute(method: string, s: string[], raw: Buffer): { status?: number; data?: unknown } {
    const pub = (w: SimWebhook) => ({
      id: w.id,
      title: w.title,
      url: w.url,
      active: w.active,
      events: [...w.events],
      createdAt: w.createdAt,
      updatedAt: w.updatedAt,
    });
    if (s.length === 1) {
      if (method === 'GET') return { data: [...this.webhookRegistry.values()].map(pub) };
      if (method === 'POST') {
        const b = json(raw) as Partial<SimWebhook> | undefined;
        const problems = this.webhookProblems(b, true);
        if (problems.length > 0) throw new HttpFailure(400, 'Invalid request body', problems);
        if (this.webhookRegistry.size >= (this.o.maxWebhooks ?? 10))
          throw new HttpFailure(400, 'The total number of webhooks on the license would exceed the limit');
        const t = this.iso();
        const w: SimWebhook = {
          id: this.nextWebhookId++,
          title: b!.title!,
          url: b!.url!,
          active: b!.active!,
          events: [...b!.events!],
          secret: b!.secret!,
          createdAt: t,
          updatedAt: t,
        };
        this.webhookRegistry.set(w.id, w);
        return { status: 201, data: pub(w) };
      }
      throw new HttpFailure(405, 'Method not allowed');
    }
    const w = this.webhookRegistry.get(Number(s[1]));
    if (!/^\d+$/.test(s[1] ?? '') || !w) throw new HttpFailure(404, 'Webhook not found');
    if (s.length === 2) {
      if (method === 'GET') return { data: pub(w) };
      if (method === 'DELETE') {
        this.webhookRegistry.delete(w.id);
        return {};
      }
      if (method === 'PUT') {
        const b = json(raw) as Partial<SimWebhook> | undefined;
        const problems = this.webhookProblems(b, false);
        if (problems.length > 0) throw new HttpFailure(400, 'Invalid request body', problems);
        w.title = b!.title!;
        w.url = b!.url!;
        w.active = b!.active!;
        w.events = [...b!.events!];
        w.updatedAt = this.iso();
        return { data: pub(w) };
      }
    }
    if (s.length === 3 && s[2] === 'test' && method === 'POST') {
      const payload = { event: w.events[0] ?? 'TEST', test: true, webhookId: w.id };
      void this.sendWebhook(w.url, payload, { secret: w.secret });
      return {};
    }
    throw new HttpFailure(404, 'Not found');
  }

  private webhookProblems(
    b: Partial<SimWebhook> | undefined,
    needSecret: boolean,
  ): { reason: string; message: string }[] {
    const out: { reason: string; message: string }[] = [];
    const bad = (reason: string, message: string) => out.push({ reason, message });
    if (!b || typeof b !== 'object')
      return [{ reason: 'INVALID_BODY', message: 'body must be a JSON object' }];
    if (needSecret && (typeof b.secret !== 'string' || b.secret.length === 0))
      bad('INVALID_SECRET', 'secret is required');
    if (typeof b.title !== 'string') bad('INVALID_TITLE', 'title is required');
    if (typeof b.active !== 'boolean') bad('INVALID_ACTIVE', 'active must be a boolean');
    let url: URL | undefined;
    try {
      url = typeof b.url === 'string' ? new URL(b.url) : undefined;
    } catch {
      url = undefined;
    }
    const allowHttp = this.o.allowHttpWebhooks ?? true;
    if (!url || !(url.protocol === 'https:' || (allowHttp && url.protocol === 'http:')))
      bad('INVALID_URL', 'url must be an https URL');
    if (!Array.isArray(b.events) || b.events.length === 0 || !b.events.every((e) => KNOWN_EVENTS.has(e)))
      bad('INVALID_EVENTS', 'events must be a non-empty list of known events');
    return out;
  }

  // ---- internals ------------------------------------------------------------------------------

  private flow(flowId: number): SimFlow {
    const f = this.flows.get(flowId);
    if (!f) throw new Error(`simulator has no flow ${flowId}`);
    return f;
  }

  private sourceByReference(flowId: number, reference: string): StoredSource {
    const s = [...this.flow(flowId).sources.values()].find((x) => x.reference === reference);
    if (!s) throw new Error(`flow ${flowId} has no source ${reference}`);
    return s;
  }

  private iso(): string {
    return new Date(this.now()).toISOString().replace(/\.\d{3}Z$/, '+00:00');
  }
}

function publicSource(s: StoredSource): SimSource {
  return {
    id: s.id,
    reference: s.reference,
    description: s.description,
    createdAt: s.createdAt,
    updatedAt: s.updatedAt,
    lastRequestedSync: s.lastRequestedSync,
    lastSync: s.lastSync,
    state: s.state,
  };
}

function envelopeError(code: number, message: string, errors?: { reason: string; message: string }[]) {
  return { success: false, data: null, error: { code, message, errors: errors ?? [] } };
}

function json(raw: Buffer): unknown {
  if (raw.length === 0) return undefined;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HttpFailure(400, 'Request body is not valid JSON');
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new Error('too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}
