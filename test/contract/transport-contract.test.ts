/**
 * One contract for every Transport adapter, run against StorageQueueTransport (on Azurite) and
 * ServiceBusTransport (on the AMQP test server), plus the local host's Service Bus trigger driver.
 */
import { ServiceBusClient } from '@azure/service-bus';
import { QueueClient, QueueServiceClient } from '@azure/storage-queue';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { createServiceBusDriver } from '../../src/local/host/servicebus-driver';
import type { TriggerDriver } from '../../src/local/host/driver';
import type { OutgoingMessage, Transport } from '../../src/lib/ports';
import {
  SERVICE_BUS_MAX_JSON_BYTES,
  ServiceBusTransport,
  type ServiceBusTransportOptions,
} from '../../src/lib/transport/servicebus-transport';
import { StorageQueueTransport } from '../../src/lib/transport/storage-queue-transport';
import { deadLetterReasonOf } from '../../src/lib/transport/dead-letter';
import { infraQueueOptions } from '../support/infra-queues';
import {
  startServiceBusServer,
  type QueueOptions,
  type ServiceBusTestServer,
} from '../support/servicebus-server';
import { workerView } from '../../src/local/host/rpc';

interface Arrived {
  body: unknown;
}

interface TransportUnderTest {
  transport: Transport;
  queues: TestQueues;
  /** Everything that arrived on the queue so far, in arrival order (consumes it). */
  readBack(role: keyof TestQueues): Promise<Arrived[]>;
  /** Sends/requests the medium saw for the queue, when the fixture can tell. */
  requests?(role: keyof TestQueues): number;
}

interface ContractSubject {
  /** Service Bus duplicate detection drops a re-sent messageId; storage queues deliver it again. */
  dropsDuplicateMessageIds: boolean;
  /** How many messages a "many messages" send uses (Azurite takes one request per message). */
  manyCount: number;
  /**
   * A group of messages arrives in the order it was sent. Storage queues promise no order, and
   * the transport sends a group several requests at a time; nothing in the engine depends on
   * the order of a batch's messages (each is counted by its chunk number).
   */
  keepsOrder: boolean;
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  create(): Promise<TransportUnderTest>;
}

let queueSeq = 0;
type TestQueues = Record<'records' | 'control', string>;
const uniqueQueues = (): TestQueues => {
  const tag = `${Date.now().toString(36)}-${++queueSeq}`;
  return { records: `rec-${tag}`, control: `ctl-${tag}` };
};
const msg = (messageId: string, body: unknown, kind = 'records'): OutgoingMessage => ({
  messageId,
  body,
  kind,
  batchId: 'b1',
});

