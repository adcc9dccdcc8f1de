/**
 * Test fixture (never shipped): a Service Bus look-alike over AMQP 1.0, written with rhea, that
 * the unmodified `@azure/service-bus` SDK talks to with
 * `Endpoint=sb://localhost:<port>;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true`.
 *
 * It implements the subset the app and the local host use: SASL ANONYMOUS/PLAIN, CBS put-token,
 * queues, single and batched sends (message format 0x80013700), duplicate detection by message
 * id, peek-lock and receive-and-delete receivers that honour link credit and drain, lock tokens,
 * complete / abandon / dead-letter, lock expiry, max delivery count, scheduled enqueue time,
 * message time to live, the `$DeadLetterQueue` sub-queue, and the `$management` operations
 * renew-lock, peek-message and update-disposition (others answer 501).
 *
 * It is as strict as Service Bus where the app could otherwise pass here and fail in Azure:
 * - Queues exist only once created (`createQueue`, as infra does): a link to a missing entity is
 *   refused with `amqp:not-found` (the SDK's `MessagingEntityNotFound`), as is a management
 *   request. Queue options follow the ARM defaults: duplicate detection OFF unless
 *   `requiresDuplicateDetection`, lock duration 1 minute and at most 5 minutes, max delivery
 *   count 10, no default time to live, no dead-lettering on expiry.
 * - Credentials are checked: CBS put-token verifies the SAS token's HMAC-SHA256 signature with
 *   the namespace key, its key name and its expiry, and answers 401 otherwise; a link whose
 *   entity no valid token covers is refused with `amqp:unauthorized-access`.
 * - Sizes: the Standard tier carries messages (and batches) up to 256 KB; Premium carries a
 *   message up to the queue's `maxMessageSizeInKilobytes` (default 1024, up to 102400), which
 *   the link advertises as its max message size, but a batch send only up to 1 MB. Larger
 *   transfers are rejected with `amqp:link:message-size-exceeded` (the SDK's
 *   `MessageSizeExceeded`).
 * - Time to live: a message expires `min(its TTL, the queue's default)` after it was enqueued;
 *   an expired message is removed, or moved to the dead-letter sub-queue with reason
 *   `TTLExpiredException` when the queue has `deadLetteringOnMessageExpiration`. A locked message
 *   expires only once its lock is gone. Dead letters never expire.
 * - Idle entity links (no transfer, flow or disposition) are detached with
 *   `amqp:link:detach-forced` after the idle timeout (10 minutes on Service Bus; configurable
 *   here so that a test can see the SDK recover).
 * Not modelled: the 5-second minimum lock duration (tests use shorter locks to stay fast),
 * sessions, transactions, topics, partitioning, JWT (Entra ID) tokens.
 *
 * Delivery counts follow AMQP: the header's `delivery_count` is the number of earlier failed
 * deliveries (0 on the first delivery), which the SDK exposes as `deliveryCount`. A message is
 * delivered at most `maxDeliveryCount` times, then moved to the dead-letter sub-queue with
 * reason `MaxDeliveryCountExceeded`, as Service Bus does.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AddressInfo, Server, Socket } from 'node:net';
import * as rhea from 'rhea';
import type { Connection, Delivery, EventContext, Message, Receiver, Sender } from 'rhea';

export type ServiceBusTier = 'standard' | 'premium';

/** Queue properties, named as in ARM (`Microsoft.ServiceBus/namespaces/queues`), times in ms. */
export interface QueueOptions {
  /** Deliveries before a message is dead-lettered (default 10, as in ARM). */
  maxDeliveryCount?: number;
  /** Peek-lock duration (default 60 000 ms = PT1M; at most 300 000 ms = PT5M, as in ARM). */
  lockDurationMs?: number;
  /** Duplicate detection (default false, as in ARM). */
  requiresDuplicateDetection?: boolean;
  /** Duplicate detection history (default 600 000 ms = PT10M), used when requiresDuplicateDetection. */
  duplicateDetectionWindowMs?: number;
  /** Default (and upper bound of a message's) time to live; default none (TimeSpan.MaxValue). */
  defaultMessageTimeToLiveMs?: number;
  /** Move expired messages to the dead-letter sub-queue (default false, as in ARM). */
  deadLetteringOnMessageExpiration?: boolean;
  /** Premium only: largest message in KB (default 1024, 1024..102400). Ignored on Standard. */
  maxMessageSizeInKilobytes?: number;
}

export interface ServiceBusServerOptions {
  /** Namespace tier: decides the message and batch size limits (default 'standard'). */
  tier?: ServiceBusTier;
  /** SAS key name of the namespace (default RootManageSharedAccessKey). */
  keyName?: string;
  /** SAS key of the namespace (default: random per server). */
  key?: string;
  /** Entity links idle this long are detached (default 600 000 ms, as Service Bus does). */
  idleLinkTimeoutMs?: number;
}

/** Service Bus size limits, per tier. */
export const SERVICE_BUS_LIMITS = {
  /** Standard: 256 KB per message, and a batch is one message on the wire. */
  standardMessageBytes: 256 * 1024,
  /** Premium: a batch send carries at most 1 MB, whatever the entity's max message size. */
  premiumBatchBytes: 1024 * 1024,
  premiumDefaultMessageKilobytes: 1024,
  premiumMaxMessageKilobytes: 100 * 1024,
  /** ARM's upper bound of a queue's lock duration (PT5M). */
  maxLockDurationMs: 5 * 60_000,
} as const;

export interface InspectedMessage {
  messageId?: string;
  sequenceNumber: number;
  /** JSON-decoded body when the body is a JSON data section, else the raw body. */
  body: unknown;
  /** Earlier failed deliveries (AMQP header delivery_count). */
  deliveryCount: number;
  locked: boolean;
  enqueuedAt: Date;
  scheduledFor?: Date;
  /** When the message expires (undefined: never). */
  expiresAt?: Date;
  applicationProperties: Record<string, unknown>;
  deadLetterReason?: string;
  deadLetterErrorDescription?: string;
}

