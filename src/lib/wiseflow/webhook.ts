/**
 * The WISEflow `FLOW_EXTERNAL_SOURCE` webhook ("a manager requested an update of a flow's
 * external sources"): payload schema, event check, de-duplication key and signature parameters.
 *
 * What is known (see docs/wiseflow.md for sources):
 * - The payload carries a request id, a flow id and the flow code. Other WISEflow events use flat
 *   camelCase keys (`{"flowId": 13510, ...}`).
 * - Delivery is at least once; every call has a unique id; a "sequence number" is unique per
 *   event but not per call; calls carry a timestamp for replay checks; the body is signed with
 *   HMAC-SHA256 using the webhook's secret (the older article says the signature is base64).
 *
 * GAPs and what is assumed here:
 * - Exact keys: flat camelCase `requestId`, `flowId`, `flowCode` at the top level; also accepted:
 *   snake_case, `flow: {id, code}`, and the same keys inside a `data` or `payload` object.
 * - The event name key: `event`, `eventType`, `eventName`, `type` or `webhookEvent`. When one is
 *   present it must be FLOW_EXTERNAL_SOURCE (else the intake answers 400); when none is, the
 *   route's own purpose implies the event (`requireEventName` turns that into a 400).
 * - A reference naming one source (optional): `reference`, `externalSourceReference`,
 *   `flowExternalSourceReference`. Without it the routine syncs every source of the flow.
 * - Ids arrive as JSON numbers or strings and are normalised to strings (flow id: digits only).
 * Unknown fields are kept (`extra`), so nothing WISEflow adds is lost on the way to the job.
 */
import { createHash, createHmac } from 'node:crypto';
import { z } from 'zod';
import { ValidationError } from '../errors';
import { parseReference } from './references';

export const FLOW_EXTERNAL_SOURCE_EVENT = 'FLOW_EXTERNAL_SOURCE';

// ---- signature ------------------------------------------------------------------------------

export type SignatureEncoding = 'base64' | 'hex';
export type TimestampFormat = 'unix-seconds' | 'unix-ms' | 'iso';

/**
 * How WISEflow signs a call. Every field is a GAP except "HMAC-SHA256 with the webhook's secret
 * over the raw body"; the defaults below are documented in docs/wiseflow.md and become
 * settings (WISEFLOW_SIGNATURE_HEADER, ...).
 */
export interface WiseflowSignatureParams {
  /** Header carrying the signature (lower case). */
  header: string;
  encoding: SignatureEncoding;
  /** A prefix before the signature value that the verifier strips when present (`sha256=`). */
  prefix: string;
  /** Header carrying the call's timestamp; undefined: the payload's `timestamp` field is used. */
  timestampHeader?: string;
  timestampFormat: TimestampFormat;
  /**
   * What the HMAC covers: the raw body (what WISEflow documents), or `<timestamp>.<body>` (the
   * common scheme that also authenticates the timestamp).
   */
  signedContent: 'body' | 'timestamp.body';
  /** Largest accepted difference between the call's timestamp and the clock. */
  toleranceSeconds: number;
  /** Header carrying the call's unique id (used for logs; de-duplication uses the request id). */
  callIdHeader: string;
}

export const WISEFLOW_SIGNATURE_DEFAULTS: Readonly<WiseflowSignatureParams> = Object.freeze({
  header: 'x-wiseflow-signature',
  encoding: 'base64',
  prefix: 'sha256=',
  timestampHeader: 'x-wiseflow-timestamp',
  timestampFormat: 'unix-seconds',
  signedContent: 'body',
  toleranceSeconds: 300,
  callIdHeader: 'x-wiseflow-webhook-id',
});

/** The bytes the HMAC covers for one call. */
export function signedBytes(
  rawBody: Buffer,
  timestamp: string | undefined,
  p: WiseflowSignatureParams,
): Buffer {
  if (p.signedContent === 'body') return rawBody;
  return Buffer.concat([Buffer.from(`${timestamp ?? ''}.`, 'utf8'), rawBody]);
}

/** The signature header value WISEflow would send (without the optional prefix). */
export function signWiseflowBody(
  rawBody: Buffer,
  secret: string,
  p: WiseflowSignatureParams = WISEFLOW_SIGNATURE_DEFAULTS,
  timestamp?: string,
): string {
  return createHmac('sha256', secret)
    .update(signedBytes(rawBody, timestamp, p))
    .digest(p.encoding);
}

export function formatTimestamp(ms: number, format: TimestampFormat): string {
  if (format === 'unix-ms') return String(Math.floor(ms));
  if (format === 'iso') return new Date(ms).toISOString();
  return String(Math.floor(ms / 1000));
}

