/**
 * Transport over Azure Service Bus queues (the card's default in Azure).
 *
 * - Messages go out in SDK batches (`createMessageBatch` / `tryAddMessage`), split by size, in
 *   order. All batches are built before the first is sent, so a message that cannot fit even an
 *   empty batch fails the whole call (naming its messageId and size) before anything is sent.
 * - A batch is never larger than 1 MB (or `maxBatchBytes` when smaller). The SDK would size it by
 *   the link's max message size, which on Premium is the entity's max message size (1 MB by
 *   default, up to 100 MB with large-message support), but Service Bus rejects a batch SEND above
 *   1 MB (`MessageSizeExceeded`). On Standard the link's 256 KB is the tighter bound anyway.
 * - `maxMessageBytes`, the JSON budget of one message that the engine packs records into,
 *   follows the tier: what fits one batch (Standard: the 256 KB message limit, which includes
 *   headers; Premium: the 1 MB batch limit, since every message goes out in a batch) minus
 *   `HEADER_HEADROOM_BYTES` for the message's headers and the batch envelope: 200 KiB on
 *   Standard, 968 KiB on Premium. Larger messages would need Premium's large-message support
 *   with single (non-batch) sends, which this transport does not do.
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

export type ServiceBusTier = 'standard' | 'premium';

export interface ServiceBusTransportOptions {
  access: ServiceBusAccess;
  queues: Record<QueueRole, string>;
  /** The namespace's tier (SERVICE_BUS_TIER): decides the per-message JSON budget. Default standard. */
  tier?: ServiceBusTier;
  /**
   * Upper bound of one SDK batch in bytes: default 1 MB (Service Bus' limit of a batch send), and
   * never more than the link's max message size. Must leave room for HEADER_HEADROOM_BYTES.
   */
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
    tier: ServiceBusTier = 'standard',
  ) {
    super(
      `message ${messageId} is too large for Service Bus queue ${queueName}: its JSON body is ${bodyBytes} bytes ` +
        `and it does not fit an empty batch of at most ${maxBatchBytes} bytes (${tier} tier; a batch send ` +
        `never carries more than 1 MB, on Premium either)`,
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

/** Service Bus rejects a batch send above 1 MB, whatever the tier and the entity's max message size. */
export const SERVICE_BUS_MAX_BATCH_BYTES = 1024 * 1024;

/** Largest message (headers included) per tier, as far as a batch can carry it. */
const TIER_MESSAGE_BYTES: Record<ServiceBusTier, number> = {
  standard: 256 * 1024,
  premium: SERVICE_BUS_MAX_BATCH_BYTES,
};

/**
 * Room left for what a message carries besides its JSON body: system properties (messageId of at
 * most 128 characters, content type), the application properties `{ kind, batchId }` and the
 * batch envelope. Those take well under 1 KiB; 56 KiB keeps the Standard budget at its 200 KiB.
 */
export const HEADER_HEADROOM_BYTES = 56 * 1024;

/** JSON budget of one message on a tier (200 KiB on Standard, 968 KiB on Premium). */
export function serviceBusMaxJsonBytes(
  tier: ServiceBusTier,
  maxBatchBytes = SERVICE_BUS_MAX_BATCH_BYTES,
): number {
  return Math.min(TIER_MESSAGE_BYTES[tier], maxBatchBytes) - HEADER_HEADROOM_BYTES;
}

/** JSON budget of one Service Bus message on the Standard tier (256 KB including headers). */
export const SERVICE_BUS_MAX_JSON_BYTES = serviceBusMaxJsonBytes('standard');

export class ServiceBusTransport implements Transport {
  readonly maxMessageBytes: number;
  readonly tier: ServiceBusTier;
  private readonly client: ServiceBusClient;
  private readonly senders = new Map<QueueRole, ServiceBusSender>();
  /** Per queue role: the link's max message size, learnt from the first batch. */
  private readonly linkMaxBytes = new Map<QueueRole, number>();
  private readonly queues: Record<QueueRole, string>;
  private readonly maxBatchBytes: number;

  constructor(o: ServiceBusTransportOptions) {
    this.tier = o.tier ?? 'standard';
    this.maxBatchBytes = Math.min(
      o.maxBatchBytes ?? SERVICE_BUS_MAX_BATCH_BYTES,
      SERVICE_BUS_MAX_BATCH_BYTES,
    );
    if (!Number.isInteger(this.maxBatchBytes) || this.maxBatchBytes <= HEADER_HEADROOM_BYTES)
      throw new ConfigError(
        `ServiceBusTransport: maxBatchBytes must be an integer above ${HEADER_HEADROOM_BYTES} (room for the headers)`,
      );
    this.maxMessageBytes = serviceBusMaxJsonBytes(this.tier, this.maxBatchBytes);
    this.client = createServiceBusClient(o.access, o.clientOptions);
    this.queues = { ...o.queues };
  }

  async send(queue: QueueRole, messages: OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const sender = this.sender(queue);
    const batches = await this.pack(queue, sender, this.queueName(queue), messages);
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
    role: QueueRole,
    sender: ServiceBusSender,
    queueName: string,
    messages: OutgoingMessage[],
  ): Promise<ServiceBusMessageBatch[]> {
    let linkMax = this.linkMaxBytes.get(role);
    if (linkMax === undefined) {
      linkMax = (await sender.createMessageBatch()).maxSizeInBytes; // the SDK's default: the link's max
      this.linkMaxBytes.set(role, linkMax);
    }
    const maxSizeInBytes = Math.min(linkMax, this.maxBatchBytes);
    const newBatch = () => sender.createMessageBatch({ maxSizeInBytes });
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
      throw new MessageTooLargeError(
        m.messageId,
        jsonBytes(m.body),
        batch.maxSizeInBytes,
        queueName,
        this.tier,
      );
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
