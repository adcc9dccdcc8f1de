import { createHook } from 'node:async_hooks';
import { createRequire } from 'node:module';
import path from 'node:path';
import { QueueClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { FunctionTimeoutError, LocalHost, WorkerRestartedError } from '../../src/local/host';
import { compileRoute, findRoute, sortRoutes } from '../../src/local/host/http-routes';
import { parseHostJson, parseTimeSpanMs } from '../../src/local/host/host-json';
import { workerView } from '../../src/local/host/rpc';
import { serviceBusRpcTriggerMetadata } from '../../src/local/host/servicebus-driver';
import { deadLetterReasonOf } from '../../src/lib/transport/dead-letter';
import type { ServiceBusReceivedMessage } from '@azure/service-bus';
import { hostAppRecords } from '../fixtures/host-app/records';
import { infraQueueOptions } from '../support/infra-queues';
import { startServiceBusServer } from '../support/servicebus-server';
import { waitFor } from '../support/wait';

const fixtures = path.join(__dirname, '..', 'fixtures', 'host-app');
const appModule = path.join(fixtures, 'functions.ts');
const hostJsonPath = path.join(fixtures, 'host.json');
const WORK_QUEUE = 'host-app-work';

const encode = (body: unknown) => Buffer.from(JSON.stringify(body), 'utf8').toString('base64');
const records = hostAppRecords();

describe('route templates and host.json', () => {
  it('matches literals before parameters, checks constraints and optional segments', () => {
    const routes = sortRoutes([
      compileRoute('items/{id:int}', ['GET'], 'byId'),
      compileRoute('items/latest', ['GET'], 'latest'),
      compileRoute('files/{*rest}', null, 'files'),
      compileRoute('opt/{name?}', ['GET'], 'opt'),
    ]);
    const hit = (method: string, p: string) => {
      const r = findRoute(routes, method, p.split('/'));
      return r.kind === 'match' ? [r.match.route.target, r.match.params] : r.kind;
    };
    expect(hit('GET', 'items/latest')).toEqual(['latest', {}]);
    expect(hit('GET', 'ITEMS/7')).toEqual(['byId', { id: '7' }]);
    expect(hit('GET', 'items/abc')).toBe('notFound');
    expect(hit('POST', 'items/7')).toBe('methodNotAllowed');
    expect(hit('DELETE', 'files/a/b')).toEqual(['files', { rest: 'a/b' }]);
    expect(hit('GET', 'opt')).toEqual(['opt', {}]);
    expect(hit('GET', 'opt/x')).toEqual(['opt', { name: 'x' }]);
  });

  it('reads TimeSpans and queue settings with the host defaults', () => {
    expect(parseTimeSpanMs('00:00:10')).toBe(10_000);
    expect(parseTimeSpanMs('1.00:00:00.5')).toBe(86_400_500);
    expect(() => parseTimeSpanMs('10s')).toThrow(/TimeSpan/);
    const h = parseHostJson({ extensions: { queues: { batchSize: 8 } } });
    expect(h.queues).toMatchObject({
      batchSize: 8,
      newBatchThreshold: 4,
      maxDequeueCount: 5,
      messageEncoding: 'base64',
    });
    expect(h.http.routePrefix).toBe('api');
  });

  it('reads functionTimeout: a TimeSpan, "-1" for unbounded, 30 minutes when absent', () => {
    expect(parseHostJson({ functionTimeout: '00:10:00' }).functionTimeoutMs).toBe(600_000);
    expect(parseHostJson({ functionTimeout: '-1' }).functionTimeoutMs).toBeUndefined();
    expect(parseHostJson({}).functionTimeoutMs).toBe(30 * 60_000);
    expect(() => parseHostJson({ functionTimeout: '10 minutes' })).toThrow(/TimeSpan/);
  });
});

describe('LocalHost', () => {
  let azurite: SharedAzurite;
  let host: LocalHost | undefined;
  const logs: string[] = [];
  const settings = () => ({
    HostAppStorage: azurite.connectionString,
    WORK_QUEUE,
    TICK_SCHEDULE: '0 0 3 * * *',
    ECHO_ROUTE: 'items',
  });
  const queue = (name: string) => new QueueClient(azurite.connectionString, name);
  /** Timers created by the host's own code that are still pending. */
  const hostHandles = new Map<number, string>();
  const handleTracker = createHook({
    init(id, type) {
      if (type !== 'Timeout') return;
      const stack = new Error().stack ?? '';
      if (stack.includes(`${path.sep}src${path.sep}local${path.sep}host${path.sep}`))
        hostHandles.set(id, `${type} ${stack}`);
    },
    destroy(id) {
      hostHandles.delete(id);
    },
  });

  beforeAll(async () => {
    handleTracker.enable();
    azurite = sharedAzurite();
    host = await LocalHost.start({
      modules: [appModule],
      settings: settings(),
      hostJsonPath,
      httpPort: 0,
      enableTimers: false,
      queuePollIntervalMs: 50,
      log: (level, line) => logs.push(`${level} ${line}`),
    });
  });

  afterAll(async () => {
    handleTracker.disable();
    await host?.stop();
  });

  it('discovers the registrations with %SETTING% placeholders resolved', () => {
    const byName = Object.fromEntries(host!.functions.map((f) => [f.name, f]));
    expect(Object.keys(byName).sort()).toEqual(['boom', 'echo', 'tick', 'work']);
    expect(byName.tick).toMatchObject({ triggerType: 'timerTrigger', binding: { schedule: '0 0 3 * * *' } });
    expect(byName.work).toMatchObject({
      triggerType: 'queueTrigger',
      binding: { queueName: WORK_QUEUE, connection: 'HostAppStorage' },
    });
    expect(byName.echo).toMatchObject({ triggerType: 'httpTrigger', binding: { route: 'items/{id}' } });
    expect(process.env.WORK_QUEUE).toBe(WORK_QUEUE);
  });

  it('routes HTTP requests with params, query and a JSON body, and runs invocation hooks', async () => {
    const res = await fetch(`${host!.httpUrl}/api/items/42?x=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Ada', n: 7 }),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    expect(res.headers.get('x-invocation')).toMatch(/^[0-9a-f-]{36}$/);
    expect(await res.json()).toEqual({
      id: '42',
      method: 'POST',
      query: { x: '1' },
      body: { name: 'Ada', n: 7 },
      functionName: 'echo',
    });
    expect(records.hooks).toContain('pre:echo');
    expect(records.hooks).toContain('post:echo');
  });

  it('answers 404, 405 and a generic 500 without leaking the error', async () => {
    const notFound = await fetch(`${host!.httpUrl}/api/nothing-here`);
    expect(notFound.status).toBe(404);
    expect(((await notFound.json()) as { error: { code: string } }).error.code).toBe('NotFound');

    const wrongMethod = await fetch(`${host!.httpUrl}/api/items/1`);
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST, PUT');

    const boom = await fetch(`${host!.httpUrl}/api/boom`);
    expect(boom.status).toBe(500);
    const text = await boom.text();
    expect(JSON.parse(text).error.code).toBe('InternalServerError');
    expect(text).not.toMatch(/hunter2|password|at /);
  });

  it('delivers a base64 queue message decoded, with dequeueCount 1, and deletes it', async () => {
    const sent = await queue(WORK_QUEUE).sendMessage(encode({ kind: 'hello', n: 1 }));
    await waitFor(() => records.queue.some((r) => r.id === sent.messageId), { timeoutMs: 10_000 });
    await host!.waitForIdle({ timeoutMs: 10_000 });
    const got = records.queue.filter((r) => r.id === sent.messageId);
    expect(got).toEqual([
      { input: { kind: 'hello', n: 1 }, dequeueCount: 1, id: sent.messageId, functionName: 'work' },
    ]);
    expect((await queue(WORK_QUEUE).getProperties()).approximateMessagesCount).toBe(0);
  });

  it('retries a throwing message with increasing dequeueCount, then moves it to <queue>-poison', async () => {
    const text = encode({ fail: true, tag: 'poison-me' });
    const sent = await queue(WORK_QUEUE).sendMessage(text);
    await waitFor(() => records.queue.filter((r) => r.id === sent.messageId).length >= 3, {
      timeoutMs: 15_000,
    });
    await host!.waitForIdle({ timeoutMs: 15_000 });
    const counts = records.queue.filter((r) => r.id === sent.messageId).map((r) => r.dequeueCount);
    expect(counts).toEqual([1, 2, 3]);
    expect((await queue(WORK_QUEUE).getProperties()).approximateMessagesCount).toBe(0);
    const poisoned = await queue(`${WORK_QUEUE}-poison`).receiveMessages({ numberOfMessages: 32 });
    expect(poisoned.receivedMessageItems.map((m) => m.messageText)).toEqual([text]);
    expect(logs.some((l) => l.startsWith('warn') && l.includes('-poison'))).toBe(true);
  });

  it('waitForIdle waits for a running invocation and rejects when it does not settle in time', async () => {
    const sent = await queue(WORK_QUEUE).sendMessage(encode({ sleepMs: 600 }));
    await waitFor(() => records.queue.some((r) => r.id === sent.messageId), { timeoutMs: 10_000 });
    await expect(host!.waitForIdle({ timeoutMs: 150, quietMs: 50 })).rejects.toThrow(/not idle/);
    await host!.waitForIdle({ timeoutMs: 10_000 });
    expect((await queue(WORK_QUEUE).getProperties()).approximateMessagesCount).toBe(0);
  });

  it('runTimer invokes the timer with a Timer input and rejects when it throws', async () => {
    const before = records.timer.length;
    await host!.runTimer('tick');
    expect(records.timer.length).toBe(before + 1);
    const input = records.timer.at(-1)!.input as {
      isPastDue: boolean;
      scheduleStatus: { last: string; next: string; lastUpdated: string };
    };
    expect(input.isPastDue).toBe(false);
    expect(new Date(input.scheduleStatus.next).getUTCHours()).toBe(3);
    records.timerShouldThrow = true;
    try {
      await expect(host!.runTimer('tick')).rejects.toThrow('timer asked to fail');
    } finally {
      records.timerShouldThrow = false;
    }
    await expect(host!.runTimer('work')).rejects.toThrow(/not a timer/);
  });

  it("invoke() calls a function through the app's own programming model, as the worker does", async () => {
    await host!.invoke('work', { direct: true }, { DequeueCount: 9, Id: 'direct-1' });
    expect(records.queue.at(-1)).toEqual({
      input: { direct: true },
      dequeueCount: 9, // the worker camel-cases the host's PascalCase keys
      id: 'direct-1',
      functionName: 'work',
    });
    // ... and JSON-parses string values when it can: a numeric message id arrives as a number.
    await host!.invoke('work', { direct: true }, { DequeueCount: 1, Id: '42' });
    expect(records.queue.at(-1)).toMatchObject({ id: 42 });
    await expect(host!.invoke('work', { fail: true })).rejects.toThrow('message asked to fail');
  });

  it("hands a Service Bus trigger the metadata that @azure/functions 4.16.5 makes of the host's binding data", async () => {
    // A dead-lettered message as the JS SDK surfaces it (the input of the driver's conversion).
    const enqueued = new Date('2024-05-01T10:00:00.120Z');
    const message = {
      body: { n: 1 },
      messageId: '42',
      correlationId: undefined,
      contentType: 'application/json',
      subject: 'records',
      deliveryCount: 0,
      lockToken: '0f0e0d0c-0b0a-0908-0706-050403020100',
      sequenceNumber: { toNumber: () => 7 },
      enqueuedTimeUtc: enqueued,
      expiresAtUtc: new Date(enqueued.getTime() + 14 * 24 * 3600_000),
      deadLetterReason: 'TTLExpiredException',
      deadLetterErrorDescription: 'The message expired and was dead lettered.',
      applicationProperties: {
        kind: 'records',
        BatchId: 'b1',
        DeadLetterReason: 'TTLExpiredException',
        DeadLetterErrorDescription: 'The message expired and was dead lettered.',
      },
    } as unknown as ServiceBusReceivedMessage;
    const rpc = serviceBusRpcTriggerMetadata(message, 'ns.servicebus.windows.net');

    // The real package's own conversion, reached through the programming model it registered
    // with the (shimmed) @azure/functions-core, exactly as the worker calls it.
    const core = createRequire(__filename)('@azure/functions-core') as {
      getProgrammingModel(): {
        getInvocationModel(ctx: unknown): {
          getArguments(): Promise<{ context: { triggerMetadata: unknown } }>;
        };
      };
    };
    const invocation = core.getProgrammingModel().getInvocationModel({
      invocationId: 'inv-1',
      request: { triggerMetadata: rpc, inputData: [] },
      metadata: { name: 'sb', bindings: { message: { type: 'serviceBusTrigger', direction: 'in' } } },
      log: () => undefined,
    });
    const { context } = await invocation.getArguments();
    // The harness's stand-in conversion (used where no local host runs) gives the same.
    expect(workerView({ input: { string: '{}' }, triggerMetadata: rpc }).triggerMetadata).toEqual(
      context.triggerMetadata,
    );

    const meta = context.triggerMetadata as Record<string, unknown>;
    expect(meta).toMatchObject({
      messageId: 42, // the worker JSON-parses string metadata
      deliveryCount: 1,
      sequenceNumber: 7,
      contentType: 'application/json',
      subject: 'records',
      label: 'records',
      enqueuedTimeUtc: '2024-05-01T10:00:00.12',
      enqueuedTime: '2024-05-01T10:00:00.12+00:00',
      expiresAtUtc: '2024-05-15T10:00:00.12',
      applicationProperties: {
        kind: 'records',
        batchId: 'b1',
        deadLetterReason: 'TTLExpiredException',
        deadLetterErrorDescription: 'The message expired and was dead lettered.',
      },
      userProperties: { kind: 'records', batchId: 'b1', deadLetterReason: 'TTLExpiredException' },
    });
    expect(meta).not.toHaveProperty('deadLetterReason');
    expect(meta).not.toHaveProperty('correlationId');
    expect(deadLetterReasonOf(meta)).toBe('TTLExpiredException');
  });

  it('refuses a second host while one runs', async () => {
    await expect(LocalHost.start({ modules: [], settings: {}, hostJsonPath, httpPort: 0 })).rejects.toThrow(
      /already running/,
    );
  });

  it('stops cleanly: HTTP closed, settings restored, no timers left', async () => {
    const url = host!.httpUrl;
    expect([...hostHandles.values()].some((h) => h.startsWith('Timeout'))).toBe(true);
    await host!.stop();
    host = undefined;
    await expect(fetch(`${url}/api/items/1`, { method: 'POST', body: '{}' })).rejects.toThrow();
    expect(process.env.WORK_QUEUE).toBeUndefined();
    await new Promise((r) => setImmediate(r));
    expect([...hostHandles.values()]).toEqual([]);
  });

  it('fires a scheduled timer on its NCRONTAB schedule, never after stop()', async () => {
    const before = records.timer.length;
    const scheduled = await LocalHost.start({
      modules: [appModule],
      settings: { ...settings(), TICK_SCHEDULE: '*/1 * * * * *' },
      hostJsonPath,
      httpPort: 0,
      queuePollIntervalMs: 50,
      log: (level, line) => logs.push(`${level} ${line}`),
    });
    try {
      expect(scheduled.functions.find((f) => f.name === 'tick')?.binding.schedule).toBe('*/1 * * * * *');
      await waitFor(() => records.timer.length >= before + 2, { timeoutMs: 5_000 });
      const ticks = records.timer.slice(before);
      expect(ticks[1]!.at - ticks[0]!.at).toBeGreaterThanOrEqual(500);
    } finally {
      await scheduled.stop();
    }
    const afterStop = records.timer.length;
    await new Promise((r) => setTimeout(r, 1_200));
    expect(records.timer.length).toBe(afterStop);
  });

  it('enforces functionTimeout: the late invocation fails, and the worker restart fails the others in flight', async () => {
    const timed = await LocalHost.start({
      modules: [appModule],
      settings: settings(),
      hostJsonPath,
      httpPort: 0,
      enableTimers: false,
      queuePollIntervalMs: 50,
      functionTimeoutMs: 600,
      log: (level, line) => logs.push(`${level} ${line}`),
    });
    try {
      expect(timed.functionTimeoutMs).toBe(600);
      const started = Date.now();
      const late = timed.invoke('work', { sleepMs: 3000 });
      late.catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      // Would finish at ~800 ms, within its own timeout, but is in flight when `late` times out.
      const bystander = timed.invoke('work', { sleepMs: 500 });
      bystander.catch(() => undefined);
      await expect(late).rejects.toBeInstanceOf(FunctionTimeoutError);
      await expect(late).rejects.toThrow(/Timeout value of 00:00:00\.600 exceeded by function 'work'/);
      await expect(bystander).rejects.toBeInstanceOf(WorkerRestartedError);
      expect(Date.now() - started).toBeLessThan(2000);
      expect(timed.workerRestarts).toBe(1);
      expect(logs.some((l) => l.includes('Restarting worker process'))).toBe(true);
      // The host goes on: a quick invocation afterwards succeeds.
      await timed.invoke('work', { quick: true });
    } finally {
      await timed.stop();
    }
  });

  it('a Service Bus message whose invocation times out is abandoned and redelivered with deliveryCount 2', async () => {
    const serviceBus = await startServiceBusServer();
    const queue = 'sb-slow';
    serviceBus.createQueue(queue, infraQueueOptions());
    const timed = await LocalHost.start({
      modules: [path.join(fixtures, 'servicebus-slow-function.ts')],
      settings: { HostAppServiceBus: serviceBus.connectionString, SB_SLOW_QUEUE: queue },
      hostJsonPath,
      httpPort: 0,
      enableTimers: false,
      queuePollIntervalMs: 50,
      functionTimeoutMs: 400,
      log: (level, line) => logs.push(`${level} ${line}`),
    });
    try {
      const { ServiceBusClient } = await import('@azure/service-bus');
      const client = new ServiceBusClient(serviceBus.connectionString);
      await client
        .createSender(queue)
        .sendMessages({ body: { sleepMsOnFirstDelivery: 3000 }, messageId: 'slow-1' });
      await client.close();
      await waitFor(() => records.serviceBus.length >= 2 && serviceBus.messages(queue).length === 0, {
        timeoutMs: 10_000,
      });
      expect(records.serviceBus.map((r) => r.deliveryCount)).toEqual([1, 2]);
      expect(records.serviceBus[1]!.at - records.serviceBus[0]!.at).toBeLessThan(2500); // not after the sleep
      expect(serviceBus.stats.abandoned).toBe(1);
      expect(timed.workerRestarts).toBe(1);
    } finally {
      await timed.stop();
      await serviceBus.stop();
    }
  });

  it('fails start() clearly when a Service Bus trigger has no connection setting', async () => {
    await expect(
      LocalHost.start({
        modules: [path.join(fixtures, 'servicebus-function.ts')],
        settings: {},
        hostJsonPath,
        httpPort: 0,
        enableTimers: false,
        log: () => undefined,
      }),
    ).rejects.toThrow(/HostAppServiceBus/);
    // start() cleaned up after itself: another host may start.
    const next = await LocalHost.start({
      modules: [],
      settings: {},
      hostJsonPath,
      httpPort: 0,
      log: () => undefined,
    });
    await next.stop();
  });
});
