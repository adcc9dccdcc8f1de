/**
 * The WISEflow API client (v1): external sources of a flow, participant allocations, sync
 * done/fail, and webhook management.
 *
 * - Auth: OAuth2 client credentials (`POST {base}/oauth2/token`, form-encoded) with the token
 *   cached and refreshed `tokenRefreshSkewMs` before it expires; concurrent callers share one
 *   refresh; a 401 drops the token and retries once. Or the `x-api-key` header (not for
 *   production, per WISEflow).
 * - Every answer is the envelope `{success, data, error}`; `data` is validated with zod. Errors
 *   become AppErrors (errors.ts) with `upstreamStatus` and the API's code/message/errors as safe
 *   details: 400 → validation, 401 → configuration, 403 (flow archived, SIS allocation on) and
 *   404 → permanent, 409 → conflict, 429/5xx/timeouts/network → transient.
 * - Retries with exponential backoff (full jitter) on 5xx, timeouts and network errors, for calls
 *   that are safe to repeat (GET/PUT/DELETE, sync/done, sync/fail). Creating a source and adding
 *   participants are not repeated after a request that may have reached the server: the update
 *   routine re-reads and redoes only what is missing. A 429 is always retried (the server did
 *   nothing), after the wait the server asked for, from a separate budget.
 * - Rate limits: one RateGate per credential per process (rate-gate.ts), shared by every client
 *   instance with that credential: ≤ 200/s and ≤ 5,000/min by default, paused by 429 and by
 *   RateLimit-Remaining: 0 until RateLimit-Reset.
 * - Nothing secret reaches a log line or an error: not the token, the client secret or the key.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import {
  AppError,
  ConfigError,
  ConflictError,
  PermanentError,
  TransientError,
  ValidationError,
} from '../errors';
import { parseRetryAfter } from '../flowfinity/view-client';
import type { Log } from '../ports';
import {
  envelopeSchema,
  externalSourceListSchema,
  flowParticipantsPageSchema,
  externalSourceSchema,
  tokenResponseSchema,
  webhookListSchema,
  webhookSchema,
  WISEFLOW_RATE_LIMITS,
  type ApiError,
  type CreateWebhookInput,
  type ExternalSource,
  type FlowParticipant,
  type UpdateWebhookInput,
  type Webhook,
} from './api';
import { RateGate, type RateWindow } from './rate-gate';
import { parseReference, parseStrictReference } from './references';

export type WiseflowAuth =
  { kind: 'oauth'; clientId: string; clientSecret: string } | { kind: 'apiKey'; apiKey: string };

export interface WiseflowClientOptions {
  /** `https://europe-api.wiseflow.net/v1` (production) or the staging URL; http only on loopback. */
  baseUrl: string;
  auth: WiseflowAuth;
  /** One attempt, headers and body. Default 30 s. */
  timeoutMs?: number;
  /** Retries after the first attempt on 5xx/timeouts/network errors. Default 4. */
  maxRetries?: number;
  /** 429 answers waited out before giving up (separate from maxRetries). Default 20. */
  maxRateLimitWaits?: number;
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
  /** Longest server-requested wait the client sleeps; a longer one fails the call (transient). Default 60 s. */
  maxWaitMs?: number;
  /** Refresh the OAuth token this long before it expires. Default 60 s. */
  tokenRefreshSkewMs?: number;
  /** Requests per second and per minute for this credential in this process. Default 200 / 5,000. */
  rateLimits?: { perSecond: number; perMinute: number };
  fetchImpl?: typeof fetch;
  /** Clock for token expiry (tests). */
  clock?: () => number;
  log?: Log;
}

