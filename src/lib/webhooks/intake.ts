/**
 * The shared webhook intake: one function per route that turns an HTTP request into a durably
 * enqueued job, or into a JSON refusal that stores nothing.
 *
 *   method → content type → declared length → raw body (capped) → signature (+ header timestamp)
 *   → strict UTF-8 → JSON (depth-limited, exact big integers) → body timestamp → route filter
 *   → zod schema → route filter → event keys → job
 *   → (a) marker `pending` with the job   (b) job message on the `jobs` queue, deterministic id
 *   → (c) marker flagged `enqueued`       (d) 202 { accepted, eventId, duplicate }
 *
 * Why this order never loses or doubles an event:
 * - nothing is stored before the request is fully checked, so a refusal leaves no trace;
 * - the 202 comes after (b): an acknowledged event's message is on the queue, and the job sits
 *   with its marker, so a process that dies after answering loses nothing;
 * - a crash between (a) and (b) leaves a `pending` marker and no 202: the sender retries, the
 *   retry finds the marker and sends the message itself (same id: Service Bus drops a second
 *   copy; on storage queues the worker's claim absorbs it). `redispatchPending` does the same
 *   for senders that gave up;
 * - a duplicate of an `enqueued`/`processing`/`done` event enqueues nothing;
 * - the worker claims the event in the same store, so a message delivered twice runs once.
 *
 * The intake knows nothing of the Functions runtime (see request.ts) nor of any sender: a route
 * brings its schema, signature scheme, event keys and filters.
 */
import type { z } from 'zod';
import {
  AppError,
  httpErrorOf,
  serviceErrorCodeOf,
  statusOf,
  TransientError,
  type HttpErrorBody,
} from '../errors';
import { isSimulatedCrash } from '../faults';
import type { Log, OutgoingMessage, QueueRole, Transport } from '../ports';
import { checkContentType } from './content-type';
import { JsonDepthError, JsonSyntaxError, parseJson, stringifyJson, type JsonValue } from './json';
import { WEBHOOK_JOB_MESSAGE_TYPE, webhookJobMessageId, type WebhookJobMessage } from './job-message';
import { decodeUtf8Strict, readRawBody } from './raw-body';
import { issueDetails, rejection } from './rejection';
import { headerReader, type HeaderReader, type WebhookRequest } from './request';
import {
  checkBodyTimestamp,
  resolveSignatureScheme,
  verifySignature,
  type SignatureFailure,
  type SignatureScheme,
} from './signature';
import { MAX_JOB_CHARS, type EventRef, type WebhookMarker, type WebhookStore } from './store';

// ---- the route's part -----------------------------------------------------------------------

export interface RouteContext {
  headers: HeaderReader;
  url: string;
  /** When the intake started on this request (ms since the epoch). */
  receivedAt: number;
}

export interface EventKeys {
  /** The sender's own id of the event (WISEflow request id, F&O EventId). 1–256 characters. */
  eventId: string;
  /**
   * Other keys that identify the same event (F&O: `ControlNumber` per entity). An event that
   * shares ANY key with a known one is a duplicate of it. At most 16, each 1–256 characters.
   */
  aliases?: string[];
}

export interface WebhookRoute<T> {
  /** Letters, digits and hyphens (`external-source`): part of store keys and message ids. */
  name: string;
  /** Validates the parsed body. Big integers arrive as `bigint` (see json.ts). */
  schema: z.ZodType<T>;
  signature: SignatureScheme;
  eventKeys(payload: T, ctx: RouteContext): EventKeys;
  /** The job the worker will get. Default: kind = the route name, body = the validated payload. */
  toJob?(payload: T, ctx: RouteContext & { eventId: string }): { kind?: string; body: unknown };
  /**
   * Before validation: a short reason code (`activation_test`) when the request is not for us;
   * it is answered 202 and nothing is stored.
   */
  ignoreRaw?(json: JsonValue, ctx: RouteContext): string | undefined;
  /** After validation: the same, e.g. an event id or entity not on the allow-list (`not_allowed`). */
  ignore?(payload: T, ctx: RouteContext): string | undefined;
  /** Route overrides of the intake's limits. */
  maxBodyBytes?: number;
  maxDepth?: number;
  /** Default `['application/json']`. */
  mediaTypes?: readonly string[];
}

