/**
 * The intake route of WISEflow's FLOW_EXTERNAL_SOURCE webhook (`POST /api/webhooks/external-source`):
 * the payload schema (src/lib/wiseflow/webhook.ts: ids as strings or numbers, unknown fields
 * kept), the signature scheme from the settings, the de-duplication key and the job.
 *
 * De-duplication key, in order (a GAP, see docs/wiseflow.md): the sync request id (a
 * redelivery carries it again; a new press of "request update" gets a new one); else the body's
 * sequence number / event id; else WISEflow's call id header; else a digest of the payload.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { ExternalSourceFlowConfig } from '../../config/external-source-flows';
import { ValidationError } from '../../errors';
import { stringifyJson } from '../../webhooks/json';
import type { EventKeys, RouteContext, WebhookRoute } from '../../webhooks/intake';
import { parseExternalSourceWebhook, type ExternalSourceRequest } from '../../wiseflow/webhook';

/** What the worker gets: the request without the payload's other fields' bulk beyond `extra`. */
export const externalSourceJobSchema = z.object({
  flowId: z.string().regex(/^\d{1,18}$/),
  requestId: z.string().optional(),
  flowCode: z.string().optional(),
  reference: z.string().optional(),
  event: z.string().optional(),
  extra: z.record(z.string(), z.unknown()).optional(),
});
export type ExternalSourceJob = z.infer<typeof externalSourceJobSchema>;

const bounded = (s: string) => (s.length <= 180 ? s : createHash('sha256').update(s, 'utf8').digest('hex'));
const text = (v: unknown) =>
  typeof v === 'string' && v.trim() !== ''
    ? v.trim()
    : typeof v === 'number' || typeof v === 'bigint'
      ? String(v)
      : undefined;

export function externalSourceEventKeys(
  p: ExternalSourceRequest,
  ctx: Pick<RouteContext, 'headers'>,
  callIdHeader: string,
): EventKeys {
  if (p.requestId) return { eventId: `request:${bounded(p.requestId)}` };
  const inner = [p.extra, p.extra.data, p.extra.payload].filter(
    (l): l is Record<string, unknown> => typeof l === 'object' && l !== null && !Array.isArray(l),
  );
  for (const l of inner)
    for (const k of ['sequenceNumber', 'sequence', 'eventId']) {
      const v = text(l[k]);
      if (v) return { eventId: `event:${bounded(v)}` };
    }
  const call = ctx.headers(callIdHeader)?.trim();
  if (call) return { eventId: `call:${bounded(call)}` };
  const digest = createHash('sha256')
    .update(stringifyJson(p) ?? '', 'utf8')
    .digest('hex');
  return { eventId: `body:${digest}` };
}

export function externalSourceRoute(flow: ExternalSourceFlowConfig): WebhookRoute<ExternalSourceRequest> {
  const schema = z.unknown().transform((body, ctx): ExternalSourceRequest => {
    try {
      return parseExternalSourceWebhook(body, { requireEventName: flow.webhook.requireEventName });
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      const issues = (e.details as { issues?: unknown } | undefined)?.issues;
      const lines = Array.isArray(issues) && issues.length > 0 ? issues.map(String) : [e.message];
      for (const line of lines) ctx.addIssue({ code: 'custom', message: line });
      return z.NEVER;
    }
  });
  return {
    name: flow.webhook.route,
    schema,
    signature: flow.webhook.signature,
    maxBodyBytes: flow.webhook.maxBodyBytes,
    maxDepth: flow.webhook.maxDepth,
    eventKeys: (p, ctx) => externalSourceEventKeys(p, ctx, flow.webhook.callIdHeader),
    toJob: (p) => ({ kind: flow.webhook.jobKind, body: p satisfies ExternalSourceJob }),
  };
}