const optionsSchema = z.object({
  baseUrl: z
    .string()
    .url()
    .refine((u) => {
      const url = new URL(u);
      if (url.protocol === 'https:') return true;
      return url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
    }, 'must be an https URL (http only on loopback, for the simulator)'),
  auth: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('oauth'), clientId: z.string().min(1), clientSecret: z.string().min(1) }),
    z.object({ kind: z.literal('apiKey'), apiKey: z.string().min(1) }),
  ]),
  timeoutMs: z.number().int().positive().optional(),
  maxRetries: z.number().int().nonnegative().optional(),
  maxRateLimitWaits: z.number().int().nonnegative().optional(),
  retryBaseDelayMs: z.number().nonnegative().optional(),
  retryMaxDelayMs: z.number().nonnegative().optional(),
  maxWaitMs: z.number().nonnegative().optional(),
  tokenRefreshSkewMs: z.number().nonnegative().optional(),
  rateLimits: z
    .object({ perSecond: z.number().int().positive(), perMinute: z.number().int().positive() })
    .optional(),
});

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

interface Operation<T> {
  /** Name for logs and errors (`addParticipants`). */
  name: string;
  method: Method;
  path: string;
  body?: unknown;
  schema: z.ZodType<T>;
  /** Safe to send again after a request that may have reached the server. */
  idempotent: boolean;
  /** Validate the whole envelope (for `pagination` beside `data`), not only `data`. */
  wholeEnvelope?: boolean;
}

/** Internal: a failure worth another attempt; becomes a TransientError when retries run out. */
class Retryable extends Error {
  constructor(
    message: string,
    readonly o: { status?: number; waitMs?: number; rateLimited?: boolean; unauthorized?: boolean } = {},
  ) {
    super(message);
  }
}

const MAX_BODY_BYTES = 8 * 1024 * 1024;
const MESSAGE_CHARS = 300;

/** Shared per credential in this process: the rate gate and the OAuth token. */
interface CredentialState {
  gate: RateGate;
  token?: { value: string; expiresAt: number };
  refreshing?: Promise<string>;
}
const credentials = new Map<string, CredentialState>();

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/** Identifies a credential without containing it (hashes only). */
export function credentialKey(baseUrl: string, auth: WiseflowAuth): string {
  const who =
    auth.kind === 'oauth'
      ? `oauth:${auth.clientId}:${sha256(auth.clientSecret)}`
      : `key:${sha256(auth.apiKey)}`;
  return sha256(`${baseUrl.replace(/\/+$/, '')}\n${who}`);
}

export class WiseflowClient {
  private readonly base: string;
  private readonly fetchImpl: typeof fetch;
  private readonly clock: () => number;
  private readonly state: CredentialState;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly maxRateLimitWaits: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxWaitMs: number;
  private readonly skewMs: number;
  private readonly secrets: string[];

  constructor(private readonly o: WiseflowClientOptions) {
    const parsed = optionsSchema.safeParse(o);
    if (!parsed.success)
      throw new ConfigError(
        parsed.error.issues.map((i) => {
          const path = i.path.join('.');
          // Never echo a credential's value back; the path says which one is wrong.
          return `WISEflow client option ${path || '(options)'}: ${i.message}`;
        }),
      );
    this.base = o.baseUrl.replace(/\/+$/, '');
    this.fetchImpl = o.fetchImpl ?? fetch;
    this.clock = o.clock ?? Date.now;
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.maxRetries = o.maxRetries ?? 4;
    this.maxRateLimitWaits = o.maxRateLimitWaits ?? 20;
    this.baseDelayMs = o.retryBaseDelayMs ?? 250;
    this.maxDelayMs = o.retryMaxDelayMs ?? 10_000;
    this.maxWaitMs = o.maxWaitMs ?? 60_000;
    this.skewMs = o.tokenRefreshSkewMs ?? 60_000;
    this.secrets = o.auth.kind === 'oauth' ? [o.auth.clientSecret] : [o.auth.apiKey];
    const key = credentialKey(this.base, o.auth);
    let st = credentials.get(key);
    if (!st) {
      const limits = o.rateLimits ?? WISEFLOW_RATE_LIMITS;
      const windows: RateWindow[] = [
        { limit: limits.perSecond, windowMs: 1000 },
        { limit: limits.perMinute, windowMs: 60_000 },
      ];
      st = { gate: new RateGate(windows) };
      credentials.set(key, st);
    }
    this.state = st;
  }

  /** The credential's shared rate gate (health, tests). */
  get gate(): RateGate {
    return this.state.gate;
  }

