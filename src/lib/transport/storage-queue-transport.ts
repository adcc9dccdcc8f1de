/**
 * Transport over Azure Storage queues (Azurite locally). Bodies are JSON, base64-encoded, as
 * the Functions queue trigger expects with host.json `messageEncoding: base64`. Storage queues
 * have no duplicate detection: a re-sent message is delivered again, and the batch ledger
 * makes its second application a no-op (see src/lib/sync/ledger.ts).
 */
import type { QueueClient, QueueServiceClient } from '@azure/storage-queue';
import { ConfigError } from '../errors';
import type { OutgoingMessage, QueueRole, Transport } from '../ports';

/** Storage queue messages are at most 64 KiB after base64 (which adds a third). */
export const STORAGE_QUEUE_MAX_JSON_BYTES = 48 * 1024;

export function encodeQueueMessage(body: unknown): string {
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64');
}

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
    for (const m of messages) {
      const text = encodeQueueMessage(m.body);
      if (text.length > 64 * 1024)
        throw new Error(`message ${m.messageId} is ${text.length} bytes encoded; storage queues take 64 KiB`);
      await client.sendMessage(text);
    }
  }

  async close(): Promise<void> {}
}
