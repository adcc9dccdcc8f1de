/**
 * fast-check arbitraries for fuzzing a webhook route: whole requests (method, headers, body)
 * built from one route's valid payloads, each with the outcome the intake must produce.
 *
 * The intake checks, in order: method (405) → content type and encoding (415) → size (413) → signature and
 * header timestamp (401) → UTF-8 (400) → JSON and depth (400) → body timestamp (401) → schema
 * (400) → 202. Each generated request breaks zero or more of those rules; its `expect` follows
 * from the first rule it breaks. Where only the route's schema can tell (an unknown field, a
 * value of another type), `expect` is `either`: any 202 or 4xx, never a 5xx.
 *
 * Use: `fc.assert(fc.asyncProperty(webhookRequests({...}), async (r) => { ... send(url, r) ... }))`
 * and check `expect`, `expectStatus`, and that nothing was stored for a refusal.
 */
import fc from 'fast-check';
import {
  formatTimestamp,
  resolveSignatureScheme,
  signWebhook,
  type ResolvedSignatureScheme,
  type SignatureScheme,
} from '../../src/lib/webhooks/signature';

export type Expectation = 'accept' | 'reject' | 'either';

export interface FuzzRequest {
  /** Case family, e.g. `body:truncated sig:valid ct:ok`, for counts. */
  label: string;
  method: string;
  /** Header pairs; a name may repeat. Content-Length is set by the client. */
  headers: Array<[string, string]>;
  body: Uint8Array;
  expect: Expectation;
  /** The status of a refusal, when the first broken rule determines it. */
  expectStatus?: number;
  /** The error code of a refusal, when known. */
  expectCode?: string;
}

export interface WebhookFuzzOptions {
  /** Payloads the route accepts (each with its own event id, so accepted ones are distinct or true duplicates). */
  validPayload: fc.Arbitrary<Record<string, unknown>>;
  /** How the route verifies; valid requests are signed with its first secret. */
  scheme: SignatureScheme;
  maxBodyBytes: number;
  maxDepth: number;
  /** The receiver's clock, read when a case is generated. */
  now?: () => number;
  /** For `timestamp.from = 'body'` schemes: returns the payload with its send time set. */
  setBodyTimestamp?: (payload: Record<string, unknown>, ms: number) => Record<string, unknown>;
  /** Weight of the all-valid branch against `mixedWeight` for the branch that mixes faults (default 1). */
  validWeight?: number;
  /** Weight of the branch that mixes faults (default 2). */
  mixedWeight?: number;
}

// ---- bodies ---------------------------------------------------------------------------------

export type BodyKind =
  | 'valid'
  | 'at-cap'
  | 'near-valid'
  | 'wrong-types'
  | 'unicode'
  | 'truncated'
  | 'huge'
  | 'deeply-nested'
  | 'not-json'
  | 'invalid-utf8'
  | 'empty';

export interface BodyCase {
  kind: BodyKind;
  bytes: Buffer;
  /** The payload the bytes were written from (valid and near-valid bodies). */
  payload?: Record<string, unknown>;
  /** What the body alone deserves, assuming every header is right. */
  expect: Expectation;
  expectStatus?: number;
  expectCode?: string;
}

const utf8 = (s: string) => Buffer.from(s, 'utf8');
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const strictUtf8 = (b: Uint8Array): boolean => {
  try {
    strictDecoder.decode(b);
    return true;
  } catch {
    return false;
  }
};

/**
 * Text of every plane: ASCII, Latin, the rest of the BMP (no lone surrogates: JSON.stringify
 * would escape them), and astral characters. Built from code points because
 * `fc.string({ unit: 'binary' })` rebuilds a reverse mapping of all of Unicode per sample (over a
 * second per thousand requests).
 */
const unicodeText = fc
  .array(
    fc.oneof(
      fc.integer({ min: 0x20, max: 0x7e }),
      fc.integer({ min: 0, max: 0xff }),
      fc.integer({ min: 0x100, max: 0xd7ff }),
      fc.integer({ min: 0xe000, max: 0xfffd }),
      fc.integer({ min: 0x10000, max: 0x10ffff }),
    ),
    { maxLength: 40 },
  )
  .map((cps) => String.fromCodePoint(...cps));

const BIG = '\u0000bigint:';
/** JSON text of a payload; a bigint is written as a bare integer literal (as senders of 64-bit ids do). */
export function toJsonText(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_k, v: unknown) => (typeof v === 'bigint' ? `${BIG}${v}` : v),
    indent,
  ).replace(/"\\u0000bigint:(-?\d+)"/g, '$1');
}

