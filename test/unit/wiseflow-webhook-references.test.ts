/**
 * The FLOW_EXTERNAL_SOURCE payload schema, its de-duplication key, the signature helpers
 * (against vectors computed independently with Python's hmac module), and external-source
 * references.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/lib/errors';
import {
  isStrictReference,
  parseReference,
  parseStrictReference,
  referenceFromFlowCode,
  REFERENCE_MAX_LENGTH,
} from '../../src/lib/wiseflow/references';
import {
  dedupKeyOf,
  parseExternalSourceWebhook,
  parseTimestamp,
  signWiseflowBody,
  WISEFLOW_SIGNATURE_DEFAULTS,
} from '../../src/lib/wiseflow/webhook';

function rejection(f: () => unknown): AppError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error('expected an error');
}

describe('FLOW_EXTERNAL_SOURCE payload', () => {
  it('reads flat camelCase ids as numbers or strings, normalised to strings, and keeps unknown fields', () => {
    const r = parseExternalSourceWebhook({
      event: 'FLOW_EXTERNAL_SOURCE',
      requestId: 42,
      flowId: 13510,
      flowCode: 'EXAM-2024',
      sequenceNumber: 7,
      somethingNew: { a: 1 },
    });
    expect(r).toEqual({
      flowId: '13510',
      requestId: '42',
      flowCode: 'EXAM-2024',
      reference: undefined,
      event: 'FLOW_EXTERNAL_SOURCE',
      extra: { sequenceNumber: 7, somethingNew: { a: 1 } },
    });
    expect(parseExternalSourceWebhook({ flowId: '13510', requestId: 'abc-1' })).toMatchObject({
      flowId: '13510',
      requestId: 'abc-1',
    });
  });

  it('accepts the plausible variants: snake_case, flow {id, code}, and a data/payload wrapper', () => {
    expect(parseExternalSourceWebhook({ request_id: 'r', flow_id: 5, flow_code: 'C' })).toMatchObject({
      requestId: 'r',
      flowId: '5',
      flowCode: 'C',
    });
    expect(parseExternalSourceWebhook({ requestId: 'r', flow: { id: 6, code: 'D' } })).toMatchObject({
      flowId: '6',
      flowCode: 'D',
    });
    expect(
      parseExternalSourceWebhook({
        eventType: 'flow_external_source',
        data: { requestId: 'r', flowId: 7, reference: 'A|B' },
      }),
    ).toMatchObject({ flowId: '7', reference: 'A|B', event: 'FLOW_EXTERNAL_SOURCE' });
  });

  it('rejects another event with unknown_event, and says what is wrong otherwise', () => {
    expect(
      rejection(() => parseExternalSourceWebhook({ event: 'PAPER_SUBMITTED', flowId: 1 })),
    ).toMatchObject({
      kind: 'validation',
      code: 'unknown_event',
    });
    const e = rejection(() =>
      parseExternalSourceWebhook({ requestId: 'r', flowId: 'abc', reference: 'a b' }),
    );
    expect(e.code).toBe('invalid_payload');
    const issues = (e.details as { issues: string[] }).issues;
    expect(issues.some((i) => i.startsWith('flowId:'))).toBe(true);
    expect(issues.some((i) => i.startsWith('reference:'))).toBe(true);
    expect(rejection(() => parseExternalSourceWebhook({ requestId: 'r' })).message).toContain(
      'flowId: missing',
    );
    expect(rejection(() => parseExternalSourceWebhook([1, 2])).code).toBe('invalid_payload');
    expect(rejection(() => parseExternalSourceWebhook({ flowId: 1.5 })).code).toBe('invalid_payload');
    expect(
      rejection(() => parseExternalSourceWebhook({ flowId: 1 }, { requireEventName: true })).message,
    ).toContain('event: missing');
  });

  it('de-duplicates on the request id first, then an event id, then the call id, then the body hash', () => {
    const body = (o: object) => Buffer.from(JSON.stringify(o));
    expect(dedupKeyOf(body({ requestId: 'r-1', flowId: 1 }), { 'x-wiseflow-webhook-id': 'call-9' })).toEqual({
      key: 'request:r-1',
      source: 'requestId',
    });
    // A redelivery carries the same request id but a new call id: same key.
    expect(
      dedupKeyOf(body({ requestId: 'r-1', flowId: 1 }), { 'X-WISEflow-Webhook-Id': 'call-10' }).key,
    ).toBe('request:r-1');
    expect(dedupKeyOf(body({ sequenceNumber: 77, flowId: 1 }), {}).key).toBe('event:77');
    expect(dedupKeyOf(body({ flowId: 1 }), new Headers({ 'webhook-id': 'c-1' })).key).toBe('call:c-1');
    const hashed = dedupKeyOf(Buffer.from('not json'), () => undefined);
    expect(hashed.source).toBe('bodyHash');
    expect(hashed.key).toMatch(/^body:[0-9a-f]{64}$/);
    expect(dedupKeyOf(body({ requestId: 'x'.repeat(500) }), {}).key.length).toBeLessThanOrEqual(200);
  });
});

describe('signature', () => {
  const body = Buffer.from(
    '{"event":"FLOW_EXTERNAL_SOURCE","requestId":"r-1","flowId":13510,"flowCode":"EXAM-2024"}',
  );

  it('is HMAC-SHA256 of the raw body with the secret, base64 by default (independent vectors)', () => {
    expect(signWiseflowBody(body, 'top-secret')).toBe('6fVwEYx+NEKvG8VG4GdFghtSC/D2/U0yVs40TlmDe6Q=');
    expect(signWiseflowBody(body, 'top-secret', { ...WISEFLOW_SIGNATURE_DEFAULTS, encoding: 'hex' })).toBe(
      'e9f570118c7e3442af1bc546e06745821b520bf0f6fd4d3256ce344e59837ba4',
    );
    expect(
      signWiseflowBody(
        body,
        'top-secret',
        { ...WISEFLOW_SIGNATURE_DEFAULTS, signedContent: 'timestamp.body' },
        '1718900000',
      ),
    ).toBe('qm3XQ/e5cdqtSB1czQYPhCC+VGxRScbPK6O6HDatLMQ=');
  });

  it('parses timestamps in the three formats and nothing else', () => {
    expect(parseTimestamp('1718900000', 'unix-seconds')).toBe(1_718_900_000_000);
    expect(parseTimestamp('1718900000123', 'unix-ms')).toBe(1_718_900_000_123);
    expect(parseTimestamp('2024-06-20T16:13:20Z', 'iso')).toBe(1_718_900_000_000);
    expect(parseTimestamp('17189e5', 'unix-seconds')).toBeUndefined();
    expect(parseTimestamp('', 'unix-seconds')).toBeUndefined();
  });
});

describe('references', () => {
  it('accepts the wide set on input and creates only the strict set', () => {
    expect(parseReference('A|B:c.d;e,f_g-h')).toBe('A|B:c.d;e,f_g-h');
    expect(rejection(() => parseReference('with space')).code).toBe('invalid_reference');
    expect(rejection(() => parseReference('')).code).toBe('invalid_reference');
    expect(rejection(() => parseReference('x'.repeat(256))).code).toBe('invalid_reference');
    expect(parseStrictReference('Class_A-1')).toBe('Class_A-1');
    expect(rejection(() => parseStrictReference('Class.A')).message).toContain('cannot be created');
  });

  it('derives a reference from the flow code: unchanged when already valid, deterministic otherwise', () => {
    expect(referenceFromFlowCode('EXAM-2024_A', '1')).toBe('EXAM-2024_A');
    const a = referenceFromFlowCode('EXAM 2024/A', '1');
    expect(a).toMatch(/^EXAM-2024-A_[0-9a-f]{10}$/);
    expect(referenceFromFlowCode('EXAM 2024/A', '2')).toBe(a);
    // Codes that sanitise alike still differ, and never equal a code that was used unchanged.
    const variants = ['A.B', 'A:B', 'A|B', 'A B'].map((c) => referenceFromFlowCode(c, '1'));
    expect(new Set([...variants, 'A-B']).size).toBe(5);
    expect(referenceFromFlowCode('Økonomi å', '1')).toMatch(/^konomi-a_[0-9a-f]{10}$/);
    expect(referenceFromFlowCode('', '123')).toBe('flow-123');
    expect(referenceFromFlowCode(undefined, '123')).toBe('flow-123');
    expect(referenceFromFlowCode('!!!', '1')).toMatch(/^flow_[0-9a-f]{10}$/);
    const long = referenceFromFlowCode('x.'.repeat(300), '1');
    expect(long.length).toBe(REFERENCE_MAX_LENGTH);
  });

  it('every derived reference is valid under the strict pattern (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), fc.nat(), (code, flowId) => {
        const r = referenceFromFlowCode(code, String(flowId));
        expect(isStrictReference(r)).toBe(true);
        expect(referenceFromFlowCode(code, String(flowId))).toBe(r);
      }),
      { numRuns: 500 },
    );
  });
});
