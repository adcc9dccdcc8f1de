/** Queue message bodies of the view-sync pipeline, validated at the trigger boundary. */
import { z } from 'zod';

import { wireRecordSchema } from '../records';

export { wireRecordSchema, type WireRecord } from '../records';

export const recordsMessageSchema = z.object({
  type: z.literal('records'),
  view: z.string().min(1),
  batchId: z.string().min(1),
  chunk: z.number().int().nonnegative(),
  records: z.array(wireRecordSchema).min(1),
});
export type RecordsMessage = z.infer<typeof recordsMessageSchema>;

export const controlMessageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('batch-drained'), view: z.string().min(1), batchId: z.string().min(1) }),
  z.object({ type: z.literal('poll'), view: z.string().min(1), reason: z.string() }),
]);
export type ControlMessage = z.infer<typeof controlMessageSchema>;

export const recordsMessageId = (batchId: string, chunk: number) => `${batchId}:${chunk}`;

/** Accepts a parsed object, a JSON string or a Buffer (the shapes triggers hand over). */
export function decodeBody(input: unknown): unknown {
  if (Buffer.isBuffer(input)) input = input.toString('utf8');
  if (typeof input === 'string') {
    try {
      return JSON.parse(input);
    } catch {
      return input;
    }
  }
  return input;
}

export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
}
