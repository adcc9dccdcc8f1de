/**
 * The unmodified @azure/service-bus SDK against the AMQP test server: what the transport and the
 * local host's Service Bus driver rely on behaves as on Service Bus.
 */
import { ServiceBusClient, type ServiceBusReceivedMessage } from '@azure/service-bus';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  startServiceBusServer,
  type QueueOptions,
  type ServiceBusServerOptions,
  type ServiceBusTestServer,
} from '../support/servicebus-server';
import { waitFor } from '../support/wait';

let server: ServiceBusTestServer;
const clients: ServiceBusClient[] = [];
let queueCounter = 0;

beforeAll(async () => {
  server = await startServiceBusServer();
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await server?.stop();
});

function client(s: ServiceBusTestServer = server, connectionString = s.connectionString): ServiceBusClient {
  const c = new ServiceBusClient(connectionString, {
    retryOptions: { retryDelayInMs: 20, maxRetryDelayInMs: 100, maxRetries: 3, timeoutInMs: 10_000 },
  });
  clients.push(c);
  return c;
}
/** A new queue, created as infra would (Service Bus creates none on demand). */
const newQueue = (options: QueueOptions = {}, s: ServiceBusTestServer = server) => {
  const name = `q${++queueCounter}-${Date.now().toString(36)}`;
  s.createQueue(name, options);
  return name;
};
const extraServers: ServiceBusTestServer[] = [];
async function otherServer(options: ServiceBusServerOptions): Promise<ServiceBusTestServer> {
  const s = await startServiceBusServer(options);
  extraServers.push(s);
  return s;
}
afterAll(async () => {
  await Promise.all(extraServers.map((s) => s.stop()));
});

async function receiveOne(
  c: ServiceBusClient,
  queue: string,
  options: { subQueueType?: 'deadLetter'; waitMs?: number } = {},
): Promise<ServiceBusReceivedMessage | undefined> {
  const receiver = c.createReceiver(queue, { subQueueType: options.subQueueType });
  const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: options.waitMs ?? 2000 });
  return m;
}

