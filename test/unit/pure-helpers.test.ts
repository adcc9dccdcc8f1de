import { describe, expect, it } from 'vitest';
import { parseSourceRecord, stateOf } from '../../src/lib/flowfinity/record';
import {
  escapeKey,
  textFromProperties,
  textToProperties,
  unescapeKey,
} from '../../src/lib/storage/table-helpers';
import { chunkRecords } from '../../src/lib/batch/chunker';
import { controlMessageSchema, recordsMessageSchema } from '../../src/lib/batch/messages';
import {
  advanceWindow,
  decodeVersions,
  encodeVersions,
  trustedVersions,
} from '../../src/lib/flows/view-sync/window';
import { recordKey, splitRecordKey, type WireRecord } from '../../src/lib/records';
import { httpErrorOf, PermanentError, statusOf, ValidationError } from '../../src/lib/errors';

describe('table keys', () => {
  it('escapes the characters Table storage forbids and round-trips', () => {
    const id = 'a/b\\c#d?e%f\u0001g\u0085h-000227544';
    const k = escapeKey(id);
    // eslint-disable-next-line no-control-regex -- asserting that no control character survives
    expect(k).not.toMatch(/[/\\#?\u0000-\u001f\u007f-\u009f]/);
    expect(unescapeKey(k)).toBe(id);
    expect(escapeKey('000227544')).toBe('000227544');
  });
  it('splits long text over properties and joins it back', () => {
    const text = 'é'.repeat(70_000);
    const props = textToProperties('data', text)!;
    expect(props.dataParts).toBe(3);
    expect(textFromProperties('data', props)).toBe(text);
    expect(textToProperties('data', 'x'.repeat(1_000_000))).toBeUndefined();
  });
});

describe('records', () => {
  it('keeps lastSubmissionId exact beyond 2^53 and RecordID zero padding', () => {
    const r = parseSourceRecord({ RecordID: '000000042', lastSubmissionId: '9007199254740993' });
    expect(r).toMatchObject({ ok: true, record: { recordId: '000000042', version: 9007199254740993n } });
    expect(parseSourceRecord({ RecordID: '1', lastSubmissionId: 'abc' }).ok).toBe(false);
    expect(parseSourceRecord({ lastSubmissionId: 5 }).ok).toBe(false);
  });
  it('reads the state from a plain string or a Selection choice', () => {
    expect(stateOf({ State: 'Deleted' }, 'State')).toBe('Deleted');
    expect(stateOf({ State: { Selection: 'Deleted' } }, 'State')).toBe('Deleted');
    expect(stateOf({ State: { Selection: ['Qualified'] } }, 'State')).toBe('Qualified');
    expect(stateOf({}, 'State')).toBeUndefined();
  });
});

describe('chunking', () => {
  const rec = (i: number, size = 10): WireRecord => ({
    id: String(i),
    v: String(i),
    del: false,
    data: { x: 'y'.repeat(size) },
  });
  it('caps messages by record count and by bytes, keeping order', () => {
    const records = Array.from({ length: 45 }, (_, i) => rec(i));
    const byCount = chunkRecords(records, 20, 48_000);
    expect(byCount.map((c) => c.length)).toEqual([20, 20, 5]);
    expect(byCount.flat()).toEqual(records);
    const big = Array.from({ length: 10 }, (_, i) => rec(i, 10_000));
    const bySize = chunkRecords(big, 20, 48_000);
    expect(bySize.every((c) => Buffer.byteLength(JSON.stringify(c)) < 48_000)).toBe(true);
    expect(bySize.flat()).toEqual(big);
  });
});

describe('record keys', () => {
  it('builds <flow>|<id> and splits it back, whatever the id holds', () => {
    for (const id of ['000227544', 'a|b|c', 'é/#?', '']) {
      if (id === '') continue;
      expect(splitRecordKey(recordKey('leads', id))).toEqual({ flow: 'leads', id });
    }
    expect(() => recordKey('a|b', 'x')).toThrow(/cannot key records/);
    expect(() => splitRecordKey('nokey')).toThrow(/is not <flow>\|<id>/);
  });
});

describe('queue messages', () => {
  it('route by stream, and still read the `view` of messages sent before flows existed', () => {
    const records = [{ id: '1', v: '5', del: false, data: {} }];
    expect(
      recordsMessageSchema.parse({ type: 'records', view: 'leads', batchId: 'b', chunk: 0, records }),
    ).toMatchObject({
      stream: 'leads',
    });
    expect(
      recordsMessageSchema.parse({
        type: 'records',
        stream: 'fno:3C47A4CD-6EDC',
        batchId: 'b',
        chunk: 0,
        records,
      }),
    ).toMatchObject({ stream: 'fno:3C47A4CD-6EDC' });
    expect(controlMessageSchema.parse({ type: 'batch-drained', view: 'leads', batchId: 'b' })).toMatchObject({
      stream: 'leads',
    });
    expect(
      recordsMessageSchema.safeParse({ type: 'records', stream: 'a|b', batchId: 'b', chunk: 0, records })
        .success,
    ).toBe(false);
  });
});

describe('lookback window memory', () => {
  it('encodes versions compactly and exactly, beyond 2^64', () => {
    const vs = [18446744073709551617n, 5n, 1000n, 1001n, 5n];
    const text = encodeVersions(vs);
    expect(decodeVersions(text)).toEqual([5n, 1000n, 1001n, 18446744073709551617n]);
    expect(decodeVersions(encodeVersions([]))).toEqual([]);
    expect(text.length).toBeLessThan(30);
  });
  it('is trusted only for the cursor and lookback it was computed for, and keeps only the window', () => {
    const w = advanceWindow(undefined, undefined, 1000n, 100, [850n, 901n, 950n, 1000n]);
    expect(w).toEqual({ at: '1000', lookback: 100, versions: encodeVersions([901n, 950n, 1000n]) });
    expect(trustedVersions(w, 1000n, 100)).toEqual(new Set([901n, 950n, 1000n]));
    expect(trustedVersions(w, 999n, 100)).toBeUndefined();
    expect(trustedVersions(w, 1000n, 200)).toBeUndefined();
    // The next batch moves the cursor to 1050: what it applied joins, what fell out of the window leaves.
    const next = advanceWindow(w, 1000n, 1050n, 100, [960n, 1050n]);
    expect(decodeVersions(next.versions)).toEqual([960n, 1000n, 1050n]);
    // A memory for another cursor (moved by an operator) is not merged: only the batch's versions.
    expect(decodeVersions(advanceWindow(w, 2000n, 2010n, 100, [2010n]).versions)).toEqual([2010n]);
  });
});

describe('errors', () => {
  it('map to the shared JSON error shape; an unknown error never shows its message', () => {
    expect(httpErrorOf(new ValidationError('bad body', { details: { issues: ['x'] } }))).toEqual({
      status: 400,
      body: { error: { code: 'validation', message: 'bad body', details: { issues: ['x'] } } },
    });
    expect(httpErrorOf(new PermanentError('no', { code: 'refused', status: 403 })).status).toBe(403);
    expect(httpErrorOf(new Error('secret=hunter2'))).toEqual({
      status: 500,
      body: { error: { code: 'internal', message: 'internal error; see the function logs' } },
    });
    expect(statusOf({ statusCode: 412 })).toBe(412);
    expect(statusOf({ response: { status: 503 } })).toBe(503);
    expect(statusOf('nope')).toBeUndefined();
  });
});