  // ---- external sources ---------------------------------------------------------------------

  async listSources(flowId: string | number): Promise<ExternalSource[]> {
    return this.call({
      name: 'listSources',
      method: 'GET',
      path: `/flows/${id(flowId, 'flowId')}/external-sources`,
      schema: externalSourceListSchema,
      idempotent: true,
    });
  }

  /** Creates a source; the reference must satisfy the strict pattern (checked before sending). */
  async createSource(
    flowId: string | number,
    input: { reference: string; description?: string | null },
  ): Promise<ExternalSource> {
    const reference = parseStrictReference(input.reference);
    return this.call({
      name: 'createSource',
      method: 'POST',
      path: `/flows/${id(flowId, 'flowId')}/external-sources`,
      body: { reference, description: input.description ?? null },
      schema: externalSourceSchema,
      idempotent: false,
    });
  }

  async getSource(flowId: string | number, sourceId: string | number): Promise<ExternalSource> {
    return this.call({
      name: 'getSource',
      method: 'GET',
      path: `/flows/${id(flowId, 'flowId')}/external-sources/${id(sourceId, 'sourceId')}`,
      schema: externalSourceSchema,
      idempotent: true,
    });
  }

  async updateSource(
    flowId: string | number,
    sourceId: string | number,
    input: { description: string | null },
  ): Promise<ExternalSource> {
    return this.call({
      name: 'updateSource',
      method: 'PUT',
      path: `/flows/${id(flowId, 'flowId')}/external-sources/${id(sourceId, 'sourceId')}`,
      body: { description: input.description },
      schema: externalSourceSchema,
      idempotent: true,
    });
  }

  async deleteSource(flowId: string | number, sourceId: string | number): Promise<void> {
    await this.call({
      name: 'deleteSource',
      method: 'DELETE',
      path: `/flows/${id(flowId, 'flowId')}/external-sources/${id(sourceId, 'sourceId')}`,
      schema: z.unknown(),
      idempotent: true,
    });
  }

  /** Reports the sync of `reference` as done (the flow shows "Complete"). Takes the REFERENCE. */
  async syncDone(flowId: string | number, reference: string): Promise<void> {
    await this.call({
      name: 'syncDone',
      method: 'POST',
      path: `/flows/${id(flowId, 'flowId')}/external-sources/${encodeURIComponent(parseReference(reference))}/sync/done`,
      schema: z.unknown(),
      idempotent: true,
    });
  }

  /** Reports the sync of `reference` as failed. Takes the REFERENCE. */
  async syncFail(flowId: string | number, reference: string): Promise<void> {
    await this.call({
      name: 'syncFail',
      method: 'POST',
      path: `/flows/${id(flowId, 'flowId')}/external-sources/${encodeURIComponent(parseReference(reference))}/sync/fail`,
      schema: z.unknown(),
      idempotent: true,
    });
  }

  /** Allocates participants to a source in ONE call (nothing is sent for an empty list). */
  async addParticipants(
    flowId: string | number,
    sourceId: string | number,
    participantIds: readonly (string | number)[],
  ): Promise<void> {
    if (participantIds.length === 0) return;
    await this.call({
      name: 'addParticipants',
      method: 'POST',
      path: `/flows/${id(flowId, 'flowId')}/external-sources/${id(sourceId, 'sourceId')}/allocations/participants`,
      body: { participantIds: participantIds.map((p) => Number(id(p, 'participantId'))) },
      schema: z.unknown(),
      idempotent: false,
    });
  }

  /** Removes every participant allocated to the source. */
  async removeAllAllocations(flowId: string | number, sourceId: string | number): Promise<void> {
    await this.call({
      name: 'removeAllAllocations',
      method: 'DELETE',
      path: `/flows/${id(flowId, 'flowId')}/external-sources/${id(sourceId, 'sourceId')}/allocations`,
      schema: z.unknown(),
      idempotent: true,
    });
  }

