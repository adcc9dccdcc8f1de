/**
 * Record identity: the one rule that builds and splits a record key, and the record's wire
 * form inside queue messages.
 *
 * A key is `<flow>|<id>`: the flow's name (letters, digits, hyphens: never a `|`), then the
 * record's own id exactly as the source sends it (a view's zero-padded RecordID, an entity's key
 * fields). The flow part keeps two flows' records apart in a shared target; the id part may
 * contain anything, including `|`.
 */
import { z } from 'zod';
import type { TargetRecord } from './ports';

export function recordKey(flow: string, id: string): string {
  if (flow === '' || flow.includes('|'))
    throw new Error(`flow name ${JSON.stringify(flow)} cannot key records`);
  return `${flow}|${id}`;
}

export function splitRecordKey(key: string): { flow: string; id: string } {
  const i = key.indexOf('|');
  if (i <= 0) throw new Error(`record key ${JSON.stringify(key)} is not <flow>|<id>`);
  return { flow: key.slice(0, i), id: key.slice(i + 1) };
}

const decimal = z.string().regex(/^\d+$/, 'must be a decimal string');

/** A record inside a records message: short field names, the version as decimal text. */
export const wireRecordSchema = z.object({
  /** The record's id within its flow (a view's RecordID, zero padding kept). */
  id: z.string().min(1),
  /** Version as a decimal string (BigInt-safe). */
  v: decimal,
  /** Applied as a deletion (tombstone). */
  del: z.boolean(),
  data: z.record(z.string(), z.unknown()),
});
export type WireRecord = z.infer<typeof wireRecordSchema>;

export const targetRecordOf = (flow: string, r: WireRecord): TargetRecord => ({
  key: recordKey(flow, r.id),
  version: BigInt(r.v),
  deleted: r.del,
  data: r.data,
});