describe('Service Bus test server with the unmodified SDK', () => {
  it('sends single and batched messages and delivers them peek-locked, in order, with broker properties', async () => {
    const c = client();
    const queue = newQueue();
    const sender = c.createSender(queue);
    await sender.sendMessages({ body: { n: 1 }, messageId: 'm1', applicationProperties: { kind: 'record' } });
    const batch = await sender.createMessageBatch();
    for (const n of [2, 3, 4]) expect(batch.tryAddMessage({ body: { n }, messageId: `m${n}` })).toBe(true);
    await sender.sendMessages(batch);
    expect(server.messages(queue).map((m) => m.body)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);

    const receiver = c.createReceiver(queue);
    const got = await receiver.receiveMessages(4, { maxWaitTimeInMs: 2000 });
    expect(got.map((m) => m.body)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]);
    const first = got[0]!;
    expect(first.messageId).toBe('m1');
    expect(first.applicationProperties).toEqual({ kind: 'record' });
    expect(first.deliveryCount).toBe(0);
    expect(first.lockToken).toMatch(/^[0-9a-f-]{36}$/);
    expect(first.sequenceNumber?.toNumber()).toBe(1);
    expect(first.enqueuedTimeUtc).toBeInstanceOf(Date);
    expect(first.lockedUntilUtc!.getTime()).toBeGreaterThan(Date.now());
    expect(server.messages(queue).every((m) => m.locked)).toBe(true);

    for (const m of got) await receiver.completeMessage(m);
    expect(server.messages(queue)).toEqual([]);
    expect(server.stats.completed).toBeGreaterThanOrEqual(4);
  });

  it('splits a large send across several batches by the advertised max message size', async () => {
    const c = client();
    const queue = newQueue();
    const sender = c.createSender(queue);
    const big = 'x'.repeat(20_000);
    const pending = Array.from({ length: 40 }, (_, i) => ({ body: { i, big }, messageId: `big-${i}` }));
    let batches = 0;
    while (pending.length) {
      const batch = await sender.createMessageBatch();
      expect(batch.maxSizeInBytes).toBe(256 * 1024);
      while (pending.length && batch.tryAddMessage(pending[0]!)) pending.shift();
      await sender.sendMessages(batch);
      batches++;
    }
    expect(batches).toBeGreaterThan(2);
    const stored = server.messages(queue);
    expect(stored.map((m) => (m.body as { i: number }).i)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect((stored[39]!.body as { big: string }).big).toBe(big);
    // A message that exceeds the link's max message size does not fit an empty batch.
    const batch = await sender.createMessageBatch();
    expect(batch.tryAddMessage({ body: 'y'.repeat(300_000) })).toBe(false);
  });

  it('abandon redelivers with deliveryCount + 1', async () => {
    const c = client();
    const queue = newQueue();
    await c.createSender(queue).sendMessages({ body: 'again', messageId: 'a1' });
    const receiver = c.createReceiver(queue);
    const [m1] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 2000 });
    await receiver.abandonMessage(m1!);
    const [m2] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 2000 });
    expect(m2?.messageId).toBe('a1');
    expect(m2?.deliveryCount).toBe(1);
    expect(m2?.lockToken).not.toBe(m1?.lockToken);
    await receiver.completeMessage(m2!);
  });

  it('dead-letters explicitly with reason and description, and the DLQ can be received from', async () => {
    const c = client();
    const queue = newQueue();
    await c.createSender(queue).sendMessages({ body: { bad: true }, messageId: 'd1' });
    const receiver = c.createReceiver(queue);
    const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 2000 });
    await receiver.deadLetterMessage(m!, {
      deadLetterReason: 'Invalid',
      deadLetterErrorDescription: 'no key',
    });
    expect(server.messages(queue)).toEqual([]);
    expect(server.deadLetters(queue)).toMatchObject([
      { messageId: 'd1', deadLetterReason: 'Invalid', deadLetterErrorDescription: 'no key' },
    ]);

    const dlq = c.createReceiver(queue, { subQueueType: 'deadLetter' });
    const [dead] = await dlq.receiveMessages(1, { maxWaitTimeInMs: 2000 });
    expect(dead?.body).toEqual({ bad: true });
    expect(dead?.deadLetterReason).toBe('Invalid');
    expect(dead?.deadLetterErrorDescription).toBe('no key');
    await dlq.completeMessage(dead!);
    expect(server.deadLetters(queue)).toEqual([]);
  });

  it('moves a message to the dead-letter queue after maxDeliveryCount deliveries', async () => {
    const c = client();
    const queue = newQueue({ maxDeliveryCount: 3 });
    await c.createSender(queue).sendMessages({ body: 'poison', messageId: 'p1' });
    const receiver = c.createReceiver(queue);
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 2000 });
      counts.push(m!.deliveryCount!);
      await receiver.abandonMessage(m!);
    }
    expect(counts).toEqual([0, 1, 2]);
    expect(await receiver.receiveMessages(1, { maxWaitTimeInMs: 200 })).toEqual([]);
    const dead = await receiveOne(c, queue, { subQueueType: 'deadLetter' });
    expect(dead?.messageId).toBe('p1');
    expect(dead?.deadLetterReason).toBe('MaxDeliveryCountExceeded');
    expect(dead?.deliveryCount).toBe(3);
  });

  it('drops a re-sent messageId within the duplicate detection window', async () => {
    const c = client();
    const queue = newQueue({ requiresDuplicateDetection: true });
    const sender = c.createSender(queue);
    const dropped = server.stats.duplicatesDropped;
    await sender.sendMessages({ body: 1, messageId: 'same' });
    await sender.sendMessages([
      { body: 2, messageId: 'same' },
      { body: 3, messageId: 'other' },
    ]);
    expect(server.messages(queue).map((m) => [m.messageId, m.body])).toEqual([
      ['same', 1],
      ['other', 3],
    ]);
    expect(server.stats.duplicatesDropped - dropped).toBe(1);
  });

  it('redelivers when the lock expires, and settling with the lost lock fails', async () => {
    const c = client();
    const queue = newQueue({ lockDurationMs: 300 });
    await c.createSender(queue).sendMessages({ body: 'slow', messageId: 'l1' });
    const receiver = c.createReceiver(queue, { maxAutoLockRenewalDurationInMs: 0 });
    const [m1] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 2000 });
    expect(m1?.deliveryCount).toBe(0);
    const [m2] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 3000 });
    expect(m2?.messageId).toBe('l1');
    expect(m2?.deliveryCount).toBe(1);
    await expect(receiver.completeMessage(m1!)).rejects.toMatchObject({ code: 'MessageLockLost' });
    await receiver.completeMessage(m2!);
    expect(server.messages(queue)).toEqual([]);
  });

  it('renews a lock and peeks without locking', async () => {
    const c = client();
    const queue = newQueue();
    await c.createSender(queue).sendMessages([
      { body: 'a', messageId: 'r1' },
      { body: 'b', messageId: 'r2' },
    ]);
    const receiver = c.createReceiver(queue, { maxAutoLockRenewalDurationInMs: 0 });
    const peeked = await receiver.peekMessages(5);
    expect(peeked.map((m) => m.body)).toEqual(['a', 'b']);
    expect(server.messages(queue).some((m) => m.locked)).toBe(false);
    const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 2000 });
    const before = m!.lockedUntilUtc!.getTime();
    await new Promise((r) => setTimeout(r, 20));
    const renewed = await receiver.renewMessageLock(m!);
    expect(renewed.getTime()).toBeGreaterThan(before);
    await receiver.completeMessage(m!);
  });

  it('settles through $management (update-disposition) when the receiver link was detached', async () => {
    const c = client();
    const queue = newQueue();
    await c.createSender(queue).sendMessages([
      { body: 'done', messageId: 'u1' },
      { body: 'broken', messageId: 'u2' },
    ]);
    const receiver = c.createReceiver(queue, { maxAutoLockRenewalDurationInMs: 0 });
    const got = await receiver.receiveMessages(2, { maxWaitTimeInMs: 2000 });
    expect(got).toHaveLength(2);
    expect(server.detachReceivers(queue)).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    await receiver.completeMessage(got[0]!);
    await receiver.deadLetterMessage(got[1]!, {
      deadLetterReason: 'Bad',
      deadLetterErrorDescription: 'via mgmt',
    });
    expect(server.messages(queue)).toEqual([]);
    expect(server.deadLetters(queue)).toMatchObject([
      { messageId: 'u2', deadLetterReason: 'Bad', deadLetterErrorDescription: 'via mgmt' },
    ]);
    await expect(receiver.completeMessage(got[0]!)).rejects.toThrow();
  });

  it('delivers a scheduled message only from its scheduled enqueue time', async () => {
    const c = client();
    const queue = newQueue();
    const at = new Date(Date.now() + 700);
    await c.createSender(queue).sendMessages({ body: 'later', messageId: 's1', scheduledEnqueueTimeUtc: at });
    expect(server.messages(queue)[0]?.scheduledFor?.getTime()).toBe(at.getTime());
    const receiver = c.createReceiver(queue);
    expect(await receiver.receiveMessages(1, { maxWaitTimeInMs: 100 })).toEqual([]);
    const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 5000 });
    expect(m?.body).toBe('later');
    expect(Date.now()).toBeGreaterThanOrEqual(at.getTime());
    await receiver.completeMessage(m!);
  });

  it('failNextSends: the SDK retries a server-busy rejection and the message arrives once', async () => {
    const c = client();
    const queue = newQueue();
    const sender = c.createSender(queue);
    await sender.sendMessages({ body: 'warm-up', messageId: 'w' }); // link open before the fault
    const rejected = server.stats.sendsRejected;
    server.failNextSends(2);
    await sender.sendMessages({ body: 'busy', messageId: 'b1' });
    expect(server.stats.sendsRejected - rejected).toBe(2);
    expect(server.messages(queue).map((m) => m.body)).toEqual(['warm-up', 'busy']);
  });

  it('receive-and-delete removes on delivery; unknown management operations answer 501', async () => {
    const c = client();
    const queue = newQueue();
    const sender = c.createSender(queue);
    await sender.sendMessages({ body: 'once', messageId: 'x1' });
    const receiver = c.createReceiver(queue, { receiveMode: 'receiveAndDelete' });
    const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 2000 });
    expect(m?.body).toBe('once');
    expect(server.messages(queue)).toEqual([]);
    await expect(sender.scheduleMessages({ body: 'x' }, new Date(Date.now() + 60_000))).rejects.toThrow(
      /not supported by the test server/,
    );
  });
});

