/**
 * The sender's signature: an HMAC over the raw body bytes (or over `<timestamp>.<body>`), checked
 * in constant time against every configured secret (several during a rotation), plus a timestamp
 * tolerance against replays. Every choice is a field of `SignatureScheme` with a documented
 * default, because the WISEflow scheme is not confirmed (a GAP in the spec).
 *
 * What the caller learns on failure is only which rule failed (missing, invalid, stale): never
 * which secret was tried, how close a signature or timestamp was, or what was expected.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from '../errors';
import type { HeaderReader } from './request';

export type HmacAlgorithm = 'sha256' | 'sha512' | 'sha1';
export type SignatureEncoding = 'hex' | 'base64' | 'base64url';
/** `auto`: digits below 10^11 are Unix seconds, longer ones milliseconds; otherwise ISO 8601 with an offset. */
export type TimestampFormat = 'auto' | 'unix-seconds' | 'unix-ms' | 'iso';

export type TimestampSource =
  /** No timestamp: replays are stopped by de-duplication alone. */
  | { from: 'none' }
  /** A request header, e.g. `x-wiseflow-timestamp`. */
  | { from: 'header'; header: string }
  /** A top-level or dotted (`meta.sentAt`) field of the JSON body (covered by a body signature). */
  | { from: 'body'; field: string };

export interface HmacSignatureScheme {
  kind: 'hmac';
  /** Accepted secrets, current first; give two during a rotation. Each at least 16 characters. */
  secrets: readonly string[];
  /** How a secret string becomes the HMAC key: its UTF-8 bytes (default) or base64-decoded. */
  secretEncoding?: 'utf8' | 'base64';
  /** Header that carries the signature. Default `x-signature`. */
  header?: string;
  /** Default `sha256`. */
  algorithm?: HmacAlgorithm;
  /** How the MAC is written in the header. Default `hex`. */
  encoding?: SignatureEncoding;
  /**
   * A prefix stripped (case-insensitively) from each signature when present. Default
   * `<algorithm>=` (`sha256=`).
   */
  prefix?: string;
  /** What the MAC covers: the raw body (default), or `<timestamp header value>.<raw body>`. */
  signedContent?: 'body' | 'timestamp.body';
  /** Where the send time comes from. Default none. Configured means required. */
  timestamp?: TimestampSource;
  /** Default `auto`. */
  timestampFormat?: TimestampFormat;
  /** Largest accepted distance between the timestamp and this clock, either way. Default 300 s. */
  toleranceSeconds?: number;
}

/** No sender signature (the function key alone authenticates, e.g. F&O business events). */
export interface NoSignatureScheme {
  kind: 'none';
}

export type SignatureScheme = HmacSignatureScheme | NoSignatureScheme;

export const SIGNATURE_DEFAULTS = Object.freeze({
  header: 'x-signature',
  algorithm: 'sha256' as HmacAlgorithm,
  encoding: 'hex' as SignatureEncoding,
  signedContent: 'body' as const,
  timestampFormat: 'auto' as TimestampFormat,
  toleranceSeconds: 300,
  secretEncoding: 'utf8' as const,
});

/** Longest signature header accepted, and most signatures in it. */
const MAX_SIGNATURE_HEADER_CHARS = 1024;
const MAX_CANDIDATES = 8;
const MAX_TIMESTAMP_CHARS = 64;

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name')
  .transform((s) => s.toLowerCase());

const hmacSchemeSchema = z
  .object({
    kind: z.literal('hmac'),
    secrets: z
      .array(z.string().min(16, 'a webhook secret must have at least 16 characters'))
      .min(1, 'at least one secret is required'),
    secretEncoding: z.enum(['utf8', 'base64']).default(SIGNATURE_DEFAULTS.secretEncoding),
    header: headerName.default(SIGNATURE_DEFAULTS.header),
    algorithm: z.enum(['sha256', 'sha512', 'sha1']).default(SIGNATURE_DEFAULTS.algorithm),
    encoding: z.enum(['hex', 'base64', 'base64url']).default(SIGNATURE_DEFAULTS.encoding),
    prefix: z.string().max(32).optional(),
    signedContent: z.enum(['body', 'timestamp.body']).default(SIGNATURE_DEFAULTS.signedContent),
    timestamp: z
      .discriminatedUnion('from', [
        z.object({ from: z.literal('none') }),
        z.object({ from: z.literal('header'), header: headerName }),
        z.object({
          from: z.literal('body'),
          field: z.string().regex(/^[^.]+(\.[^.]+)*$/, 'must be a field name or a dotted path'),
        }),
      ])
      .default({ from: 'none' }),
    timestampFormat: z
      .enum(['auto', 'unix-seconds', 'unix-ms', 'iso'])
      .default(SIGNATURE_DEFAULTS.timestampFormat),
    toleranceSeconds: z.number().int().min(1).max(86_400).default(SIGNATURE_DEFAULTS.toleranceSeconds),
  })
  .refine((s) => s.signedContent === 'body' || s.timestamp.from === 'header', {
    message: "signedContent 'timestamp.body' needs a timestamp header (timestamp.from = 'header')",
    path: ['signedContent'],
  });

