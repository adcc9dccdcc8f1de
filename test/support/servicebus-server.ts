/**
 * Test fixture (never shipped): a Service Bus look-alike over AMQP 1.0, written with rhea, that
 * the unmodified `@azure/service-bus` SDK talks to with
 * `Endpoint=sb://localhost:<port>;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true`.
 *
 * It implements the subset the app and the local host use: SASL ANONYMOUS/PLAIN, CBS put-token,
 * queues (auto-created on first use), single and batched sends (message format 0x80013700),
 * duplicate detection by message id, peek-lock and receive-and-delete receivers that honour link
 * credit and drain, lock tokens, complete / abandon / dead-letter, lock expiry, max delivery
 * count, scheduled enqueue time, the `$DeadLetterQueue` sub-queue, and the `$management`
 * operations renew-lock, peek-message and update-disposition (others answer 501).
 *
 * Delivery counts follow AMQP: the header's `delivery_count` is the number of earlier failed
 * deliveries (0 on the first delivery), which the SDK exposes as `deliveryCount`. A message is
 * delivered at most `maxDeliveryCount` times, then moved to the dead-letter sub-queue with
 * reason `MaxDeliveryCountExceeded`, as Service Bus does.
 */
import type { AddressInfo, Server, Socket } from 'node:net';
import * as rhea from 'rhea';
import type { Connection, Delivery, EventContext, Message, Sender } from 'rhea';

export interface QueueOptions {
  /** Deliveries before a message is dead-lettered (default 10). */
  maxDeliveryCount?: number;
  /** Peek-lock duration (default 30 000 ms). */
  lockDurationMs?: number;
  /** Duplicate detection history (default 600 000 ms; 0 turns it off). */
  duplicateDetectionWindowMs?: number;
}

export interface ServiceBusServerOptions {
  /** Options of queues auto-created on first use. */
  defaultQueueOptions?: QueueOptions;
  /** `max_message_size` advertised on links (default 256 KiB, the Standard tier's limit). */
  maxMessageSizeBytes?: number;
  /**
   * Create a queue when a client first opens a link to it (default true). False answers a link to
   * an unknown queue with `amqp:not-found`, as Service Bus does (the SDK's MessagingEntityNotFound).
   */
  autoCreateQueues?: boolean;
}

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
}

export interface ServiceBusTestServer {
  readonly port: number;
  /** Connection string for the SDK (no secret: the server accepts any key). */
  readonly connectionString: string;
  createQueue(name: string, options?: QueueOptions): void;
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
  lock?: MessageLock;
}

interface MessageLock {
  token: string;
  until: number;
  timer: NodeJS.Timeout;
}

