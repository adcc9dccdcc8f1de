/** Glue between the Functions runtime and src/lib: loggers and queue-trigger registration. */
import { app, type InvocationContext } from '@azure/functions';
import { registrationSettings } from '../../lib/config';
import type { Log } from '../../lib/log';
import { structuredLog } from '../../lib/telemetry/log';
import { deadLetterReasonOf } from '../../lib/transport/dead-letter';

/**
 * The invocation's logger: structured (properties are fields of an OpenTelemetry log record,
 * correlated by function and invocation id plus what the caller adds: flow, batch id, message
 * id, event id), redacted, and the same line as text in the context log.
 */
export function contextLog(context: InvocationContext, correlation: Record<string, unknown> = {}): Log {
  return structuredLog(
    { functionName: context.functionName, invocationId: context.invocationId, ...correlation },
    (level, line) => context[level](line),
  );
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
