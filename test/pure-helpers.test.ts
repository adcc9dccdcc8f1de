import { describe, expect, it } from 'vitest';
import { parseSourceRecord, stateOf } from '../src/lib/flowfinity/record';
import {
  escapeKey,
  textFromProperties,
  textToProperties,
  unescapeKey,
} from '../src/lib/storage/table-helpers';
import { chunkRecords } from '../src/lib/sync/planner';
import type { WireRecord } from '../src/lib/sync/messages';

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
