/**
 * Every 5 minutes: re-sends the job message of accepted webhook events that would otherwise never
 * finish (intake.redispatchStale): markers still `pending` (the intake died between storing the
 * event and enqueuing it, and the sender gave up) and events whose worker died holding the claim
 * (the queue may have given their message up while the claim was live). Registered when a
 * webhook flow is configured (otherwise it finds nothing to do).
 */
import { app } from '@azure/functions';
import { getApp } from '../lib/compose';
import { errorText } from '../lib/errors';
import { businessEventRoute } from '../lib/flows/business-event/route';
import { createWebhookIntake, type WebhookIntake } from '../lib/webhooks';
import { contextLog } from './shared/invocation';

/** NCRONTAB: every 5 minutes, as SYNC_SCHEDULE's default. */
const SCHEDULE = '0 */5 * * * *';

app.timer('webhookRedispatch', {
  schedule: SCHEDULE,
  handler: async (_timer, context) => {
    const services = getApp();
    const log = contextLog(context);
    const options = { store: services.webhookStore, transport: services.engine.transport, log };
    const intakes: WebhookIntake[] = [];
    if (services.businessEventFlows.length > 0)
      intakes.push(createWebhookIntake(businessEventRoute(services.businessEventFlows), options));
    if (services.externalSource) intakes.push(createWebhookIntake(services.externalSource.route(), options));
    for (const intake of intakes)
      try {
        const sent = await intake.redispatchStale();
        if (sent > 0) log.warn('webhook jobs re-sent', { route: intake.route, sent });
      } catch (e) {
        log.error('webhook redispatch failed', { route: intake.route, error: errorText(e) });
        throw e;
      }
  },
});