/** Replaces one leaf of the payload with a value of another JSON type. */
function withWrongType(
  payload: Record<string, unknown>,
  pick: number,
  variant: number,
): Record<string, unknown> {
  const keys = Object.keys(payload);
  if (keys.length === 0) return { unexpected: 1 };
  const key = keys[pick % keys.length]!;
  const v = payload[key];
  const others: unknown[] = [null, 12345, 'text', true, [], { nested: 1 }, -0.5, ''].filter(
    (o) => typeof o !== typeof v || Array.isArray(o) !== Array.isArray(v),
  );
  return { ...payload, [key]: others[variant % others.length] };
}

function nearValid(
  payload: Record<string, unknown>,
  pick: number,
  how: number,
  extra: string,
): Record<string, unknown> {
  const keys = Object.keys(payload);
  const key = keys[pick % Math.max(1, keys.length)];
  const copy = { ...payload };
  if (how % 3 === 0 && key !== undefined) delete copy[key];
  else if (how % 3 === 1 && key !== undefined) {
    copy[`${key}_`] = copy[key];
    delete copy[key];
  } else copy[`x_${extra.slice(0, 20)}`] = extra;
  return copy;
}

/** Bodies of every kind, built from the route's valid payloads. */
export function bodyCases(
  o: Pick<WebhookFuzzOptions, 'validPayload' | 'maxBodyBytes' | 'maxDepth'>,
): fc.Arbitrary<BodyCase> {
  const cap = o.maxBodyBytes;
  const depthCap = Math.min(o.maxDepth + 500, Math.floor((cap - 16) / 2));
  const bad = (kind: BodyKind, bytes: Buffer, expectStatus: number, expectCode: string): BodyCase => ({
    kind,
    bytes,
    expect: 'reject',
    expectStatus,
    expectCode,
  });
  return fc.oneof(
    {
      weight: 4,
      arbitrary: o.validPayload.map((p): BodyCase => ({
        kind: 'valid',
        bytes: utf8(toJsonText(p)),
        payload: p,
        expect: 'accept',
      })),
    },
    {
      weight: 1,
      arbitrary: o.validPayload.map((p): BodyCase => {
        // Exactly at the cap (whitespace is legal JSON padding): must still be accepted.
        const text = toJsonText(p);
        const bytes = Buffer.alloc(Math.max(cap, Buffer.byteLength(text)), 0x20);
        bytes.write(text, 0, 'utf8');
        return { kind: 'at-cap', bytes, expect: bytes.length <= cap ? 'accept' : 'reject' };
      }),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(o.validPayload, fc.nat(), fc.nat(), fc.string({ maxLength: 30 }))
        .map(([p, pick, how, extra]): BodyCase => {
          const payload = nearValid(p, pick, how, extra);
          return { kind: 'near-valid', bytes: utf8(toJsonText(payload)), payload, expect: 'either' };
        }),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(o.validPayload, fc.nat(), fc.nat()).map(([p, pick, v]): BodyCase => ({
        kind: 'wrong-types',
        bytes: utf8(toJsonText(withWrongType(p, pick, v))),
        expect: 'either',
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(o.validPayload, unicodeText, fc.constantFrom('\\ud800', '\\udfff', '\\u0000', '\\u202e', ''))
        .map(([p, text, escape]): BodyCase => {
          // Unicode of every plane in an extra field, plus a lone surrogate or control escape in JSON text.
          const json = toJsonText({ ...p, note: text }).replace(/}$/, `,"esc":"${escape}"}`);
          return { kind: 'unicode', bytes: utf8(json), expect: 'either' };
        }),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(o.validPayload, fc.nat()).map(([p, at]): BodyCase => {
        const full = utf8(toJsonText(p));
        const cut = full.subarray(0, at % full.length);
        // Cut inside a multi-byte character ("ÆØÅ"), the body is invalid UTF-8 before it is
        // invalid JSON: the intake checks the encoding first.
        const code = strictUtf8(cut) ? 'invalid_json' : 'invalid_encoding';
        return bad('truncated', cut, 400, code);
      }),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(o.validPayload, fc.integer({ min: 1, max: cap })).map(([p, over]): BodyCase => {
        const text = toJsonText({ ...p, pad: '' });
        const bytes = Buffer.alloc(cap + over, 0x61);
        const head = text.slice(0, -2); // up to the opening quote of pad
        bytes.write(head, 0, 'utf8');
        bytes.write('"}', bytes.length - 2, 'utf8');
        return bad('huge', bytes, 413, 'payload_too_large');
      }),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.integer({ min: o.maxDepth + 1, max: Math.max(o.maxDepth + 1, depthCap) }), fc.boolean())
        .map(([depth, arrays]): BodyCase =>
          bad(
            'deeply-nested',
            utf8(
              arrays
                ? '['.repeat(depth) + ']'.repeat(depth)
                : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth),
            ),
            400,
            'too_deeply_nested',
          ),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .oneof(
          fc.string({ maxLength: 50 }).filter((s) => {
            try {
              JSON.parse(s);
              return false;
            } catch {
              return true;
            }
          }),
          fc.constantFrom(
            "{'a':1}",
            '{"a":1,}',
            '[1,2',
            'NaN',
            '{"a":01}',
            '{"a":1}{"b":2}',
            '\u00ef\u00bb\u00bf{',
            '<xml/>',
          ),
        )
        .map((s): BodyCase => bad('not-json', utf8(s), 400, 'invalid_json')),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          o.validPayload,
          fc.nat(),
          fc.constantFrom(
            [0xff],
            [0xc3],
            [0xc0, 0xaf],
            [0xed, 0xa0, 0x80],
            [0xf4, 0x90, 0x80, 0x80],
            [0xe2, 0x82],
          ),
        )
        .map(([p, at, seq]): BodyCase => {
          const text = utf8(toJsonText({ ...p, note: 'xx' }));
          const i = text.lastIndexOf('xx');
          const bytes = Buffer.concat([
            text.subarray(0, i),
            Buffer.from(seq),
            text.subarray(i + 1 + (at % 1)),
          ]);
          return bad('invalid-utf8', bytes, 400, 'invalid_encoding');
        }),
    },
    { weight: 1, arbitrary: fc.constant(bad('empty', Buffer.alloc(0), 400, 'invalid_json')) },
  );
}