// ---- options and results --------------------------------------------------------------------

export type WebhookFaultPoint = 'webhook.reserved' | 'webhook.sent' | 'webhook.flagged';

/** Test hook: throw (a SimulatedCrash, src/lib/faults.ts) to "die" at a step. Production passes none. */
export interface WebhookFaults {
  at(point: WebhookFaultPoint, detail?: string): Promise<void>;
}

export interface WebhookIntakeOptions {
  store: WebhookStore;
  transport: Transport;
  /** Queue role of the jobs queue. Default `jobs`. */
  jobsQueue?: QueueRole;
  /** WEBHOOK_MAX_BODY_BYTES. Default 256 KiB. */
  maxBodyBytes?: number;
  /** WEBHOOK_MAX_JSON_DEPTH. Default 32. */
  maxDepth?: number;
  /** The whole body must arrive within this time. Default 10 s. */
  bodyTimeoutMs?: number;
  /**
   * A duplicate whose marker is still `pending` waits up to this long after the marker was
   * created for the first attempt to finish its send, then sends itself. Default 2 s.
   */
  pendingWaitMs?: number;
  log?: Log;
  now?: () => number;
  faults?: WebhookFaults;
  /** Trace context to put in the job message, so the job joins the request's trace. */
  traceparent?: () => string | undefined;
}

export type WebhookOutcome = 'accepted' | 'duplicate' | 'ignored' | 'rejected' | 'failed';

export interface AcceptedBody {
  accepted: true;
  eventId: string;
  duplicate: boolean;
}
export interface IgnoredBody {
  accepted: true;
  ignored: true;
  reason: string;
}

export interface IntakeResult {
  status: number;
  headers: Record<string, string>;
  body: AcceptedBody | IgnoredBody | HttpErrorBody;
  /** For the `syncbridge.webhook.requests` counter: outcome and reason. */
  outcome: WebhookOutcome;
  /**
   * rejected/failed: the error code; ignored: the route's reason; duplicate: `enqueued`,
   * `processing`, `done`, `failed`, `in_flight` (the first attempt finished its send while we
   * waited) or `resent` (we sent the message of an attempt that died).
   */
  reason?: string;
  route: string;
  eventId?: string;
  durationMs: number;
}

export interface WebhookIntake {
  readonly route: string;
  handle(request: WebhookRequest): Promise<IntakeResult>;
  /**
   * Sends the job message of every marker still `pending` after `olderThanMs` (its intake died
   * between (a) and (b) and the sender did not retry). Returns how many were sent. For a timer.
   */
  redispatchPending(olderThanMs?: number): Promise<number>;
  /**
   * redispatchPending, plus the job message of every event whose worker's claim ran out (the
   * worker died) or was given back (a transient failure) more than `olderThanMs` ago: the queue
   * may have given its message up while the claim was live (each delivery then answers `busy`).
   * A copy of a message still on the queue is harmless: the worker's claim runs the job once.
   * For a timer.
   */
  redispatchStale(olderThanMs?: number): Promise<number>;
}

export const WEBHOOK_DEFAULTS = Object.freeze({
  jobsQueue: 'jobs',
  maxBodyBytes: 256 * 1024,
  maxDepth: 32,
  bodyTimeoutMs: 10_000,
  pendingWaitMs: 2_000,
});

const MAX_ID_CHARS = 256;
const MAX_ALIASES = 16;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const ROUTE_NAME = /^[a-z0-9][a-z0-9-]{0,59}$/;