  async removeParticipant(
    flowId: string | number,
    sourceId: string | number,
    participantId: string | number,
  ): Promise<void> {
    await this.call({
      name: 'removeParticipant',
      method: 'DELETE',
      path: `/flows/${id(flowId, 'flowId')}/external-sources/${id(sourceId, 'sourceId')}/allocations/participants/${id(participantId, 'participantId')}`,
      schema: z.unknown(),
      idempotent: true,
    });
  }

  /** The sources a participant is allocated to (the only way the API tells what is allocated). */
  async sourcesOfParticipant(
    flowId: string | number,
    participantId: string | number,
  ): Promise<ExternalSource[]> {
    return this.call({
      name: 'sourcesOfParticipant',
      method: 'GET',
      path: `/flows/${id(flowId, 'flowId')}/external-sources/participants/${id(participantId, 'participantId')}`,
      schema: externalSourceListSchema,
      idempotent: true,
    });
  }

  /** Every participant of the flow (all pages), with participant and user ids. */
  async listFlowParticipants(flowId: string | number): Promise<FlowParticipant[]> {
    const out: FlowParticipant[] = [];
    const limit = 100;
    for (let offset = 0, pages = 0; pages < 10_000; pages++) {
      const page = await this.call({
        name: 'listFlowParticipants',
        method: 'GET',
        path: `/flows/${id(flowId, 'flowId')}/participants?offset=${offset}&limit=${limit}`,
        schema: flowParticipantsPageSchema,
        idempotent: true,
        wholeEnvelope: true,
      });
      out.push(...page.data);
      const total = page.pagination?.total;
      offset += page.data.length;
      if (page.data.length < limit || (typeof total === 'number' && offset >= total)) break;
    }
    return out;
  }

  // ---- webhooks -----------------------------------------------------------------------------

  async listWebhooks(): Promise<Webhook[]> {
    return this.call({
      name: 'listWebhooks',
      method: 'GET',
      path: '/webhooks',
      schema: webhookListSchema,
      idempotent: true,
    });
  }

  /** 400 when the licence's webhook limit would be exceeded. The secret is sent, never logged. */
  async createWebhook(input: CreateWebhookInput): Promise<Webhook> {
    return this.call({
      name: 'createWebhook',
      method: 'POST',
      path: '/webhooks',
      body: input,
      schema: webhookSchema,
      idempotent: false,
    });
  }

  async getWebhook(webhookId: string | number): Promise<Webhook> {
    return this.call({
      name: 'getWebhook',
      method: 'GET',
      path: `/webhooks/${id(webhookId, 'webhookId')}`,
      schema: webhookSchema,
      idempotent: true,
    });
  }

  async updateWebhook(webhookId: string | number, input: UpdateWebhookInput): Promise<Webhook> {
    return this.call({
      name: 'updateWebhook',
      method: 'PUT',
      path: `/webhooks/${id(webhookId, 'webhookId')}`,
      body: input,
      schema: webhookSchema,
      idempotent: true,
    });
  }

  async deleteWebhook(webhookId: string | number): Promise<void> {
    await this.call({
      name: 'deleteWebhook',
      method: 'DELETE',
      path: `/webhooks/${id(webhookId, 'webhookId')}`,
      schema: z.unknown(),
      idempotent: true,
    });
  }

  /** Asks WISEflow to send a test event to the webhook. */
  async testWebhook(webhookId: string | number): Promise<void> {
    await this.call({
      name: 'testWebhook',
      method: 'POST',
      path: `/webhooks/${id(webhookId, 'webhookId')}/test`,
      schema: z.unknown(),
      idempotent: false,
    });
  }

  // ---- transport ----------------------------------------------------------------------------

