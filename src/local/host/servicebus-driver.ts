/**
 * Service Bus queue trigger for the local host, with the Functions Service Bus extension's
 * semantics (host.json `extensions.serviceBus`):
 *
 * - a peek-lock processor (`receiver.subscribe`) runs at most `maxConcurrency`
 *   (maxConcurrentCalls) invocations at once; the SDK renews message locks while they run;
 * - the handler gets the body as the SDK decodes it (a JSON body arrives parsed), and
 *   triggerMetadata like the extension's: messageId, deliveryCount (1 on the first delivery, as
 *   in the extension; the AMQP header and the JS SDK count from 0), enqueuedTimeUtc, lockToken,
 *   applicationProperties, sequenceNumber, contentType, ... and for dead letters
 *   deadLetterSource / deadLetterReason / deadLetterErrorDescription;
 * - success completes the message; a throw abandons it, so Service Bus redelivers it and
 *   dead-letters it after the queue's max delivery count (the queue's own setting; the
 *   `maxDeliveryCount` option only makes the log lines say "delivery 2 of 10");
 * - `queueName` may name the dead-letter sub-queue: `<queue>/$deadletterqueue`.
 *
 * `isIdle()`: nothing in flight, and neither a message nor a receive error for at least
 * `pollIntervalMs` while the processor had credit (the queue's available messages looked
 * empty). Scheduled messages and messages locked by another receiver are not seen.
 */
import type {
  ProcessErrorArgs,
  ServiceBusClient,
  ServiceBusReceivedMessage,
  ServiceBusReceiver,
} from '@azure/service-bus';
import { createServiceBusClient } from '../../lib/transport/servicebus-transport';
import type { ServiceBusAccess } from '../../lib/config';
import type { QueueDriverOptions, TriggerDriver } from './driver';

export interface ServiceBusDriverOptions extends QueueDriverOptions {
  connectionString?: string;
  fullyQualifiedNamespace?: string;
  /** The queue's max delivery count, for log lines only (Service Bus enforces its own). */
  maxDeliveryCount?: number;
  /** Lock renewal while an invocation runs (host.json maxAutoLockRenewalDuration). Default 5 minutes. */
  maxAutoLockRenewalDurationMs?: number;
}

const DEAD_LETTER_SUFFIX = /\/\$deadletterqueue$/i;

export function createServiceBusDriver(o: ServiceBusDriverOptions): TriggerDriver {
  return new ServiceBusDriver(o);
}

/** The triggerMetadata the Functions Service Bus extension binds for a message. */
export function serviceBusTriggerMetadata(m: ServiceBusReceivedMessage): Record<string, unknown> {
  const meta: Record<string, unknown> = {
    messageId: m.messageId,
    deliveryCount: (m.deliveryCount ?? 0) + 1,
    enqueuedTimeUtc: m.enqueuedTimeUtc?.toISOString(),
    expiresAtUtc: m.expiresAtUtc?.toISOString(),
    lockedUntilUtc: m.lockedUntilUtc?.toISOString(),
    lockToken: m.lockToken,
    sequenceNumber: m.sequenceNumber?.toNumber(),
    contentType: m.contentType,
    correlationId: m.correlationId,
    subject: m.subject,
    applicationProperties: m.applicationProperties ?? {},
  };
  if (m.deadLetterSource !== undefined) meta.deadLetterSource = m.deadLetterSource;
  if (m.deadLetterReason !== undefined) meta.deadLetterReason = m.deadLetterReason;
  if (m.deadLetterErrorDescription !== undefined)
    meta.deadLetterErrorDescription = m.deadLetterErrorDescription;
  for (const k of Object.keys(meta)) if (meta[k] === undefined) delete meta[k];
  return meta;
}

