/**
 * Service Bus queue trigger for the local host, with the Functions Service Bus extension's
 * semantics (host.json `extensions.serviceBus`):
 *
 * - a peek-lock processor (`receiver.subscribe`) runs at most `maxConcurrency`
 *   (maxConcurrentCalls) invocations at once; the SDK renews message locks while they run, for
 *   at most `maxAutoLockRenewalDuration` from receipt;
 * - the handler gets the body as the SDK decodes it (a JSON body arrives parsed) and the
 *   triggerMetadata the real host and worker hand over (see TRIGGER METADATA below);
 * - success completes the message; a throw (or a timeout, see local-host.ts) abandons it, so
 *   Service Bus redelivers it at once and dead-letters it after the queue's max delivery count
 *   (the queue's own setting; the `maxDeliveryCount` option only makes the log lines say
 *   "delivery 2 of 10");
 * - `queueName` may name the dead-letter sub-queue: `<queue>/$deadletterqueue`.
 *
 * TRIGGER METADATA. In Azure the metadata takes three steps, each modelled here:
 *   1. the extension (Microsoft.Azure.WebJobs.Extensions.ServiceBus 5.x,
 *      `ServiceBusTriggerBindingStrategy`) binds, for one message: DeliveryCount, DeadLetterSource,
 *      LockToken, ExpiresAtUtc, ExpiresAt, EnqueuedTimeUtc, EnqueuedTime, MessageId, ContentType,
 *      ReplyTo, SequenceNumber, To, Subject, Label (= Subject), CorrelationId,
 *      ApplicationProperties, UserProperties (= ApplicationProperties), SessionId,
 *      ReplyToSessionId, PartitionKey, TransactionPartitionKey, and the .NET-only objects
 *      MessageReceiver, MessageSession, MessageActions, SessionActions, ReceiveActions, Client.
 *      `DeliveryCount` is the .NET SDK's: 1 on the first delivery (the AMQP header and the JS
 *      SDK count from 0). There is NO DeadLetterReason key: Service Bus keeps the reason and the
 *      description as application properties of the dead-lettered message, so they arrive in
 *      ApplicationProperties (read them with `deadLetterReasonOf`, src/lib/transport/dead-letter.ts);
 *   2. the host (`GrpcMessageConversionExtensions.ToRpc`) drops null values (`ShouldSkipBindingData`:
 *      an absent CorrelationId is no key at all), sends strings as strings and everything else as
 *      Newtonsoft JSON: numbers stay numbers, a DateTime (EnqueuedTimeUtc, ExpiresAtUtc) becomes
 *      `"2024-05-01T10:00:00.123"` WITHOUT a zone, a DateTimeOffset (EnqueuedTime, ExpiresAt)
 *      `"2024-05-01T10:00:00.123+00:00"`, a message without a TTL expires at .NET's max date;
 *      the .NET objects become JSON of whatever they expose (modelled as `{}`, and `Client` as
 *      its namespace; nothing here reads them);
 *   3. the worker (`@azure/functions` 4.16.5, `fromRpcTriggerMetadata`) JSON-parses every
 *      string value when it can (a message id "42" arrives as the number 42) and camel-cases
 *      every key, nested ones included: `ApplicationProperties.DeadLetterReason` becomes
 *      `applicationProperties.deadLetterReason`, and an application property `BatchId` would
 *      arrive as `batchId`.
 * `serviceBusRpcTriggerMetadata` runs steps 1 and 2; the local host hands the result to the
 * app's own `@azure/functions` for step 3, as the worker does (test/pipeline/local-host.test.ts).
 *
 * `isIdle(since)`: nothing in flight, and neither a message nor a receive error for at least
 * `pollIntervalMs` (after `since`) while the processor had credit (the queue's available
 * messages looked empty). Scheduled messages and messages locked by another receiver are not seen.
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
import { toRpcTriggerMetadata, toRpcTypedData, type RpcTypedData } from './rpc';

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

// ---- trigger metadata: extension → host → worker ---------------------------------------------

/** A .NET DateTime (`offset` false, Kind Unspecified) or DateTimeOffset, as Newtonsoft writes it. */
class DotNetDate {
  constructor(
    private readonly at: Date | 'max',
    private readonly offset: boolean,
  ) {}
  toJSON(): string {
    const zone = this.offset ? '+00:00' : '';
    if (this.at === 'max') return `9999-12-31T23:59:59.9999999${zone}`;
    // Newtonsoft's "yyyy-MM-ddTHH:mm:ss.FFFFFFF": trailing zeros of the fraction are dropped.
    const iso = this.at.toISOString().replace(/Z$/, '');
    return iso.replace(/\.?0+$/, '') + zone;
  }
}