export interface ServiceBusServerStats {
  /** Messages accepted and enqueued (duplicates not included). */
  sent: number;
  duplicatesDropped: number;
  completed: number;
  abandoned: number;
  deadLettered: number;
  lockExpired: number;
  /** Transfers refused by failNextSends(). */
  sendsRejected: number;
  /** Accepted send transfers to queues (a batch is one transfer). */
  transfers: number;
  /** Size of the largest send transfer that arrived (accepted or not), in bytes. */
  largestTransferBytes: number;
  /** Transfers rejected with amqp:link:message-size-exceeded. */
  sizeRejected: number;
  /** Messages that expired (removed or dead-lettered). */
  expired: number;
  /** CBS put-token requests answered 401, and links refused for lack of a valid token. */
  unauthorized: number;
  /** Links and management requests refused because the entity does not exist. */
  notFound: number;
  /** Entity links detached because they were idle. */
  idleDetached: number;
}

export interface ServiceBusTestServer {
  readonly port: number;
  readonly tier: ServiceBusTier;
  /** Connection string for the SDK, with the namespace's key (a test key, not a secret). */
  readonly connectionString: string;
  /** The connection string with another key or key name (to test a wrong credential). */
  connectionStringWith(o: { key?: string; keyName?: string }): string;
  /**
   * Creates a queue (or updates its properties), as infra does; nothing else creates one.
   * Throws, as ARM would, for a lock duration above 5 minutes or a bad max message size.
   */
  createQueue(name: string, options?: QueueOptions): void;
  deleteQueue(name: string): void;
  /** Active messages (available, locked and scheduled), in sequence order. */
  messages(queue: string): InspectedMessage[];
  deadLetters(queue: string): InspectedMessage[];
  readonly stats: Readonly<ServiceBusServerStats>;
  /** Rejects the next n message transfers with `com.microsoft:server-busy` (the SDK retries). */
  failNextSends(n: number): void;
  /**
   * Detaches the receiver links of a queue (or its `/$deadletterqueue`) with an error, as Service Bus
   * does on idle or failover. Locks stay; the SDK then settles through `$management`.
   */
  detachReceivers(queue: string): number;
  stop(): Promise<void>;
}

const BATCH_FORMAT = 0x80013700;
const DEAD_LETTER_SUFFIX = '/$deadletterqueue';
const MANAGEMENT_SUFFIX = '/$management';

type SubQueue = 'active' | 'dead';

interface StoredMessage {
  sequenceNumber: number;
  message: Message;
  deliveryCount: number;
  enqueuedAt: number;
  availableAt: number;
  /** When the message expires (Infinity: never); dead letters never expire. */
  expiresAt: number;
  lock?: MessageLock;
}

interface MessageLock {
  token: string;
  until: number;
  timer: NodeJS.Timeout;
}

interface ResolvedQueueOptions {
  maxDeliveryCount: number;
  lockDurationMs: number;
  requiresDuplicateDetection: boolean;
  duplicateDetectionWindowMs: number;
  /** Infinity: no default time to live. */
  defaultMessageTimeToLiveMs: number;
  deadLetteringOnMessageExpiration: boolean;
  /** The largest message the entity takes (what its links advertise). */
  maxMessageBytes: number;
  /** The largest batch send the entity takes. */
  maxBatchBytes: number;
}

interface QueueState {
  name: string;
  options: ResolvedQueueOptions;
  active: StoredMessage[];
  dead: StoredMessage[];
  /** messageId → time until which a re-send is a duplicate. */
  seen: Map<string, number>;
  nextSequenceNumber: number;
}

interface LockEntry {
  queue: QueueState;
  sub: SubQueue;
  stored: StoredMessage;
}

/** The parts of rhea's link and session objects that its typings leave out. */
interface RawLink {
  credit: number;
  delivery_count: number;
  _draining?: boolean;
  _drained?: boolean;
  _get_drain: () => boolean;
  local: { attach: Record<string, unknown> };
  remote: {
    attach?: { source?: { address?: string }; target?: { address?: string }; snd_settle_mode?: number };
  };
  session: { outgoing: { next_delivery_id: number; next_pending_delivery: number } };
}

interface DeliveryOutcomeState {
  error?: { condition?: string; description?: string; info?: Record<string, unknown> };
  message_annotations?: Record<string, unknown>;
}

const raw = (link: unknown) => link as RawLink;
const decodeMessage = (b: Buffer) => rhea.message.decode(b) as unknown as Message;
type OutcomeFactory = (o?: unknown) => { described(): unknown };
const outcomes = rhea.message as unknown as { rejected: OutcomeFactory; accepted: OutcomeFactory };
const rejectedOutcome = (error: { condition: string; description: string }) =>
  outcomes.rejected({ error }).described();
/** The state sent when the server settles a disposition it applied (the SDK only checks for an error). */
const acceptedOutcome = () => outcomes.accepted().described();
const statusProps = (code: number, description: string, condition?: string) => ({
  'status-code': code,
  statusCode: code,
  'status-description': description,
  ...(condition ? { 'error-condition': condition } : {}),
});

/** Service Bus sends lock tokens as .NET GUID bytes; the SDK reorders them back (an involution). */
function reorderGuidBytes(b: Buffer): Buffer {
  return Buffer.from([b[3]!, b[2]!, b[1]!, b[0]!, b[5]!, b[4]!, b[7]!, b[6]!, ...b.subarray(8)]);
}

function lockTokenString(value: unknown): string | undefined {
  if (typeof value === 'string') return value.toLowerCase();
  if (Buffer.isBuffer(value) && value.length === 16) return rhea.uuid_to_string(value);
  return undefined;
}

function toMillis(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'number') return value;
  return undefined;
}

