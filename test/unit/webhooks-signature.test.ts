/**
 * The intake's pure parts: signature scheme (sign ↔ verify for every option, rotation, forgeries,
 * timestamps), content types, the capped body reader (also on the Functions runtime's own
 * HttpRequest body) and strict UTF-8.
 */
import { HttpRequest } from '@azure/functions';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/lib/errors';
import { checkContentType } from '../../src/lib/webhooks/content-type';
import { decodeUtf8Strict, readRawBody } from '../../src/lib/webhooks/raw-body';
import { headerReader, type WebhookRequest } from '../../src/lib/webhooks/request';
import {
  checkBodyTimestamp,
  resolveSignatureScheme,
  signWebhook,
  verifySignature,
  type HmacSignatureScheme,
  type SignatureScheme,
} from '../../src/lib/webhooks/signature';
import { signatureSchemeFromSettings, webhookSettingsSchema } from '../../src/lib/webhooks/settings';

const SECRET = 'current-secret-0123456789';
const OLD_SECRET = 'previous-secret-9876543210';
const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

const schemeArb: fc.Arbitrary<HmacSignatureScheme> = fc
  .record({
    encoding: fc.constantFrom('hex' as const, 'base64' as const, 'base64url' as const),
    algorithm: fc.constantFrom('sha256' as const, 'sha512' as const, 'sha1' as const),
    header: fc.constantFrom('x-signature', 'X-Hub-Signature-256', 'x-wiseflow-signature'),
    ts: fc.constantFrom('none', 'header', 'header-signed', 'body'),
    timestampFormat: fc.constantFrom(
      'auto' as const,
      'unix-seconds' as const,
      'unix-ms' as const,
      'iso' as const,
    ),
  })
  .map(({ ts, ...r }) => ({
    kind: 'hmac' as const,
    secrets: [SECRET, OLD_SECRET],
    ...r,
    timestampFormat: ts === 'body' ? 'auto' : r.timestampFormat,
    signedContent: ts === 'header-signed' ? ('timestamp.body' as const) : ('body' as const),
    timestamp:
      ts === 'none'
        ? { from: 'none' as const }
        : ts === 'body'
          ? { from: 'body' as const, field: 'meta.sentAt' }
          : { from: 'header' as const, header: 'x-timestamp' },
  }));

function bodyFor(s: HmacSignatureScheme, extra: string, sentAtMs: number): Buffer {
  const doc =
    s.timestamp?.from === 'body' ? { meta: { sentAt: Math.floor(sentAtMs / 1000) }, extra } : { extra };
  return Buffer.from(JSON.stringify(doc), 'utf8');
}

function verify(s: SignatureScheme, body: Buffer, headers: Record<string, string>, now = NOW) {
  const r = resolveSignatureScheme(s);
  const v = verifySignature(r, body, headerReader(headers), now);
  if (!v.ok) return v;
  return checkBodyTimestamp(r, JSON.parse(body.toString('utf8')), now);
}