/** Milliseconds since the epoch, or undefined when the text is not a timestamp in `format`. */
export function parseTimestamp(text: string | undefined, format: TimestampFormat): number | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const t = text.trim();
  if (format === 'iso') {
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? undefined : ms;
  }
  if (!/^\d{1,16}$/.test(t)) return undefined;
  return format === 'unix-ms' ? Number(t) : Number(t) * 1000;
}

// ---- payload ----------------------------------------------------------------------------------

const idText = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const s = typeof v === 'number' ? (Number.isSafeInteger(v) ? String(v) : '') : v.trim();
  if (s === '') {
    ctx.addIssue({ code: 'custom', message: 'must be a non-empty string or a whole number' });
    return z.NEVER;
  }
  return s;
});

const flowIdText = idText.refine((s) => /^\d{1,18}$/.test(s), 'must be a whole number (WISEflow flow id)');

/** The job the intake enqueues and the routine takes. Ids are strings; unknown fields in `extra`. */
export interface ExternalSourceRequest {
  flowId: string;
  /** The sync request's id (the manager's press of "request update"), when the payload has one. */
  requestId?: string;
  flowCode?: string;
  /** One source to sync; absent: every source of the flow. */
  reference?: string;
  /** The event name as sent, when the payload names one. */
  event?: string;
  /** Every other field of the payload, kept as received. */
  extra: Record<string, unknown>;
}

const EVENT_KEYS = ['event', 'eventType', 'eventName', 'type', 'webhookEvent'] as const;
const REQUEST_ID_KEYS = ['requestId', 'request_id', 'syncRequestId'] as const;
const FLOW_ID_KEYS = ['flowId', 'flow_id', 'flowID'] as const;
const FLOW_CODE_KEYS = ['flowCode', 'flow_code', 'code'] as const;
const REFERENCE_KEYS = ['reference', 'externalSourceReference', 'flowExternalSourceReference'] as const;
const KNOWN_KEYS = new Set<string>([
  ...EVENT_KEYS,
  ...REQUEST_ID_KEYS,
  ...FLOW_ID_KEYS,
  ...FLOW_CODE_KEYS,
  ...REFERENCE_KEYS,
]);

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Top level first, then `flow: {id, code}`, then a `data` or `payload` object. */
function layers(body: Record<string, unknown>): Record<string, unknown>[] {
  const out = [body];
  if (isRecord(body.flow)) {
    const { id, code } = body.flow;
    out.push({ flowId: id, flowCode: code });
  }
  for (const k of ['data', 'payload']) {
    const inner = body[k];
    if (isRecord(inner)) {
      out.push(inner);
      if (isRecord(inner.flow)) out.push({ flowId: inner.flow.id, flowCode: inner.flow.code });
    }
  }
  return out;
}

function pick(
  ls: Record<string, unknown>[],
  keys: readonly string[],
): { key: string; value: unknown } | undefined {
  for (const l of ls)
    for (const k of keys) if (l[k] !== undefined && l[k] !== null) return { key: k, value: l[k] };
  return undefined;
}

export interface ParseOptions {
  /** Reject a payload that names no event (default false: the route implies the event). */
  requireEventName?: boolean;
}

/**
 * Validates a FLOW_EXTERNAL_SOURCE payload (already JSON-parsed). Throws ValidationError whose
 * `details.issues` says what is wrong, one line per problem; an event other than
 * FLOW_EXTERNAL_SOURCE has code `unknown_event`.
 */
export function parseExternalSourceWebhook(body: unknown, o: ParseOptions = {}): ExternalSourceRequest {
  if (!isRecord(body))
    throw new ValidationError('the webhook body must be a JSON object', {
      code: 'invalid_payload',
      details: { issues: ['(body): expected a JSON object'] },
    });
  const ls = layers(body);
  const issues: string[] = [];

  const ev = pick(ls, EVENT_KEYS);
  let event: string | undefined;
  if (ev) {
    if (typeof ev.value !== 'string' || ev.value.trim().toUpperCase() !== FLOW_EXTERNAL_SOURCE_EVENT)
      throw new ValidationError(
        `unknown event ${JSON.stringify(ev.value)}: this route takes ${FLOW_EXTERNAL_SOURCE_EVENT} only`,
        { code: 'unknown_event', details: { issues: [`${ev.key}: expected ${FLOW_EXTERNAL_SOURCE_EVENT}`] } },
      );
    event = FLOW_EXTERNAL_SOURCE_EVENT;
  } else if (o.requireEventName) {
    issues.push(`event: missing (one of ${EVENT_KEYS.join(', ')})`);
  }

  const field = <T>(keys: readonly string[], schema: z.ZodType<T>, required: boolean): T | undefined => {
    const hit = pick(ls, keys);
    if (!hit) {
      if (required) issues.push(`${keys[0]}: missing (accepted keys: ${keys.join(', ')})`);
      return undefined;
    }
    const r = schema.safeParse(hit.value);
    if (r.success) return r.data;
    issues.push(`${hit.key}: ${r.error.issues.map((i) => i.message).join('; ')}`);
    return undefined;
  };

  const flowId = field(FLOW_ID_KEYS, flowIdText, true);
  const requestId = field(REQUEST_ID_KEYS, idText, false);
  const flowCode = field(FLOW_CODE_KEYS, idText, false);
  const referenceRaw = field(REFERENCE_KEYS, idText, false);
  let reference: string | undefined;
  if (referenceRaw !== undefined) {
    try {
      reference = parseReference(referenceRaw);
    } catch (e) {
      issues.push(`reference: ${(e as Error).message}`);
    }
  }

  if (issues.length > 0 || flowId === undefined)
    throw new ValidationError(`invalid ${FLOW_EXTERNAL_SOURCE_EVENT} payload: ${issues.join('; ')}`, {
      code: 'invalid_payload',
      details: { issues },
    });

  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) if (!KNOWN_KEYS.has(k)) extra[k] = v;
  return { flowId, requestId, flowCode, reference, event, extra };
}

