/**
 * Storage-queue trigger with the Functions host's semantics (host.json `extensions.queues`):
 *
 * - polls with `receiveMessages` (up to 32 at a time) and runs at most `maxConcurrency`
 *   (batchSize) invocations at once, fetching more when the number in flight has dropped to
 *   `newBatchThreshold` (the real host may run batchSize + newBatchThreshold at once; this
 *   driver stays within batchSize);
 * - decodes base64 (`messageEncoding`) and hands the handler the parsed JSON when the text is
 *   JSON, the text otherwise (as `@azure/functions` does for the real host);
 * - success deletes the message; a throw makes it visible again after `visibilityTimeoutMs`,
 *   and once `dequeueCount >= maxDequeueCount` copies the original text to `<queue>-poison`
 *   and deletes it;
 * - a message is received with a long visibility timeout that is renewed while its invocation
 *   runs, so if the process dies mid-invocation the message reappears after that timeout.
 */
import { QueueClient, type DequeuedMessageItem } from '@azure/storage-queue';
import type { QueueDriverOptions, TriggerDriver } from './driver';
import { toRpcTriggerMetadata } from './rpc';

export interface StorageQueueDriverOptions extends QueueDriverOptions {
  connectionString: string;
  /** Fetch more messages when at most this many are in flight (host.json newBatchThreshold). */
  newBatchThreshold: number;
  maxDequeueCount: number;
  /** How long a failed message stays invisible before its retry (host.json visibilityTimeout). */
  visibilityTimeoutMs: number;
  /** Lease taken on receive and renewed while the invocation runs. Default 5 minutes. */
  receiveVisibilityTimeoutMs?: number;
  messageEncoding: 'base64' | 'none';
}

const MAX_MESSAGES_PER_RECEIVE = 32;
const DEFAULT_RECEIVE_VISIBILITY_MS = 5 * 60_000;

/** Storage queue visibility timeouts are whole seconds. */
const toSeconds = (ms: number, min: number) => Math.max(min, Math.ceil(ms / 1000));

export function poisonQueueName(queueName: string): string {
  return `${queueName}-poison`;
}

/**
 * The text of a queue message as the host hands it over (host.json `messageEncoding`); the
 * worker then binds parsed JSON, or the text.
 */
export function decodeQueueMessageText(messageText: string, encoding: 'base64' | 'none'): string {
  let text = messageText;
  if (encoding === 'base64') {
    const compact = messageText.trim();
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 !== 0)
      throw new Error('the message is not valid base64 (host.json messageEncoding is base64)');
    text = Buffer.from(compact, 'base64').toString('utf8');
  }
  return text;
}

export function createStorageQueueDriver(o: StorageQueueDriverOptions): TriggerDriver {
  return new StorageQueueDriver(o);
}