describe('Service Bus test server: as strict as Service Bus', () => {
  it('refuses links to a queue nobody created (amqp:not-found → MessagingEntityNotFound)', async () => {
    const c = client();
    const missing = `missing-${Date.now().toString(36)}`;
    const before = server.stats.notFound;
    await expect(c.createSender(missing).sendMessages({ body: 'x' })).rejects.toMatchObject({
      code: 'MessagingEntityNotFound',
    });
    await expect(
      c.createReceiver(missing).receiveMessages(1, { maxWaitTimeInMs: 500 }),
    ).rejects.toMatchObject({ code: 'MessagingEntityNotFound' });
    expect(server.stats.notFound - before).toBeGreaterThanOrEqual(2);
    expect(server.messages(missing)).toEqual([]);
    // Once infra has created it, the same name works.
    server.createQueue(missing);
    await client().createSender(missing).sendMessages({ body: 'now', messageId: 'n1' });
    expect(server.messages(missing).map((m) => m.body)).toEqual(['now']);
  });

  it('keeps duplicates unless the queue was created with requiresDuplicateDetection', async () => {
    const sender = client().createSender(newQueue());
    await sender.sendMessages({ body: 1, messageId: 'same' });
    await sender.sendMessages({ body: 2, messageId: 'same' });
    const queue = newQueue({ requiresDuplicateDetection: true, duplicateDetectionWindowMs: 200 });
    const dedup = client().createSender(queue);
    await dedup.sendMessages({ body: 1, messageId: 'same' });
    await dedup.sendMessages({ body: 2, messageId: 'same' });
    await new Promise((r) => setTimeout(r, 250)); // past the history window: a new message again
    await dedup.sendMessages({ body: 3, messageId: 'same' });
    expect(server.messages(queue).map((m) => m.body)).toEqual([1, 3]);
  });

  it('checks the SAS key: a wrong key or key name fails CBS put-token with 401', async () => {
    const queue = newQueue();
    const before = server.stats.unauthorized;
    for (const wrong of [{ key: 'bm90LXRoZS1rZXk=' }, { keyName: 'SomeoneElse' }]) {
      const c = client(server, server.connectionStringWith(wrong));
      const failure = await c
        .createSender(queue)
        .sendMessages({ body: 'x' })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      // The SDK retries the open and then throws an AggregateError of the attempts' errors.
      const first = ((failure as { errors?: unknown[] })?.errors?.[0] ?? failure) as { code?: string };
      expect(first?.code).toBe('UnauthorizedAccess');
      expect(String((first as Error).message)).toMatch(/InvalidSignature|key name SomeoneElse/);
    }
    expect(server.stats.unauthorized - before).toBeGreaterThanOrEqual(2);
    expect(server.messages(queue)).toEqual([]);
  });

  it('Premium: the link advertises the entity max message size, but a batch send above 1 MB is rejected', async () => {
    const premium = await otherServer({ tier: 'premium' });
    const queue = newQueue({ maxMessageSizeInKilobytes: 100 * 1024 }, premium);
    const sender = client(premium).createSender(queue);
    const batch = await sender.createMessageBatch(); // sized by the link: 100 MB
    expect(batch.maxSizeInBytes).toBe(100 * 1024 * 1024);
    const part = 'p'.repeat(600 * 1024);
    expect(batch.tryAddMessage({ body: part, messageId: 'a' })).toBe(true);
    expect(batch.tryAddMessage({ body: part, messageId: 'b' })).toBe(true);
    await expect(sender.sendMessages(batch)).rejects.toMatchObject({ code: 'MessageSizeExceeded' });
    expect(premium.stats.sizeRejected).toBe(1);
    expect(premium.stats.largestTransferBytes).toBeGreaterThan(1024 * 1024);
    expect(premium.messages(queue)).toEqual([]);
    // A single 2 MB message is fine on this entity, and so is a batch within 1 MB.
    await sender.sendMessages({ body: 'q'.repeat(2 * 1024 * 1024), messageId: 'single' });
    const small = await sender.createMessageBatch({ maxSizeInBytes: 1024 * 1024 });
    expect(small.tryAddMessage({ body: part, messageId: 'c' })).toBe(true);
    expect(small.tryAddMessage({ body: part, messageId: 'd' })).toBe(false);
    await sender.sendMessages(small);
    expect(premium.messages(queue).map((m) => m.messageId)).toEqual(['single', 'c']);
  });

  it('Standard: links advertise 256 KB, and the SDK cannot put more in a batch', async () => {
    const sender = client().createSender(newQueue());
    const batch = await sender.createMessageBatch();
    expect(batch.maxSizeInBytes).toBe(256 * 1024);
    await expect(sender.createMessageBatch({ maxSizeInBytes: 1024 * 1024 })).rejects.toThrow(/max|size/i);
  });

  it('expires messages by time to live: dropped, or dead-lettered when the queue says so', async () => {
    const dropping = newQueue({ defaultMessageTimeToLiveMs: 200 });
    const deadLettering = newQueue({
      defaultMessageTimeToLiveMs: 200,
      deadLetteringOnMessageExpiration: true,
    });
    const own = newQueue({ deadLetteringOnMessageExpiration: true });
    const c = client();
    await c.createSender(dropping).sendMessages({ body: 'gone', messageId: 'e1' });
    await c.createSender(deadLettering).sendMessages({ body: 'kept', messageId: 'e2' });
    await c.createSender(own).sendMessages([
      { body: 'short', messageId: 'e3', timeToLive: 200 },
      { body: 'long', messageId: 'e4', timeToLive: 60_000 },
    ]);
    const expiry = server.messages(deadLettering)[0]!.expiresAt!.getTime();
    expect(expiry - server.messages(deadLettering)[0]!.enqueuedAt.getTime()).toBe(200);
    const expired = server.stats.expired;
    await new Promise((r) => setTimeout(r, 350));
    expect(server.messages(dropping)).toEqual([]);
    expect(server.deadLetters(dropping)).toEqual([]);
    expect(server.messages(deadLettering)).toEqual([]);
    expect(server.deadLetters(deadLettering)).toMatchObject([
      {
        messageId: 'e2',
        deadLetterReason: 'TTLExpiredException',
        deadLetterErrorDescription: 'The message expired and was dead lettered.',
      },
    ]);
    expect(server.messages(own).map((m) => m.messageId)).toEqual(['e4']);
    expect(server.deadLetters(own).map((m) => m.messageId)).toEqual(['e3']);
    expect(server.stats.expired - expired).toBe(3);
    // A receiver sees the expiry the SDK computes from the TTL; a dead letter stays where it is.
    const [m] = await c.createReceiver(own).receiveMessages(1, { maxWaitTimeInMs: 2000 });
    expect(m!.expiresAtUtc!.getTime() - m!.enqueuedTimeUtc!.getTime()).toBe(60_000);
    const dead = await receiveOne(c, deadLettering, { subQueueType: 'deadLetter' });
    expect(dead?.deadLetterReason).toBe('TTLExpiredException');
  });

  it('bounds the lock duration at 5 minutes, as ARM does', () => {
    expect(() => server.createQueue('too-long-lock', { lockDurationMs: 5 * 60_000 + 1 })).toThrow(/PT5M/);
    expect(() => server.createQueue('five-minutes', { lockDurationMs: 5 * 60_000 })).not.toThrow();
  });

  it('detaches idle links (amqp:link:detach-forced), and the SDK re-attaches on the next use', async () => {
    const idle = await otherServer({ idleLinkTimeoutMs: 150 });
    const queue = newQueue({}, idle);
    const c = client(idle);
    const sender = c.createSender(queue);
    await sender.sendMessages({ body: 1, messageId: 'i1' });
    const receiver = c.createReceiver(queue);
    const got: unknown[] = [];
    const subscription = receiver.subscribe(
      {
        processMessage: async (m) => {
          got.push(m.body);
        },
        processError: async () => undefined,
      },
      { autoCompleteMessages: true },
    );
    try {
      await waitFor(() => got.length === 1, { timeoutMs: 5000 });
      await waitFor(() => idle.stats.idleDetached >= 2, { timeoutMs: 5000 }); // the sender's and the receiver's
      await sender.sendMessages({ body: 2, messageId: 'i2' });
      await waitFor(() => got.length === 2, { timeoutMs: 10_000 });
      expect(got).toEqual([1, 2]);
    } finally {
      await subscription.close();
    }
  });
});