// ---- de-duplication ---------------------------------------------------------------------------

export type HeaderLookup =
  Record<string, string | string[] | undefined> | Headers | ((name: string) => string | undefined | null);

function header(h: HeaderLookup, name: string): string | undefined {
  let v: string | string[] | undefined | null;
  if (typeof h === 'function') v = h(name);
  else if (h instanceof Headers) v = h.get(name);
  else {
    const key = Object.keys(h).find((k) => k.toLowerCase() === name.toLowerCase());
    v = key === undefined ? undefined : h[key];
  }
  if (Array.isArray(v)) v = v[0];
  return v === null || v === undefined || v.trim() === '' ? undefined : v.trim();
}

const EVENT_ID_BODY_KEYS = ['sequenceNumber', 'sequence', 'eventId'] as const;
const CALL_ID_BODY_KEYS = ['webhookCallId', 'callId', 'messageId', 'id'] as const;
const CALL_ID_HEADERS = [
  'x-wiseflow-webhook-id',
  'x-webhook-id',
  'webhook-id',
  'x-wiseflow-call-id',
] as const;

export interface DedupKey {
  /** The key to de-duplicate on: `<source>:<value>`, at most ~200 characters. */
  key: string;
  /** Where it came from, for logs and docs. */
  source: 'requestId' | 'eventId' | 'callId' | 'bodyHash';
}

/**
 * The sender's own id for de-duplication, as a function of the body and the headers.
 *
 * Order (GAP, documented): the sync request id (one per press of "request update": a redelivery
 * of the same request carries it again, a new request gets a new one); else an event id or
 * sequence number from the body ("unique per event, not per call"); else the call id (header
 * `callIdHeader`, a few common names, or a body field) — which de-duplicates only an identical
 * re-send, since WISEflow gives every call a new id; else a SHA-256 of the raw body.
 */
export function dedupKeyOf(
  rawBody: Buffer,
  headers: HeaderLookup,
  p: Pick<WiseflowSignatureParams, 'callIdHeader'> = WISEFLOW_SIGNATURE_DEFAULTS,
): DedupKey {
  let body: unknown;
  try {
    body = JSON.parse(rawBody.toString('utf8'));
  } catch {
    body = undefined;
  }
  const ls = isRecord(body) ? layers(body) : [];
  const text = (v: unknown) =>
    typeof v === 'string' && v.trim() !== ''
      ? v.trim()
      : typeof v === 'number' && Number.isFinite(v)
        ? String(v)
        : undefined;
  const bounded = (s: string) => (s.length <= 180 ? s : createHash('sha256').update(s, 'utf8').digest('hex'));

  const req = text(pick(ls, REQUEST_ID_KEYS)?.value);
  if (req) return { key: `request:${bounded(req)}`, source: 'requestId' };
  const ev = text(pick(ls, EVENT_ID_BODY_KEYS)?.value);
  if (ev) return { key: `event:${bounded(ev)}`, source: 'eventId' };
  for (const name of [p.callIdHeader, ...CALL_ID_HEADERS]) {
    const v = header(headers, name);
    if (v) return { key: `call:${bounded(v)}`, source: 'callId' };
  }
  const call = text(pick(ls, CALL_ID_BODY_KEYS)?.value);
  if (call) return { key: `call:${bounded(call)}`, source: 'callId' };
  return { key: `body:${createHash('sha256').update(rawBody).digest('hex')}`, source: 'bodyHash' };
}