function transportContract(name: string, subject: ContractSubject): void {
  describe(`Transport contract: ${name}`, () => {
    const open: Transport[] = [];
    beforeAll(() => subject.setUp());
    afterEach(async () => {
      await Promise.all(open.splice(0).map((t) => t.close()));
    });
    afterAll(() => subject.tearDown());
    const create = async () => {
      const t = await subject.create();
      open.push(t.transport);
      return t;
    };

    it('delivers messages in order, to the queue of the role', async () => {
      const t = await create();
      await t.transport.send('records', [msg('r1', { n: 1 }), msg('r2', { n: 2 }), msg('r3', { n: 3 })]);
      await t.transport.send('control', [msg('c1', { type: 'poll' }, 'poll')]);
      expect((await t.readBack('records')).map((a) => a.body)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
      expect((await t.readBack('control')).map((a) => a.body)).toEqual([{ type: 'poll' }]);
    });

    it('round-trips JSON bodies: nesting, big strings, unicode, numbers as strings', async () => {
      const t = await create();
      const bodies = [
        {
          records: [
            { RecordID: '000042', lastSubmissionId: '9007199254740993', State: { Selection: 'Open' } },
          ],
        },
        { text: 'x'.repeat(30_000) },
        { unicode: 'Grüße, 你好, emoji 🎉, rtl עברית, nul-ish \u0001 and quotes "\'' },
        [1, 'two', null, true, { deep: { deeper: [] } }],
        'a plain string',
      ];
      await t.transport.send(
        'records',
        bodies.map((b, i) => msg(`j${i}`, b)),
      );
      expect((await t.readBack('records')).map((a) => a.body)).toEqual(bodies);
    });

    it(`sends many messages (more than one SDK batch / request), each once${subject.keepsOrder ? ', in order' : ''}`, async () => {
      const t = await create();
      const filler = 'f'.repeat(10_000);
      const many = Array.from({ length: subject.manyCount }, (_, i) => msg(`m${i}`, { i, filler }));
      await t.transport.send('records', many);
      const arrived = await t.readBack('records');
      const order = arrived.map((a) => (a.body as { i: number }).i);
      expect(subject.keepsOrder ? order : [...order].sort((a, b) => a - b)).toEqual(many.map((_, i) => i));
      expect(arrived.every((a) => (a.body as { filler: string }).filler === filler)).toBe(true);
      if (t.requests) expect(t.requests('records')).toBeGreaterThan(1);
    });

    it(
      subject.dropsDuplicateMessageIds
        ? 'drops a re-sent messageId (duplicate detection)'
        : 'delivers a re-sent messageId again (no duplicate detection: the ledger makes it a no-op)',
      async () => {
        const t = await create();
        await t.transport.send('records', [msg('dup-1', { n: 1 }), msg('dup-2', { n: 2 })]);
        await t.transport.send('records', [msg('dup-1', { n: 1 }), msg('dup-3', { n: 3 })]);
        const arrived = (await t.readBack('records')).map((a) => a.body);
        if (subject.dropsDuplicateMessageIds) expect(arrived).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
        else expect(arrived).toEqual([{ n: 1 }, { n: 2 }, { n: 1 }, { n: 3 }]);
      },
    );

    it('fails a body too large for the medium with an error naming the message id', async () => {
      const t = await create();
      const huge = msg('too-big-7', { text: 'z'.repeat(300_000) });
      await expect(t.transport.send('records', [huge])).rejects.toThrow(/too-big-7/);
      await expect(t.transport.send('records', [huge])).rejects.toThrow(/\d{6} bytes/);
      await t.transport.send('records', [msg('after', { ok: true })]); // the transport still works
      expect((await t.readBack('records')).map((a) => a.body)).toEqual([{ ok: true }]);
    });
  });
}

// ---- Storage queues on Azurite -------------------------------------------------------------

let azurite: SharedAzurite | undefined;
transportContract('StorageQueueTransport (Azurite)', {
  dropsDuplicateMessageIds: false,
  manyCount: 40,
  keepsOrder: false,
  async setUp() {
    azurite = sharedAzurite();
  },
  async tearDown() {},
  async create() {
    const cs = azurite!.connectionString;
    const queues = uniqueQueues();
    const transport = new StorageQueueTransport(QueueServiceClient.fromConnectionString(cs), queues);
    await transport.ensureQueues();
    return {
      transport,
      queues,
      async readBack(role) {
        const client = new QueueClient(cs, queues[role]);
        const arrived: Arrived[] = [];
        for (;;) {
          const { receivedMessageItems } = await client.receiveMessages({ numberOfMessages: 32 });
          if (receivedMessageItems.length === 0) return arrived;
          for (const m of receivedMessageItems) {
            arrived.push({ body: JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8')) });
            await client.deleteMessage(m.messageId, m.popReceipt);
          }
        }
      },
    };
  },
});

// ---- Service Bus on the AMQP test server ---------------------------------------------------

let sbServer: ServiceBusTestServer | undefined;
const fastRetry = { retryOptions: { retryDelayInMs: 20, maxRetryDelayInMs: 100, maxRetries: 3 } };

/** Creates the queues as infra does (Service Bus creates none on demand). */
function createQueues(queues: TestQueues, overrides: QueueOptions = {}): TestQueues {
  for (const q of Object.values(queues)) sbServer!.createQueue(q, infraQueueOptions(overrides));
  return queues;
}

function serviceBusTransportWith(o: Partial<ServiceBusTransportOptions>): ServiceBusTransport {
  return new ServiceBusTransport({
    access: {
      kind: 'connectionString',
      connectionString: 'Endpoint=sb://unused.localhost;SharedAccessKeyName=k;SharedAccessKey=a2V5',
    },
    queues: uniqueQueues(),
    ...o,
  });
}

function serviceBusTransport(queues: TestQueues): ServiceBusTransport {
  return new ServiceBusTransport({
    access: { kind: 'connectionString', connectionString: sbServer!.connectionString },
    queues,
    clientOptions: fastRetry,
  });
}

transportContract('ServiceBusTransport (AMQP test server)', {
  dropsDuplicateMessageIds: true,
  manyCount: 80,
  keepsOrder: true,
  async setUp() {
    sbServer = await startServiceBusServer();
  },
  async tearDown() {
    await sbServer?.stop();
    sbServer = undefined;
  },
  async create() {
    const queues = createQueues(uniqueQueues());
    const transfersBefore = sbServer!.stats.transfers;
    const transport = serviceBusTransport(queues);
    const consumed = new Map<string, number>();
    return {
      transport,
      queues,
      async readBack(role) {
        const all = sbServer!.messages(queues[role]);
        const from = consumed.get(role) ?? 0;
        consumed.set(role, all.length);
        return all.slice(from).map((m) => ({ body: m.body }));
      },
      requests() {
        return sbServer!.stats.transfers - transfersBefore;
      },
    };
  },
});

// ---- Service Bus specifics: message shape, sizes, and the local host's trigger driver ---------

describe('ServiceBusTransport and the Service Bus trigger driver', () => {
  const drivers: TriggerDriver[] = [];
  const transports: Transport[] = [];
  beforeAll(async () => {
    sbServer ??= await startServiceBusServer();
  });
  afterEach(async () => {
    await Promise.all(drivers.splice(0).map((d) => d.stop()));
    await Promise.all(transports.splice(0).map((t) => t.close()));
  });
  afterAll(async () => {
    await sbServer?.stop();
    sbServer = undefined;
  });

  const setup = (queueOptions?: QueueOptions) => {
    const queues = createQueues(uniqueQueues(), queueOptions);
    const transport = serviceBusTransport(queues);
    transports.push(transport);
    return { queues, transport };
  };

  type Call = { input: unknown; meta: Record<string, unknown> };
  const startDriver = async (
    queueName: string,
    handler: (c: Call, calls: Call[]) => Promise<void> | void,
    maxConcurrency = 4,
  ) => {
    const calls: Call[] = [];
    const driver = createServiceBusDriver({
      queueName,
      connectionString: sbServer!.connectionString,
      maxConcurrency,
      pollIntervalMs: 50,
      maxDeliveryCount: 3,
      invoke: async (rpc) => {
        const { input, triggerMetadata: meta } = workerView(rpc);
        const call = { input, meta };
        calls.push(call);
        await handler(call, calls);
      },
    });
    drivers.push(driver);
    await driver.start();
    return { driver, calls };
  };

  it('sends messageId, application properties { kind, batchId } and JSON content', async () => {
    const { queues, transport } = setup();
    await transport.send('records', [
      { messageId: 'batch-9:0', body: { a: 1 }, kind: 'records', batchId: 'batch-9' },
    ]);
    expect(sbServer!.messages(queues.records)).toMatchObject([
      {
        messageId: 'batch-9:0',
        body: { a: 1 },
        applicationProperties: { kind: 'records', batchId: 'batch-9' },
      },
    ]);
  });

  it('sends nothing when one message of a send cannot fit, and honours maxBatchBytes', async () => {
    const queues = createQueues(uniqueQueues());
    const small = new ServiceBusTransport({
      access: { kind: 'connectionString', connectionString: sbServer!.connectionString },
      queues,
      maxBatchBytes: 96 * 1024,
      clientOptions: fastRetry,
    });
    transports.push(small);
    expect(small.maxMessageBytes).toBe(40 * 1024); // 96 KiB minus the header headroom
    const before = sbServer!.stats.transfers;
    await expect(
      small.send('records', [msg('ok-1', { t: 'a' }), msg('huge-2', { t: 'b'.repeat(110_000) })]),
    ).rejects.toThrow(/message huge-2 .*110\d{3} bytes.*98304 bytes/);
    expect(sbServer!.messages(queues.records)).toEqual([]);
    await small.send(
      'records',
      Array.from({ length: 6 }, (_, i) => msg(`s${i}`, { t: 'c'.repeat(40_000) })),
    );
    expect(sbServer!.messages(queues.records)).toHaveLength(6);
    expect(sbServer!.stats.transfers - before).toBeGreaterThanOrEqual(3);
    expect(() => serviceBusTransportWith({ maxBatchBytes: 8 * 1024 })).toThrow(/maxBatchBytes/);
  });

  it('budgets a message by tier: 200 KiB on Standard, 968 KiB on Premium (what fits a 1 MB batch)', () => {
    expect(serviceBusTransportWith({}).maxMessageBytes).toBe(200 * 1024);
    expect(serviceBusTransportWith({ tier: 'standard' }).maxMessageBytes).toBe(SERVICE_BUS_MAX_JSON_BYTES);
    expect(serviceBusTransportWith({ tier: 'premium' }).maxMessageBytes).toBe(968 * 1024);
    // maxBatchBytes can lower the budget, never raise it above what 1 MB carries.
    expect(serviceBusTransportWith({ tier: 'premium', maxBatchBytes: 4 * 1024 * 1024 }).maxMessageBytes).toBe(
      968 * 1024,
    );
  });

  it('Premium with large messages: never sends a batch above 1 MB although the link allows 100 MB', async () => {
    const premium = await startServiceBusServer({ tier: 'premium' });
    const stopAfter: (() => Promise<void>)[] = [];
    try {
      const queues = uniqueQueues();
      for (const q of Object.values(queues))
        premium.createQueue(q, infraQueueOptions({ maxMessageSizeInKilobytes: 100 * 1024 }));
      const transport = new ServiceBusTransport({
        access: { kind: 'connectionString', connectionString: premium.connectionString },
        queues,
        tier: 'premium',
        clientOptions: fastRetry,
      });
      stopAfter.push(() => transport.close());
      // Three messages at the Premium budget: together far above 1 MB, each within it.
      const body = (i: number) => ({ i, t: 'p'.repeat(transport.maxMessageBytes - 100) });
      await transport.send(
        'records',
        [0, 1, 2].map((i) => msg(`big-${i}`, body(i))),
      );
      expect(premium.stats.sizeRejected).toBe(0);
      expect(premium.stats.largestTransferBytes).toBeLessThanOrEqual(1024 * 1024);
      expect(premium.stats.transfers).toBe(3);
      expect(premium.messages(queues.records).map((m) => m.messageId)).toEqual(['big-0', 'big-1', 'big-2']);
      // What the SDK does by default (the old transport): one batch sized by the link, rejected.
      const raw = new ServiceBusClient(premium.connectionString, fastRetry);
      try {
        const sender = raw.createSender(queues.records);
        const batch = await sender.createMessageBatch();
        for (const i of [3, 4])
          expect(batch.tryAddMessage({ body: body(i), messageId: `raw-${i}` })).toBe(true);
        await expect(sender.sendMessages(batch)).rejects.toMatchObject({ code: 'MessageSizeExceeded' });
        expect(premium.stats.sizeRejected).toBe(1);
      } finally {
        await raw.close();
      }
    } finally {
      for (const f of stopAfter) await f();
      await premium.stop();
    }
  });

  it('driver: invokes with the parsed body and the metadata the host and worker hand over, completes on success, then is idle', async () => {
    const { queues, transport } = setup();
    await transport.send('records', [msg('d1', { n: 1 }), msg('d2', { n: 2 }), msg('d3', { n: 3 })]);
    const { driver, calls } = await startDriver(queues.records, () => undefined);
    await waitFor(() => calls.length === 3 && sbServer!.messages(queues.records).length === 0);
    expect(calls.map((c) => c.input).sort((a, b) => (a as { n: number }).n - (b as { n: number }).n)).toEqual(
      [{ n: 1 }, { n: 2 }, { n: 3 }],
    );
    const meta = calls.find((c) => c.meta.messageId === 'd1')!.meta;
    expect(meta).toMatchObject({
      messageId: 'd1',
      deliveryCount: 1,
      applicationProperties: { kind: 'records', batchId: 'b1' },
      userProperties: { kind: 'records', batchId: 'b1' },
      contentType: 'application/json',
      sequenceNumber: expect.any(Number),
    });
    expect(meta.lockToken).toMatch(/^[0-9a-f-]{36}$/);
    // .NET DateTime (no zone) and DateTimeOffset (+00:00), as Newtonsoft writes them.
    expect(meta.enqueuedTimeUtc).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$/);
    expect(meta.enqueuedTime).toMatch(/\+00:00$/);
    expect(new Date(`${meta.enqueuedTimeUtc as string}Z`).getTime()).toBeLessThanOrEqual(Date.now());
    // infra gives the queues a 14-day default time to live.
    const ttl =
      new Date(`${meta.expiresAtUtc as string}Z`).getTime() -
      new Date(`${meta.enqueuedTimeUtc as string}Z`).getTime();
    expect(ttl).toBe(14 * 24 * 3600_000);
    // Null properties are not sent at all; the host never binds a top-level dead-letter reason.
    for (const key of ['correlationId', 'deadLetterSource', 'sessionId', 'deadLetterReason'])
      expect(meta).not.toHaveProperty(key);
    expect(deadLetterReasonOf(meta)).toBeUndefined();
    await waitFor(() => driver.isIdle());
    // Idle "since" a moment needs a quiet pollIntervalMs after it (what waitForIdle relies on).
    const since = Date.now();
    expect(driver.isIdle(since)).toBe(false);
    await waitFor(() => driver.isIdle(since));
  });

  it('driver: runs at most maxConcurrency invocations at once', async () => {
    const { queues, transport } = setup();
    await transport.send(
      'records',
      Array.from({ length: 8 }, (_, i) => msg(`c${i}`, { i })),
    );
    let running = 0;
    let most = 0;
    const { calls } = await startDriver(
      queues.records,
      async () => {
        running++;
        most = Math.max(most, running);
        await new Promise((r) => setTimeout(r, 30));
        running--;
      },
      2,
    );
    await waitFor(() => calls.length === 8 && sbServer!.messages(queues.records).length === 0);
    expect(most).toBeLessThanOrEqual(2);
  });

  it('driver: stop() waits for the invocation in flight, which still completes its message', async () => {
    const { queues, transport } = setup();
    await transport.send('records', [msg('slow', { n: 1 })]);
    let finished = false;
    const { driver, calls } = await startDriver(queues.records, async () => {
      await new Promise((r) => setTimeout(r, 200));
      finished = true;
    });
    await waitFor(() => calls.length === 1);
    await driver.stop();
    expect(finished).toBe(true);
    expect(sbServer!.messages(queues.records)).toEqual([]);
  });

  it('driver: renews the lock while an invocation outlives the lock duration', async () => {
    const queues = createQueues(uniqueQueues(), { lockDurationMs: 1200 });
    const transport = serviceBusTransport(queues);
    transports.push(transport);
    await transport.send('records', [msg('long-running', { n: 1 })]);
    const expired = sbServer!.stats.lockExpired;
    const { calls } = await startDriver(queues.records, () => new Promise((r) => setTimeout(r, 1800)));
    await waitFor(() => sbServer!.messages(queues.records).length === 0);
    expect(calls).toHaveLength(1);
    expect(sbServer!.stats.lockExpired - expired).toBe(0);
  });

  it('driver: abandons on throw, and the redelivery carries deliveryCount + 1', async () => {
    const { queues, transport } = setup();
    await transport.send('records', [msg('flaky', { n: 1 })]);
    const abandoned = sbServer!.stats.abandoned;
    const { calls } = await startDriver(queues.records, (c) => {
      if (c.meta.deliveryCount === 1) throw new Error('transient failure');
    });
    await waitFor(() => calls.length === 2 && sbServer!.messages(queues.records).length === 0);
    expect(calls.map((c) => c.meta.deliveryCount)).toEqual([1, 2]);
    expect(sbServer!.stats.abandoned - abandoned).toBe(1);
    expect(sbServer!.deadLetters(queues.records)).toEqual([]);
  });

  it('driver: the queue dead-letters after max deliveries, and a dead-letter driver receives it', async () => {
    const { queues, transport } = setup({ maxDeliveryCount: 3 });
    await transport.send('records', [msg('poison', { bad: true })]);
    const { calls } = await startDriver(queues.records, () => {
      throw new Error('always fails');
    });
    await waitFor(() => sbServer!.deadLetters(queues.records).length === 1);
    expect(calls.map((c) => c.meta.deliveryCount)).toEqual([1, 2, 3]);
    expect(sbServer!.deadLetters(queues.records)[0]).toMatchObject({
      messageId: 'poison',
      deadLetterReason: 'MaxDeliveryCountExceeded',
    });

    const dlq = await startDriver(`${queues.records}/$deadletterqueue`, () => undefined);
    await waitFor(() => dlq.calls.length === 1 && sbServer!.deadLetters(queues.records).length === 0);
    expect(dlq.calls[0]!.input).toEqual({ bad: true });
    const meta = dlq.calls[0]!.meta;
    // As in Azure: the reason is an application property, camel-cased by the worker.
    expect(meta).toMatchObject({
      messageId: 'poison',
      applicationProperties: {
        kind: 'records',
        batchId: 'b1',
        deadLetterReason: 'MaxDeliveryCountExceeded',
        deadLetterErrorDescription: expect.stringContaining('3 delivery attempts'),
      },
    });
    expect(meta).not.toHaveProperty('deadLetterReason');
    expect(deadLetterReasonOf(meta)).toBe('MaxDeliveryCountExceeded');
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${timeoutMs} ms: ${condition.toString()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
