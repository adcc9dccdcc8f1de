/**
 * Queue message bodies of the batch engine, validated at the trigger boundary. Every message
 * names its stream, so one records queue and one control queue serve every flow.
 *
 * Messages sent before flows existed named a `view` instead of a `stream` (the view name was
 * the stream): they are still read, so a message in flight across an upgrade is not lost.
 */
import { z } from 'zod';
import { wireRecordSchema } from '../records';

/** Trace context of the sender (optional; a malformed one is ignored, never a reason to refuse). */
const traceparent = z.string().max(128).optional().catch(undefined);

const streamName = z
  .string()
  .regex(/^[A-Za-z0-9-]{1,40}(:[A-Za-z0-9._-]{1,200})?$/, 'must be <flow> or <flow>:<sub>');

/** Accepts `view` (before flows) as `stream`. */
const legacyView = (input: unknown) =>
  input && typeof input === 'object' && !('stream' in input) && 'view' in input
    ? { ...(input as Record<string, unknown>), stream: (input as { view: unknown }).view }
    : input;

export const recordsMessageSchema = z.preprocess(
  legacyView,
  z.object({
    type: z.literal('records'),
    stream: streamName,
    batchId: z.string().min(1),
    chunk: z.number().int().nonnegative(),
    records: z.array(wireRecordSchema).min(1),
    traceparent,
  }),
);
export type RecordsMessage = z.output<typeof recordsMessageSchema>;

export const controlMessageSchema = z.preprocess(
  legacyView,
  z.discriminatedUnion('type', [
    z.object({
      type: z.literal('batch-drained'),
      stream: streamName,
      batchId: z.string().min(1),
      traceparent,
    }),
    z.object({ type: z.literal('poll'), stream: streamName, reason: z.string(), traceparent }),
  ]),
);
export type ControlMessage = z.output<typeof controlMessageSchema>;

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