const SIGNATURE_MESSAGES: Record<SignatureFailure, string> = {
  signature_missing: 'The request has no signature; sign the raw body as the webhook is configured.',
  signature_invalid:
    'The signature does not verify: check the webhook secret and that the body is sent unchanged.',
  timestamp_missing: 'The request has no timestamp; it is required for replay protection.',
  timestamp_invalid: 'The request timestamp is not in the configured format.',
  timestamp_out_of_tolerance:
    "The request timestamp is outside the accepted window; check the sender's clock and resend.",
};

const silent: Log = { info() {}, warn() {}, error() {} };
const noFaults: WebhookFaults = { at: async () => {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function isValidKey(k: unknown): k is string {
  return typeof k === 'string' && k.length >= 1 && k.length <= MAX_ID_CHARS && !LONE_SURROGATE.test(k);
}

function pathOf(url: string): string {
  const q = url.search(/[?#]/);
  return (q < 0 ? url : url.slice(0, q)).slice(0, 200);
}

export function createWebhookIntake<T>(route: WebhookRoute<T>, o: WebhookIntakeOptions): WebhookIntake {
  if (!ROUTE_NAME.test(route.name))
    throw new Error(
      `webhook route name ${JSON.stringify(route.name)} must be lower-case letters, digits and hyphens`,
    );
  const scheme = resolveSignatureScheme(route.signature, `webhook route ${route.name}: signature`);
  const log = o.log ?? silent;
  const now = o.now ?? Date.now;
  const faults = o.faults ?? noFaults;
  const jobsQueue = o.jobsQueue ?? WEBHOOK_DEFAULTS.jobsQueue;
  const maxBodyBytes = route.maxBodyBytes ?? o.maxBodyBytes ?? WEBHOOK_DEFAULTS.maxBodyBytes;
  const maxDepth = route.maxDepth ?? o.maxDepth ?? WEBHOOK_DEFAULTS.maxDepth;
  const bodyTimeoutMs = o.bodyTimeoutMs ?? WEBHOOK_DEFAULTS.bodyTimeoutMs;
  const pendingWaitMs = o.pendingWaitMs ?? WEBHOOK_DEFAULTS.pendingWaitMs;
  const mediaTypes = route.mediaTypes ?? ['application/json'];

  const jobMessage = (m: Pick<WebhookMarker, 'eventId' | 'jobKind' | 'messageId'>): OutgoingMessage => {
    const body: WebhookJobMessage = {
      type: WEBHOOK_JOB_MESSAGE_TYPE,
      v: 1,
      route: route.name,
      eventId: m.eventId,
      jobKind: m.jobKind,
      traceparent: o.traceparent?.(),
    };
    return { messageId: m.messageId, kind: WEBHOOK_JOB_MESSAGE_TYPE, body };
  };

  /** Step (b) and (c) for a marker. */
  async function enqueue(m: WebhookMarker): Promise<void> {
    try {
      await o.transport.send(jobsQueue, [jobMessage(m)]);
    } catch (e) {
      if (isSimulatedCrash(e)) throw e;
      // Nothing was acknowledged: the sender retries; the marker stays pending until then.
      log.error('webhook job could not be enqueued', {
        route: route.name,
        eventId: m.eventId,
        status: statusOf(e),
        code: serviceErrorCodeOf(e),
      });
      throw new TransientError('The job queue is unavailable; nothing was accepted. Retry later.', {
        cause: e,
        code: 'queue_unavailable',
        status: 503,
      });
    }
    await faults.at('webhook.sent', m.eventId);
    await o.store.markEnqueued({ route: route.name, eventId: m.eventId });
    await faults.at('webhook.flagged', m.eventId);
  }

  /** A key is already known: make sure its event's message is on the queue, enqueue nothing new. */
  async function settleDuplicate(marker: WebhookMarker): Promise<string> {
    let m: WebhookMarker | undefined = marker;
    const ref: EventRef = { route: route.name, eventId: marker.eventId };
    let waited = false;
    while (m && m.state === 'pending' && now() < m.receivedAt + pendingWaitMs) {
      waited = true;
      await sleep(Math.min(50, m.receivedAt + pendingWaitMs - now() + 1));
      m = await o.store.get(ref);
    }
    if (!m)
      throw new TransientError('the webhook store changed during the request; retry', {
        code: 'storage_unavailable',
        status: 503,
      });
    if (m.state !== 'pending') return waited ? 'in_flight' : m.state;
    await enqueue(m);
    return 'resent';
  }

  async function process(req: WebhookRequest, started: number): Promise<IntakeResult> {
    const header = headerReader(req.headers);
    const base = { route: route.name };
    if (req.method.toUpperCase() !== 'POST')
      throw rejection(
        'method_not_allowed',
        405,
        `Only POST is accepted on this webhook, not ${req.method.slice(0, 16)}.`,
      );

    const ct = checkContentType(header('content-type'), mediaTypes);
    if (!ct.ok)
      throw rejection(
        'unsupported_media_type',
        415,
        `Send the body as application/json (UTF-8): ${ct.reason}.`,
      );

    // The signature covers the bytes as sent; a compressed body is not what any sender here signs.
    const encoding = header('content-encoding')?.trim().toLowerCase();
    if (encoding !== undefined && encoding !== '' && encoding !== 'identity')
      throw rejection(
        'unsupported_media_type',
        415,
        'Send the body uncompressed: no Content-Encoding is accepted.',
      );

    const tooLarge = () =>
      rejection('payload_too_large', 413, `The body is larger than ${maxBodyBytes} bytes.`, {
        maxBytes: maxBodyBytes,
      });
    const declared = header('content-length');
    if (
      declared !== undefined &&
      /^\d{1,20}$/.test(declared.trim()) &&
      Number(declared.trim()) > maxBodyBytes
    )
      throw tooLarge();

    const raw = await readRawBody(req.body, { maxBytes: maxBodyBytes, timeoutMs: bodyTimeoutMs });
    if (!raw.ok) {
      if (raw.reason === 'too_large') throw tooLarge();
      if (raw.reason === 'timeout')
        throw rejection('request_timeout', 408, `The body did not arrive within ${bodyTimeoutMs} ms.`);
      throw rejection(
        'body_unreadable',
        400,
        'The body could not be read (the connection failed or the stream broke).',
      );
    }

    const verdict = verifySignature(scheme, raw.bytes, header, now());
    if (!verdict.ok) throw rejection(verdict.failure, 401, SIGNATURE_MESSAGES[verdict.failure]);

    const text = decodeUtf8Strict(raw.bytes);
    if (text === undefined) throw rejection('invalid_encoding', 400, 'The body is not valid UTF-8.');
    let json: JsonValue;
    try {
      json = parseJson(text, { maxDepth });
    } catch (e) {
      if (e instanceof JsonDepthError)
        throw rejection('too_deeply_nested', 400, `The JSON body nests deeper than ${maxDepth} levels.`, {
          maxDepth,
        });
      if (e instanceof JsonSyntaxError)
        throw rejection('invalid_json', 400, `The body is not valid JSON: ${e.message}.`, {
          line: e.line,
          column: e.column,
        });
      throw e;
    }

    const ts = checkBodyTimestamp(scheme, json, now());
    if (!ts.ok) throw rejection(ts.failure, 401, SIGNATURE_MESSAGES[ts.failure]);

    const ctx: RouteContext = { headers: header, url: req.url, receivedAt: started };
    const ignored = (reason: string): IntakeResult => ({
      ...base,
      status: 202,
      headers: {},
      body: { accepted: true, ignored: true, reason },
      outcome: 'ignored',
      reason,
      durationMs: now() - started,
    });
    const earlyIgnore = route.ignoreRaw?.(json, ctx);
    if (earlyIgnore !== undefined) return ignored(earlyIgnore);

    const parsed = route.schema.safeParse(json);
    if (!parsed.success)
      throw rejection(
        'invalid_payload',
        400,
        'The body does not match the expected payload; see details.issues.',
        issueDetails(parsed.error),
      );
    const payload = parsed.data;
    const lateIgnore = route.ignore?.(payload, ctx);
    if (lateIgnore !== undefined) return ignored(lateIgnore);

    let keys: EventKeys;
    let job: { kind?: string; body: unknown };
    try {
      keys = route.eventKeys(payload, ctx);
      job = route.toJob ? route.toJob(payload, { ...ctx, eventId: keys.eventId }) : { body: payload };
    } catch (e) {
      if (e instanceof AppError) throw e;
      log.warn('webhook route could not derive the event id or job', {
        route: route.name,
        error: (e as Error).name,
      });
      throw rejection('invalid_event_id', 400, 'The event id could not be read from the payload.');
    }
    const aliases = keys.aliases ?? [];
    if (!isValidKey(keys.eventId) || aliases.length > MAX_ALIASES || !aliases.every(isValidKey))
      throw rejection(
        'invalid_event_id',
        400,
        `The event id must be 1 to ${MAX_ID_CHARS} characters of valid text.`,
      );
    const eventId = keys.eventId;
    const jobText = stringifyJson(job.body);
    if (jobText === undefined) throw new Error(`route ${route.name} made an empty job`);
    if (jobText.length > MAX_JOB_CHARS) throw tooLarge();

    // (a) marker with the job, or the event that already holds one of its keys
    const reserved = await o.store.reserve(
      { route: route.name, eventId },
      {
        aliases,
        jobKind: job.kind ?? route.name,
        jobText,
        messageId: webhookJobMessageId(route.name, eventId),
      },
    );
    let duplicate = false;
    let reason: string | undefined;
    if (reserved.created) {
      await faults.at('webhook.reserved', eventId);
      await enqueue(reserved.marker); // (b) and (c)
    } else {
      duplicate = true;
      reason = await settleDuplicate(reserved.marker);
    }
    // (d)
    return {
      ...base,
      status: 202,
      headers: {},
      body: { accepted: true, eventId, duplicate },
      outcome: duplicate ? 'duplicate' : 'accepted',
      reason,
      eventId,
      durationMs: now() - started,
    };
  }

  return {
    route: route.name,
    async handle(req) {
      const started = now();
      let result: IntakeResult;
      try {
        result = await process(req, started);
      } catch (e) {
        if (isSimulatedCrash(e)) throw e;
        const { status, body } = httpErrorOf(e);
        const code = body.error.code;
        const headers: Record<string, string> = {};
        if (status === 413 || status === 408) headers.connection = 'close';
        if (status === 405) headers.allow = 'POST';
        if (status >= 500)
          log.error('webhook request failed', {
            route: route.name,
            code,
            status: statusOf((e as { cause?: unknown }).cause ?? e),
            error: e instanceof AppError ? e.message : (e as Error)?.name,
          });
        else log.warn('webhook request rejected', { route: route.name, code, path: pathOf(req.url) });
        return {
          route: route.name,
          status,
          headers,
          body,
          outcome: status >= 500 ? 'failed' : 'rejected',
          reason: code,
          durationMs: now() - started,
        };
      }
      log.info('webhook request answered', {
        route: route.name,
        outcome: result.outcome,
        reason: result.reason,
        eventId: result.eventId,
        durationMs: result.durationMs,
      });
      return result;
    },

    async redispatchPending(olderThanMs = Math.max(pendingWaitMs * 5, 60_000)) {
      let sent = 0;
      for await (const m of o.store.stalePending(route.name, olderThanMs)) {
        await enqueue(m);
        sent++;
        log.info('webhook job re-sent for a pending event', { route: route.name, eventId: m.eventId });
      }
      return sent;
    },

    async redispatchStale(olderThanMs) {
      let sent = await this.redispatchPending(olderThanMs);
      for await (const m of o.store.staleClaims(route.name, olderThanMs)) {
        await o.transport.send(jobsQueue, [jobMessage(m)]);
        sent++;
        log.warn('webhook job re-sent: its worker died holding the claim', {
          route: route.name,
          eventId: m.eventId,
        });
      }
      return sent;
    },
  };
}