// ---- content types, signatures, timestamps, headers ---------------------------------------

export const goodContentTypes = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'Application/JSON; Charset="UTF-8"',
  'application/json;charset=utf-8; x=1',
);
export const badContentTypes = fc.constantFrom(
  'text/plain',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=abc',
  'application/json; charset=latin1',
  'application/jsonx',
  'json',
  '',
);

export type SignatureCase =
  | 'valid'
  | 'valid-prefixed'
  | 'valid-old-secret'
  | 'missing'
  | 'wrong-secret'
  | 'changed-after-signing'
  | 'garbage'
  | 'oversized'
  | 'duplicated-with-valid';
export type TimestampCase = 'fresh' | 'stale' | 'future' | 'missing' | 'garbage';
export type HeaderCase =
  'plain' | 'junk-headers' | 'big-header' | 'duplicated-content-type' | 'content-encoding';

export const signatureCases: fc.Arbitrary<SignatureCase> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom<SignatureCase>('valid', 'valid-prefixed', 'duplicated-with-valid'),
  },
  { weight: 1, arbitrary: fc.constant<SignatureCase>('valid-old-secret') },
  {
    weight: 4,
    arbitrary: fc.constantFrom<SignatureCase>(
      'missing',
      'wrong-secret',
      'changed-after-signing',
      'garbage',
      'oversized',
    ),
  },
);
export const timestampCases: fc.Arbitrary<TimestampCase> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<TimestampCase>('fresh') },
  { weight: 4, arbitrary: fc.constantFrom<TimestampCase>('stale', 'future', 'missing', 'garbage') },
);
export const headerCases: fc.Arbitrary<HeaderCase> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<HeaderCase>('plain') },
  {
    weight: 1,
    arbitrary: fc.constantFrom<HeaderCase>(
      'junk-headers',
      'big-header',
      'duplicated-content-type',
      'content-encoding',
    ),
  },
);

const ATTACKER_SECRET = 'not-the-real-secret-000000';

/**
 * Counterexamples print short: label, expectation, headers clipped, and the body's size and head
 * (a failing 300 KB body would otherwise flood the test output).
 */
function describable(r: FuzzRequest): FuzzRequest {
  Object.defineProperty(r, fc.toStringMethod, {
    enumerable: false,
    value: () => {
      const head = Buffer.from(r.body.subarray(0, 160)).toString('utf8');
      const headers = r.headers.map(
        ([k, v]) => `${k}: ${v.length > 80 ? `${v.slice(0, 80)}…(${v.length})` : v}`,
      );
      return `${r.method} [${r.label}] expect ${r.expect} ${r.expectStatus ?? ''} ${r.expectCode ?? ''}\n  ${headers.join('\n  ')}\n  body ${r.body.length} bytes: ${JSON.stringify(head)}`;
    },
  });
  return r;
}

