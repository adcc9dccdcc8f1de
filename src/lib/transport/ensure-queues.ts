/**
 * Makes sure the app's queues exist before the triggers need them (called from an app-start hook
 * and by `npm start`):
 *
 * - storage queues are created when missing (Azurite starts empty, and with
 *   TRANSPORT=storagequeue nothing in Azure creates them either);
 * - Service Bus queues are never created by the app: they need duplicate detection, a delivery
 *   limit and a lock duration that infra sets (infra/app/servicebus.bicep), and the app's identity
 *   should not hold Manage rights for that. A missing queue is reported as a ConfigError that
 *   names the queue and the setting that names it, instead of the first send failing later with
 *   the SDK's MessagingEntityNotFound. The check opens a sender link (what Service Bus refuses for
 *   a missing entity) and sends nothing: `ServiceBusAdministrationClient` would need the Manage
 *   claim and an HTTPS endpoint that local test servers do not have.
 */
import type { ServiceBusClient } from '@azure/service-bus';
import type { QueueServiceClient } from '@azure/storage-queue';
import { ConfigError, errorText } from '../errors';

/** One queue the app uses and the setting that names it (for the error message). */
export interface QueueSpec {
  name: string;
  setting: string;
}

export type EnsureQueuesOptions =
  | { transport: 'storagequeue'; queues: QueueSpec[]; queueService: QueueServiceClient }
  | {
      transport: 'servicebus';
      queues: QueueSpec[];
      client: ServiceBusClient;
      /** How long one check may take before it counts as failed (default 30 s). */
      timeoutMs?: number;
      /** The namespace, for the error message. */
      namespace?: string;
    };

const NOT_FOUND = new Set(['MessagingEntityNotFound', 'amqp:not-found']);

function isNotFound(e: unknown): boolean {
  const x = e as { code?: unknown; condition?: unknown; name?: unknown };
  return (
    (typeof x?.code === 'string' && NOT_FOUND.has(x.code)) ||
    (typeof x?.condition === 'string' && NOT_FOUND.has(x.condition))
  );
}

/** Creates missing storage queues; checks that Service Bus queues exist. Throws ConfigError. */
export async function ensureQueues(o: EnsureQueuesOptions): Promise<void> {
  if (o.transport === 'storagequeue') {
    await Promise.all(o.queues.map((q) => o.queueService.getQueueClient(q.name).createIfNotExists()));
    return;
  }
  const problems: string[] = [];
  const where = o.namespace ? ` in Service Bus namespace ${o.namespace}` : '';
  await Promise.all(
    o.queues.map(async (q) => {
      const sender = o.client.createSender(q.name);
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), o.timeoutMs ?? 30_000);
      try {
        // Opens the sender link: Service Bus refuses it for a missing queue. Nothing is sent.
        await sender.createMessageBatch({ abortSignal: abort.signal });
      } catch (e) {
        if (isNotFound(e))
          problems.push(
            `${q.setting}: the queue "${q.name}" does not exist${where}. Create it with duplicate detection, ` +
              `max delivery count and lock duration as infra/app/servicebus.bicep does (azd provision), ` +
              `or set ${q.setting} to an existing queue`,
          );
        else
          problems.push(
            `${q.setting}: could not check the queue "${q.name}"${where}: ${errorText(e)}` +
              (abort.signal.aborted ? ' (timed out)' : ''),
          );
      } finally {
        clearTimeout(timer);
        await sender.close().catch(() => undefined);
      }
    }),
  );
  if (problems.length > 0) throw new ConfigError(problems);
}
