/**
 * Flowfinity view records as they arrive on the wire, and the parsed form the pipeline uses.
 * Quirks tolerated: numbers as strings, zero-padded RecordID, {"Selection": ...} choices,
 * dates without offsets. lastSubmissionId may be a JSON number or a numeric string; it is kept
 * as BigInt and never compared as text. (Numbers beyond 2^53 must reach this schema as strings:
 * the streaming parser keeps number tokens as text for that reason.)
 */
import { z } from 'zod';
import type { SourceRecord } from '../ports';

export type { SourceRecord };

const idText = z.union([z.string(), z.number(), z.bigint()]).transform((v, ctx) => {
  const s = String(v).trim();
  if (!/^\d+$/.test(s)) {
    ctx.addIssue({
      code: 'custom',
      message: `must be a non-negative whole number, got ${JSON.stringify(v)}`,
    });
    return z.NEVER;
  }
  return BigInt(s);
});

export const viewRecordSchema = z.looseObject({
  RecordID: z.union([z.string().min(1), z.number().int().nonnegative()]).transform((v) => String(v)),
  lastSubmissionId: idText,
});

export type ParseResult = { ok: true; record: SourceRecord } | { ok: false; error: string };

/** Validates one raw record object from the view. */
export function parseSourceRecord(raw: unknown): ParseResult {
  const r = viewRecordSchema.safeParse(raw);
  if (!r.success) {
    return {
      ok: false,
      error: r.error.issues.map((i) => `${i.path.join('.') || '(record)'}: ${i.message}`).join('; '),
    };
  }
  return {
    ok: true,
    record: {
      recordId: r.data.RecordID,
      version: r.data.lastSubmissionId,
      data: raw as Record<string, unknown>,
    },
  };
}

/** The state name of a record: a plain string, or a {"Selection": value} choice. */
export function stateOf(data: Record<string, unknown>, field: string): string | undefined {
  const v = data[field];
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && 'Selection' in v) {
    const s = (v as { Selection: unknown }).Selection;
    if (typeof s === 'string') return s;
    if (Array.isArray(s) && typeof s[0] === 'string') return s[0];
  }
  return undefined;
}
