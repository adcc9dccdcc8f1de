/**
 * The unmodified @azure/service-bus SDK against the AMQP test server: what the transport and the
 * local host's Service Bus driver rely on behaves as on Service Bus.
 */
import { ServiceBusClient, type ServiceBusReceivedMessage } from '@azure/service-bus';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startServiceBusServer, type ServiceBusTestServer } from './support/servicebus-server';

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

function client(): ServiceBusClient {
  const c = new ServiceBusClient(server.connectionString, {
    retryOptions: { retryDelayInMs: 20, maxRetryDelayInMs: 100, maxRetries: 3, timeoutInMs: 10_000 },
  });
  clients.push(c);
  return c;
}
const newQueue = () => `q${++queueCounter}-${Date.now().toString(36)}`;

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
    const queue = newQueue();
    server.createQueue(queue, { maxDeliveryCount: 3 });
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
    const queue = newQueue();
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
    const queue = newQueue();
    server.createQueue(queue, { lockDurationMs: 300 });
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
