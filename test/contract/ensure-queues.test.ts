import { ServiceBusClient } from '@azure/service-bus';
import { QueueServiceClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/lib/errors';
import { sharedAzurite, type SharedAzurite } from '../support/azurite';
import { ensureQueues } from '../../src/lib/transport/ensure-queues';
import { startServiceBusServer, type ServiceBusTestServer } from '../support/servicebus-server';

describe('ensureQueues: storage queues (Azurite)', () => {
  let azurite: SharedAzurite;
  beforeAll(async () => {
    azurite = sharedAzurite();
  });
  afterAll(async () => {});

  it('creates missing queues and leaves existing ones (and their messages) alone', async () => {
    const service = QueueServiceClient.fromConnectionString(azurite.connectionString);
    await service.getQueueClient('ensure-existing').create();
    await service.getQueueClient('ensure-existing').sendMessage('keep me');
    const queues = [
      { name: 'ensure-records', setting: 'SYNC_RECORDS_QUEUE' },
      { name: 'ensure-existing', setting: 'SYNC_CONTROL_QUEUE' },
    ];
    await ensureQueues({ transport: 'storagequeue', queues, queueService: service });
    await ensureQueues({ transport: 'storagequeue', queues, queueService: service }); // idempotent
    const names: string[] = [];
    for await (const q of service.listQueues({ prefix: 'ensure-' })) names.push(q.name);
    expect(names.sort()).toEqual(['ensure-existing', 'ensure-records']);
    expect((await service.getQueueClient('ensure-existing').getProperties()).approximateMessagesCount).toBe(
      1,
    );
  });
});

describe('ensureQueues: Service Bus (AMQP test server that refuses unknown queues)', () => {
  let server: ServiceBusTestServer;
  let client: ServiceBusClient;
  beforeAll(async () => {
    server = await startServiceBusServer();
    server.createQueue('sync-records');
    client = new ServiceBusClient(server.connectionString, { retryOptions: { maxRetries: 0 } });
  });
  afterAll(async () => {
    await client?.close();
    await server?.stop();
  });

  it('passes when the queues exist, and sends nothing', async () => {
    await ensureQueues({
      transport: 'servicebus',
      client,
      queues: [{ name: 'sync-records', setting: 'SYNC_RECORDS_QUEUE' }],
    });
    expect(server.stats.sent).toBe(0);
    expect(server.messages('sync-records')).toEqual([]);
  });

  it('names the missing queue and its setting in a ConfigError, creating nothing', async () => {
    const err = await ensureQueues({
      transport: 'servicebus',
      client,
      namespace: 'localhost',
      queues: [
        { name: 'sync-records', setting: 'SYNC_RECORDS_QUEUE' },
        { name: 'sync-control', setting: 'SYNC_CONTROL_QUEUE' },
      ],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^SYNC_CONTROL_QUEUE: the queue "sync-control" does not exist in Service Bus namespace localhost/,
    );
  });
});