function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (Buffer.isBuffer(value) && value.length === 8) return Number(value.readBigInt64BE());
  return Number(value);
}

function decodeBody(body: unknown): unknown {
  const section = body as { typecode?: number; content?: unknown } | undefined;
  if (section && section.typecode === 0x75 && Buffer.isBuffer(section.content)) {
    const text = section.content.toString('utf8');
    try {
      return JSON.parse(text);
    } catch {
      return section.content;
    }
  }
  if (section && typeof section.typecode === 'number') return section.content;
  return body;
}

/** A duration as a .NET TimeSpan (`hh:mm:ss`), as Service Bus writes it in error descriptions. */
function timeSpan(ms: number): string {
  const total = Math.round(ms / 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(Math.floor(total / 3600))}:${pad(Math.floor(total / 60) % 60)}:${pad(total % 60)}`;
}

/** Splits an entity address into queue name, sub-queue and whether it is the management node. */
function parseAddress(address: string): { queue: string; sub: SubQueue; management: boolean } {
  let path = address.replace(/^amqps?:\/\/[^/]+\//i, '').replace(/^sb:\/\/[^/]+\//i, '');
  let management = false;
  if (path.toLowerCase().endsWith(MANAGEMENT_SUFFIX)) {
    management = true;
    path = path.slice(0, -MANAGEMENT_SUFFIX.length);
  }
  let sub: SubQueue = 'active';
  if (path.toLowerCase().endsWith(DEAD_LETTER_SUFFIX)) {
    sub = 'dead';
    path = path.slice(0, -DEAD_LETTER_SUFFIX.length);
  }
  return { queue: path, sub, management };
}

export async function startServiceBusServer(
  options: ServiceBusServerOptions = {},
): Promise<ServiceBusTestServer> {
  const server = new ServiceBusServer(options);
  await server.listen();
  return server;
}

class ServiceBusServer implements ServiceBusTestServer {
  private readonly container = rhea.create_container({
    id: 'syncbridge-servicebus-test-server',
    autoaccept: false,
    treat_modified_as_released: false,
  });
  private readonly queues = new Map<string, QueueState>();
  private readonly consumers = new Map<string, Set<Sender>>();
  private readonly locks = new Map<string, LockEntry>();
  private readonly deliveryLocks = new WeakMap<Delivery, string>();
  private readonly drainRequests = new Set<Sender>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly sockets = new Set<Socket>();
  /** Audiences (entity paths, lower case, '' = the namespace) with a valid token, per connection. */
  private readonly authorized = new WeakMap<Connection, Set<string>>();
  /** Entity links and when they last did something (for the idle detach). */
  private readonly linkActivity = new Map<Sender | Receiver, number>();
  readonly tier: ServiceBusTier;
  private readonly keyName: string;
  private readonly key: string;
  private readonly idleLinkTimeoutMs: number;
  private idleSweep?: NodeJS.Timeout;
  private listener?: Server;
  private pumpScheduled = false;
  private failSends = 0;
  private stopped = false;
  readonly stats: ServiceBusServerStats = {
    sent: 0,
    duplicatesDropped: 0,
    completed: 0,
    abandoned: 0,
    deadLettered: 0,
    lockExpired: 0,
    sendsRejected: 0,
    transfers: 0,
    largestTransferBytes: 0,
    sizeRejected: 0,
    expired: 0,
    unauthorized: 0,
    notFound: 0,
    idleDetached: 0,
  };
  port = 0;

  constructor(options: ServiceBusServerOptions) {
    this.tier = options.tier ?? 'standard';
    this.keyName = options.keyName ?? 'RootManageSharedAccessKey';
    this.key = options.key ?? randomBytes(32).toString('base64');
    this.idleLinkTimeoutMs = options.idleLinkTimeoutMs ?? 10 * 60_000;
    this.container.sasl_server_mechanisms.enable_anonymous();
    this.container.sasl_server_mechanisms.enable_plain(() => true);
    const c = this.container;
    c.on('receiver_open', (ctx: EventContext) => this.onClientSenderAttached(ctx));
    c.on('sender_open', (ctx: EventContext) => this.onClientReceiverAttached(ctx));
    c.on('message', (ctx: EventContext) => {
      this.touch(ctx.receiver);
      this.onTransfer(ctx);
    });
    c.on('sendable', () => this.schedulePump());
    c.on('sender_flow', (ctx: EventContext) => {
      this.touch(ctx.sender);
      this.schedulePump();
    });
    c.on('sender_draining', (ctx: EventContext) => {
      this.touch(ctx.sender);
      if (ctx.sender) this.drainRequests.add(ctx.sender);
      this.schedulePump();
    });
    c.on('accepted', (ctx: EventContext) => this.onOutcome(ctx, 'complete'));
    c.on('released', (ctx: EventContext) => this.onOutcome(ctx, 'abandon'));
    c.on('modified', (ctx: EventContext) => this.onOutcome(ctx, 'abandon'));
    c.on('rejected', (ctx: EventContext) => this.onOutcome(ctx, 'deadletter'));
    for (const event of ['sender_close', 'receiver_close'])
      c.on(event, (ctx: EventContext) => {
        const link = ctx.sender ?? ctx.receiver;
        if (link) this.linkActivity.delete(link);
      });
    // Clients come and go; their errors are theirs, never the fixture's.
    for (const event of [
      'error',
      'connection_error',
      'session_error',
      'sender_error',
      'receiver_error',
      'disconnected',
    ])
      c.on(event, () => undefined);
  }

  get connectionString(): string {
    return this.connectionStringWith({});
  }

  connectionStringWith(o: { key?: string; keyName?: string }): string {
    return (
      `Endpoint=sb://localhost:${this.port};SharedAccessKeyName=${o.keyName ?? this.keyName};` +
      `SharedAccessKey=${o.key ?? this.key};UseDevelopmentEmulator=true`
    );
  }

  async listen(): Promise<void> {
    const listener = this.container.listen({ port: 0, host: '127.0.0.1' }) as Server;
    this.listener = listener;
    listener.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      listener.once('listening', resolve);
      listener.once('error', reject);
    });
    this.port = (listener.address() as AddressInfo).port;
    const sweepEvery = Math.max(20, Math.min(1000, this.idleLinkTimeoutMs / 4));
    this.idleSweep = setInterval(() => this.detachIdleLinks(), sweepEvery);
    this.idleSweep.unref();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.idleSweep);
    for (const t of this.timers) clearTimeout(t);
    for (const entry of this.locks.values()) if (entry.stored.lock) clearTimeout(entry.stored.lock.timer);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.listener ? this.listener.close(() => resolve()) : resolve()));
  }

  createQueue(name: string, options: QueueOptions = {}): void {
    const key = name.toLowerCase();
    const resolved = this.resolveQueueOptions(name, options);
    const existing = this.queues.get(key);
    if (existing) existing.options = resolved;
    else
      this.queues.set(key, {
        name,
        options: resolved,
        active: [],
        dead: [],
        seen: new Map(),
        nextSequenceNumber: 1,
      });
  }

  deleteQueue(name: string): void {
    const queue = this.queues.get(name.toLowerCase());
    if (!queue) return;
    for (const m of [...queue.active, ...queue.dead]) if (m.lock) this.unlock(m.lock.token);
    this.queues.delete(name.toLowerCase());
    for (const sub of ['active', 'dead'] as const) {
      for (const link of this.consumers.get(this.consumerKey(name, sub)) ?? [])
        link.close({ condition: 'amqp:not-found', description: this.notFoundText(name) });
      this.consumers.delete(this.consumerKey(name, sub));
    }
  }

  failNextSends(n: number): void {
    this.failSends = n;
  }

  detachReceivers(queue: string): number {
    const { queue: name, sub } = parseAddress(queue);
    const links = this.consumers.get(this.consumerKey(name, sub)) ?? new Set<Sender>();
    for (const link of links)
      link.close({ condition: 'amqp:link:detach-forced', description: 'detached by the test server' });
    const n = links.size;
    links.clear();
    return n;
  }

  messages(queue: string): InspectedMessage[] {
    const q = this.queues.get(queue.toLowerCase());
    if (!q) return [];
    this.expire(q);
    return q.active.map((m) => this.inspect(m));
  }

  deadLetters(queue: string): InspectedMessage[] {
    return (this.queues.get(queue.toLowerCase())?.dead ?? []).map((m) => this.inspect(m));
  }

  // ---- queues -------------------------------------------------------------------------------

  private resolveQueueOptions(name: string, o: QueueOptions): ResolvedQueueOptions {
    const lockDurationMs = o.lockDurationMs ?? 60_000;
    if (!(lockDurationMs > 0) || lockDurationMs > SERVICE_BUS_LIMITS.maxLockDurationMs)
      throw new Error(
        `queue ${name}: lockDuration ${lockDurationMs} ms is not allowed; Service Bus takes at most 5 minutes (PT5M)`,
      );
    const maxDeliveryCount = o.maxDeliveryCount ?? 10;
    if (!Number.isInteger(maxDeliveryCount) || maxDeliveryCount < 1)
      throw new Error(`queue ${name}: maxDeliveryCount must be an integer >= 1`);
    const kb = o.maxMessageSizeInKilobytes ?? SERVICE_BUS_LIMITS.premiumDefaultMessageKilobytes;
    if (
      this.tier === 'premium' &&
      (kb < SERVICE_BUS_LIMITS.premiumDefaultMessageKilobytes ||
        kb > SERVICE_BUS_LIMITS.premiumMaxMessageKilobytes)
    )
      throw new Error(`queue ${name}: maxMessageSizeInKilobytes must be 1024..102400 on Premium`);
    const maxMessageBytes = this.tier === 'premium' ? kb * 1024 : SERVICE_BUS_LIMITS.standardMessageBytes;
    return {
      maxDeliveryCount,
      lockDurationMs,
      requiresDuplicateDetection: o.requiresDuplicateDetection ?? false,
      duplicateDetectionWindowMs: o.duplicateDetectionWindowMs ?? 600_000,
      defaultMessageTimeToLiveMs: o.defaultMessageTimeToLiveMs ?? Number.POSITIVE_INFINITY,
      deadLetteringOnMessageExpiration: o.deadLetteringOnMessageExpiration ?? false,
      maxMessageBytes,
      maxBatchBytes:
        this.tier === 'premium'
          ? Math.min(maxMessageBytes, SERVICE_BUS_LIMITS.premiumBatchBytes)
          : SERVICE_BUS_LIMITS.standardMessageBytes,
    };
  }

  private findQueue(name: string): QueueState | undefined {
    return this.queues.get(name.toLowerCase());
  }

  private notFoundText(name: string): string {
    return (
      `The messaging entity 'sb://localhost:${this.port}/${name}' could not be found. ` +
      'To know more visit https://aka.ms/sbResourceMgrExceptions.'
    );
  }

  // ---- credentials --------------------------------------------------------------------------

  /** Checks a CBS put-token request as Service Bus does for a SAS token; returns the problem. */
  private checkToken(request: Message): string | undefined {
    const type = String(request.application_properties?.type ?? '');
    if (type !== 'servicebus.windows.net:sastoken')
      return `InvalidToken: the test server accepts SAS tokens only (got type ${type || '(none)'}).`;
    const token = typeof request.body === 'string' ? request.body : '';
    const m = /^SharedAccessSignature (.+)$/.exec(token);
    if (!m) return 'InvalidToken: the token is not a SharedAccessSignature.';
    const fields = new Map<string, string>();
    for (const part of m[1]!.split('&')) {
      const i = part.indexOf('=');
      if (i > 0) fields.set(part.slice(0, i), part.slice(i + 1));
    }
    const sr = fields.get('sr');
    const sig = fields.get('sig');
    const se = fields.get('se');
    const skn = fields.get('skn');
    if (!sr || !sig || !se || !skn) return 'InvalidToken: the token misses sr, sig, se or skn.';
    if (decodeURIComponent(skn) !== this.keyName)
      return `Unauthorized: the key name ${decodeURIComponent(skn)} is not known to the namespace.`;
    if (Number(se) * 1000 < Date.now()) return 'ExpiredToken: the token has expired.';
    const expected = createHmac('sha256', this.key).update(`${sr}\n${se}`).digest();
    const given = Buffer.from(decodeURIComponent(sig), 'base64');
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      return 'InvalidSignature: The token has an invalid signature.';
    return undefined;
  }

  /** The entity path of an address or audience (`sb://host/q/$management` → `q`; the namespace → ''). */
  private static entityPath(address: string): string {
    return address
      .replace(/^(amqps?|sb):\/\/[^/]+\/?/i, '')
      .replace(/\/+$/, '')
      .replace(/\/\$management$/i, '')
      .toLowerCase();
  }

  private isAuthorized(connection: Connection, address: string): boolean {
    const paths = this.authorized.get(connection);
    if (!paths) return false;
    const entity = ServiceBusServer.entityPath(address);
    for (const p of paths) if (p === '' || entity === p || entity.startsWith(`${p}/`)) return true;
    return false;
  }

  // ---- links -------------------------------------------------------------------------------

  private echoTermini(link: unknown, maxMessageSize: number): RawLink {
    const l = raw(link);
    const remote = l.remote.attach ?? {};
    const attach = l.local.attach as Record<string, unknown> & { source?: unknown; target?: unknown };
    (link as Sender).set_source({ address: remote.source?.address ?? '' });
    (link as Sender).set_target({ address: remote.target?.address ?? '' });
    attach.max_message_size = maxMessageSize;
    return l;
  }

  /**
   * Refuses an attach as Service Bus does: the answering attach has no terminus for the entity,
   * then a detach carries the error.
   */
  private refuse(link: Sender | Receiver, condition: string, description: string): void {
    const attach = raw(link).local.attach as Record<string, unknown>;
    if (link.is_receiver()) attach.target = null;
    else attach.source = null;
    link.close({ condition, description });
  }

  /** Refuses a link to a missing or unauthorized entity; returns the queue when the link may open. */
  private admit(link: Sender | Receiver, connection: Connection, address: string): QueueState | undefined {
    const name = parseAddress(address).queue;
    if (!this.isAuthorized(connection, address)) {
      this.stats.unauthorized++;
      this.refuse(
        link,
        'amqp:unauthorized-access',
        `Unauthorized access. No valid token was put for '${name}' (CBS put-token first).`,
      );
      return undefined;
    }
    const queue = this.findQueue(name);
    if (!queue) {
      this.stats.notFound++;
      this.refuse(link, 'amqp:not-found', this.notFoundText(name));
      return undefined;
    }
    return queue;
  }

  /** The client opened a sender: the server side is a receiver (queue, $cbs or $management). */
  private onClientSenderAttached(ctx: EventContext): void {
    const receiver = ctx.receiver!;
    const address = raw(receiver).remote.attach?.target?.address ?? '';
    const parsed = parseAddress(address);
    const queue = address === '$cbs' ? undefined : this.findQueue(parsed.queue);
    this.echoTermini(receiver, queue?.options.maxMessageBytes ?? SERVICE_BUS_LIMITS.standardMessageBytes);
    if (address === '$cbs') return;
    if (!this.admit(receiver, ctx.connection, address)) return;
    if (!parsed.management) this.touch(receiver);
  }

  /** The client opened a receiver: the server side is a sender (queue consumer or reply link). */
  private onClientReceiverAttached(ctx: EventContext): void {
    const sender = ctx.sender!;
    const address = raw(sender).remote.attach?.source?.address ?? '';
    const parsed = parseAddress(address);
    const queue = address === '$cbs' || parsed.management ? undefined : this.findQueue(parsed.queue);
    const l = this.echoTermini(
      sender,
      queue?.options.maxMessageBytes ?? SERVICE_BUS_LIMITS.standardMessageBytes,
    );
    l.local.attach.snd_settle_mode = l.remote.attach?.snd_settle_mode ?? 0;
    // rhea only answers a drain while credit is left; answer it with zero credit too.
    l._get_drain = function (this: RawLink) {
      if (this._draining && this._drained) {
        this.delivery_count += this.credit;
        this.credit = 0;
        return true;
      }
      return false;
    };
    if (address === '$cbs' || parsed.management) return; // reply link
    if (!this.admit(sender, ctx.connection, address)) return;
    this.touch(sender);
    const key = this.consumerKey(parsed.queue, parsed.sub);
    if (!this.consumers.has(key)) this.consumers.set(key, new Set());
    this.consumers.get(key)!.add(sender);
    this.schedulePump();
  }

  private consumerKey(queue: string, sub: SubQueue): string {
    return `${queue.toLowerCase()}|${sub}`;
  }

  /** Records activity on an entity link (reply and $cbs links are not tracked). */
  private touch(link: Sender | Receiver | undefined): void {
    if (!link) return;
    const address = link.is_sender()
      ? raw(link).remote.attach?.source?.address
      : raw(link).remote.attach?.target?.address;
    if (!address || address === '$cbs' || parseAddress(address).management) return;
    if (link.is_open()) this.linkActivity.set(link, Date.now());
  }

  private detachIdleLinks(): void {
    const now = Date.now();
    for (const [link, at] of this.linkActivity) {
      if (!link.is_open()) {
        this.linkActivity.delete(link);
        continue;
      }
      if (now - at < this.idleLinkTimeoutMs) continue;
      this.linkActivity.delete(link);
      this.stats.idleDetached++;
      link.close({
        condition: 'amqp:link:detach-forced',
        description:
          `The link '${link.name}' is force detached. Code: ServerError. Details: ` +
          `AmqpMessageConsumer.IdleTimerExpired: Idle timeout: ${timeSpan(this.idleLinkTimeoutMs)}.`,
      });
    }
  }

  // ---- incoming transfers ------------------------------------------------------------------

  private onTransfer(ctx: EventContext): void {
    const delivery = ctx.delivery!;
    const address = raw(ctx.receiver).remote.attach?.target?.address ?? '';
    if (address === '$cbs') {
      delivery.accept();
      this.answerCbs(ctx, ctx.message as Message);
      return;
    }
    const parsed = parseAddress(address);
    if (parsed.management) {
      delivery.accept();
      this.answerManagement(ctx, parsed.queue, parsed.sub, ctx.message as Message);
      return;
    }
    if (this.failSends > 0) {
      this.failSends--;
      this.stats.sendsRejected++;
      delivery.reject({
        condition: 'com.microsoft:server-busy',
        description: 'The test server is busy (failNextSends); retry.',
      });
      return;
    }
    const queue = this.findQueue(parsed.queue);
    if (!queue) {
      this.stats.notFound++;
      delivery.reject({ condition: 'amqp:not-found', description: this.notFoundText(parsed.queue) });
      return;
    }
    const batch = delivery.format === BATCH_FORMAT;
    const payload = batch
      ? (ctx.message as unknown as Buffer)
      : (rhea.message.encode(ctx.message as Message) as Buffer);
    const size = payload.length;
    this.stats.largestTransferBytes = Math.max(this.stats.largestTransferBytes, size);
    const limit = batch ? queue.options.maxBatchBytes : queue.options.maxMessageBytes;
    if (size > limit) {
      this.stats.sizeRejected++;
      delivery.reject({
        condition: 'amqp:link:message-size-exceeded',
        description:
          `The received message (delivery-id:${delivery.id}, size:${size} bytes) exceeds the limit ` +
          `(${limit} bytes) currently allowed on the link` +
          (batch ? ` for a batch send on the ${this.tier} tier.` : '.'),
      });
      return;
    }
    const messages = batch ? this.unbatch(payload) : [ctx.message as Message];
    for (const m of messages) this.enqueue(queue, m);
    this.stats.transfers++;
    delivery.accept();
    this.schedulePump();
  }

  private unbatch(payload: Buffer): Message[] {
    const envelope = decodeMessage(payload);
    const section = envelope.body as { content: Buffer | Buffer[]; multiple?: boolean };
    const parts = section.multiple ? (section.content as Buffer[]) : [section.content as Buffer];
    return parts.map(decodeMessage);
  }

  private enqueue(queue: QueueState, message: Message): void {
    const now = Date.now();
    const id = message.message_id == null ? undefined : String(message.message_id);
    if (id !== undefined && queue.options.requiresDuplicateDetection) {
      const until = queue.seen.get(id);
      if (until !== undefined && until > now) {
        this.stats.duplicatesDropped++;
        return;
      }
      queue.seen.set(id, now + queue.options.duplicateDetectionWindowMs);
    }
    const scheduled = toMillis(message.message_annotations?.['x-opt-scheduled-enqueue-time']);
    const availableAt = scheduled !== undefined && scheduled > now ? scheduled : now;
    // The effective time to live: the message's own, never above the queue's default.
    const own = typeof message.ttl === 'number' && message.ttl > 0 ? message.ttl : Number.POSITIVE_INFINITY;
    const ttl = Math.min(own, queue.options.defaultMessageTimeToLiveMs);
    if (Number.isFinite(ttl)) message.ttl = ttl;
    const expiresAt = availableAt + ttl;
    queue.active.push({
      sequenceNumber: queue.nextSequenceNumber++,
      message,
      deliveryCount: 0,
      enqueuedAt: availableAt,
      availableAt,
      expiresAt,
    });
    this.stats.sent++;
    if (availableAt > now) this.after(availableAt - now, () => this.schedulePump());
    if (Number.isFinite(expiresAt)) this.after(Math.max(0, expiresAt - now) + 1, () => this.schedulePump());
  }

  /** Removes (or dead-letters) the unlocked active messages whose time to live is over. */
  private expire(queue: QueueState): void {
    const now = Date.now();
    for (const stored of [...queue.active]) {
      if (stored.lock || stored.expiresAt > now) continue;
      this.stats.expired++;
      if (queue.options.deadLetteringOnMessageExpiration)
        this.deadLetter(queue, stored, 'TTLExpiredException', 'The message expired and was dead lettered.');
      else this.remove(queue, 'active', stored);
    }
  }

  // ---- delivering to consumers -------------------------------------------------------------

  /** Coalesces pumps; setImmediate runs after rhea's nextTick processing, so credit is up to date. */
  private schedulePump(delayMs = 0): void {
    if (this.pumpScheduled || this.stopped) return;
    this.pumpScheduled = true;
    const run = () => {
      this.pumpScheduled = false;
      if (!this.stopped) this.pump();
    };
    if (delayMs > 0) this.after(delayMs, run);
    else setImmediate(run);
  }

  private pump(): void {
    let again = false;
    let waiting = false;
    for (const [key, links] of this.consumers) {
      const [queueKey, sub] = key.split('|') as [string, SubQueue];
      const queue = this.queues.get(queueKey);
      if (!queue) continue;
      if (sub === 'active') this.expire(queue);
      for (const link of [...links]) {
        if (link.is_closed()) {
          links.delete(link);
          this.drainRequests.delete(link);
          continue;
        }
        if (!link.is_open()) continue;
        const l = raw(link);
        const unsent = l.session.outgoing.next_delivery_id - l.session.outgoing.next_pending_delivery;
        if (unsent > 0) {
          waiting = true; // wait until rhea has written what is queued (peer window or reply credit)
          continue;
        }
        let budget = l.credit;
        const now = Date.now();
        for (const stored of queue[sub]) {
          if (budget <= 0) break;
          if (stored.lock || stored.availableAt > now) continue;
          this.deliver(queue, sub, stored, link);
          budget--;
        }
        if (budget < l.credit) again = true;
        else if (this.drainRequests.has(link)) {
          this.drainRequests.delete(link);
          link.set_drained(true);
        }
      }
    }
    if (again) this.schedulePump();
    else if (waiting) this.schedulePump(5);
  }

  private deliver(queue: QueueState, sub: SubQueue, stored: StoredMessage, link: Sender): void {
    const presettled = raw(link).local.attach.snd_settle_mode === 1;
    const token = rhea.generate_uuid();
    const until = Date.now() + queue.options.lockDurationMs;
    const out = {
      ...stored.message,
      delivery_count: stored.deliveryCount,
      message_annotations: {
        ...(stored.message.message_annotations ?? {}),
        'x-opt-sequence-number': stored.sequenceNumber,
        'x-opt-enqueued-time': new Date(stored.enqueuedAt),
        ...(presettled ? {} : { 'x-opt-locked-until': new Date(until), 'x-opt-lock-token': token }),
      },
    } as Message;
    const tag = reorderGuidBytes(rhea.string_to_uuid(token));
    const delivery = link.send(rhea.message.encode(out), tag, 0);
    this.touch(link);
    if (presettled) {
      this.remove(queue, sub, stored);
      this.stats.completed++;
      return;
    }
    stored.lock = { token, until, timer: this.lockTimer(token, queue.options.lockDurationMs) };
    this.locks.set(token, { queue, sub, stored });
    this.deliveryLocks.set(delivery, token);
  }

  private lockTimer(token: string, ms: number): NodeJS.Timeout {
    const t = setTimeout(() => this.onLockExpired(token), ms);
    t.unref();
    return t;
  }

  private onLockExpired(token: string): void {
    const entry = this.locks.get(token);
    if (!entry) return;
    this.stats.lockExpired++;
    this.unlock(token);
    this.failedDelivery(entry);
  }

  private unlock(token: string): LockEntry | undefined {
    const entry = this.locks.get(token);
    if (!entry) return undefined;
    this.locks.delete(token);
    if (entry.stored.lock) clearTimeout(entry.stored.lock.timer);
    entry.stored.lock = undefined;
    return entry;
  }

  /** Abandon or lock expiry: count the delivery; dead-letter after maxDeliveryCount. */
  private failedDelivery(entry: LockEntry, propertiesToModify?: Record<string, unknown>): void {
    const { queue, sub, stored } = entry;
    stored.deliveryCount++;
    if (propertiesToModify)
      stored.message.application_properties = {
        ...stored.message.application_properties,
        ...propertiesToModify,
      };
    if (sub === 'active' && stored.deliveryCount >= queue.options.maxDeliveryCount)
      this.deadLetter(
        queue,
        stored,
        'MaxDeliveryCountExceeded',
        `Message could not be consumed after ${queue.options.maxDeliveryCount} delivery attempts.`,
      );
    this.schedulePump();
  }

  private deadLetter(queue: QueueState, stored: StoredMessage, reason?: string, description?: string): void {
    this.remove(queue, 'active', stored);
    const props: Record<string, unknown> = { ...(stored.message.application_properties ?? {}) };
    if (reason !== undefined) props.DeadLetterReason = reason;
    if (description !== undefined) props.DeadLetterErrorDescription = description;
    stored.message.application_properties = props;
    stored.expiresAt = Number.POSITIVE_INFINITY; // dead letters never expire
    queue.dead.push(stored);
    this.stats.deadLettered++;
  }

  private remove(queue: QueueState, sub: SubQueue, stored: StoredMessage): void {
    const list = queue[sub];
    const i = list.indexOf(stored);
    if (i >= 0) list.splice(i, 1);
  }

  // ---- settlement ----------------------------------------------------------------------------

  private onOutcome(ctx: EventContext, kind: 'complete' | 'abandon' | 'deadletter'): void {
    const delivery = ctx.delivery!;
    this.touch(ctx.sender);
    if (delivery.remote_settled && delivery.settled) return;
    const token = this.deliveryLocks.get(delivery);
    const state = (delivery.remote_state ?? {}) as DeliveryOutcomeState;
    const error = token ? this.settle(token, kind, state) : undefined;
    delivery.update(true, error ? rejectedOutcome(error) : acceptedOutcome());
  }

  /** Applies a disposition to a locked message; returns an AMQP error when the lock is gone. */
  private settle(
    token: string,
    kind: 'complete' | 'abandon' | 'deadletter',
    state: DeliveryOutcomeState,
  ): { condition: string; description: string } | undefined {
    const entry = this.unlock(token);
    if (!entry)
      return {
        condition: 'com.microsoft:message-lock-lost',
        description: 'The lock supplied is invalid: it expired, or the message was already settled.',
      };
    const { queue, sub, stored } = entry;
    if (kind === 'complete') {
      this.remove(queue, sub, stored);
      this.stats.completed++;
    } else if (kind === 'abandon') {
      this.stats.abandoned++;
      this.failedDelivery(entry, state.message_annotations);
    } else if (sub === 'dead') {
      this.schedulePump(); // a dead letter cannot be dead-lettered again; it stays where it is
    } else {
      const info = state.error?.info ?? {};
      const { DeadLetterReason, DeadLetterErrorDescription, ...rest } = info;
      if (Object.keys(rest).length)
        stored.message.application_properties = { ...stored.message.application_properties, ...rest };
      this.deadLetter(
        queue,
        stored,
        DeadLetterReason == null ? undefined : String(DeadLetterReason),
        DeadLetterErrorDescription == null ? undefined : String(DeadLetterErrorDescription),
      );
    }
    return undefined;
  }

  // ---- request/response nodes ----------------------------------------------------------------

  private reply(ctx: EventContext, request: Message, response: Partial<Message>): void {
    const connection = ctx.connection as Connection & {
      find_sender(f: (s: Sender) => boolean): Sender | undefined;
    };
    const requestAddress = raw(ctx.receiver).remote.attach?.target?.address;
    const replyLink =
      connection.find_sender((s: Sender) => raw(s).remote.attach?.target?.address === request.reply_to) ??
      connection.find_sender((s: Sender) => raw(s).remote.attach?.source?.address === requestAddress);
    replyLink?.send({ ...response, correlation_id: request.message_id } as Message);
  }

  private answerCbs(ctx: EventContext, request: Message): void {
    const operation = request.application_properties?.operation;
    if (operation !== 'put-token') {
      this.reply(ctx, request, {
        application_properties: statusProps(501, `CBS operation ${String(operation)} is not supported`),
      });
      return;
    }
    const problem = this.checkToken(request);
    if (problem) {
      this.stats.unauthorized++;
      this.reply(ctx, request, { application_properties: statusProps(401, problem) });
      return;
    }
    const audience = String(request.application_properties?.name ?? '');
    let paths = this.authorized.get(ctx.connection);
    if (!paths) this.authorized.set(ctx.connection, (paths = new Set()));
    paths.add(ServiceBusServer.entityPath(audience));
    this.reply(ctx, request, { application_properties: statusProps(200, 'OK') });
  }

  private answerManagement(ctx: EventContext, queueName: string, sub: SubQueue, request: Message): void {
    const operation = String(request.application_properties?.operation ?? '');
    const body = (request.body ?? {}) as Record<string, unknown>;
    const answer = (code: number, description: string, responseBody?: unknown, condition?: string) =>
      this.reply(ctx, request, {
        application_properties: statusProps(code, description, condition),
        ...(responseBody === undefined ? {} : { body: responseBody }),
      });
    const queue = this.findQueue(queueName);
    if (!queue) {
      this.stats.notFound++;
      return answer(404, this.notFoundText(queueName), undefined, 'amqp:not-found');
    }
    this.expire(queue);
    const tokens = () => ((body['lock-tokens'] as unknown[]) ?? []).map(lockTokenString);
    const lockLost = () =>
      answer(
        410,
        'The lock supplied is invalid: it expired, or the message was already settled.',
        undefined,
        'com.microsoft:message-lock-lost',
      );

    switch (operation) {
      case 'com.microsoft:renew-lock': {
        const expirations: Date[] = [];
        for (const token of tokens()) {
          const entry = token ? this.locks.get(token) : undefined;
          if (!entry?.stored.lock) return lockLost();
          const lock = entry.stored.lock;
          clearTimeout(lock.timer);
          lock.until = Date.now() + entry.queue.options.lockDurationMs;
          lock.timer = this.lockTimer(lock.token, entry.queue.options.lockDurationMs);
          expirations.push(new Date(lock.until));
        }
        return answer(200, 'OK', { expirations });
      }
      case 'com.microsoft:update-disposition': {
        const status = String(body['disposition-status'] ?? '');
        const kind =
          status === 'completed'
            ? 'complete'
            : status === 'abandoned'
              ? 'abandon'
              : status === 'suspended'
                ? 'deadletter'
                : undefined;
        if (!kind) return answer(501, `disposition-status ${status} is not supported by the test server`);
        for (const token of tokens()) {
          const error = token
            ? this.settle(token, kind, {
                message_annotations: body['properties-to-modify'] as Record<string, unknown> | undefined,
                error: {
                  info: {
                    ...((body['properties-to-modify'] as Record<string, unknown>) ?? {}),
                    DeadLetterReason: body['deadletter-reason'],
                    DeadLetterErrorDescription: body['deadletter-description'],
                  },
                },
              })
            : { condition: '', description: '' };
          if (error) return lockLost();
        }
        return answer(200, 'OK');
      }
      case 'com.microsoft:peek-message': {
        const from = toNumber(body['from-sequence-number'] ?? 1);
        const count = toNumber(body['message-count'] ?? 1);
        const found = queue[sub].filter((m) => m.sequenceNumber >= from).slice(0, count);
        if (found.length === 0) return answer(204, 'No messages');
        const messages = found.map((m) => ({
          message: rhea.message.encode({
            ...m.message,
            delivery_count: m.deliveryCount,
            message_annotations: {
              ...(m.message.message_annotations ?? {}),
              'x-opt-sequence-number': m.sequenceNumber,
              'x-opt-enqueued-time': new Date(m.enqueuedAt),
            },
          } as Message),
        }));
        return answer(200, 'OK', { messages });
      }
      default:
        return answer(
          501,
          `Management operation ${operation || '(none)'} is not supported by the test server`,
        );
    }
  }

  // ---- inspection ----------------------------------------------------------------------------

  private inspect(m: StoredMessage): InspectedMessage {
    const props = { ...(m.message.application_properties ?? {}) } as Record<string, unknown>;
    const reason = props.DeadLetterReason;
    const description = props.DeadLetterErrorDescription;
    return {
      messageId: m.message.message_id == null ? undefined : String(m.message.message_id),
      sequenceNumber: m.sequenceNumber,
      body: decodeBody(m.message.body),
      deliveryCount: m.deliveryCount,
      locked: Boolean(m.lock),
      enqueuedAt: new Date(m.enqueuedAt),
      scheduledFor: m.availableAt > Date.now() ? new Date(m.availableAt) : undefined,
      expiresAt: Number.isFinite(m.expiresAt) ? new Date(m.expiresAt) : undefined,
      applicationProperties: props,
      ...(reason === undefined ? {} : { deadLetterReason: String(reason) }),
      ...(description === undefined ? {} : { deadLetterErrorDescription: String(description) }),
    };
  }

  private after(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }
}