describe('signature scheme', () => {
  it('verifies what it signs, for every encoding, algorithm, header, timestamp source and format, with either secret and with or without the prefix', () => {
    fc.assert(
      fc.property(
        schemeArb,
        fc.string(),
        fc.nat({ max: 1 }),
        fc.boolean(),
        fc.integer({ min: -299, max: 299 }),
        (s, extra, idx, prefix, skewS) => {
          const sentAt = NOW + skewS * 1000;
          const body = bodyFor(s, extra, sentAt);
          const headers = signWebhook(s, body, { nowMs: sentAt, secretIndex: idx, withPrefix: prefix });
          expect(verify(s, body, headers)).toMatchObject({ ok: true });
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('rejects a wrong secret, a changed body, a changed signature or a changed signed timestamp: always', () => {
    fc.assert(
      fc.property(
        schemeArb,
        fc.string(),
        fc.nat(),
        fc.nat({ max: 7 }),
        fc.constantFrom('secret', 'body', 'sig', 'ts'),
        (s, extra, at, bit, what) => {
          const body = bodyFor(s, extra, NOW);
          if (what === 'secret') {
            const forged = signWebhook({ ...s, secrets: ['an-attackers-guess-0000'] }, body, { nowMs: NOW });
            expect(verify(s, body, forged)).toEqual({ ok: false, failure: 'signature_invalid' });
            return;
          }
          const headers = signWebhook(s, body, { nowMs: NOW });
          const header = s.header!.toLowerCase();
          if (what === 'body') {
            const changed = Buffer.from(body);
            changed[at % changed.length]! ^= 1 << bit;
            expect(verify(s, changed, headers)).toMatchObject({ ok: false });
          } else if (what === 'sig') {
            // Flip one bit of the MAC itself (a text edit may only change unused base64 bits or hex case).
            const mac = Buffer.from(headers[header]!, s.encoding);
            mac[at % mac.length]! ^= 1 << bit;
            expect(verify(s, body, { ...headers, [header]: mac.toString(s.encoding) })).toEqual({
              ok: false,
              failure: 'signature_invalid',
            });
          } else if (s.signedContent === 'timestamp.body') {
            const ts = headers['x-timestamp']!;
            const other =
              s.timestampFormat === 'iso' ? new Date(NOW + 1000).toISOString() : String(Number(ts) + 1);
            expect(verify(s, body, { ...headers, 'x-timestamp': other })).toEqual({
              ok: false,
              failure: 'signature_invalid',
            });
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('rejects stale and future timestamps beyond the tolerance, whatever the source', () => {
    fc.assert(
      fc.property(
        schemeArb.filter((s) => s.timestamp?.from !== 'none'),
        fc.integer({ min: 301, max: 10_000_000 }),
        fc.boolean(),
        (s, offS, future) => {
          const sentAt = NOW + (future ? offS : -offS) * 1000;
          const body = bodyFor(s, 'x', sentAt);
          const headers = signWebhook(s, body, { nowMs: sentAt });
          expect(verify(s, body, headers)).toEqual({ ok: false, failure: 'timestamp_out_of_tolerance' });
        },
      ),
      { numRuns: 500 },
    );
  });

  it('names a missing signature or timestamp, and never throws on a malformed one', () => {
    const s: HmacSignatureScheme = {
      kind: 'hmac',
      secrets: [SECRET],
      timestamp: { from: 'header', header: 'x-timestamp' },
    };
    const body = Buffer.from('{}');
    const good = signWebhook(s, body, { nowMs: NOW });
    expect(verify(s, body, {})).toEqual({ ok: false, failure: 'signature_missing' });
    expect(verify(s, body, { 'x-signature': good['x-signature']! })).toEqual({
      ok: false,
      failure: 'timestamp_missing',
    });
    expect(verify(s, body, { ...good, 'x-timestamp': 'yesterday' })).toEqual({
      ok: false,
      failure: 'timestamp_invalid',
    });
    for (const bad of [
      'zz',
      'sha256=',
      '0'.repeat(63),
      '0'.repeat(65),
      'g'.repeat(64),
      ' , ',
      'x'.repeat(5000),
    ])
      expect(verify(s, body, { ...good, 'x-signature': bad })).toMatchObject({ ok: false });
    // A duplicated header arrives joined with ", ": a valid signature among them still verifies.
    expect(verify(s, body, { ...good, 'x-signature': `deadbeef, ${good['x-signature']}` })).toMatchObject({
      ok: true,
    });
    // A duplicated timestamp does not parse.
    expect(
      verify(s, body, { ...good, 'x-timestamp': `${good['x-timestamp']}, ${good['x-timestamp']}` }),
    ).toEqual({
      ok: false,
      failure: 'timestamp_invalid',
    });
  });

  it('refuses an unusable scheme at start-up, without showing a secret', () => {
    const short = 'short-secret';
    expect(() => resolveSignatureScheme({ kind: 'hmac', secrets: [short] })).toThrow(ConfigError);
    try {
      resolveSignatureScheme({ kind: 'hmac', secrets: [short] });
    } catch (e) {
      expect((e as Error).message).not.toContain(short);
      expect((e as Error).message).toMatch(/secrets\.0: a webhook secret must have at least 16 characters/);
    }
    expect(() => resolveSignatureScheme({ kind: 'hmac', secrets: [] })).toThrow(/at least one secret/);
    expect(() =>
      resolveSignatureScheme({ kind: 'hmac', secrets: [SECRET], signedContent: 'timestamp.body' }),
    ).toThrow(/needs a timestamp header/);
    expect(() => resolveSignatureScheme({ kind: 'hmac', secrets: [SECRET], header: 'bad header' })).toThrow(
      /HTTP header name/,
    );
  });

  it('builds the scheme from the proposed app settings, with their defaults', () => {
    const settings = webhookSettingsSchema.parse({
      WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS: '120',
      WEBHOOK_SIGNATURE_ENCODING: '',
    });
    expect(settings).toMatchObject({
      WEBHOOK_MAX_BODY_BYTES: 262144,
      WEBHOOK_SIGNATURE_HEADER: 'x-wiseflow-signature',
      WEBHOOK_SIGNATURE_ENCODING: 'base64',
      SYNC_JOBS_QUEUE: 'jobs',
    });
    const s = signatureSchemeFromSettings(settings, [SECRET, '']);
    expect(s).toMatchObject({
      secrets: [SECRET],
      toleranceSeconds: 120,
      timestamp: { from: 'header', header: 'x-wiseflow-timestamp' },
    });
    const body = Buffer.from('{"requestId":"1"}');
    expect(verify(s, body, signWebhook(s, body, { nowMs: NOW, withPrefix: true }))).toMatchObject({
      ok: true,
    });
    const bad = webhookSettingsSchema.safeParse({
      WEBHOOK_MAX_BODY_BYTES: '10',
      WEBHOOK_SIGNATURE_ENCODING: 'rot13',
    });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues.map((i) => i.path[0]).sort()).toEqual([
      'WEBHOOK_MAX_BODY_BYTES',
      'WEBHOOK_SIGNATURE_ENCODING',
    ]);
  });
});

describe('content type', () => {
  it.each([
    ['application/json', true],
    ['Application/JSON', true],
    ['application/json; charset=utf-8', true],
    ['application/json;charset="UTF-8"; version=2', true],
    ['application/json; charset=utf8', true],
    ['application/json; charset=iso-8859-1', false],
    ['application/json, application/json', false],
    ['application/json; x=1, application/json; x=1', false],
    ['application/json; charset="utf-8"; q="a;b"', false],
    ['text/plain', false],
    ['application/xml', false],
    ['application/x-www-form-urlencoded', false],
    ['multipart/form-data; boundary=x', false],
    ['application/jsonp', false],
    ['application/json; charset', false],
    ['json', false],
    ['', false],
    [undefined, false],
  ])('%s → %s', (value, ok) => {
    expect(checkContentType(value).ok).toBe(ok);
  });
});

describe('raw body', () => {
  async function* endless(chunk: number, counter: { pulled: number }) {
    for (;;) {
      counter.pulled += chunk;
      yield Buffer.alloc(chunk, 0x61);
    }
  }

  it('stops pulling just past the cap of an endless body', async () => {
    const counter = { pulled: 0 };
    const r = await readRawBody(endless(16 * 1024, counter), { maxBytes: 100_000, timeoutMs: 5000 });
    expect(r).toMatchObject({ ok: false, reason: 'too_large' });
    expect(counter.pulled).toBeLessThanOrEqual(100_000 + 16 * 1024);
  });

  it('reads the body of the Functions runtime HttpRequest (a web stream) byte for byte', async () => {
    const bytes = Buffer.from([0x7b, 0x22, 0xc3, 0xa9, 0x22, 0x3a, 0x31, 0x7d, 0xff]);
    const req = new HttpRequest({ method: 'POST', url: 'http://localhost/api/x', body: { bytes } });
    const asIntake: WebhookRequest = req; // the runtime's HttpRequest is the intake's request shape as is
    expect(headerReader(asIntake.headers)('Content-Type')).toBeUndefined();
    const r = await readRawBody(asIntake.body, { maxBytes: 100, timeoutMs: 1000 });
    expect(r.ok && r.bytes.equals(bytes)).toBe(true);
    const big = new HttpRequest({
      method: 'POST',
      url: 'http://localhost/api/x',
      body: { bytes: Buffer.alloc(200_000) },
    });
    expect(await readRawBody(big.body, { maxBytes: 1000, timeoutMs: 1000 })).toMatchObject({
      ok: false,
      reason: 'too_large',
    });
  });

  it('gives up on a body that stalls, and on a stream that breaks', async () => {
    const stalled = {
      [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<Buffer>>(() => undefined) }),
    };
    expect(await readRawBody(stalled, { maxBytes: 10, timeoutMs: 50 })).toEqual({
      ok: false,
      reason: 'timeout',
    });
    async function* broken() {
      yield Buffer.from('{"a":');
      throw new Error('ECONNRESET');
    }
    expect(await readRawBody(broken(), { maxBytes: 100, timeoutMs: 1000 })).toEqual({
      ok: false,
      reason: 'unreadable',
    });
  });

  it('decodes UTF-8 strictly', () => {
    expect(decodeUtf8Strict(Buffer.from('{"é":"😀"}'))).toBe('{"é":"😀"}');
    for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf4, 0x90, 0x80, 0x80]])
      expect(decodeUtf8Strict(Buffer.from(bad))).toBeUndefined();
  });
});
