/** Jobs queue: runs each accepted webhook's job (WISEflow sync request, F&O business event). */
import { getApp } from '../lib/compose';
import { runWebhookJob } from '../lib/jobs/worker';
import { inSpan, traceparentOf } from '../lib/telemetry';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('webhookJobs', 'jobs', 'main', async (body, delivery, context) => {
  const app = getApp();
  await inSpan(
    'job',
    { deliveryCount: delivery.deliveryCount },
    () =>
      runWebhookJob(
        body,
        { deliveryCount: delivery.deliveryCount, maxDeliveries: app.config.transport.maxDeliveries },
        { store: app.webhookStore, handlers: app.jobHandlers, log: contextLog(context) },
      ),
    // The job joins the trace of the webhook request that accepted it.
    traceparentOf(body),
  );
});