/** The body as the trigger binds it: parsed JSON stays an object; a JSON text or bytes are parsed when they can be. */
export function serviceBusTriggerInput(body: unknown): unknown {
  const text =
    Buffer.isBuffer(body) || body instanceof Uint8Array ? Buffer.from(body).toString('utf8') : undefined;
  if (text === undefined) return body;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export class ServiceBusDriver implements TriggerDriver {
  readonly description: string;
  private readonly queue: string;
  private readonly deadLetter: boolean;
  private client: ServiceBusClient | undefined;
  private receiver: ServiceBusReceiver | undefined;
  private subscription: { close(): Promise<void> } | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private lastActivityAt = 0;
  private failing = false;

  constructor(private readonly o: ServiceBusDriverOptions) {
    if (!o.connectionString && !o.fullyQualifiedNamespace)
      throw new Error(
        `Service Bus trigger on ${o.queueName}: needs a connection string or a fullyQualifiedNamespace`,
      );
    this.deadLetter = DEAD_LETTER_SUFFIX.test(o.queueName);
    this.queue = o.queueName.replace(DEAD_LETTER_SUFFIX, '');
    this.description = `service bus queue ${o.queueName}`;
  }

  async start(): Promise<void> {
    if (this.subscription) return;
    const access: ServiceBusAccess = this.o.connectionString
      ? { kind: 'connectionString', connectionString: this.o.connectionString }
      : { kind: 'identity', fullyQualifiedNamespace: this.o.fullyQualifiedNamespace! };
    this.client = createServiceBusClient(access);
    this.receiver = this.client.createReceiver(this.queue, {
      receiveMode: 'peekLock',
      subQueueType: this.deadLetter ? 'deadLetter' : undefined,
      maxAutoLockRenewalDurationInMs: this.o.maxAutoLockRenewalDurationMs ?? 5 * 60_000,
    });
    this.lastActivityAt = Date.now();
    this.subscription = this.receiver.subscribe(
      {
        processMessage: (m) => this.track(m),
        processError: async (args) => this.onError(args),
      },
      { autoCompleteMessages: false, maxConcurrentCalls: Math.max(1, this.o.maxConcurrency) },
    );
  }

  async stop(): Promise<void> {
    const subscription = this.subscription;
    this.subscription = undefined;
    await subscription?.close();
    await Promise.allSettled([...this.inFlight]);
    await this.receiver?.close().catch(() => undefined);
    await this.client?.close().catch(() => undefined);
    this.receiver = undefined;
    this.client = undefined;
  }

  isIdle(): boolean {
    return (
      this.subscription !== undefined &&
      this.inFlight.size === 0 &&
      Date.now() - this.lastActivityAt >= this.o.pollIntervalMs
    );
  }

  private log(line: string): void {
    this.o.log?.(`[service bus ${this.o.queueName}] ${line}`);
  }

  private track(m: ServiceBusReceivedMessage): Promise<void> {
    this.lastActivityAt = Date.now();
    if (this.failing) this.log('receiving works again');
    this.failing = false;
    const p = this.process(m).finally(() => {
      this.inFlight.delete(p);
      this.lastActivityAt = Date.now();
    });
    this.inFlight.add(p);
    return p;
  }

  private async process(m: ServiceBusReceivedMessage): Promise<void> {
    const receiver = this.receiver!;
    let failure: unknown;
    try {
      await this.o.invoke(serviceBusTriggerInput(m.body), serviceBusTriggerMetadata(m));
    } catch (e) {
      failure = e;
    }
    const id = String(m.messageId ?? m.sequenceNumber ?? '?');
    try {
      if (failure === undefined) {
        await receiver.completeMessage(m);
        return;
      }
      const delivery = (m.deliveryCount ?? 0) + 1;
      const of = this.o.maxDeliveryCount ? ` of ${this.o.maxDeliveryCount}` : '';
      this.log(`message ${id} failed on delivery ${delivery}${of}: ${errorText(failure)}; abandoning it`);
      await receiver.abandonMessage(m);
    } catch (e) {
      this.log(`settling message ${id} failed (it is redelivered when its lock expires): ${errorText(e)}`);
    }
  }

  private onError(args: ProcessErrorArgs): void {
    if (!this.subscription) return; // errors while closing
    if (!this.failing)
      this.log(`receive failed (${args.errorSource}; will keep trying): ${errorText(args.error)}`);
    this.failing = true;
    this.lastActivityAt = Date.now(); // a failing receive has not looked at the queue
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
