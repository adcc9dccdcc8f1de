/**
 * POST /api/webhooks/business-event: Dynamics 365 F&O business events (data exports), through
 * the shared webhook intake (function key, size cap, JSON, zod, de-duplication, durable enqueue,
 * 202). Registered only when a business-event flow is configured. See docs/finops.md.
 */
import { app } from '@azure/functions';
import { registrationSettings } from '../lib/config';
import { getApp, type AppServices } from '../lib/compose';
import { businessEventRoute } from '../lib/flows/business-event/route';
import { countIgnored } from '../lib/flows/business-event/ignored';
import { createWebhookIntake, type WebhookIntake } from '../lib/webhooks';
import { contextLog } from './shared/invocation';
import { currentTraceparent, inSpan, recordWebhookRequest } from '../lib/telemetry';

let intake: { app: AppServices; intake: WebhookIntake } | undefined;
const intakeOf = (services: AppServices): WebhookIntake => {
  if (intake?.app !== services)
    intake = {
      app: services,
      intake: createWebhookIntake(businessEventRoute(services.businessEventFlows), {
        store: services.webhookStore,
        transport: services.engine.transport,
        // WEBHOOK_MAX_BODY_BYTES / WEBHOOK_MAX_JSON_DEPTH: without them the intake's built-in
        // 256 KiB cap applied here whatever the app settings said.
        maxBodyBytes: services.config.webhook.maxBodyBytes,
        maxDepth: services.config.webhook.maxDepth,
        traceparent: currentTraceparent,
      }),
    };
  return intake.intake;
};

if (registrationSettings().businessEventFlows.length > 0)
  app.http('businessEventWebhook', {
    // Every method reaches the intake, which answers anything but POST with a JSON 405.
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    authLevel: 'function',
    route: 'webhooks/business-event',
    handler: async (request, context) => {
      const log = contextLog(context);
      const result = await inSpan('webhook', { route: 'business-event' }, () =>
        intakeOf(getApp()).handle({
          method: request.method,
          url: request.url,
          headers: request.headers,
          body: request.body,
        }),
      );
      recordWebhookRequest(result);
      const fields = {
        route: result.route,
        outcome: result.outcome,
        reason: result.reason,
        eventId: result.eventId,
        status: result.status,
        durationMs: result.durationMs,
      };
      if (result.outcome === 'ignored')
        log.info('business event ignored', {
          ...fields,
          ignoredSoFar: countIgnored(result.reason ?? 'unknown'),
        });
      else if (result.outcome === 'failed') log.error('business event not accepted', fields);
      else log.info('business event', fields);
      return { status: result.status, headers: result.headers, jsonBody: result.body };
    },
  });