// ---- whole requests -------------------------------------------------------------------------

/** One step of the intake's order: the first rule a request breaks decides the answer. */
interface Verdict {
  expect: Expectation;
  expectStatus?: number;
  expectCode?: string;
}
const reject = (expectStatus: number, expectCode: string): Verdict => ({
  expect: 'reject',
  expectStatus,
  expectCode,
});

export function webhookRequests(o: WebhookFuzzOptions): fc.Arbitrary<FuzzRequest> {
  const scheme: ResolvedSignatureScheme = resolveSignatureScheme(o.scheme);
  const now = o.now ?? Date.now;
  const hmac = scheme.kind === 'hmac' ? scheme : undefined;
  const tsSource = hmac?.timestamp.from ?? 'none';
  const tolMs = (hmac?.toleranceSeconds ?? 300) * 1000;

  const mixed = fc.record({
    method: fc.oneof(
      { weight: 30, arbitrary: fc.constant('POST') },
      { weight: 1, arbitrary: fc.constantFrom('PUT', 'PATCH', 'DELETE') },
    ),
    contentType: fc.oneof(
      { weight: 10, arbitrary: goodContentTypes.map((v) => ({ v, ok: true })) },
      { weight: 1, arbitrary: badContentTypes.map((v) => ({ v, ok: false })) },
      { weight: 1, arbitrary: fc.constant({ v: undefined as string | undefined, ok: false }) },
    ),
    body: bodyCases(o),
    sig: signatureCases,
    ts: timestampCases,
    tsOffsetS: fc.integer({ min: 60, max: 10 * 86_400 }),
    freshSkewS: fc.integer({ min: -(tolMs / 1000 - 60), max: tolMs / 1000 - 60 }),
    hdr: headerCases,
    junk: fc.string({ maxLength: 60 }),
  });

  // Independent faults multiply: without a clean branch only ~1 request in 10 would be valid.
  const clean = fc.record({
    method: fc.constant('POST'),
    contentType: goodContentTypes.map((v) => ({ v: v as string | undefined, ok: true })),
    body: o.validPayload.map((p): BodyCase => ({
      kind: 'valid',
      bytes: utf8(toJsonText(p)),
      payload: p,
      expect: 'accept',
    })),
    sig: fc.constantFrom<SignatureCase>(
      'valid',
      'valid-prefixed',
      'valid-old-secret',
      'duplicated-with-valid',
    ),
    ts: fc.constant<TimestampCase>('fresh'),
    tsOffsetS: fc.constant(0),
    freshSkewS: fc.integer({ min: -(tolMs / 1000 - 60), max: tolMs / 1000 - 60 }),
    hdr: headerCases.filter((h) => h !== 'duplicated-content-type' && h !== 'content-encoding'),
    junk: fc.string({ maxLength: 60 }),
  });
  const plan = fc.oneof(
    { weight: o.validWeight ?? 1, arbitrary: clean },
    { weight: o.mixedWeight ?? 2, arbitrary: mixed },
  );

  return plan.map((p): FuzzRequest => {
    const headers: Array<[string, string]> = [];
    const labels: string[] = [`body:${p.body.kind}`];
    let verdict: Verdict | undefined;
    const decide = (v: Verdict) => {
      verdict ??= v;
    };

    if (p.method !== 'POST') decide(reject(405, 'method_not_allowed'));
    if (p.contentType.v !== undefined) headers.push(['content-type', p.contentType.v]);
    if (!p.contentType.ok) {
      labels.push('ct:bad');
      decide(reject(415, 'unsupported_media_type'));
    }
    if (p.hdr === 'duplicated-content-type' && p.contentType.v !== undefined) {
      headers.push(['content-type', p.contentType.v]);
      labels.push('ct:duplicated');
      decide(reject(415, 'unsupported_media_type'));
    }
    if (p.hdr === 'content-encoding') {
      headers.push(['content-encoding', 'gzip']);
      labels.push('hdr:content-encoding');
      decide(reject(415, 'unsupported_media_type'));
    }
    if (p.body.expectStatus === 413) decide(reject(413, 'payload_too_large'));

    let body = p.body.bytes;
    let bodyTs = p.body;
    const t = now();
    const tsMs =
      p.ts === 'stale'
        ? t - tolMs - p.tsOffsetS * 1000
        : p.ts === 'future'
          ? t + tolMs + p.tsOffsetS * 1000
          : t + p.freshSkewS * 1000;

    // A body timestamp is part of the payload: only bodies built from a valid payload can carry it.
    if (tsSource === 'body' && o.setBodyTimestamp && p.body.payload) {
      const payload = p.body.payload;
      body = utf8(
        toJsonText(
          p.ts === 'missing' ? payload : o.setBodyTimestamp(payload, p.ts === 'garbage' ? NaN : tsMs),
        ),
      );
      bodyTs = { ...p.body, bytes: body };
    }

    if (hmac) {
      labels.push(`sig:${p.sig}`);
      let tsText: string | undefined;
      if (tsSource === 'header') {
        labels.push(`ts:${p.ts}`);
        if (p.ts !== 'missing') {
          tsText = p.ts === 'garbage' ? 'not-a-time' : formatTimestamp(tsMs, hmac.timestampFormat);
          headers.push([hmac.timestamp.from === 'header' ? hmac.timestamp.header : 'x-timestamp', tsText]);
        }
      }
      const sign = (bytes: Uint8Array, secretIndex = 0, secrets?: readonly string[]) =>
        signWebhook(secrets ? ({ ...o.scheme, secrets } as SignatureScheme) : o.scheme, bytes, {
          secretIndex,
          withPrefix: p.sig === 'valid-prefixed',
          timestampText: tsText ?? '',
        })[hmac.header]!;
      let sent = body;
      let sig: string | undefined;
      switch (p.sig) {
        case 'valid':
        case 'valid-prefixed':
          sig = sign(body);
          break;
        case 'valid-old-secret':
          sig = sign(body, Math.min(1, hmac.secrets.length - 1));
          break;
        case 'duplicated-with-valid':
          headers.push([hmac.header, 'c2lnbmF0dXJlLWZyb20tc29tZXdoZXJlLWVsc2U=']);
          sig = sign(body);
          break;
        case 'wrong-secret':
          sig = sign(body, 0, [ATTACKER_SECRET]);
          break;
        case 'changed-after-signing':
          sig = sign(body);
          // One more trailing space (same JSON, other bytes); at the cap, the last byte becomes a space.
          sent = body.length === 0 ? utf8(' ') : Buffer.concat([body, utf8(' ')]);
          if (sent.length > o.maxBodyBytes) sent = Buffer.from(body).fill(0x20, body.length - 1);
          break;
        case 'garbage':
          sig = `g${p.junk.replace(/[^\x21-\x7e]/g, '?')}`;
          break;
        case 'oversized':
          sig = 'a'.repeat(2048);
          break;
        case 'missing':
          break;
      }
      if (sig !== undefined) headers.push([hmac.header, sig]);
      body = sent;
      // The order of verifySignature: header present, not oversized, timestamp present, MAC, timestamp value.
      const macOk =
        ['valid', 'valid-prefixed', 'valid-old-secret', 'duplicated-with-valid'].includes(p.sig) ||
        (p.sig === 'changed-after-signing' && sent.equals(bodyTs.bytes));
      const tsRule = tsSource === 'header' && p.ts !== 'fresh';
      if (p.sig === 'missing') decide(reject(401, 'signature_missing'));
      if (p.sig === 'oversized') decide(reject(401, 'signature_invalid'));
      if (tsRule && p.ts === 'missing') decide(reject(401, 'timestamp_missing'));
      if (!macOk) decide(reject(401, 'signature_invalid'));
      if (tsRule)
        decide(reject(401, p.ts === 'garbage' ? 'timestamp_invalid' : 'timestamp_out_of_tolerance'));
    }

    if (p.body.expect === 'reject') decide(reject(p.body.expectStatus!, p.body.expectCode!));
    if (tsSource === 'body') {
      labels.push(`ts:${p.ts}`);
      if (bodyTs.kind === 'valid' || bodyTs.kind === 'near-valid') {
        if (p.ts !== 'fresh')
          decide(
            reject(
              401,
              p.ts === 'missing'
                ? 'timestamp_missing'
                : p.ts === 'garbage'
                  ? 'timestamp_invalid'
                  : 'timestamp_out_of_tolerance',
            ),
          );
      } else decide({ expect: 'either' });
    }
    if (p.hdr === 'junk-headers') {
      labels.push('hdr:junk');
      headers.push(['x-junk', p.junk.replace(/[^\x20-\x7e]/g, '?')], ['x-junk', 'again'], ['accept', '*/*']);
    }
    if (p.hdr === 'big-header') {
      labels.push('hdr:big');
      headers.push(['x-big', 'b'.repeat(8000)]);
    }
    decide(p.body.expect === 'either' ? { expect: 'either' } : { expect: 'accept' });
    return describable({ label: labels.join(' '), method: p.method, headers, body, ...verdict! });
  });
}