export type ResolvedHmacScheme = z.infer<typeof hmacSchemeSchema> & { keys: Buffer[]; macBytes: number };
export type ResolvedSignatureScheme = ResolvedHmacScheme | NoSignatureScheme;

const MAC_BYTES: Record<HmacAlgorithm, number> = { sha1: 20, sha256: 32, sha512: 64 };

/** Validates a scheme and applies the defaults; a bad scheme is a ConfigError (never shows a secret). */
export function resolveSignatureScheme(
  scheme: SignatureScheme,
  label = 'signature scheme',
): ResolvedSignatureScheme {
  if (scheme.kind === 'none') return scheme;
  const r = hmacSchemeSchema.safeParse(scheme);
  if (!r.success)
    throw new ConfigError(
      r.error.issues.map((i) => `${label}: ${i.path.join('.') || '(scheme)'}: ${i.message}`),
    );
  const keys = r.data.secrets.map((s) => Buffer.from(s, r.data.secretEncoding));
  if (keys.some((k) => k.length < 16))
    throw new ConfigError(`${label}: secrets: a webhook secret must have at least 16 bytes`);
  return { ...r.data, keys, macBytes: MAC_BYTES[r.data.algorithm] };
}

// ---- timestamps ---------------------------------------------------------------------------

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i;

