/**
 * The `business-event` webhook route for the shared intake (src/lib/webhooks): F&O posts one
 * business event per request; the function key is the authentication (F&O signs nothing).
 *
 * - F&O's endpoint-activation test message is answered 202 `ignored: activation_test` before
 *   any validation (it carries little more than its BusinessEventId).
 * - The envelope is validated with `businessEventSchema` (ControlNumber exact beyond 2^53,
 *   EventTime as /Date(ms)/, unknown fields kept).
 * - Allow-lists: the event goes to the first business-event flow whose event ids and entities
 *   allow it; none → 202 ignored with the reason code (`event_id_not_allowed`,
 *   `not_a_data_export`, `entity_not_allowed`), logged and counted by the function.
 * - De-duplication: by EventId, and by ControlNumber per entity (a second event for the same
 *   export).
 */
import { z } from 'zod';
import {
  businessEventSchema,
  dedupKeysOf,
  factsOf,
  filterBusinessEvent,
  isActivationTestEvent,
  type BusinessEvent,
  type FilterDecision,
} from '../../finops';
import type { WebhookRoute } from '../../webhooks';
import type { BusinessEventFlow } from './flow';
import { BUSINESS_EVENT_JOB_KIND, type BusinessEventJob } from './runtime';

export const BUSINESS_EVENT_ROUTE = 'business-event';

/** The intake parses integers beyond 2^53 as bigint; the envelope schema takes their decimal text. */
const bigintsAsText = (v: unknown): unknown =>
  v !== null && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(
        Object.entries(v as Record<string, unknown>).map(([k, x]) => [
          k,
          typeof x === 'bigint' ? x.toString() : x,
        ]),
      )
    : v;

export const businessEventRouteSchema = z.preprocess(
  bigintsAsText,
  businessEventSchema,
) as unknown as z.ZodType<BusinessEvent>;

/** Which flow takes an event, or why none does (the first flow's reason). */
export function routeEvent(
  flows: readonly BusinessEventFlow[],
  event: BusinessEvent,
): { flow: BusinessEventFlow } | { ignore: Extract<FilterDecision, { action: 'ignore' }> } {
  const facts = factsOf(event);
  let first: Extract<FilterDecision, { action: 'ignore' }> | undefined;
  for (const flow of flows) {
    const d = filterBusinessEvent(facts, flow.finops.filter);
    if (d.action === 'accept') return { flow };
    first ??= d;
  }
  return {
    ignore: first ?? {
      action: 'ignore',
      code: 'event_id_not_allowed',
      reason: 'no business-event flow is configured',
    },
  };
}

export function businessEventRoute(flows: readonly BusinessEventFlow[]): WebhookRoute<BusinessEvent> {
  return {
    name: BUSINESS_EVENT_ROUTE,
    schema: businessEventRouteSchema,
    signature: { kind: 'none' },
    ignoreRaw: (json) =>
      json !== null &&
      typeof json === 'object' &&
      !Array.isArray(json) &&
      isActivationTestEvent(json as Record<string, unknown>)
        ? 'activation_test'
        : undefined,
    ignore: (event) => {
      const r = routeEvent(flows, event);
      return 'ignore' in r ? r.ignore.code : undefined;
    },
    eventKeys: (event) => {
      const k = dedupKeysOf(factsOf(event));
      return { eventId: k.byEventId, aliases: [k.byControlNumber] };
    },
    toJob: (event) => {
      const r = routeEvent(flows, event);
      if (!('flow' in r)) throw new Error('an ignored event reached toJob');
      const body: BusinessEventJob = { flow: r.flow.name, event };
      return { kind: BUSINESS_EVENT_JOB_KIND, body };
    },
  };
}
