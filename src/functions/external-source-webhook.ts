/**
 * POST /api/webhooks/external-source: WISEflow's FLOW_EXTERNAL_SOURCE webhook ("a manager pressed
 * request update"). The shared intake checks it (size, content type, signature, timestamp,
 * payload), de-duplicates it and durably enqueues its job before answering 202; the jobs worker
 * (webhook-jobs.ts) then runs the update routine. Function key (authLevel function) plus the
 * WISEflow signature. Every method is routed here so a wrong one gets the intake's JSON 405.
 */
import { app } from '@azure/functions';
import { getApp } from '../lib/compose';
import { AppError, errorText, httpErrorOf, TransientError } from '../lib/errors';
import { createWebhookIntake } from '../lib/webhooks/intake';
import { contextLog } from './shared/invocation';
import { currentTraceparent, inSpan, recordWebhookRequest } from '../lib/telemetry';

app.http('externalSourceWebhook', {
  methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
  authLevel: 'function',
  route: 'webhooks/external-source',
  handler: async (request, context) => {
    const log = contextLog(context);
    let services;
    try {
      services = getApp();
    } catch (e) {
      log.error('external-source webhook: the app is not configured', { error: errorText(e) });
      // A ConfigError names settings, never values; WISEflow retries a 5xx later.
      const shown =
        e instanceof AppError ? e : new TransientError('the app is not ready', { code: 'unavailable' });
      return { status: 503, jsonBody: httpErrorOf(shown).body };
    }
    const service = services.externalSource;
    if (!service)
      return {
        status: 404,
        jsonBody: {
          error: {
            code: 'not_configured',
            message:
              'No external-source flow is configured: set Flows__<name>__Type=external-source and the WISEFLOW_* settings.',
          },
        },
      };
    const intake = createWebhookIntake(service.route(), {
      store: services.webhookStore,
      transport: services.transport,
      log,
      traceparent: currentTraceparent,
    });
    const result = await inSpan('webhook', { route: 'external-source' }, () =>
      intake.handle({
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
      }),
    );
    recordWebhookRequest(result);
    return { status: result.status, headers: result.headers, jsonBody: result.body };
  },
});
