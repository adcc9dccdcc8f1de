/**
 * The `jobs` queue message the intake sends for an accepted webhook. It only names the event:
 * the job itself (the validated payload, or what the route made of it) is kept with the
 * de-duplication marker, so a payload of any accepted size fits any transport, and the worker
 * reads it when it claims the event (WebhookStore.claim).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

export const WEBHOOK_JOB_MESSAGE_TYPE = 'webhook-job';

export const webhookJobMessageSchema = z.object({
  type: z.literal(WEBHOOK_JOB_MESSAGE_TYPE),
  v: z.literal(1),
  /** The intake route (`external-source`, `business-event`). */
  route: z.string().min(1),
  /** The sender's own event id (the marker's key). */
  eventId: z.string().min(1),
  /** The job kind the route chose: which handler the worker runs. */
  jobKind: z.string().min(1),
  /** The request's trace context (optional; a malformed one is ignored). */
  traceparent: z.string().max(128).optional().catch(undefined),
});
export type WebhookJobMessage = z.infer<typeof webhookJobMessageSchema>;

/**
 * Deterministic message id: the same event always gets the same id, so Service Bus duplicate
 * detection drops a re-send after a crash. At most 128 characters (Service Bus's limit).
 */
export function webhookJobMessageId(route: string, eventId: string): string {
  const digest = createHash('sha256').update(`${route}\n${eventId}`, 'utf8').digest('hex').slice(0, 40);
  return `webhook:${route.slice(0, 60)}:${digest}`;
}