interface QueueState {
  name: string;
  options: Required<QueueOptions>;
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
  private readonly maxMessageSize: number;
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
  };
  port = 0;

  constructor(private readonly options: ServiceBusServerOptions) {
    this.maxMessageSize = options.maxMessageSizeBytes ?? 256 * 1024;
    this.container.sasl_server_mechanisms.enable_anonymous();
    this.container.sasl_server_mechanisms.enable_plain(() => true);
    const c = this.container;
    c.on('receiver_open', (ctx: EventContext) => this.onClientSenderAttached(ctx));
    c.on('sender_open', (ctx: EventContext) => this.onClientReceiverAttached(ctx));
    c.on('message', (ctx: EventContext) => this.onTransfer(ctx));
    c.on('sendable', () => this.schedulePump());
    c.on('sender_flow', () => this.schedulePump());
    c.on('sender_draining', (ctx: EventContext) => {
      if (ctx.sender) this.drainRequests.add(ctx.sender);
      this.schedulePump();
    });
    c.on('accepted', (ctx: EventContext) => this.onOutcome(ctx, 'complete'));
    c.on('released', (ctx: EventContext) => this.onOutcome(ctx, 'abandon'));
    c.on('modified', (ctx: EventContext) => this.onOutcome(ctx, 'abandon'));
    c.on('rejected', (ctx: EventContext) => this.onOutcome(ctx, 'deadletter'));
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
    return `Endpoint=sb://localhost:${this.port};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=test-server-accepts-any-key;UseDevelopmentEmulator=true`;
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
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    for (const entry of this.locks.values()) if (entry.stored.lock) clearTimeout(entry.stored.lock.timer);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.listener ? this.listener.close(() => resolve()) : resolve()));
  }

  createQueue(name: string, options: QueueOptions = {}): void {
    const key = name.toLowerCase();
    const merged = this.queueOptions(options);
    const existing = this.queues.get(key);
    if (existing) existing.options = merged;
    else
      this.queues.set(key, {
        name,
        options: merged,
        active: [],
        dead: [],
        seen: new Map(),
        nextSequenceNumber: 1,
      });
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
    return (this.queues.get(queue.toLowerCase())?.active ?? []).map((m) => this.inspect(m));
  }

  deadLetters(queue: string): InspectedMessage[] {
    return (this.queues.get(queue.toLowerCase())?.dead ?? []).map((m) => this.inspect(m));
  }

  // ---- links -------------------------------------------------------------------------------

  private queueOptions(o: QueueOptions = {}): Required<QueueOptions> {
    const d = this.options.defaultQueueOptions ?? {};
    return {
      maxDeliveryCount: o.maxDeliveryCount ?? d.maxDeliveryCount ?? 10,
      lockDurationMs: o.lockDurationMs ?? d.lockDurationMs ?? 30_000,
      duplicateDetectionWindowMs: o.duplicateDetectionWindowMs ?? d.duplicateDetectionWindowMs ?? 600_000,
    };
  }

  private queue(name: string): QueueState {
    const key = name.toLowerCase();
    if (!this.queues.has(key)) this.createQueue(name);
    return this.queues.get(key)!;
  }

  private echoTermini(link: unknown): RawLink {
    const l = raw(link);
    const remote = l.remote.attach ?? {};
    const attach = l.local.attach as Record<string, unknown> & { source?: unknown; target?: unknown };
    (link as Sender).set_source({ address: remote.source?.address ?? '' });
    (link as Sender).set_target({ address: remote.target?.address ?? '' });
    attach.max_message_size = this.maxMessageSize;
    return l;
  }

  /** The client opened a sender: the server side is a receiver (queue, $cbs or $management). */
  private onClientSenderAttached(ctx: EventContext): void {
    const l = this.echoTermini(ctx.receiver);
    const address = l.remote.attach?.target?.address ?? '';
    const parsed = parseAddress(address);
    if (address === '$cbs' || parsed.management) return;
    if (this.refuseUnknown(ctx.receiver!, parsed.queue)) return;
    if (parsed.sub === 'active') this.queue(parsed.queue);
  }

  /** Closes a link to a queue that does not exist when queues are not auto-created. */
  private refuseUnknown(link: { close(error?: unknown): void }, queue: string): boolean {
    if (this.options.autoCreateQueues !== false || this.queues.has(queue.toLowerCase())) return false;
    link.close({
      condition: 'amqp:not-found',
      description: `The messaging entity 'sb://localhost/${queue}' could not be found.`,
    });
    return true;
  }

  /** The client opened a receiver: the server side is a sender (queue consumer or reply link). */
  private onClientReceiverAttached(ctx: EventContext): void {
    const sender = ctx.sender!;
    const l = this.echoTermini(sender);
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
    const address = l.remote.attach?.source?.address ?? '';
    const parsed = parseAddress(address);
    if (address === '$cbs' || parsed.management) return; // reply link
    if (this.refuseUnknown(sender, parsed.queue)) return;
    this.queue(parsed.queue);
    const key = this.consumerKey(parsed.queue, parsed.sub);
    if (!this.consumers.has(key)) this.consumers.set(key, new Set());
    this.consumers.get(key)!.add(sender);
    this.schedulePump();
  }

  private consumerKey(queue: string, sub: SubQueue): string {
    return `${queue.toLowerCase()}|${sub}`;
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
    const queue = this.queue(parsed.queue);
    const messages =
      delivery.format === BATCH_FORMAT
        ? this.unbatch(ctx.message as unknown as Buffer)
        : [ctx.message as Message];
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
    if (id !== undefined && queue.options.duplicateDetectionWindowMs > 0) {
      const until = queue.seen.get(id);
      if (until !== undefined && until > now) {
        this.stats.duplicatesDropped++;
        return;
      }
      queue.seen.set(id, now + queue.options.duplicateDetectionWindowMs);
    }
    const scheduled = toMillis(message.message_annotations?.['x-opt-scheduled-enqueue-time']);
    const availableAt = scheduled !== undefined && scheduled > now ? scheduled : now;
    queue.active.push({
      sequenceNumber: queue.nextSequenceNumber++,
      message,
      deliveryCount: 0,
      enqueuedAt: availableAt,
      availableAt,
    });
    this.stats.sent++;
    if (availableAt > now) this.after(availableAt - now, () => this.schedulePump());
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
    if (operation === 'put-token')
      this.reply(ctx, request, { application_properties: statusProps(200, 'OK') });
    else
      this.reply(ctx, request, {
        application_properties: statusProps(501, `CBS operation ${String(operation)} is not supported`),
      });
  }

  private answerManagement(ctx: EventContext, queueName: string, sub: SubQueue, request: Message): void {
    const operation = String(request.application_properties?.operation ?? '');
    const body = (request.body ?? {}) as Record<string, unknown>;
    const queue = this.queue(queueName);
    const answer = (code: number, description: string, responseBody?: unknown, condition?: string) =>
      this.reply(ctx, request, {
        application_properties: statusProps(code, description, condition),
        ...(responseBody === undefined ? {} : { body: responseBody }),
      });
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