export class StorageQueueDriver implements TriggerDriver {
  readonly description: string;
  private readonly queue: QueueClient;
  private readonly poison: QueueClient;
  private poisonReady: Promise<unknown> | undefined;
  private readonly receiveVisibilitySec: number;
  private readonly inFlight = new Set<Promise<void>>();
  private loop: Promise<void> | undefined;
  private stopping = false;
  /** When the last receive that found the queue empty (nothing in flight) began; undefined after messages or a failure. */
  private emptyLookStartedAt: number | undefined;
  private failingSince: string | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly o: StorageQueueDriverOptions) {
    this.description = `storage queue ${o.queueName}`;
    const clientOptions = { retryOptions: { maxTries: 3, retryDelayInMs: 200, maxRetryDelayInMs: 2000 } };
    this.queue = new QueueClient(o.connectionString, o.queueName, clientOptions);
    this.poison = new QueueClient(o.connectionString, poisonQueueName(o.queueName), clientOptions);
    this.receiveVisibilitySec = toSeconds(o.receiveVisibilityTimeoutMs ?? DEFAULT_RECEIVE_VISIBILITY_MS, 1);
  }

  async start(): Promise<void> {
    await this.queue.createIfNotExists();
    this.stopping = false;
    this.loop = this.pollLoop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.loop;
    await Promise.all([...this.inFlight]);
  }

  isIdle(since = -Infinity): boolean {
    return (
      this.inFlight.size === 0 && this.emptyLookStartedAt !== undefined && this.emptyLookStartedAt >= since
    );
  }

  private log(line: string): void {
    this.o.log?.(`[queue ${this.o.queueName}] ${line}`);
  }

  /** Waits `ms`, or less if stop() or a finished invocation wakes the loop. */
  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    }).then(() => {
      this.wake = undefined;
    });
  }

  private async pollLoop(): Promise<void> {
    while (!this.stopping) {
      const busy = this.inFlight.size;
      if (busy > this.o.newBatchThreshold || busy >= this.o.maxConcurrency) {
        await this.pause(this.o.pollIntervalMs);
        continue;
      }
      let messages: DequeuedMessageItem[];
      const lookStartedAt = Date.now();
      try {
        const want = Math.min(MAX_MESSAGES_PER_RECEIVE, this.o.maxConcurrency - busy);
        messages = (
          await this.queue.receiveMessages({
            numberOfMessages: want,
            visibilityTimeout: this.receiveVisibilitySec,
          })
        ).receivedMessageItems;
        if (this.failingSince) this.log('receiving works again');
        this.failingSince = undefined;
      } catch (e) {
        this.emptyLookStartedAt = undefined;
        if (!this.failingSince && !this.stopping)
          this.log(`receive failed (will keep trying): ${errorText(e)}`);
        this.failingSince ??= new Date().toISOString();
        await this.pause(this.o.pollIntervalMs);
        continue;
      }
      if (this.stopping) {
        // Received after stop() was called: hand the messages back at once.
        await Promise.all(messages.map((m) => this.release(m.messageId, m.popReceipt, 0)));
        break;
      }
      if (messages.length === 0) {
        const empty = busy === 0 && this.inFlight.size === 0 && (await this.queueIsEmpty());
        this.emptyLookStartedAt = empty ? lookStartedAt : undefined;
        await this.pause(this.o.pollIntervalMs);
        continue;
      }
      this.emptyLookStartedAt = undefined;
      for (const m of messages) {
        const p: Promise<void> = this.process(m).finally(() => {
          this.inFlight.delete(p);
          this.wake?.();
        });
        this.inFlight.add(p);
      }
    }
  }

  /** Counts invisible messages too (a retry waiting out its visibility timeout is not "empty"). */
  private async queueIsEmpty(): Promise<boolean> {
    try {
      return (await this.queue.getProperties()).approximateMessagesCount === 0;
    } catch {
      return false;
    }
  }

  private async process(m: DequeuedMessageItem): Promise<void> {
    const lease = new MessageLease(this.queue, m, this.receiveVisibilitySec, (line) => this.log(line));
    let failure: unknown;
    let succeeded = false;
    try {
      const input = decodeQueueMessageText(m.messageText, this.o.messageEncoding);
      // The queue extension's binding data (PascalCase); the worker camel-cases it.
      const triggerMetadata = toRpcTriggerMetadata({
        Id: m.messageId,
        DequeueCount: Number(m.dequeueCount),
        InsertionTime: m.insertedOn.toISOString(),
        ExpirationTime: m.expiresOn.toISOString(),
        NextVisibleTime: m.nextVisibleOn.toISOString(),
        PopReceipt: m.popReceipt,
      });
      await this.o.invoke({ input: { string: input }, triggerMetadata });
      succeeded = true;
    } catch (e) {
      failure = e;
    }
    const popReceipt = await lease.end();
    if (popReceipt === undefined) return; // lease lost: the message is someone else's now
    try {
      if (succeeded) {
        await this.queue.deleteMessage(m.messageId, popReceipt);
      } else if (m.dequeueCount >= this.o.maxDequeueCount) {
        this.log(
          `message ${m.messageId} failed on dequeue ${m.dequeueCount} of ${this.o.maxDequeueCount}: ` +
            `${errorText(failure)}; moving it to ${poisonQueueName(this.o.queueName)}`,
        );
        this.poisonReady ??= this.poison.createIfNotExists();
        await this.poisonReady;
        await this.poison.sendMessage(m.messageText);
        await this.queue.deleteMessage(m.messageId, popReceipt);
      } else {
        this.log(
          `message ${m.messageId} failed on dequeue ${m.dequeueCount} of ${this.o.maxDequeueCount}: ` +
            `${errorText(failure)}; retrying after the visibility timeout`,
        );
        await this.release(m.messageId, popReceipt, toSeconds(this.o.visibilityTimeoutMs, 0));
      }
    } catch (e) {
      this.log(`settling message ${m.messageId} failed (it will reappear after its lease): ${errorText(e)}`);
    }
  }

  private async release(messageId: string, popReceipt: string, visibilitySec: number): Promise<void> {
    try {
      await this.queue.updateMessage(messageId, popReceipt, undefined, visibilitySec);
    } catch (e) {
      this.log(`could not release message ${messageId}: ${errorText(e)}`);
    }
  }
}

/** Keeps a received message invisible while its invocation runs, tracking the pop receipt. */
class MessageLease {
  private popReceipt: string | undefined;
  private renewing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly queue: QueueClient,
    private readonly m: DequeuedMessageItem,
    private readonly visibilitySec: number,
    log: (line: string) => void,
  ) {
    this.popReceipt = m.popReceipt;
    const everyMs = Math.max(500, (visibilitySec * 1000) / 2);
    this.timer = setInterval(() => {
      this.renewing = this.renewing.then(async () => {
        if (this.popReceipt === undefined) return;
        try {
          const r = await this.queue.updateMessage(
            this.m.messageId,
            this.popReceipt,
            undefined,
            this.visibilitySec,
          );
          this.popReceipt = r.popReceipt ?? this.popReceipt;
        } catch (e) {
          log(`could not renew the lease of message ${this.m.messageId}: ${errorText(e)}`);
          this.popReceipt = undefined;
        }
      });
    }, everyMs);
  }

  /** Stops renewing; returns the current pop receipt, or undefined when the lease was lost. */
  async end(): Promise<string | undefined> {
    clearInterval(this.timer);
    await this.renewing;
    return this.popReceipt;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