/** An application property value as .NET would hold it (an AMQP timestamp is a UTC DateTime). */
function dotNetValue(v: unknown): unknown {
  if (v instanceof Date) return v.toISOString().replace(/\.?0+Z$/, 'Z');
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object' && 'toNumber' in v && typeof v.toNumber === 'function')
    return (v as { toNumber(): number }).toNumber();
  return v;
}

/** The application properties as Service Bus holds them: the dead-letter reason is one of them. */
function applicationPropertiesOf(m: ServiceBusReceivedMessage): Record<string, unknown> {
  const props: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m.applicationProperties ?? {})) props[k] = dotNetValue(v);
  // The JS SDK also lifts these out of the application properties; on the wire they are there.
  if (m.deadLetterReason !== undefined) props.DeadLetterReason ??= m.deadLetterReason;
  if (m.deadLetterErrorDescription !== undefined)
    props.DeadLetterErrorDescription ??= m.deadLetterErrorDescription;
  return props;
}

/**
 * Step 1: the binding data the extension produces for one message (PascalCase keys, values as
 * .NET would serialize them; null = the property is not set).
 */
export function serviceBusBindingData(
  m: ServiceBusReceivedMessage,
  fullyQualifiedNamespace = '',
): Record<string, unknown> {
  const enqueued = m.enqueuedTimeUtc ?? new Date(0);
  const expires: Date | 'max' =
    m.expiresAtUtc && m.expiresAtUtc.getUTCFullYear() < 9999 ? m.expiresAtUtc : 'max';
  const applicationProperties = applicationPropertiesOf(m);
  const str = (v: unknown) => (v === undefined || v === null ? null : String(v));
  return {
    MessageReceiver: {},
    MessageSession: {},
    MessageActions: {},
    SessionActions: {},
    ReceiveActions: {},
    Client: { FullyQualifiedNamespace: fullyQualifiedNamespace, IsClosed: false },
    DeliveryCount: (m.deliveryCount ?? 0) + 1,
    DeadLetterSource: str(m.deadLetterSource),
    LockToken: str(m.lockToken),
    ExpiresAtUtc: new DotNetDate(expires, false),
    ExpiresAt: new DotNetDate(expires, true),
    EnqueuedTimeUtc: new DotNetDate(enqueued, false),
    EnqueuedTime: new DotNetDate(enqueued, true),
    MessageId: str(m.messageId),
    ContentType: str(m.contentType),
    ReplyTo: str(m.replyTo),
    SequenceNumber: m.sequenceNumber?.toNumber() ?? 0,
    To: str(m.to),
    Subject: str(m.subject),
    Label: str(m.subject),
    CorrelationId: str(m.correlationId),
    ApplicationProperties: applicationProperties,
    UserProperties: applicationProperties,
    SessionId: str(m.sessionId),
    ReplyToSessionId: str(m.replyToSessionId),
    PartitionKey: str(m.partitionKey),
    TransactionPartitionKey: null, // not exposed by the JS SDK; unset for non-transactional sends
  };
}

/**
 * Steps 1 and 2: the trigger metadata the host sends the worker for a Service Bus message (the
 * worker's step 3 runs in the app's own `@azure/functions`, see rpc.ts).
 */
export function serviceBusRpcTriggerMetadata(
  m: ServiceBusReceivedMessage,
  fullyQualifiedNamespace = '',
): Record<string, RpcTypedData> {
  return toRpcTriggerMetadata(serviceBusBindingData(m, fullyQualifiedNamespace));
}

/** The body as the host sends it: text (the worker binds parsed JSON, or the text), or JSON of a decoded AMQP value. */
export function serviceBusRpcInput(body: unknown): RpcTypedData {
  if (Buffer.isBuffer(body) || body instanceof Uint8Array)
    return { string: Buffer.from(body).toString('utf8') };
  return toRpcTypedData(body);
}

export class ServiceBusDriver implements TriggerDriver {
  readonly description: string;
  private readonly queue: string;
  private readonly deadLetter: boolean;
  private readonly namespace: string;
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
    this.namespace =
      o.fullyQualifiedNamespace ?? /Endpoint=sb:\/\/([^/;:]+)/i.exec(o.connectionString ?? '')?.[1] ?? '';
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

  isIdle(since = -Infinity): boolean {
    // Messages are pushed while the processor has credit: a quiet pollIntervalMs after `since`
    // is the look that began after it.
    return (
      this.subscription !== undefined &&
      this.inFlight.size === 0 &&
      Date.now() - Math.max(this.lastActivityAt, since) >= this.o.pollIntervalMs
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
      await this.o.invoke({
        input: serviceBusRpcInput(m.body),
        triggerMetadata: serviceBusRpcTriggerMetadata(m, this.namespace),
      });
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
