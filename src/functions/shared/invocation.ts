/** Glue between the Functions runtime and src/lib: loggers and queue-trigger registration. */
import { app, type InvocationContext } from '@azure/functions';
import { registrationSettings } from '../../lib/config';
import type { Log } from '../../lib/log';
import { deadLetterReasonOf } from '../../lib/transport/dead-letter';

export function contextLog(context: InvocationContext): Log {
  const fmt = (m: string, p?: Record<string, unknown>) => (p ? `${m} ${JSON.stringify(p)}` : m);
  return {
    info: (m, p) => context.info(fmt(m, p)),
    warn: (m, p) => context.warn(fmt(m, p)),
    error: (m, p) => context.error(fmt(m, p)),
  };
}

export interface QueueDelivery {
  deliveryCount: number;
  /** Dead-letter reason (Service Bus) for messages from the dead-letter queue. */
  deadLetterReason?: string;
}

export type QueueHandler = (
  body: unknown,
  delivery: QueueDelivery,
  context: InvocationContext,
) => Promise<void>;

/**
 * Registers a queue-triggered function on the configured transport: a storage queue
 * (`<queue>` / `<queue>-poison`) or a Service Bus queue (`<queue>` / `<queue>/$deadletterqueue`).
 * `queueRole` picks the records, control or jobs queue named by the settings.
 */
export function registerQueueFunction(
  name: string,
  queueRole: 'records' | 'control' | 'jobs',
  source: 'main' | 'poison',
  handler: QueueHandler,
): void {
  const r = registrationSettings();
  const transport = r.transport;
  const queue = { records: r.recordsQueue, control: r.controlQueue, jobs: r.jobsQueue }[queueRole];
  if (transport === 'servicebus') {
    app.serviceBusQueue(name, {
      connection: 'ServiceBusConnection',
      queueName: source === 'poison' ? `${queue}/$deadletterqueue` : queue,
      handler: (body, context) =>
        handler(
          body,
          {
            deliveryCount: Number(context.triggerMetadata?.deliveryCount ?? 1),
            deadLetterReason: deadLetterReasonOf(context.triggerMetadata),
          },
          context,
        ),
    });
  } else {
    app.storageQueue(name, {
      connection: 'AzureWebJobsStorage',
      queueName: source === 'poison' ? `${queue}-poison` : queue,
      handler: (body, context) =>
        handler(body, { deliveryCount: Number(context.triggerMetadata?.dequeueCount ?? 1) }, context),
    });
  }
}
