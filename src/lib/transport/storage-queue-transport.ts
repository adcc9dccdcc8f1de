/**
 * Transport over Azure Storage queues (Azurite locally). Bodies are JSON, base64-encoded, as
 * the Functions queue trigger expects with host.json `messageEncoding: base64`. Storage queues
 * have no duplicate detection: a re-sent message is delivered again, and the batch ledger
 * makes its second application a no-op (see src/lib/batch/ledger.ts).
 *
 * A storage queue takes one message per request, and does not keep order between them anyway,
 * so a group is sent SEND_PARALLEL requests at a time: sequential sends made the request round
 * trip the planner's bottleneck (`npm run bench -- --only=plan`). The group's promise settles
 * only when every send did; the first failure is rethrown (a re-send is harmless: see above).
 */
import type { QueueClient, QueueServiceClient } from '@azure/storage-queue';
import { ConfigError } from '../errors';
import type { OutgoingMessage, QueueRole, Transport } from '../ports';

/** Storage queue messages are at most 64 KiB after base64 (which adds a third). */
export const STORAGE_QUEUE_MAX_JSON_BYTES = 48 * 1024;

export function encodeQueueMessage(body: unknown): string {
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64');
}

/** Requests in flight while sending one group of messages. */
export const SEND_PARALLEL = 16;

export class StorageQueueTransport implements Transport {
  readonly maxMessageBytes = STORAGE_QUEUE_MAX_JSON_BYTES;
  private readonly queues = new Map<QueueRole, QueueClient>();
  constructor(service: QueueServiceClient, names: Record<QueueRole, string>) {
    for (const [role, name] of Object.entries(names)) this.queues.set(role, service.getQueueClient(name));
  }

  async ensureQueues(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.createIfNotExists()));
  }

  async send(queue: QueueRole, messages: OutgoingMessage[]): Promise<void> {
    const client = this.queues.get(queue);
    if (!client) throw new ConfigError(`no queue is configured for role "${queue}"`);
    const texts = messages.map((m) => {
      const text = encodeQueueMessage(m.body);
      if (text.length > 64 * 1024)
        throw new Error(`message ${m.messageId} is ${text.length} bytes encoded; storage queues take 64 KiB`);
      return text;
    });
    let next = 0;
    const failures: unknown[] = [];
    const lane = async () => {
      while (next < texts.length && failures.length === 0) {
        const text = texts[next++]!;
        try {
          await client.sendMessage(text);
        } catch (e) {
          failures.push(e);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(SEND_PARALLEL, texts.length) }, lane));
    if (failures.length > 0) throw failures[0];
  }

  async close(): Promise<void> {}
}
