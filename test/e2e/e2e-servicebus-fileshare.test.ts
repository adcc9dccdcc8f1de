/**
 * End to end through the real registrations with the card's Azure adapters: TRANSPORT=servicebus
 * (the local host drives app.serviceBusQueue triggers over real AMQP against the Service Bus
 * test server) and CURSOR_STORE=fileshare (Azure Files test server).
 */
import { expect } from 'vitest';
import { startAzureFilesServer, type AzureFilesServer } from '../support/azure-files-server';
import { e2eSuite } from '../support/e2e-suite';
import { infraQueueOptions } from '../support/infra-queues';
import { startServiceBusServer, type ServiceBusTestServer } from '../support/servicebus-server';

let serviceBus: ServiceBusTestServer;
let files: AzureFilesServer;

e2eSuite({
  setup: async () => {
    serviceBus = await startServiceBusServer();
    // The queues as infra creates them (the test server creates none on demand).
    for (const q of ['sync-records', 'sync-control', 'jobs']) serviceBus.createQueue(q, infraQueueOptions());
    files = await startAzureFilesServer();
    return {
      TRANSPORT: 'servicebus',
      ServiceBusConnection: serviceBus.connectionString,
      CURSOR_STORE: 'fileshare',
      CURSOR_STORAGE_CONNECTION: files.connectionString,
      CURSOR_SHARE_NAME: 'syncbridge',
    };
  },
  teardown: async () => {
    await serviceBus?.stop();
    await files?.stop();
  },
  expectedBindings: {
    applyRecords: { triggerType: 'serviceBusTrigger', queueName: 'sync-records' },
    recordsPoison: { triggerType: 'serviceBusTrigger', queueName: 'sync-records/$deadletterqueue' },
    syncControl: { triggerType: 'serviceBusTrigger', queueName: 'sync-control' },
    controlPoison: { triggerType: 'serviceBusTrigger', queueName: 'sync-control/$deadletterqueue' },
    webhookJobs: { triggerType: 'serviceBusTrigger', queueName: 'jobs' },
  },
  afterSync: (flows) => {
    // Each flow's cursor lives in the file share, as the plain number the tutorial's flow reads:
    // the flat flow's at the root (where the tutorial's file is), the other one in its folder.
    expect(files.fileContent('syncbridge', 'lastSubmissionId.txt')?.toString().trim()).toBe(
      flows.leads!.cursor,
    );
    expect(files.fileContent('syncbridge', 'inspections/lastSubmissionId.txt')?.toString().trim()).toBe(
      flows.inspections!.cursor,
    );
    expect(serviceBus.stats.completed).toBeGreaterThan(0);
    expect(serviceBus.messages('sync-records')).toEqual([]);
  },
});
