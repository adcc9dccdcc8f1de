/**
 * Transport over Azure Service Bus queues (the card's default in Azure).
 *
 * - Messages go out in SDK batches (`createMessageBatch` / `tryAddMessage`), split by size, in
 *   order. All batches are built before the first is sent, so a message that cannot fit even an
 *   empty batch fails the whole call (naming its messageId and size) before anything is sent.
 * - `messageId` is the OutgoingMessage's deterministic id: a re-send after a crash is dropped by
 *   the queue's duplicate detection (enable `requiresDuplicateDetection` on the queues).
 * - Body: the JSON-serialisable body (the SDK writes it as UTF-8 JSON in a data section),
 *   `contentType: application/json`, application properties `{ kind, batchId }`.
 * - Access: a connection string, or managed identity (`DefaultAzureCredential`) with the
 *   namespace host name.
 * - No `ensureQueues`: Service Bus queues (with duplicate detection and max delivery count) are
 *   created by infra (infra/), never by the app; a missing queue fails the send with the SDK's
 *   MessagingEntityNotFound error.
 */
import {
  RetryMode,
  ServiceBusClient,
  type ServiceBusClientOptions,
  type ServiceBusMessage,
  type ServiceBusMessageBatch,
  type ServiceBusSender,
} from '@azure/service-bus';
import type { ServiceBusAccess } from '../config';
import { ConfigError } from '../errors';
import { azureCredential } from '../storage/clients';
import type { OutgoingMessage, QueueRole, Transport } from '../ports';

export interface ServiceBusTransportOptions {
  access: ServiceBusAccess;
  queues: Record<QueueRole, string>;
  /** Upper bound of one SDK batch in bytes; default (and never more than) the link's max message size. */
  maxBatchBytes?: number;
  /** SDK client options; the retry policy defaults to DEFAULT_SERVICE_BUS_RETRY. */
  clientOptions?: ServiceBusClientOptions;
}

/** Exponential back-off for sends (the SDK's own default is a fixed 30 s delay). */
export const DEFAULT_SERVICE_BUS_RETRY: NonNullable<ServiceBusClientOptions['retryOptions']> = {
  mode: RetryMode.Exponential,
  maxRetries: 5,
  retryDelayInMs: 500,
  maxRetryDelayInMs: 15_000,
};

export class MessageTooLargeError extends Error {
  constructor(
    readonly messageId: string,
    readonly bodyBytes: number,
    readonly maxBatchBytes: number,
    queueName: string,
  ) {
    super(
      `message ${messageId} is too large for Service Bus queue ${queueName}: its JSON body is ${bodyBytes} bytes ` +
        `and it does not fit an empty batch of at most ${maxBatchBytes} bytes`,
    );
    this.name = 'MessageTooLargeError';
  }
}

export function toServiceBusMessage(m: OutgoingMessage): ServiceBusMessage {
  return {
    messageId: m.messageId,
    body: m.body === undefined ? null : m.body,
    contentType: 'application/json',
    applicationProperties: m.batchId === undefined ? { kind: m.kind } : { kind: m.kind, batchId: m.batchId },
  };
}

export function createServiceBusClient(
  access: ServiceBusAccess,
  options?: ServiceBusClientOptions,
): ServiceBusClient {
  const o: ServiceBusClientOptions = {
    ...options,
    retryOptions: options?.retryOptions ?? DEFAULT_SERVICE_BUS_RETRY,
  };
  if (access.kind === 'connectionString') return new ServiceBusClient(access.connectionString, o);
  return new ServiceBusClient(access.fullyQualifiedNamespace, azureCredential(), o);
}

/** JSON budget of one Service Bus message (Standard tier: 256 KB including headers). */
export const SERVICE_BUS_MAX_JSON_BYTES = 200 * 1024;

export class ServiceBusTransport implements Transport {
  readonly maxMessageBytes = SERVICE_BUS_MAX_JSON_BYTES;
  private readonly client: ServiceBusClient;
  private readonly senders = new Map<QueueRole, ServiceBusSender>();
  private readonly queues: Record<QueueRole, string>;
  private readonly maxBatchBytes: number | undefined;

  constructor(o: ServiceBusTransportOptions) {
    this.client = createServiceBusClient(o.access, o.clientOptions);
    this.queues = { ...o.queues };
    this.maxBatchBytes = o.maxBatchBytes;
  }

  async send(queue: QueueRole, messages: OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const sender = this.sender(queue);
    const batches = await this.pack(sender, this.queueName(queue), messages);
    for (const batch of batches) await sender.sendMessages(batch);
  }

  async close(): Promise<void> {
    const senders = [...this.senders.values()];
    this.senders.clear();
    await Promise.allSettled(senders.map((s) => s.close()));
    await this.client.close();
  }

  private queueName(queue: QueueRole): string {
    const name = this.queues[queue];
    if (!name) throw new ConfigError(`no queue is configured for role "${queue}"`);
    return name;
  }

  private sender(queue: QueueRole): ServiceBusSender {
    let s = this.senders.get(queue);
    if (!s) {
      s = this.client.createSender(this.queueName(queue));
      this.senders.set(queue, s);
    }
    return s;
  }

  /** Packs the messages, in order, into as few batches as fit. */
  private async pack(
    sender: ServiceBusSender,
    queueName: string,
    messages: OutgoingMessage[],
  ): Promise<ServiceBusMessageBatch[]> {
    const newBatch = async () => {
      const first = await sender.createMessageBatch();
      if (this.maxBatchBytes === undefined || this.maxBatchBytes >= first.maxSizeInBytes) return first;
      return sender.createMessageBatch({ maxSizeInBytes: this.maxBatchBytes });
    };
    const batches: ServiceBusMessageBatch[] = [];
    let batch = await newBatch();
    for (const m of messages) {
      const sbMessage = toServiceBusMessage(m);
      if (batch.tryAddMessage(sbMessage)) continue;
      if (batch.count > 0) {
        batches.push(batch);
        batch = await newBatch();
        if (batch.tryAddMessage(sbMessage)) continue;
      }
      throw new MessageTooLargeError(m.messageId, jsonBytes(m.body), batch.maxSizeInBytes, queueName);
    }
    if (batch.count > 0) batches.push(batch);
    return batches;
  }
}

function jsonBytes(body: unknown): number {
  try {
    return Buffer.byteLength(JSON.stringify(body ?? null), 'utf8');
  } catch {
    return Number.NaN;
  }
}