  private async call<T>(op: Operation<T>): Promise<T> {
    let failures = 0;
    let rateLimitWaits = 0;
    let refreshed = false;
    for (;;) {
      try {
        return await this.attempt(op);
      } catch (e) {
        if (!(e instanceof Retryable)) throw e;
        const { status, waitMs, rateLimited, unauthorized } = e.o;
        if (unauthorized) {
          if (refreshed) throw this.unauthorized(op, status);
          refreshed = true;
          continue;
        }
        if (rateLimited) {
          rateLimitWaits++;
          if (rateLimitWaits > this.maxRateLimitWaits || (waitMs ?? 0) > this.maxWaitMs)
            throw this.transient(op, e, `rate limited ${rateLimitWaits} time(s)`);
          this.o.log?.warn('WISEflow rate limit: waiting', { operation: op.name, waitMs });
          // The gate was paused by attempt(): the next acquire waits. A little jitter keeps
          // the waiters from arriving at the same millisecond.
          await sleep(Math.floor(Math.random() * 50));
          continue;
        }
        failures++;
        if (!op.idempotent || failures > this.maxRetries)
          throw this.transient(
            op,
            e,
            op.idempotent
              ? `gave up after ${failures} attempt(s)`
              : 'not repeated: the call is not idempotent',
          );
        const delay = Math.floor(
          Math.random() * Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (failures - 1)),
        );
        this.o.log?.warn('WISEflow call failed: retrying', {
          operation: op.name,
          status,
          attempt: failures,
          delayMs: delay,
        });
        await sleep(Math.max(delay, waitMs ?? 0));
      }
    }
  }

  private async attempt<T>(op: Operation<T>): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (this.o.auth.kind === 'oauth') headers.Authorization = `Bearer ${await this.bearer()}`;
    else headers['x-api-key'] = this.o.auth.apiKey;
    let body: string | undefined;
    if (op.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(op.body);
    }
    const res = await this.send(`${this.base}${op.path}`, op.method, headers, body);
    if (res.status === 401 && this.o.auth.kind === 'oauth') {
      // A revoked or clock-skewed token: drop it and fetch a new one, once.
      this.state.token = undefined;
      throw new Retryable('401 Unauthorized', { status: 401, unauthorized: true });
    }
    return this.interpret(op, res.status, res.text);
  }

  /** One HTTP exchange through the credential's rate gate; reads the whole body within the timeout. */
  private async send(
    url: string,
    method: string,
    headers: Record<string, string>,
    body: string | undefined,
  ): Promise<{ status: number; text: string }> {
    const release = await this.state.gate.acquire();
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await this.fetchImpl(url, {
        method,
        headers,
        body,
        signal: controller.signal,
        redirect: 'error',
      });
      text = await readCapped(res);
    } catch (e) {
      if (timedOut) throw new Retryable(`timed out after ${this.timeoutMs} ms`);
      throw new Retryable(`request failed: ${this.scrub(describe(e))}`);
    } finally {
      clearTimeout(timer);
      release();
    }
    this.observeRateHeaders(res);
    if (res.status === 429) {
      const waitMs = this.waitOf(res) ?? 1000;
      this.state.gate.pauseUntil(Date.now() + waitMs);
      throw new Retryable('429 Too Many Requests', { status: 429, waitMs, rateLimited: true });
    }
    return { status: res.status, text };
  }

  private observeRateHeaders(res: Response): void {
    const remaining = res.headers.get('ratelimit-remaining');
    const resetMs = this.resetMs(res);
    if (remaining === null || resetMs === undefined || !/^\s*\d+\s*$/.test(remaining)) return;
    this.state.gate.observeRemaining(Number(remaining), Date.now() + resetMs);
  }

  /** RateLimit-Reset as milliseconds from now: delta seconds, or (if huge) epoch seconds. */
  private resetMs(res: Response): number | undefined {
    const v = res.headers.get('ratelimit-reset');
    if (v === null || !/^\s*\d+(\.\d+)?\s*$/.test(v)) return undefined;
    const n = Number(v);
    return n > 1e9 ? Math.max(0, n * 1000 - Date.now()) : n * 1000;
  }

  /** How long a 429 asks to wait: Retry-After, else RateLimit-Reset. */
  private waitOf(res: Response): number | undefined {
    return parseRetryAfter(res.headers.get('retry-after')) ?? this.resetMs(res);
  }

  private interpret<T>(op: Operation<T>, status: number, text: string): T {
    let json: unknown;
    let envelope: z.infer<typeof envelopeSchema> | undefined;
    try {
      json = text === '' ? undefined : JSON.parse(text);
      const r = envelopeSchema.safeParse(json);
      if (r.success) envelope = r.data;
    } catch {
      json = undefined;
    }
    if (status >= 200 && status < 300) {
      if (!envelope)
        throw new TransientError(
          `WISEflow ${op.name} answered ${status} without the {success, data, error} envelope`,
          { code: 'wiseflow_protocol', upstreamStatus: status, details: { operation: op.name } },
        );
      if (!envelope.success) throw this.errorFor(op, status, envelope.error ?? undefined);
      const data = op.schema.safeParse(op.wholeEnvelope ? envelope : envelope.data);
      if (!data.success)
        throw new TransientError(
          `WISEflow ${op.name} answered data of an unexpected shape: ${data.error.issues
            .slice(0, 5)
            .map((i) => `${i.path.join('.') || '(data)'}: ${i.message}`)
            .join('; ')}`,
          { code: 'wiseflow_protocol', upstreamStatus: status, details: { operation: op.name } },
        );
      return data.data;
    }
    if (status >= 500 || status === 408) throw new Retryable(`${status} from WISEflow`, { status });
    throw this.errorFor(op, status, envelope?.error ?? undefined);
  }

  private errorFor(op: Operation<unknown>, status: number, apiError: ApiError | undefined): AppError {
    const apiMessage = apiError?.message ? this.scrub(apiError.message).slice(0, MESSAGE_CHARS) : undefined;
    const details = {
      operation: op.name,
      upstreamStatus: status,
      ...(apiError?.code !== undefined && apiError.code !== null ? { apiCode: apiError.code } : {}),
      ...(apiMessage ? { apiMessage } : {}),
      ...(apiError?.errors?.length
        ? {
            errors: apiError.errors.slice(0, 10).map((x) => ({
              reason: x.reason ?? undefined,
              message: x.message ? this.scrub(x.message).slice(0, MESSAGE_CHARS) : undefined,
            })),
          }
        : {}),
    };
    const said = apiMessage ? `: ${apiMessage}` : '';
    const o = { upstreamStatus: status, details };
    switch (status) {
      case 400:
        return new ValidationError(`WISEflow refused ${op.name} (400)${said}`, {
          ...o,
          code: 'wiseflow_bad_request',
        });
      case 401:
        return this.unauthorized(op, status);
      case 403:
        return new PermanentError(
          `WISEflow forbids ${op.name} (403: the flow is archived or has SIS allocation on)${said}`,
          { ...o, code: 'wiseflow_forbidden' },
        );
      case 404:
        return new PermanentError(`WISEflow ${op.name}: not found (404)${said}`, {
          ...o,
          code: 'wiseflow_not_found',
        });
      case 409:
        return new ConflictError(`WISEflow ${op.name}: already exists (409)${said}`, {
          ...o,
          code: 'wiseflow_conflict',
        });
      default:
        // A 2xx envelope with success:false carries its own code.
        if (status >= 200 && status < 300) {
          const code = Number(apiError?.code);
          if (Number.isInteger(code) && code >= 400 && code !== status)
            return this.errorFor(op, code, apiError);
          return new TransientError(`WISEflow ${op.name} answered success:false${said}`, {
            ...o,
            code: 'wiseflow_protocol',
          });
        }
        return new PermanentError(`WISEflow refused ${op.name} (${status})${said}`, {
          ...o,
          code: 'wiseflow_refused',
        });
    }
  }

  private unauthorized(op: Operation<unknown>, status: number | undefined): ConfigError {
    const hint =
      this.o.auth.kind === 'oauth'
        ? 'check WISEFLOW_CLIENT_ID and WISEFLOW_CLIENT_SECRET'
        : 'check WISEFLOW_API_KEY';
    return new ConfigError(`WISEflow refused the credentials for ${op.name} (401): ${hint}`, {
      code: 'wiseflow_unauthorized',
      upstreamStatus: status,
    });
  }

  private transient(op: Operation<unknown>, e: Retryable, why: string): TransientError {
    return new TransientError(`WISEflow ${op.name} unavailable (${why}): ${e.message}`, {
      code: e.o.rateLimited ? 'wiseflow_rate_limited' : 'wiseflow_unavailable',
      upstreamStatus: e.o.status,
      retryAfterMs: e.o.waitMs,
      details: { operation: op.name, upstreamStatus: e.o.status },
    });
  }

  // ---- OAuth --------------------------------------------------------------------------------

  private async bearer(): Promise<string> {
    const t = this.state.token;
    if (t && this.clock() < t.expiresAt - this.skewMs) return t.value;
    // Single flight: every caller that finds the token stale waits for the same refresh.
    this.state.refreshing ??= this.fetchToken().finally(() => {
      this.state.refreshing = undefined;
    });
    return this.state.refreshing;
  }

  private async fetchToken(): Promise<string> {
    if (this.o.auth.kind !== 'oauth') throw new Error('no OAuth credentials');
    const { clientId, clientSecret } = this.o.auth;
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: clientId,
      client_secret: clientSecret,
    }).toString();
    let failures = 0;
    let rateLimitWaits = 0;
    for (;;) {
      try {
        const res = await this.send(
          `${this.base}/oauth2/token`,
          'POST',
          { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
          form,
        );
        if (res.status >= 500)
          throw new Retryable(`${res.status} from the token endpoint`, { status: res.status });
        if (res.status !== 200) {
          let oauthError = '';
          try {
            const b = JSON.parse(res.text) as { error?: unknown };
            if (typeof b.error === 'string') oauthError = ` ${b.error.slice(0, 64)}`;
          } catch {
            // not JSON: the status says enough
          }
          throw new ConfigError(
            `WISEflow refused the client credentials (${res.status}${oauthError}): check WISEFLOW_CLIENT_ID and WISEFLOW_CLIENT_SECRET`,
            { code: 'wiseflow_unauthorized', upstreamStatus: res.status },
          );
        }
        let parsed: z.infer<typeof tokenResponseSchema>;
        try {
          parsed = tokenResponseSchema.parse(JSON.parse(res.text));
        } catch {
          throw new TransientError('the WISEflow token endpoint answered 200 without an access_token', {
            code: 'wiseflow_protocol',
            upstreamStatus: 200,
          });
        }
        const lifetimeMs = (parsed.expires_in ?? 3599) * 1000;
        this.state.token = { value: parsed.access_token, expiresAt: this.clock() + lifetimeMs };
        return parsed.access_token;
      } catch (e) {
        if (!(e instanceof Retryable)) throw e;
        if (e.o.rateLimited) {
          if (++rateLimitWaits > this.maxRateLimitWaits)
            throw this.transient({ name: 'getToken' } as Operation<unknown>, e, 'rate limited');
          continue;
        }
        if (++failures > this.maxRetries)
          throw this.transient(
            { name: 'getToken' } as Operation<unknown>,
            e,
            `gave up after ${failures} attempt(s)`,
          );
        await sleep(
          Math.floor(Math.random() * Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (failures - 1))),
        );
      }
    }
  }

  private scrub(text: string): string {
    let out = text;
    const token = this.state.token?.value;
    for (const s of [...this.secrets, ...(token ? [token] : [])])
      if (s.length >= 4) out = out.split(s).join('***');
    return out;
  }
}

/** A path id: digits only (WISEflow ids are integers); ValidationError otherwise. */
function id(v: string | number, what: string): string {
  const s = typeof v === 'number' ? (Number.isSafeInteger(v) && v >= 0 ? String(v) : '') : v.trim();
  if (!/^\d{1,15}$/.test(s))
    throw new ValidationError(`${what} must be a WISEflow id (a whole number), got ${JSON.stringify(v)}`, {
      code: 'invalid_id',
    });
  return s;
}

async function readCapped(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
      await reader.cancel().catch(() => {});
      throw new Error(`response body over ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function describe(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur && depth < 3; depth++) {
    if (cur instanceof Error) {
      const code = (cur as { code?: unknown }).code;
      parts.push(typeof code === 'string' ? `${cur.message} [${code}]` : cur.message);
      cur = cur.cause;
    } else {
      parts.push(String(cur));
      break;
    }
  }
  return parts.join(': ') || 'unknown error';
}
