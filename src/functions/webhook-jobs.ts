/** Jobs queue: runs each accepted webhook's job (WISEflow sync request, F&O business event). */
import { getApp } from '../lib/compose';
import { runWebhookJob } from '../lib/jobs/worker';
import { contextLog, registerQueueFunction } from './shared/invocation';

registerQueueFunction('webhookJobs', 'jobs', 'main', async (body, delivery, context) => {
  const app = getApp();
  await runWebhookJob(
    body,
    { deliveryCount: delivery.deliveryCount, maxDeliveries: app.config.transport.maxDeliveries },
    { store: app.webhookStore, handlers: app.jobHandlers, log: contextLog(context) },
  );
});