/** Milliseconds since the epoch, or undefined when the value is not a timestamp in `format`. */
export function parseTimestamp(value: unknown, format: TimestampFormat): number | undefined {
  let text: string;
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) return undefined;
    text = String(Math.trunc(value));
  } else if (typeof value === 'string') text = value.trim();
  else return undefined;
  if (text === '' || text.length > MAX_TIMESTAMP_CHARS) return undefined;
  const digits = /^\d{1,16}$/.test(text);
  if (format === 'unix-seconds') return digits ? Number(text) * 1000 : undefined;
  if (format === 'unix-ms') return digits ? Number(text) : undefined;
  if (format === 'auto' && digits) return Number(text) >= 1e11 ? Number(text) : Number(text) * 1000;
  if (!ISO.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

export function formatTimestamp(ms: number, format: TimestampFormat): string {
  if (format === 'unix-ms') return String(Math.floor(ms));
  if (format === 'iso') return new Date(ms).toISOString();
  return String(Math.floor(ms / 1000));
}

// ---- verification -------------------------------------------------------------------------

export type SignatureFailure =
  | 'signature_missing'
  | 'signature_invalid'
  | 'timestamp_missing'
  | 'timestamp_invalid'
  | 'timestamp_out_of_tolerance';

export type SignatureVerdict = { ok: true; timestampMs?: number } | { ok: false; failure: SignatureFailure };

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** The candidate's MAC bytes, always `length` long; `wellFormed` is 0 when it could not match. */
function decodeCandidate(
  text: string,
  encoding: SignatureEncoding,
  length: number,
): { bytes: Buffer; wellFormed: number } {
  let bytes: Buffer | undefined;
  if (encoding === 'hex') {
    if (text.length === length * 2 && /^[0-9a-fA-F]*$/.test(text)) bytes = Buffer.from(text, 'hex');
  } else if ((encoding === 'base64' ? BASE64 : BASE64URL).test(text)) {
    const decoded = Buffer.from(text, encoding);
    if (decoded.length === length) bytes = decoded;
  }
  // A wrong-length or malformed candidate is still compared (against zeros) so that the work done
  // does not depend on its shape; it simply cannot succeed.
  return bytes ? { bytes, wellFormed: 1 } : { bytes: Buffer.alloc(length), wellFormed: 0 };
}

function signatureCandidates(header: string, prefix: string): string[] {
  const lowerPrefix = prefix.toLowerCase();
  return header
    .split(/[\s,]+/)
    .filter((t) => t !== '')
    .slice(0, MAX_CANDIDATES)
    .map((t) => (lowerPrefix !== '' && t.toLowerCase().startsWith(lowerPrefix) ? t.slice(prefix.length) : t));
}

export function macOf(
  scheme: ResolvedHmacScheme,
  key: Buffer,
  rawBody: Uint8Array,
  timestampText?: string,
): Buffer {
  const h = createHmac(scheme.algorithm, key);
  if (scheme.signedContent === 'timestamp.body') h.update(`${timestampText ?? ''}.`, 'utf8');
  return h.update(rawBody).digest();
}

/**
 * Checks the signature (and a header timestamp). A body-field timestamp is checked after JSON
 * parsing with `checkBodyTimestamp`: the MAC already covers it.
 */
export function verifySignature(
  scheme: ResolvedSignatureScheme,
  rawBody: Uint8Array,
  header: HeaderReader,
  nowMs: number,
): SignatureVerdict {
  if (scheme.kind === 'none') return { ok: true };
  const value = header(scheme.header);
  if (value === undefined || value.trim() === '') return { ok: false, failure: 'signature_missing' };
  if (value.length > MAX_SIGNATURE_HEADER_CHARS) return { ok: false, failure: 'signature_invalid' };

  let timestampText: string | undefined;
  if (scheme.timestamp.from === 'header') {
    timestampText = header(scheme.timestamp.header);
    // Without the timestamp a `timestamp.body` MAC cannot even be computed.
    if (timestampText === undefined || timestampText.trim() === '')
      return { ok: false, failure: 'timestamp_missing' };
  }

  const candidates = signatureCandidates(value, scheme.prefix ?? `${scheme.algorithm}=`);
  if (candidates.length === 0) return { ok: false, failure: 'signature_missing' };
  const expected = scheme.keys.map((k) => macOf(scheme, k, rawBody, timestampText));
  let match = 0;
  for (const c of candidates) {
    const { bytes, wellFormed } = decodeCandidate(c, scheme.encoding, scheme.macBytes);
    // Every candidate meets every secret: no early exit tells which one matched or how soon.
    for (const e of expected) match |= (timingSafeEqual(bytes, e) ? 1 : 0) & wellFormed;
  }
  if (match !== 1) return { ok: false, failure: 'signature_invalid' };

  if (timestampText === undefined) return { ok: true };
  return checkTimestamp(scheme, timestampText, nowMs);
}

function checkTimestamp(scheme: ResolvedHmacScheme, value: unknown, nowMs: number): SignatureVerdict {
  const ms = parseTimestamp(value, scheme.timestampFormat);
  if (ms === undefined) return { ok: false, failure: 'timestamp_invalid' };
  if (Math.abs(nowMs - ms) > scheme.toleranceSeconds * 1000)
    return { ok: false, failure: 'timestamp_out_of_tolerance' };
  return { ok: true, timestampMs: ms };
}

function fieldAt(json: unknown, path: string): unknown {
  let v: unknown = json;
  for (const part of path.split('.')) {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.hasOwn(v, part)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** The body-field timestamp check, for schemes with `timestamp.from = 'body'` (else always ok). */
export function checkBodyTimestamp(
  scheme: ResolvedSignatureScheme,
  json: unknown,
  nowMs: number,
): SignatureVerdict {
  if (scheme.kind === 'none' || scheme.timestamp.from !== 'body') return { ok: true };
  const value = fieldAt(json, scheme.timestamp.field);
  if (value === undefined || value === null || value === '')
    return { ok: false, failure: 'timestamp_missing' };
  return checkTimestamp(scheme, typeof value === 'bigint' ? value.toString() : value, nowMs);
}

// ---- signing (senders: simulators, tests, the bench) --------------------------------------

/**
 * The headers a sender using `scheme` attaches to `rawBody`: the signature (with the scheme's
 * prefix when `withPrefix`) and, for a header timestamp, the timestamp. Signs with the first
 * secret unless `secretIndex` says otherwise.
 */
export function signWebhook(
  scheme: SignatureScheme,
  rawBody: Uint8Array | string,
  o: { nowMs?: number; secretIndex?: number; withPrefix?: boolean; timestampText?: string } = {},
): Record<string, string> {
  const s = resolveSignatureScheme(scheme);
  if (s.kind === 'none') return {};
  const body = typeof rawBody === 'string' ? Buffer.from(rawBody, 'utf8') : rawBody;
  const headers: Record<string, string> = {};
  let timestampText: string | undefined;
  if (s.timestamp.from === 'header') {
    timestampText = o.timestampText ?? formatTimestamp(o.nowMs ?? Date.now(), s.timestampFormat);
    headers[s.timestamp.header] = timestampText;
  }
  const key = s.keys[o.secretIndex ?? 0];
  if (!key) throw new Error(`the scheme has no secret number ${o.secretIndex}`);
  const mac = macOf(s, key, body, timestampText).toString(s.encoding);
  headers[s.header] = `${o.withPrefix ? (s.prefix ?? `${s.algorithm}=`) : ''}${mac}`;
  return headers;
}
